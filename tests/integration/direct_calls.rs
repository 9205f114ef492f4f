//! Federation calls the data plane serves itself (`federation::direct`):
//! `/tools/invoke/{name}`, and a plain `tools/call` on a front session. The
//! data plane answers a session's call as JSON, where rmcp answers with an
//! event stream: the content type tells which one served a request.

use crate::harness::*;
use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const EVENT_STREAM: &str = "text/event-stream";
const BOB: [(&str, &str); 1] = [("X-Authenticated-User", "bob")];

fn gateway(demo: &Demo) -> Gateway {
    let yaml = format!(
        "servers:\n  - name: demo\n    urls: [{}]\nvirtual_servers:\n  - name: demo-only\n    include: [demo/*]\n",
        demo.url()
    );
    let gw = Gateway::start(&PROXY_ENV, &yaml);
    gw.wait_gathered("demo");
    gw
}

/// The JSON-RPC message of a response, JSON or a one-message event stream.
fn message(r: &Response) -> Value {
    if r.header("content-type")
        .is_some_and(|t| t.starts_with(EVENT_STREAM))
    {
        let data = r
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| d.contains("\"result\"") || d.contains("\"error\""))
            .unwrap_or_else(|| panic!("no message in {r:?}"));
        return serde_json::from_str(data).expect("JSON data");
    }
    r.json()
}

fn served_here(r: &Response) -> bool {
    r.header("content-type") == Some("application/json")
}

/// `initialize` and `notifications/initialized` on a front session.
fn open(gw: &Gateway, path: &str, who: &[(&str, &str)], capabilities: Value) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": capabilities,
        "clientInfo": {"name": "it", "version": "1"}}});
    let r = post(gw, path, who, None, &init.to_string());
    assert_eq!(r.status, 200, "{r:?}");
    let sid = r
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    let done = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let r = post(gw, path, who, Some(&sid), done);
    assert_eq!(r.status, 202, "{r:?}");
    sid
}

fn post(gw: &Gateway, path: &str, who: &[(&str, &str)], sid: Option<&str>, body: &str) -> Response {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    headers.extend_from_slice(who);
    if let Some(sid) = sid {
        headers.push(("Mcp-Session-Id", sid));
    }
    gw.request("POST", path, &headers, body)
}

fn call(id: u64, tool: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}})
    .to_string()
}

/// A session's calls, on `/mcp` and on a virtual server: served here for
/// its own principal, refused to anyone else, through rmcp when they need
/// what only rmcp does (progress), and the session's other requests too.
#[test]
fn a_plain_call_on_a_session_is_served_by_the_data_plane() {
    let demo = Demo::start_with("demo", &["--progress-tool"]);
    let gw = gateway(&demo);
    for (path, tool) in [
        ("/mcp", "demo-echo"),
        ("/servers/demo-only/mcp", "demo-echo"),
    ] {
        let sid = open(&gw, path, &ALICE, json!({}));
        let r = post(
            &gw,
            path,
            &ALICE,
            Some(&sid),
            &call(5, tool, json!({"message": "hi"})),
        );
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert!(served_here(&r), "{path}: {r:?}");
        let m = message(&r);
        assert_eq!(m["id"], 5);
        assert_eq!(m["result"]["content"][0]["text"], "hi", "{m}");
        assert!(r.header("x-request-id").is_some());

        // The tool's own refusal keeps the contract's codes.
        let r = post(
            &gw,
            path,
            &ALICE,
            Some(&sid),
            &call(6, "no-such-tool", json!({})),
        );
        assert!(served_here(&r));
        assert_eq!(message(&r)["error"]["code"], -32602, "{r:?}");

        // Mcp-Name must repeat the body's name, as rmcp's handler checks.
        let mut who = ALICE.to_vec();
        who.push(("Mcp-Name", "demo-whoami"));
        let r = post(
            &gw,
            path,
            &who,
            Some(&sid),
            &call(7, tool, json!({"message": "x"})),
        );
        assert_eq!(message(&r)["error"]["code"], -32602, "{r:?}");

        // Someone else's session: the binding's 404, from rmcp's side.
        let r = post(
            &gw,
            path,
            &BOB,
            Some(&sid),
            &call(8, tool, json!({"message": "x"})),
        );
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert_eq!(r.json()["error"]["code"], -32001);

        // Progress needs rmcp's event stream.
        let with_progress = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "demo-countdown", "arguments": {"steps": 2, "interval_ms": 10},
                "_meta": {"progressToken": "p"}}});
        let r = post(&gw, path, &ALICE, Some(&sid), &with_progress.to_string());
        assert_eq!(r.status, 200, "{r:?}");
        assert!(!served_here(&r), "{r:?}");
        assert!(r.body.contains("notifications/progress"), "{r:?}");
        assert_eq!(message(&r)["id"], 9);

        // The session's other requests are rmcp's, on the same session.
        let list = r#"{"jsonrpc":"2.0","id":10,"method":"tools/list"}"#;
        let r = post(&gw, path, &ALICE, Some(&sid), list);
        assert!(!served_here(&r), "{r:?}");
        assert!(message(&r)["result"]["tools"].as_array().unwrap().len() >= 2);
    }
    // Counted and logged like every request.
    let text = gw.metrics();
    assert!(
        metric(
            &text,
            "mcp_requests_total{server=\"demo-only\",status=\"2xx\"}"
        ) >= 5.0
    );
}

