//! The deployment files in `conf/` and `systemd/` name only what the
//! gateway has: every environment variable one sets for the gateway is on
//! `config::KNOWN_VARIABLES`, and every metric and label a Grafana panel or
//! an alert uses appears in a real `/metrics` scrape of the running binary.

use crate::harness::*;
use mcp_gateway::config::KNOWN_VARIABLES;
use serde_yaml::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("readable directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn conf_files(extensions: &[&str]) -> Vec<PathBuf> {
    let mut all = Vec::new();
    files_under(&repo().join("conf"), &mut all);
    all.retain(|p| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
    });
    all.sort();
    all
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_documents(path: &Path) -> Vec<Yaml> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(&read(path))
        .map(|doc| Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// `NAME=` lines of an environment file, commented out (`# NAME=`) or not.
fn env_file_names(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('='))
        .map(|(name, _)| name.trim())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_string)
        .collect()
}

/// The variables a YAML document sets for the gateway: a compose service
/// named `mcp-gateway`, or a Kubernetes container of that name.
fn gateway_env_in_yaml(doc: &Yaml, out: &mut Vec<String>) {
    if let Some(env) = doc["services"]["mcp-gateway"].get("environment") {
        match env {
            Yaml::Mapping(map) => {
                out.extend(map.keys().filter_map(|k| k.as_str().map(str::to_string)))
            }
            Yaml::Sequence(items) => out.extend(
                items
                    .iter()
                    .filter_map(|i| i.as_str())
                    .filter_map(|i| i.split('=').next())
                    .map(str::to_string),
            ),
            _ => panic!("compose environment is neither a map nor a list"),
        }
    }
    if let Some(containers) = doc["spec"]["template"]["spec"]["containers"].as_sequence() {
        for container in containers.iter().filter(|c| c["name"] == "mcp-gateway") {
            for var in container["env"].as_sequence().into_iter().flatten() {
                out.push(var["name"].as_str().expect("env name").to_string());
            }
        }
    }
}

/// Every string under a key named `expr` or `query` (Grafana, Prometheus rules).
fn expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("expr" | "query", Some(text)) => out.push(text.to_string()),
                    _ => expressions(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// Metric names (`mcp_…`) and label names a PromQL expression uses.
fn promql_names(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if is_name(bytes[i]) && (i == 0 || !is_name(bytes[i - 1]) && bytes[i - 1] != '$') {
            let start = i;
            while i < bytes.len() && is_name(bytes[i]) {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            let rest: String = bytes[i..].iter().collect();
            let rest = rest.trim_start();
            if word.starts_with("mcp_") {
                metrics.insert(word);
            } else if (word == "by" || word == "without") && rest.starts_with('(') {
                let inner = &rest[1..rest.find(')').expect("closing parenthesis")];
                labels.extend(
                    inner
                        .split(',')
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty()),
                );
            } else if word == "label_values" && rest.starts_with('(') {
                let inner = &rest[1..rest.find(')').expect("closing parenthesis")];
                if let Some((metric, label)) = inner.split_once(',') {
                    metrics.insert(metric.trim().to_string());
                    labels.insert(label.trim().to_string());
                }
            }
            continue;
        }
        if bytes[i] == '{' {
            let end = bytes[i..]
                .iter()
                .position(|&c| c == '}')
                .expect("closing brace")
                + i;
            let inner: String = bytes[i + 1..end].iter().collect();
            for matcher in inner.split(',').filter(|m| !m.trim().is_empty()) {
                let name_end = matcher.find(['=', '!']).expect("a label matcher");
                labels.insert(matcher[..name_end].trim().to_string());
            }
            i = end;
        }
        i += 1;
    }
    (metrics, labels)
}

/// Series names and their label names in Prometheus text.
fn scraped(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(histogram) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.strip_suffix(" histogram"))
        {
            out.entry(histogram.to_string())
                .or_default()
                .insert("le".into());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("a sample");
        let labels = out.entry(line[..name_end].to_string()).or_default();
        if line[name_end..].starts_with('{') {
            let inner = &line[name_end + 1..line.find('}').expect("closing brace")];
            labels.extend(
                inner
                    .split(',')
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, _)| k.to_string()),
            );
        }
    }
    out
}

/// What is wrong with one expression against a scrape: unknown metrics,
/// and labels none of its metrics carry (`instance`, `job` come from the scrape target).
fn problems(expr: &str, scrape: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let (metrics, labels) = promql_names(expr);
    let mut out = Vec::new();
    let mut carried: BTreeSet<String> = ["instance", "job"].map(String::from).into();
    for metric in &metrics {
        match scrape.get(metric) {
            Some(l) => carried.extend(l.iter().cloned()),
            None => out.push(format!("metric {metric} is not exported")),
        }
    }
    for label in labels.difference(&carried) {
        out.push(format!("label {label} is on none of {metrics:?}"));
    }
    out
}

/// A gateway with a little of every kind of traffic, scraped with the
/// per-user series.
fn real_scrape() -> BTreeMap<String, BTreeSet<String>> {
    let token = "conf-files-metrics-token-0123";
    let demo = Demo::start("a");
    let mut env = PROXY_ENV.to_vec();
    env.push(("METRICS_TOKEN", token));
    let gw = Gateway::start(&env, &servers_yaml(&[("a", &[demo.url()])]));
    gw.upstream_view("a", &ALICE);
    assert_eq!(gw.mcp_post("a", &[], None, PING).status, 401);
    assert_eq!(gw.mcp_post("nope", &ALICE, None, PING).status, 404);
    scraped(&gw.metrics_as(token))
}

