//! The federation routes through the real data plane: identity first (the
//! global policy, or a virtual server's own), then the hand-over to the
//! internal service on its private Unix socket.

use crate::harness::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const REQUIRED: (&str, &str) = ("AUTH_REQUIRED", "true");

fn proxy_env() -> Vec<(&'static str, &'static str)> {
    let mut env = PROXY_ENV.to_vec();
    env.push(REQUIRED);
    env
}

/// Waits until `done` holds; panics with the gateway's log after 20 s.
fn eventually(gw: &Gateway, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} never happened:\n{}",
            gw.proc.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tools_without_a_credential_is_401_with_the_challenge_and_a_json_body() {
    let gw = Gateway::start(&proxy_env(), "servers: []\n");
    let r = gw.request("GET", "/tools", &[], "");
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert_eq!(
        r.json(),
        json!({"error": "authentication required", "status": 401})
    );
    // MCP-shaped endpoints refuse in JSON-RPC.
    for path in ["/rpc", "/mcp"] {
        let r = gw.request("POST", path, &[], PING);
        assert_eq!(r.status, 401, "{path}: {r:?}");
        assert_eq!(r.json()["error"]["code"], -32006, "{path}");
        assert!(r.header("www-authenticate").is_some());
    }
    let r = gw.request("POST", "/tools/invoke/demo-echo", &[], "{}");
    assert_eq!(r.status, 401);
}

#[test]
fn an_authenticated_caller_gets_the_json_endpoints() {
    let gw = Gateway::start(&proxy_env(), "servers: []\n");
    let r = gw.request("GET", "/tools", &ALICE, "");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.json(), json!([]));
    assert!(r.header("x-request-id").is_some());
    // No catalog yet: every tool is unknown.
    let r = gw.request(
        "POST",
        "/tools/invoke/demo-echo",
        &ALICE,
        r#"{"arguments": {"text": "hi"}}"#,
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.json()["error"], "unknown tool \"demo-echo\"");
    let r = gw.request(
        "POST",
        "/tools/invoke/demo-echo",
        &ALICE,
        r#"{"arguments": 3}"#,
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("body: arguments:"));
    let r = gw.request(
        "POST",
        "/rpc",
        &ALICE,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": []}})
    );
    let r = gw.request("DELETE", "/tools", &ALICE, "");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    // Counted as every route is, under a label no server can have.
    eventually(&gw, "the /tools requests counted", || {
        metric(
            &gw.metrics(),
            "mcp_requests_total{server=\"_federation\",status=\"2xx\"}",
        ) >= 2.0
    });
}

#[test]
fn client_sent_handover_headers_are_stripped() {
    let gw = Gateway::start(&proxy_env(), "servers: []\n");
    let forged = [
        ("X-Authenticated-User", "alice"),
        ("X-Mcp-Gateway-User", "mallory"),
        ("X-Mcp-Gateway-Source", "jwt"),
        ("X-Mcp-Gateway-Handover", "guess"),
        // Had it reached the service, this scope would be a 404.
        ("X-Mcp-Gateway-Scope", "no-such-virtual-server"),
    ];
    let r = gw.request("GET", "/tools", &forged, "");
    assert_eq!((r.status, r.json()), (200, json!([])), "{r:?}");
    // The service logs the caller it was handed: the one the data plane
    // authenticated, not the one the client wrote.
    let r = gw.request("POST", "/tools/invoke/who-am-i", &forged, "{}");
    assert_eq!(r.status, 404);
    let log = gw
        .proc
        .output_when(|log| log.contains("invoke \"who-am-i\" by"));
    assert!(log.contains("invoke \"who-am-i\" by alice"), "{log}");
    assert!(!log.contains("mallory"), "{log}");
    // Without the data plane's identity the forged one is worth nothing.
    let r = gw.request("GET", "/tools", &forged[1..], "");
    assert_eq!(r.status, 401);
}