/// A client that can answer server requests (sampling) has its calls run
/// by rmcp, which relays the server's requests to it.
#[test]
fn a_session_whose_client_answers_server_requests_stays_with_rmcp() {
    let demo = Demo::start("demo");
    let gw = gateway(&demo);
    let sid = open(&gw, "/mcp", &ALICE, json!({"sampling": {}}));
    let r = post(
        &gw,
        "/mcp",
        &ALICE,
        Some(&sid),
        &call(1, "demo-echo", json!({"message": "s"})),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!served_here(&r), "{r:?}");
    assert_eq!(message(&r)["result"]["content"][0]["text"], "s");
}

/// A DELETEd session is rmcp's no longer, and so not served here either.
#[test]
fn a_closed_session_is_not_served() {
    let demo = Demo::start("demo");
    let gw = gateway(&demo);
    let sid = open(&gw, "/mcp", &ALICE, json!({}));
    let mut headers = ALICE.to_vec();
    headers.push(("Mcp-Session-Id", &sid));
    let r = gw.request("DELETE", "/mcp", &headers, "");
    assert_eq!(r.status, 200, "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = post(
            &gw,
            "/mcp",
            &ALICE,
            Some(&sid),
            &call(2, "demo-echo", json!({"message": "x"})),
        );
        if r.status == 404 {
            assert_eq!(r.json()["error"]["code"], -32001, "{r:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed session still answers: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `notifications/cancelled` reaches a call served here: the call ends at
/// once with the cancellation error, long before the tool would have.
#[test]
fn a_cancelled_call_ends_at_once() {
    let demo = Demo::start_with("demo", &["--progress-tool"]);
    let gw = gateway(&demo);
    let sid = open(&gw, "/mcp", &ALICE, json!({}));
    let started = Instant::now();
    let slow = call(
        41,
        "demo-countdown",
        json!({"steps": 100, "interval_ms": 100}),
    );
    let waiter = {
        let (addr, sid) = (gw.addr.clone(), sid.clone());
        std::thread::spawn(move || {
            let headers = [
                ("X-Authenticated-User", "alice"),
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
                ("Mcp-Session-Id", sid.as_str()),
            ];
            request(&addr, "POST", "/mcp", &headers, &slow)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 41, "reason": "test"}});
    let r = post(&gw, "/mcp", &ALICE, Some(&sid), &cancel.to_string());
    assert_eq!(r.status, 202, "{r:?}");
    let r = waiter.join().expect("the call returns");
    assert!(served_here(&r), "{r:?}");
    assert_eq!(message(&r)["error"]["code"], -32800, "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

/// An invoke is served here too, with the service's statuses; a client
/// that leaves mid-call is counted as 499 and the call is dropped.
#[test]
fn an_invoke_is_served_by_the_data_plane_and_a_client_may_leave() {
    let demo = Demo::start_with("demo", &["--progress-tool"]);
    let gw = gateway(&demo);
    let r = gw.request(
        "POST",
        "/tools/invoke/demo-echo",
        &ALICE,
        r#"{"arguments": {"message": "inv"}}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["content"][0]["text"], "inv");
    assert!(r.header("x-request-id").is_some());
    let r = gw.request("POST", "/tools/invoke/demo-echo", &ALICE, "[1]");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.json()["error"].as_str().unwrap().starts_with("body:"));
    let r = gw.request(
        "POST",
        "/tools/invoke/demo-echo",
        &ALICE,
        r#"{"arguments": {}}"#,
    );
    assert_eq!(r.status, 400, "schema: {r:?}");

    let mut stream = TcpStream::connect(&gw.addr).expect("connect");
    let body = r#"{"arguments": {"steps": 100, "interval_ms": 100}}"#;
    write!(
        stream,
        "POST /tools/invoke/demo-countdown HTTP/1.1\r\nHost: x\r\nX-Authenticated-User: alice\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(
        &gw.metrics(),
        "mcp_requests_total{server=\"_federation\",status=\"499\"}",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "{}", gw.metrics());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The connection stays usable for the next request.
    let mut stream = TcpStream::connect(&gw.addr).expect("connect");
    for _ in 0..2 {
        let body = r#"{"arguments": {"message": "again"}}"#;
        write!(
            stream,
            "POST /tools/invoke/demo-echo HTTP/1.1\r\nHost: x\r\nX-Authenticated-User: alice\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let r = read_response(&mut reader).expect("a response");
        assert_eq!(r.status, 200, "{r:?}");
    }
}

/// Software nobody here wrote: server-everything answers a POST with an
/// event stream, which the gateway's own session reads to the answer.
#[test]
fn a_call_on_the_wire_reads_an_event_stream_answer() {
    let everything = Everything::start();
    let yaml = servers_yaml(&[("everything", &[everything.url()])]);
    let gw = Gateway::start(&PROXY_ENV, &yaml);
    gw.wait_gathered("everything");
    for message in ["first", "second"] {
        let body = json!({"arguments": {"message": message}}).to_string();
        let r = gw.request("POST", "/tools/invoke/everything-echo", &ALICE, &body);
        assert_eq!(r.status, 200, "{r:?}");
        let text = r.json()["content"][0]["text"].as_str().unwrap().to_string();
        assert!(text.contains(message), "{text}");
    }
    let sid = open(&gw, "/mcp", &ALICE, json!({}));
    let r = post(
        &gw,
        "/mcp",
        &ALICE,
        Some(&sid),
        &call(3, "everything-echo", json!({"message": "m"})),
    );
    assert!(served_here(&r), "{r:?}");
    assert!(message(&r)["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains('m'));
}
