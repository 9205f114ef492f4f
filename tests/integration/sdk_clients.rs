//! Proof with MCP software nobody here wrote: the official TypeScript and
//! Python SDK clients and the MCP Inspector CLI, through the gateway to
//! `@modelcontextprotocol/server-everything` (the reference server) and the
//! demo server. Each client connects, lists tools, calls `echo`, receives a
//! long-running tool's progress as it happens, answers the server's sampling
//! request and cancels a call; the same client run straight against
//! server-everything shows that the gateway changes nothing.
//!
//! The clients are scripts in tests/mcp-clients/ (installed by
//! `make deps-test`); each prints one JSON object of what it observed.

use crate::harness::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One MCP endpoint a client is pointed at, and what it should find there.
struct Target {
    /// Path on the gateway.
    path: &'static str,
    /// What the clients check there (see ts_client.mjs): the demo server has
    /// no long-running or sampling tool.
    checks: &'static str,
    /// Put before the tool names the checks call: a virtual server names
    /// them `<server><separator><tool>`.
    prefix: &'static str,
    /// What the upstream's `echo` puts before the message it returns.
    echo: &'static str,
}

/// Every endpoint the clients go through, with server-everything registered
/// as `everything` and the demo server as `demo`.
const TARGETS: &[Target] = &[
    Target {
        path: "/servers/everything/mcp",
        checks: "list,echo,progress,sampling,cancel",
        prefix: "",
        echo: "Echo: ",
    },
    Target {
        path: "/servers/demo/mcp",
        checks: "list,echo",
        prefix: "",
        echo: "",
    },
    // Federation: `/mcp` (everything the caller may use) and a virtual
    // server that merges both upstreams. The sampling request of the tool
    // the client calls comes back to that client through the gateway's
    // upstream session of its own.
    Target {
        path: "/mcp",
        checks: "list,echo,progress,sampling,cancel",
        prefix: "everything-",
        echo: "Echo: ",
    },
    Target {
        path: "/servers/merged/mcp",
        checks: "list,echo,progress,sampling,cancel",
        prefix: "everything-",
        echo: "Echo: ",
    },
];

/// Everything a check may wait for is bounded by the tool's own pace (five
/// seconds of progress); past this the client is hung and the test says so.
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

const USER: &str = "sdk-user@example.com";

struct Upstreams {
    everything: Everything,
    demo: Demo,
}

fn upstreams() -> Upstreams {
    Upstreams {
        everything: Everything::start(),
        demo: Demo::start("demo"),
    }
}

fn gateway_yaml(up: &Upstreams) -> String {
    let servers = servers_yaml(&[
        ("everything", &[up.everything.url()]),
        ("demo", &[up.demo.url()]),
    ]);
    format!("{servers}virtual_servers:\n  - name: merged\n    include: [\"everything/*\", \"demo/*\"]\n")
}

