//! Health, readiness, metrics and graceful shutdown.

use crate::harness::*;
use std::time::{Duration, Instant};

const PROXY_ENV: [(&str, &str); 2] = [
    ("MCP_CLIENT_AUTH_ENABLED", "false"),
    ("TRUST_PROXY_AUTH", "true"),
];

#[test]
fn health_ready_and_version_answer_json() {
    let gw = Gateway::start(&PROXY_ENV, "servers: []\n");
    let h = gw.request("GET", "/health", &[], "");
    assert_eq!(
        (h.status, h.json()["status"].as_str()),
        (200, Some("healthy"))
    );
    let r = gw.request("GET", "/ready", &[], "");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("ready"))
    );
    let v = gw.request("GET", "/version", &[], "").json();
    assert_eq!(v["name"], "mcp-gateway");
    assert!(
        v.get("identity").is_none(),
        "no identity without a credential: {v}"
    );
    let v = gw
        .request("GET", "/version", &[("X-Authenticated-User", "test")], "")
        .json();
    assert_eq!(v["identity"]["user"], "test");
    assert_eq!(v["identity"]["source"], "proxy_header");
}

#[test]
fn version_never_shows_a_secret() {
    let secret = "a-very-secret-jwt-key-nobody-may-see-0123";
    // The database host does not resolve: the registry never opens.
    let gw = Gateway::start_live(
        &[
            ("JWT_SECRET_KEY", secret),
            ("TRUST_PROXY_AUTH", "true"),
            ("PLATFORM_ADMIN_PASSWORD", "admin-pass-xyz"),
            ("DATABASE_URL", "postgresql+psycopg://u:db-pass-xyz@db/mcp"),
            ("LOG_LEVEL", "debug"),
        ],
        "servers: []\n",
    );
    let v = gw
        .request("GET", "/version", &[("X-Authenticated-User", "t")], "")
        .body;
    let logs = gw.proc.output();
    for s in [secret, "admin-pass-xyz", "db-pass-xyz"] {
        assert!(!v.contains(s), "/version leaked {s}");
        assert!(!logs.contains(s), "logs leaked {s}");
    }
}

#[test]
fn metrics_move_with_traffic() {
    let demo = Demo::start("d");
    let mut env = PROXY_ENV.to_vec();
    env.push(("METRICS_TOKEN", "scrape-token-0123456789"));
    let gw = Gateway::start(&env, &servers_yaml(&[("demo", &[demo.url()])]));
    let before = gw.metrics_as("scrape-token-0123456789");
    gw.initialize("demo", &[("X-Authenticated-User", "alice")]);
    gw.initialize("demo", &[]);
    let after = gw.metrics_as("scrape-token-0123456789");
    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    assert_eq!(delta("mcp_auth_attempts_total"), 2.0, "{after}");
    assert_eq!(delta("mcp_auth_success_total"), 1.0);
    assert_eq!(
        delta("mcp_auth_failures_total{reason=\"missing_credential\"}"),
        1.0
    );
    assert_eq!(delta("mcp_proxy_header_missing"), 1.0);
    assert_eq!(
        delta("mcp_authenticated_requests_total{user=\"alice\"}"),
        1.0
    );
    assert_eq!(
        delta("mcp_requests_total{server=\"demo\",status=\"2xx\"}"),
        1.0
    );
    assert_eq!(delta("mcp_auth_latency_seconds_count"), 2.0);
    assert_eq!(
        metric(
            &after,
            &format!(
                "mcp_backend_up{{backend=\"{}\",server=\"demo\"}}",
                demo.addr
            )
        ),
        1.0
    );
}

#[test]
fn in_flight_streams_keep_flowing_while_draining() {
    let demo = Demo::start("d");
    let mut gw = Gateway::start(
        &[
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
            ("SHUTDOWN_DRAIN_SECONDS", "1"),
            ("SHUTDOWN_GRACE_SECONDS", "2"),
        ],
        &servers_yaml(&[("demo", &[demo.url()])]),
    );
    let alice = [("X-Authenticated-User", "alice")];
    let sid = gw.initialize("demo", &alice).1.expect("sid");
    let mut headers = alice.to_vec();
    headers.push(("Mcp-Session-Id", &sid));
    let mut stream = open_stream(&gw, "/servers/demo/mcp", &headers);
    assert!(next_data(&mut stream).contains("\"tick\":0"));
    gw.proc.signal("-TERM");
    let signalled = Instant::now();
    // Drain (1 s) plus part of the grace period: about ten more ticks.
    for _ in 0..5 {
        assert!(next_data(&mut stream).contains("tick"));
    }
    assert!(
        signalled.elapsed() >= Duration::from_millis(800),
        "events kept coming after SIGTERM"
    );
    let status = gw
        .proc
        .wait_exit(Duration::from_secs(15))
        .expect("exits after the grace period");
    assert!(status.success(), "{status}");
}

#[test]
fn sigterm_turns_ready_503_then_exits() {
    let gw = Gateway::start(
        &[
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("SHUTDOWN_DRAIN_SECONDS", "2"),
        ],
        "servers: []\n",
    );
    let mut gw = gw;
    gw.proc.signal("-TERM");
    // While the listener is open (the 2 s drain), not within a fixed time:
    // under load the signal may be handled late.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut saw_draining = false;
    while Instant::now() < deadline {
        match try_request(&gw.addr, "GET", "/ready", &[], "") {
            Ok(r) if r.status == 503 => {
                saw_draining = true;
                assert_eq!(r.json()["status"], "draining");
                // Liveness stays green while draining.
                assert_eq!(gw.request("GET", "/health", &[], "").status, 200);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        saw_draining,
        "/ready never turned 503 before the listener closed:\n{}",
        gw.proc.output()
    );
    let status = gw
        .proc
        .wait_exit(Duration::from_secs(15))
        .expect("exits within the grace period");
    assert!(status.success(), "{status}");
}

/// The registry database out of reach at start-up: the YAML file's servers
/// are served at once and `/ready` says why it is not ready.
#[test]
fn an_unreachable_registry_leaves_the_yaml_servers_serving_and_ready_503() {
    let demo = Demo::start("d");
    let gw = Gateway::start_live(
        &[
            PROXY_ENV.to_vec(),
            vec![("DATABASE_URL", "postgresql://u@127.0.0.1:1/mcp")],
        ]
        .concat(),
        &servers_yaml(&[("d", &[demo.url()])]),
    );
    let ready = gw.request("GET", "/ready", &[], "");
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("registry"), "{}", ready.body);
    assert_eq!(gw.initialize("d", &ALICE).0.status, 200);
}
