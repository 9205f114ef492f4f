//! SIGHUP re-reads the `--config` file and swaps the routing snapshot:
//! routes and replicas follow the file, an invalid file changes nothing,
//! and what is in flight (a slow call, an open event stream) is undisturbed.

use crate::harness::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Polls `done` until it holds; panics with the gateway's log after 20 s.
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

fn reload_lines(gw: &Gateway) -> usize {
    gw.proc.output().matches("SIGHUP: ").count()
}

/// Writes the gateway's `--config` file anew, sends SIGHUP and waits for
/// the one line the reload logs (applied or refused); returns that line.
fn reload(gw: &Gateway, yaml: &str) -> String {
    eventually(gw, "the reload service", || {
        gw.proc.output().contains("SIGHUP reloads the server list")
    });
    let before = reload_lines(gw);
    let config = gw.proc.log.with_file_name("gateway.yaml");
    std::fs::write(&config, yaml).expect("rewrite the config file");
    gw.proc.signal("-HUP");
    eventually(gw, "the reload", || reload_lines(gw) > before);
    gw.proc
        .output()
        .lines()
        .filter(|l| l.contains("SIGHUP: "))
        .nth(before)
        .unwrap_or_default()
        .to_string()
}

/// An `initialize`: a new session, so round robin picks the replica.
fn ping(gw: &Gateway, server: &str) -> u16 {
    gw.initialize(server, &ALICE).0.status
}

#[test]
fn sighup_adds_and_removes_servers() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("one", &[a.url()])]));
    assert_eq!(ping(&gw, "one"), 200);
    assert_eq!(ping(&gw, "two"), 404);

    let line = reload(
        &gw,
        &servers_yaml(&[("one", &[a.url()]), ("two", &[b.url()])]),
    );
    assert!(line.contains("added two changed - removed -"), "{line}");
    assert_eq!(ping(&gw, "two"), 200);
    assert_eq!(ping(&gw, "one"), 200);

    let line = reload(&gw, &servers_yaml(&[("two", &[b.url()])]));
    assert!(line.contains("removed one"), "{line}");
    assert_eq!(ping(&gw, "one"), 404);
    assert_eq!(ping(&gw, "two"), 200);
    // The removed server's backend left the health series.
    assert!(!gw.metrics().contains(&format!("{}\"", a.addr)));

    let line = reload(&gw, &servers_yaml(&[("two", &[b.url()])]));
    assert!(line.contains("no change"), "{line}");
}

#[test]
fn sighup_adds_and_removes_replicas() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[a.url()])]));
    let line = reload(&gw, &servers_yaml(&[("demo", &[a.url(), b.url()])]));
    assert!(line.contains("changed demo"), "{line}");
    for _ in 0..4 {
        assert_eq!(ping(&gw, "demo"), 200);
    }
    // Counted by the caller's header: the catalog gathers a changed server
    // again (its own traffic, to either replica) while the test counts.
    assert!(b.user_requests() > 0, "the new replica receives traffic");

    reload(&gw, &servers_yaml(&[("demo", &[a.url()])]));
    let (b_before, a_before) = (b.user_requests(), a.user_requests());
    for _ in 0..4 {
        assert_eq!(ping(&gw, "demo"), 200);
    }
    assert_eq!(
        b.user_requests(),
        b_before,
        "the removed replica gets nothing"
    );
    assert_eq!(a.user_requests(), a_before + 4);
}

#[test]
fn an_invalid_file_keeps_the_routes_in_effect() {
    let a = Demo::start("a");
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("one", &[a.url()])]));
    let line = reload(
        &gw,
        "servers:\n  - {name: Bad Name, urls: [http://h/mcp]}\n",
    );
    assert!(line.contains("reload refused"), "{line}");
    assert!(line.contains("servers[0].name"), "{line}");
    assert_eq!(ping(&gw, "one"), 200);
    // A credential read from a variable that is not set: refused, naming it.
    let yaml = format!(
        "servers:\n  - name: one\n    urls: [{}]\n    upstream_auth: {{type: bearer, token_env: NOT_SET_ANYWHERE}}\n",
        a.url()
    );
    let line = reload(&gw, &yaml);
    assert!(line.contains("upstream_auth.token_env"), "{line}");
    assert!(line.contains("NOT_SET_ANYWHERE"), "{line}");
    assert_eq!(ping(&gw, "one"), 200);
}