#[test]
fn a_jwt_virtual_server_refuses_a_proxy_header_and_accepts_a_jwt() {
    let yaml = "servers: []\nvirtual_servers:\n  - name: secure\n    include: [demo/*]\n    auth_mode: jwt\n";
    let gw = Gateway::start(&proxy_env(), yaml);
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}"#;
    let accept = ("Accept", "application/json, text/event-stream");
    let r = gw.request("POST", "/servers/secure/mcp", &[ALICE[0], accept], init);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.json()["error"]["code"], -32006);
    let token = bearer(&jwt(json!({"sub": "alice", "exp": in_an_hour()})));
    let r = gw.request(
        "POST",
        "/servers/secure/mcp",
        &[("Authorization", &token), accept],
        init,
    );
    // Past the data plane: whatever the MCP front answers, not a refusal.
    assert_ne!(r.status, 401, "{r:?}");
    assert!(r.header("www-authenticate").is_none());
    // The global routes keep the global (proxy-header) policy.
    assert_eq!(gw.request("GET", "/tools", &ALICE, "").status, 200);
    // A name that is neither a server nor a virtual server.
    let r = gw.request(
        "POST",
        "/servers/other/mcp",
        &[("Authorization", &token)],
        init,
    );
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_i64()),
        (404, Some(-32002))
    );
}

#[test]
fn a_websocket_upgrade_without_a_credential_is_401_before_the_upgrade() {
    let gw = Gateway::start(&proxy_env(), "servers: []\n");
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let r = gw.request("GET", "/ws", &upgrade, "");
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.header("upgrade").is_none());
    assert_eq!(r.json()["status"], 401);
}

#[test]
fn the_socket_lives_in_a_private_directory_removed_at_shutdown() {
    let runtime_dir: PathBuf = std::env::temp_dir().join(format!(
        "mcp-gw-fed-rt-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&runtime_dir).unwrap();
    let dir_text = runtime_dir.display().to_string();
    let mut env = proxy_env();
    env.push(("RUNTIME_DIRECTORY", &dir_text));
    let mut gw = Gateway::start(&env, "servers: []\n");
    let entries: Vec<PathBuf> = std::fs::read_dir(&runtime_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let private = &entries[0];
    let mode = std::fs::metadata(private).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}", private.display());
    assert!(private.join("federation.sock").exists());
    gw.proc.signal("-TERM");
    assert!(gw.proc.wait_exit(Duration::from_secs(20)).is_some());
    assert!(!private.exists(), "{}", gw.proc.output());
    let _ = std::fs::remove_dir_all(&runtime_dir);
}

#[test]
fn a_virtual_server_named_like_a_server_stops_start_up() {
    let demo = Demo::start("d");
    let yaml = format!(
        "servers:\n  - name: demo\n    urls: [{}]\nvirtual_servers:\n  - name: demo\n    include: [demo/*]\n",
        demo.url()
    );
    let (code, output) = Gateway::run_to_exit(&proxy_env(), &yaml, &[]);
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("virtual_servers[0].name") && output.contains("also the name of a server"),
        "{output}"
    );
}

#[test]
fn sighup_adds_a_virtual_server() {
    let gw = Gateway::start(&proxy_env(), "servers: []\n");
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
    let r = gw.request("POST", "/servers/dev/mcp", &ALICE, init);
    assert_eq!(r.status, 404);
    eventually(&gw, "the reload service", || {
        gw.proc.output().contains("SIGHUP reloads the server list")
    });
    let config = gw.proc.log.with_file_name("gateway.yaml");
    std::fs::write(
        &config,
        "servers: []\nvirtual_servers:\n  - {name: dev, include: [demo/*], auth_mode: proxy}\n",
    )
    .unwrap();
    gw.proc.signal("-HUP");
    eventually(&gw, "the reload", || {
        gw.proc.output().contains("virtual servers changed")
    });
    let r = gw.request("POST", "/servers/dev/mcp", &[], init);
    assert_eq!(r.status, 401, "now a route with its own policy: {r:?}");
    let r = gw.request("POST", "/servers/dev/mcp", &ALICE, init);
    assert_ne!(r.status, 401);
    assert_ne!(r.json()["error"]["code"], -32002);
}
