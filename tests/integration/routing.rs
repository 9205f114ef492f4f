//! Routing, replicas, session affinity, failover and streaming.

use crate::harness::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[test]
fn unknown_routes_and_methods_get_json_errors() {
    let demo = Demo::start("d");
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[demo.url()])]));
    let r = gw.request("POST", "/servers/nope/mcp", &ALICE, "{}");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "unknown server");
    let r = gw.request("GET", "/nowhere", &[], "");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["status"], 404);
    let r = gw.request("PUT", "/servers/demo/mcp", &ALICE, "{}");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST, GET, DELETE"));
}

#[test]
fn sessions_stick_to_their_backend_across_replicas() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[a.url(), b.url()])]));
    let mut replicas = HashSet::new();
    for _ in 0..6 {
        let (r, sid) = gw.initialize("demo", &ALICE);
        assert_eq!(r.status, 200);
        let sid = sid.expect("session id");
        let first = gw.whoami("demo", &ALICE, &sid)["server"]
            .as_str()
            .expect("server")
            .to_string();
        for _ in 0..3 {
            assert_eq!(gw.whoami("demo", &ALICE, &sid)["server"], first.as_str());
        }
        replicas.insert(first);
    }
    assert_eq!(
        replicas.len(),
        2,
        "round robin should use both replicas: {replicas:?}"
    );
}

#[test]
fn a_dead_backend_gets_no_new_sessions_and_all_dead_is_503() {
    let (a, mut b) = (Demo::start("a"), Demo::start("b"));
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[a.url(), b.url()])]));
    b.proc.child.kill().expect("kill b");
    b.proc.child.wait().expect("b exits");
    // Immediately (before a health check notices) and after: every new
    // session lands on the survivor, none fails.
    for round in 0..8 {
        let (r, sid) = gw.initialize("demo", &ALICE);
        assert_eq!(r.status, 200, "round {round}: {r:?}");
        assert_eq!(gw.whoami("demo", &ALICE, &sid.expect("sid"))["server"], "a");
        if round == 3 {
            std::thread::sleep(Duration::from_millis(600));
        }
    }
    drop(a);
    std::thread::sleep(Duration::from_millis(600));
    let started = Instant::now();
    let (r, _) = gw.initialize("demo", &ALICE);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["error"]["code"], -32003);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "all-down must not hang"
    );
}

#[test]
fn a_session_on_a_dead_backend_is_404_so_the_client_reinitialises() {
    let (a, mut b) = (Demo::start("a"), Demo::start("b"));
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[a.url(), b.url()])]));
    let sessions: Vec<(String, String)> = (0..2)
        .map(|_| {
            let sid = gw.initialize("demo", &ALICE).1.expect("sid");
            let server = gw.whoami("demo", &ALICE, &sid)["server"]
                .as_str()
                .expect("s")
                .to_string();
            (sid, server)
        })
        .collect();
    let (on_b, _) = sessions
        .iter()
        .find(|(_, s)| s == "b")
        .expect("one session on b");
    b.proc.child.kill().expect("kill b");
    b.proc.child.wait().expect("b exits");
    std::thread::sleep(Duration::from_millis(600));
    let r = gw.mcp_post(
        "demo",
        &ALICE,
        Some(on_b),
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(r.status, 404, "{r:?}");
    let (r, _) = gw.initialize("demo", &ALICE);
    assert_eq!(r.status, 200);
}

#[test]
fn delete_ends_the_session_upstream() {
    let demo = Demo::start("d");
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[demo.url()])]));
    let sid = gw.initialize("demo", &ALICE).1.expect("sid");
    let mut headers = ALICE.to_vec();
    headers.push(("Mcp-Session-Id", &sid));
    assert_eq!(
        gw.request("DELETE", "/servers/demo/mcp", &headers, "")
            .status,
        200
    );
    let r = gw.mcp_post(
        "demo",
        &ALICE,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(r.status, 404, "the upstream forgot the session");
}

#[test]
fn sse_streams_flow_event_by_event() {
    let demo = Demo::start("d");
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[demo.url()])]));
    let mut reader = open_session_stream(&gw, "demo", &ALICE);
    let first = next_data(&mut reader);
    let got_first = Instant::now();
    assert!(first.contains("\"tick\":0"), "{first}");
    assert!(next_data(&mut reader).contains("\"tick\":1"));
    assert!(next_data(&mut reader).contains("\"tick\":2"));
    // The demo server emits a tick every 200 ms: had the gateway buffered
    // the stream, ticks 0..2 would have arrived together.
    assert!(got_first.elapsed() >= Duration::from_millis(300));
}

#[test]
fn legacy_sse_endpoint_is_rewritten_and_messages_reach_the_same_backend() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[a.url(), b.url()])]));
    for _ in 0..2 {
        let mut reader = open_stream(&gw, "/servers/demo/sse", &ALICE);
        let endpoint = next_data(&mut reader);
        assert!(
            endpoint.starts_with("/servers/demo/message?sessionId="),
            "{endpoint}"
        );
        let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
        let mut headers = ALICE.to_vec();
        headers.push(("Content-Type", "application/json"));
        let r = gw.request("POST", &endpoint, &headers, body);
        assert_eq!(r.status, 202, "{r:?}");
        let reply = next_data(&mut reader);
        assert!(reply.contains("\\\"server\\\""), "{reply}");
        // Another principal cannot post into this stream.
        let r = gw.request("POST", &endpoint, &[("X-Authenticated-User", "bob")], body);
        assert_eq!(r.status, 404);
    }
}

#[test]
fn large_bodies_pass_through_both_ways() {
    let demo = Demo::start("d");
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[demo.url()])]));
    let sid = gw.initialize("demo", &ALICE).1.expect("sid");
    // Far beyond the gateway's 8 KiB read buffer.
    let message = "x".repeat(300 * 1024);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{message}"}}}}}}"#
    );
    let r = gw.mcp_post("demo", &ALICE, Some(&sid), &body);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["result"]["content"][0]["text"]
            .as_str()
            .map(str::len),
        Some(message.len())
    );
}