/// Runs a client to its end; its stdout must be one JSON object.
fn run_client(mut cmd: Command, what: &str) -> Value {
    let dir = std::env::temp_dir().join(format!(
        "mcp-gw-clients-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let mut proc = Proc { child, log: err };
    let status = proc.wait_exit(CLIENT_LIMIT);
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "{what} failed ({}):\n{stdout}\n{}",
        status.map_or("hung, killed".to_string(), |s| s.to_string()),
        proc.output()
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: not one JSON object ({e}):\n{stdout}"))
}

fn ts_client(url: &str, checks: &str, prefix: &str) -> Value {
    let dir = mcp_clients_dir();
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .arg(dir.join("ts_client.mjs"))
        .args([url, USER, checks, prefix]);
    run_client(cmd, &format!("TypeScript SDK client on {url}"))
}

fn py_client(url: &str, checks: &str, prefix: &str) -> Value {
    let mut cmd = Command::new(crate::sdk::sdk_python());
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp-clients/py_client.py"))
        .args([url, USER, checks, prefix]);
    run_client(cmd, &format!("Python SDK client on {url}"))
}

/// What a client saw on one target, checked against what it must see.
/// `direct_tools` are the tools it listed straight from server-everything.
fn assert_observed(what: &str, target: &Target, seen: &Value, direct_tools: &Value) {
    let ctx = format!("{what} on {}: {seen}", target.path);
    let tools: Vec<&str> = seen["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        tools.contains(&format!("{}echo", target.prefix).as_str()),
        "no echo tool listed: {ctx}"
    );
    assert_eq!(seen["echo"], format!("{}hello", target.echo), "{ctx}");
    if target.path == "/servers/everything/mcp" {
        assert_eq!(
            &seen["tools"], direct_tools,
            "the gateway changed the tool list: {ctx}"
        );
    }
    if target.path == "/servers/demo/mcp" {
        assert_eq!(
            seen["tools"],
            serde_json::json!(["echo", "whoami"]),
            "{ctx}"
        );
    }
    if target.checks.contains("progress") {
        assert_progress_streamed(&seen["progress"], &ctx);
    }
    if target.checks.contains("sampling") {
        let sampling = &seen["sampling"];
        let canned = sampling["canned"].as_str().expect("canned text");
        assert_eq!(
            sampling["requests"], 1,
            "one sampling request answered: {ctx}"
        );
        assert!(
            sampling["result"]
                .as_str()
                .is_some_and(|r| r.contains(canned)),
            "the tool's result carries the client's sampling answer: {ctx}"
        );
    }
    if target.checks.contains("cancel") {
        let cancel = &seen["cancel"];
        assert!(
            cancel["error"].is_string(),
            "the call ended as cancelled: {ctx}"
        );
        assert!(
            cancel["progress_seen"]
                .as_u64()
                .is_some_and(|n| (1..60).contains(&n)),
            "cancelled while running, long before its 60 steps: {ctx}"
        );
        assert_eq!(
            cancel["echo_after"],
            format!("{}after cancel", target.echo),
            "the session answers after the cancel: {ctx}"
        );
    }
}

/// Progress arrived while the tool ran, not held back to its end: the echo
/// the client sent on the first progress answered before the long call's
/// result, and later progress came after that echo.
fn assert_progress_streamed(progress: &Value, ctx: &str) {
    if let Err(e) = progress_streamed(progress) {
        panic!("{e}: {ctx}");
    }
}

fn progress_streamed(progress: &Value) -> Result<(), String> {
    let order: Vec<&str> = progress["order"]
        .as_array()
        .map(|o| o.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let at = |p: &dyn Fn(&str) -> bool| order.iter().position(|e| p(e));
    let first = at(&|e| e.starts_with("progress"));
    let echo = at(&|e| e.starts_with("echo"));
    let last_progress = order.iter().rposition(|e| e.starts_with("progress"));
    let result = at(&|e| e == "result");
    let events = progress["events"].as_array().map_or(0, Vec::len);
    if events != 5 {
        return Err(format!("{events} progress notifications, not 5"));
    }
    if !(first.is_some() && first < echo && echo < last_progress && last_progress < result) {
        return Err(format!(
            "progress must arrive as it happens (first progress, then the echo it \
             triggered, then more progress, then the result), got {order:?}"
        ));
    }
    Ok(())
}

/// The progress check can fail: through a proxy that holds each response
/// whole, the progress comes in one burst with the result, and the echo
/// sent on the first of it answers last.
#[test]
fn the_progress_check_catches_a_path_that_buffers() {
    let everything = Everything::start();
    let dir = mcp_clients_dir();
    let log = std::env::temp_dir().join(format!(
        "mcp-gw-buffering-proxy-{}-{}.log",
        std::process::id(),
        free_port()
    ));
    let mut child = Command::new("node")
        .current_dir(&dir)
        .arg(dir.join("buffering_proxy.mjs"))
        .arg(&everything.addr)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("node starts the buffering proxy");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the proxy prints its port");
    // Killed on drop, however the test ends.
    let proxy = Proc { child, log };
    let port = line.trim().strip_prefix("listening on ").expect("a port");
    let seen = ts_client(&format!("http://127.0.0.1:{port}/mcp"), "progress", "");
    drop(proxy);
    let verdict = progress_streamed(&seen["progress"]);
    assert!(
        verdict.is_err_and(|e| e.contains("as it happens")),
        "a buffering path must fail the check: {seen}"
    );
}

fn gateway_for(up: &Upstreams) -> Gateway {
    Gateway::start(&PROXY_ENV, &gateway_yaml(up))
}

/// After the clients: the gateway still serves a fresh session.
fn assert_healthy(gw: &Gateway) {
    assert_eq!(gw.request("GET", "/health", &[], "").status, 200);
    let (r, sid) = gw.initialize("demo", &ALICE);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(sid.is_some());
}

#[test]
fn typescript_sdk_client_through_the_gateway_as_directly() {
    let up = upstreams();
    let gw = gateway_for(&up);
    let all = "list,echo,progress,sampling,cancel";
    let direct = ts_client(&up.everything.url(), all, "");
    let everything = &TARGETS[0];
    assert_observed(
        "TypeScript SDK, direct",
        everything,
        &direct,
        &direct["tools"],
    );
    for target in TARGETS {
        let url = format!("http://{}{}", gw.addr, target.path);
        let seen = ts_client(&url, target.checks, target.prefix);
        assert_observed("TypeScript SDK", target, &seen, &direct["tools"]);
    }
    assert_healthy(&gw);
}

#[test]
fn python_sdk_client_through_the_gateway_as_directly() {
    let up = upstreams();
    let gw = gateway_for(&up);
    let all = "list,echo,progress,sampling,cancel";
    let direct = py_client(&up.everything.url(), all, "");
    let everything = &TARGETS[0];
    assert_observed("Python SDK, direct", everything, &direct, &direct["tools"]);
    for target in TARGETS {
        let url = format!("http://{}{}", gw.addr, target.path);
        let seen = py_client(&url, target.checks, target.prefix);
        assert_observed("Python SDK", target, &seen, &direct["tools"]);
    }
    assert_healthy(&gw);
}

/// The MCP Inspector's CLI mode (headless: no browser, no web UI).
fn inspector(url: &str, args: &[&str]) -> Value {
    let dir = mcp_clients_dir();
    let mut cmd = Command::new(dir.join("node_modules/.bin/mcp-inspector"));
    let user = format!("X-Authenticated-User: {USER}");
    // It keeps state under ~/.mcp-inspector: a home of its own, not the user's.
    let home = std::env::temp_dir().join(format!("mcp-gw-inspector-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("inspector home");
    cmd.current_dir(&dir)
        .env("HOME", &home)
        .args(["--cli", url, "--transport", "http", "--header", &user])
        .args(args);
    run_client(cmd, &format!("MCP Inspector CLI on {url}"))
}

fn tool_names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn mcp_inspector_cli_lists_and_calls_through_the_gateway_as_directly() {
    let up = upstreams();
    let gw = gateway_for(&up);
    let direct = tool_names(&inspector(
        &up.everything.url(),
        &["--method", "tools/list"],
    ));
    assert!(direct.iter().any(|t| t == "echo"), "{direct:?}");
    for target in TARGETS {
        let url = format!("http://{}{}", gw.addr, target.path);
        let listed = tool_names(&inspector(&url, &["--method", "tools/list"]));
        match target.path {
            "/servers/everything/mcp" => assert_eq!(listed, direct, "{url}"),
            "/servers/demo/mcp" => assert_eq!(listed, ["echo", "whoami"], "{url}"),
            _ => assert!(
                listed.contains(&format!("{}echo", target.prefix)),
                "{url}: {listed:?}"
            ),
        }
        let echo = format!("{}echo", target.prefix);
        let called = inspector(
            &url,
            &[
                "--method",
                "tools/call",
                "--tool-name",
                &echo,
                "--tool-arg",
                "message=hello",
            ],
        );
        assert_eq!(
            called["content"][0]["text"],
            format!("{}hello", target.echo),
            "{url}: {called}"
        );
    }
    assert_healthy(&gw);
}

fn ws_client(url: &str, user: &str, echo_tool: &str) -> (Option<i32>, Value, String) {
    let dir = mcp_clients_dir();
    let out = Command::new("node")
        .current_dir(&dir)
        .arg(dir.join("ws_client.mjs"))
        .args([url, user, echo_tool])
        .stdin(Stdio::null())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let seen = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), seen, format!("{stdout}\n{stderr}"))
}

#[test]
fn websocket_client_reports_a_refused_upgrade() {
    let up = upstreams();
    let gw = gateway_for(&up);
    let (code, seen, output) = ws_client(&format!("ws://{}/ws", gw.addr), "", "echo");
    assert_eq!(code, Some(3), "the upgrade must be refused: {output}");
    // No credential: refused before the upgrade.
    assert_eq!(seen["status"].as_u64(), Some(401), "{output}");
    let body: Value = serde_json::from_str(seen["body"].as_str().unwrap_or("")).unwrap_or_default();
    assert!(body.is_object(), "a JSON body says why: {output}");
}

/// `/ws`: JSON-RPC to the `/mcp` virtual server over a WebSocket.
#[test]
fn websocket_client_lists_and_calls_through_ws() {
    let up = upstreams();
    let gw = gateway_for(&up);
    let url = format!("ws://{}/ws", gw.addr);
    let (code, seen, output) = ws_client(&url, "", "echo");
    assert_eq!(code, Some(3), "no credential, no upgrade: {output}");
    assert_eq!(seen["status"], 401, "refused before the upgrade: {output}");
    // `echo` is on both upstreams: the qualified name of the demo server's.
    let (code, seen, output) = ws_client(&url, USER, "demo-echo");
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(seen["upgraded"], true, "{output}");
    assert!(
        seen["tools"].as_array().is_some_and(|t| !t.is_empty()),
        "{output}"
    );
    assert_eq!(seen["echo"], "hello", "{output}");
}