#[test]
fn an_open_stream_keeps_flowing_across_a_change_of_its_server() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[a.url()])]));
    let mut stream = open_session_stream(&gw, "demo", &ALICE);
    assert!(next_data(&mut stream).contains("\"tick\":0"));
    let changed = format!(
        "servers:\n  - name: demo\n    urls: [{}, {}]\n    passthrough_headers: [X-Tenant-Id]\n",
        a.url(),
        b.url()
    );
    let line = reload(&gw, &changed);
    assert!(line.contains("changed demo"), "{line}");
    // Events keep coming on the stream opened before the swap.
    for _ in 0..3 {
        let event = next_data(&mut stream);
        assert!(event.contains("\"server\":\"a\""), "{event}");
    }
    // Even once the server is gone from the routes.
    reload(&gw, &servers_yaml(&[("other", &[b.url()])]));
    assert_eq!(ping(&gw, "demo"), 404);
    assert!(next_data(&mut stream).contains("\"tick\""));
}

#[test]
fn a_request_in_flight_finishes_after_its_server_is_removed() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[a.url()])]));
    let sid = gw.initialize("demo", &ALICE).1.expect("session id");
    let body = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow","arguments":{"silence_ms":3000,"then":"answer"}}}"#;
    let headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("X-Authenticated-User", "alice"),
        ("Mcp-Session-Id", sid.as_str()),
    ];
    let mut conn = TcpStream::connect(&gw.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    conn.write_all(raw_request(&gw.addr, "POST", "/servers/demo/mcp", &headers, body).as_bytes())
        .expect("write");
    let mut reader = BufReader::new(conn);
    let mut seen = String::new();
    while !seen.contains("working") {
        assert!(reader.read_line(&mut seen).expect("read") > 0, "{seen}");
    }
    // The call is in flight (its first event is in, the answer is not).
    let line = reload(&gw, &servers_yaml(&[("other", &[b.url()])]));
    assert!(line.contains("removed demo"), "{line}");
    assert_eq!(ping(&gw, "demo"), 404);
    while !seen.contains("\"done\"") {
        assert!(reader.read_line(&mut seen).expect("read") > 0, "{seen}");
    }
}

#[test]
fn the_servers_credential_reaches_its_replicas() {
    let a = Demo::start("a");
    let yaml = format!(
        "servers:\n  - name: demo\n    urls: [{}]\n    upstream_auth: {{type: headers, headers_env: {{X-Api-Key: DEMO_KEY, Authorization: DEMO_AUTH}}}}\n",
        a.url()
    );
    let mut env = PROXY_ENV.to_vec();
    env.push(("DEMO_KEY", "key-123"));
    env.push(("DEMO_AUTH", "Bearer server-token"));
    let gw = Gateway::start(&env, &yaml);
    let seen = gw.upstream_view("demo", &ALICE);
    assert_eq!(seen["headers"]["x-api-key"], "key-123", "{seen}");
    assert_eq!(seen["headers"]["authorization"], "Bearer server-token");
    // A client's X-Upstream-Authorization still wins for Authorization.
    let mut mine = ALICE.to_vec();
    mine.push(("X-Upstream-Authorization", "Bearer client-token"));
    let seen = gw.upstream_view("demo", &mine);
    assert_eq!(seen["headers"]["authorization"], "Bearer client-token");
    assert_eq!(seen["headers"]["x-api-key"], "key-123");
    assert!(!gw.proc.output().contains("key-123"), "secret logged");
}

#[test]
fn a_credential_under_an_identity_header_stops_start_up() {
    let yaml = "servers:\n  - name: demo\n    urls: [http://127.0.0.1:9/mcp]\n    upstream_auth: {type: headers, headers_env: {X-Authenticated-User: DEMO_KEY}}\n";
    let mut env = PROXY_ENV.to_vec();
    env.push(("DEMO_KEY", "key-123"));
    let (code, out) = Gateway::run_to_exit(&env, yaml, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("server demo: upstream_auth"), "{out}");
    assert!(out.contains("x-authenticated-user"), "{out}");
    assert!(!out.contains("key-123"), "{out}");
}