#[test]
fn the_checker_finds_what_it_is_for() {
    let scrape = scraped(
        "# TYPE mcp_x_seconds histogram\nmcp_x_seconds_bucket{server=\"a\",le=\"1\"} 1\nmcp_y_total{reason=\"r\"} 2\n",
    );
    assert!(problems(
        "histogram_quantile(0.9, sum by (le, server) (rate(mcp_x_seconds_bucket[5m])))",
        &scrape
    )
    .is_empty());
    assert!(problems(
        "sum by (reason) (rate(mcp_y_total{reason=~\"$r\"}[1m])) by (instance)",
        &scrape
    )
    .is_empty());
    assert_eq!(
        problems("rate(mcp_z_total[5m])", &scrape),
        ["metric mcp_z_total is not exported"]
    );
    assert_eq!(problems("sum by (user) (mcp_y_total)", &scrape).len(), 1);
    assert_eq!(problems("mcp_y_total{server=\"a\"}", &scrape).len(), 1);
    assert_eq!(
        problems("label_values(mcp_y_total, status)", &scrape).len(),
        1
    );
    assert_eq!(
        env_file_names("A=1\n# B_2=x\n#C=\n# prose = no\nlower=1\n"),
        ["A", "B_2", "C"]
    );
}

#[test]
fn every_variable_set_for_the_gateway_is_one_it_reads() {
    let mut named: Vec<(String, String)> = Vec::new();
    let mut per_file = |path: &Path, names: Vec<String>| {
        let shown = path
            .strip_prefix(repo())
            .unwrap_or(path)
            .display()
            .to_string();
        named.extend(names.into_iter().map(|n| (shown.clone(), n)));
    };
    for path in conf_files(&["env"]) {
        let names = env_file_names(&read(&path));
        assert!(names.len() >= 3, "{}: {names:?}", path.display());
        per_file(&path, names);
    }
    for path in conf_files(&["yml", "yaml"]) {
        let mut names = Vec::new();
        for doc in yaml_documents(&path) {
            gateway_env_in_yaml(&doc, &mut names);
        }
        per_file(&path, names);
    }
    let example = repo().join("systemd/mcp-gateway.env.example");
    let listed = env_file_names(&read(&example));
    per_file(&example, listed.clone());

    for wanted in [
        "conf/docker-compose.yml",
        "conf/kubernetes/deployment.yaml",
        "conf/nginx/gateway.env",
    ] {
        assert!(
            named.iter().filter(|(f, _)| f == wanted).count() >= 5,
            "nothing found in {wanted}"
        );
    }
    let unknown: Vec<_> = named
        .iter()
        .filter(|(_, n)| !KNOWN_VARIABLES.contains(&n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "variables the gateway does not read: {unknown:?}"
    );
    for name in KNOWN_VARIABLES {
        assert!(
            listed.iter().any(|l| l == name),
            "{name} is missing from {}",
            example.display()
        );
    }
}

#[test]
fn every_metric_and_label_in_dashboards_and_alerts_is_exported() {
    let mut exprs: Vec<(PathBuf, String)> = Vec::new();
    for path in conf_files(&["json"]) {
        let json: serde_json::Value = serde_json::from_str(&read(&path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut found = Vec::new();
        expressions(&json, &mut found);
        exprs.extend(found.into_iter().map(|e| (path.clone(), e)));
    }
    for path in conf_files(&["yml", "yaml"]) {
        for doc in yaml_documents(&path) {
            let json = serde_json::to_value(&doc).expect("YAML as JSON");
            let mut found = Vec::new();
            expressions(&json, &mut found);
            exprs.extend(found.into_iter().map(|e| (path.clone(), e)));
        }
    }
    let with_metrics = exprs.iter().filter(|(_, e)| e.contains("mcp_")).count();
    assert!(with_metrics >= 12, "too few expressions found: {exprs:?}");

    let scrape = real_scrape();
    let mut all = Vec::new();
    for (path, expr) in exprs.iter().filter(|(_, e)| e.contains("mcp_")) {
        for p in problems(expr, &scrape) {
            all.push(format!("{}: {expr}: {p}", path.display()));
        }
    }
    assert!(all.is_empty(), "{all:#?}\nscrape: {scrape:#?}");
}

#[test]
fn the_alert_rules_pass_promtool_with_the_references_thresholds() {
    let rules = repo().join("conf/prometheus/alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool runs: `make deps-test` installs Debian's prometheus package");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read(&rules);
    for threshold in [
        "rate(mcp_auth_failures_total[5m])) * 60 > 10",
        "rate(mcp_proxy_header_missing[5m]) * 60 > 5",
        "(rate(mcp_auth_latency_seconds_bucket[5m]))) > 1",
    ] {
        assert!(text.contains(threshold), "alerts.yml lacks {threshold}");
    }
}

#[test]
fn kubernetes_probes_liveness_on_health_and_readiness_on_ready() {
    let docs = yaml_documents(&repo().join("conf/kubernetes/deployment.yaml"));
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    let session = container["env"]
        .as_sequence()
        .and_then(|env| env.iter().find(|v| v["name"] == "SESSION_SECRET"))
        .expect("SESSION_SECRET from a Secret");
    assert_eq!(
        session["valueFrom"]["secretKeyRef"]["name"],
        "mcp-gateway-secrets"
    );
    let istio = yaml_documents(&repo().join("conf/kubernetes/istio.yaml"));
    let kinds: Vec<&str> = istio.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["RequestAuthentication", "AuthorizationPolicy"]);
}
