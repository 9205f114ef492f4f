//! The wire: event streams that go quiet or break, request headers that
//! trickle in, and framing the gateway refuses. Raw sockets throughout,
//! since the point is the bytes and the moment the connection closes.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const PROXY_ENV: [(&str, &str); 2] = [
    ("MCP_CLIENT_AUTH_ENABLED", "false"),
    ("TRUST_PROXY_AUTH", "true"),
];

fn gateway(extra: &[(&str, &str)]) -> (Demo, Gateway) {
    let demo = Demo::start("d");
    let mut env = PROXY_ENV.to_vec();
    env.extend_from_slice(extra);
    let gw = Gateway::start(&env, &servers_yaml(&[("demo", &[demo.url()])]));
    (demo, gw)
}

fn connect(gw: &Gateway) -> TcpStream {
    let stream = TcpStream::connect(&gw.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    stream
}

/// Everything the gateway sends until it closes, and how long that took.
fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("not closed after {:?}: {e}", started.elapsed()),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

/// Calls the demo's `slow` tool on a fresh connection with `Connection:
/// close`: one event, `silence_ms` of nothing, then the answer or a break.
fn slow_call(gw: &Gateway, silence_ms: u64, then: &str) -> (String, Duration) {
    slow_call_accepting(gw, "application/json, text/event-stream", silence_ms, then)
}

fn slow_call_accepting(
    gw: &Gateway,
    accept: &str,
    silence_ms: u64,
    then: &str,
) -> (String, Duration) {
    let (r, sid) = gw.initialize("demo", &[("X-Authenticated-User", "alice")]);
    assert_eq!(r.status, 200, "{r:?}");
    let sid = sid.expect("session id");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"slow","arguments":{{"silence_ms":{silence_ms},"then":"{then}"}}}}}}"#
    );
    let headers = [
        ("Content-Type", "application/json"),
        ("Accept", accept),
        ("X-Authenticated-User", "alice"),
        ("Mcp-Session-Id", sid.as_str()),
    ];
    let mut conn = connect(gw);
    let raw = raw_request(&gw.addr, "POST", "/servers/demo/mcp", &headers, &body);
    conn.write_all(raw.as_bytes()).expect("write");
    read_until_closed(&mut conn)
}

const LAST_CHUNK: &str = "\r\n0\r\n\r\n";

#[test]
fn a_quiet_tool_call_stream_outlives_the_read_timeout() {
    let (_demo, gw) = gateway(&[("UPSTREAM_READ_TIMEOUT", "1")]);
    let (out, _) = slow_call(&gw, 2500, "answer");
    assert!(out.contains("text/event-stream"), "{out}");
    assert!(
        out.contains(r#""result":{"content""#),
        "the answer arrived: {out}"
    );
    assert!(out.ends_with(LAST_CHUNK), "a clean end: {out}");
}

#[test]
fn a_request_that_did_not_ask_for_a_stream_keeps_the_read_timeout() {
    let (_demo, gw) = gateway(&[("UPSTREAM_READ_TIMEOUT", "1")]);
    // The demo streams anyway; the gateway could not know it would.
    let (out, took) = slow_call_accepting(&gw, "*/*", 8000, "answer");
    assert!(
        out.contains(r#""data":"working""#),
        "the first event: {out}"
    );
    assert!(
        !out.contains("result") && !out.ends_with(LAST_CHUNK),
        "{out}"
    );
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
}

#[test]
fn a_silent_stream_ends_at_stream_idle_timeout_and_the_client_sees_it() {
    let (_demo, gw) = gateway(&[
        ("UPSTREAM_READ_TIMEOUT", "30"),
        ("STREAM_IDLE_TIMEOUT", "1"),
    ]);
    let (out, took) = slow_call(&gw, 8000, "answer");
    assert!(!out.contains("result"), "cut before the answer: {out}");
    assert_cut_after_first_event(&gw, &out, took);
}

#[test]
fn a_broken_upstream_stream_breaks_the_client_stream() {
    let (_demo, gw) = gateway(&[]);
    let (out, took) = slow_call(&gw, 300, "break");
    assert_cut_after_first_event(&gw, &out, took);
}

/// The client got the first event, then a cut (no last chunk, no error body
/// spliced into the stream) within seconds, and the request was counted as
/// the failure it was, though a 200 header had gone out.
fn assert_cut_after_first_event(gw: &Gateway, out: &str, took: Duration) {
    assert!(
        out.contains(r#""data":"working""#),
        "the first event: {out}"
    );
    assert!(
        !out.ends_with(LAST_CHUNK) && !out.contains("error"),
        "{out}"
    );
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    let series = "mcp_requests_total{server=\"demo\",status=\"5xx\"}";
    assert_eq!(metric(&gw.metrics(), series), 1.0, "{series}");
}

/// Sends `bytes` one at a time, `pause` apart, until the gateway closes the
/// connection or `limit` passes; how long the connection stayed open.
fn trickle(conn: &mut TcpStream, bytes: &[u8], pause: Duration, limit: Duration) -> Duration {
    let started = Instant::now();
    conn.set_read_timeout(Some(pause)).expect("timeout");
    for byte in bytes.iter().cycle() {
        if started.elapsed() > limit {
            break;
        }
        if conn.write_all(&[*byte]).is_err() {
            return started.elapsed();
        }
        let mut buf = [0u8; 512];
        match conn.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return started.elapsed(),
            Err(_) => {} // the pause elapsed: send the next byte
        }
    }
    panic!(
        "a header trickled in for {:?} and the connection stayed open",
        started.elapsed()
    )
}

const TRICKLE: &[u8] = b"GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

#[test]
fn a_trickled_header_is_cut_at_request_header_timeout() {
    let gw = Gateway::start(
        &[PROXY_ENV.as_slice(), &[("REQUEST_HEADER_TIMEOUT", "2")]].concat(),
        "servers: []\n",
    );
    let pause = Duration::from_millis(300);
    let open = trickle(&mut connect(&gw), TRICKLE, pause, Duration::from_secs(8));
    assert!(
        open >= Duration::from_millis(1800) && open < Duration::from_secs(4),
        "{open:?}"
    );

    // The same on a connection that already carried a request.
    let mut conn = connect(&gw);
    let health = raw_keepalive_request(&gw.addr, "GET", "/health", &[], "");
    conn.write_all(health.as_bytes()).expect("write");
    let mut reader = std::io::BufReader::new(conn.try_clone().expect("clone"));
    assert_eq!(read_response(&mut reader).expect("response").status, 200);
    let open = trickle(&mut conn, TRICKLE, pause, Duration::from_secs(8));
    assert!(open < Duration::from_secs(4), "{open:?}");
}

/// Sends a raw request and reads the whole answer (the gateway closes).
fn exchange(gw: &Gateway, raw: &[u8]) -> String {
    let mut conn = connect(gw);
    conn.write_all(raw).expect("write");
    let (out, _) = read_until_closed(&mut conn);
    out
}

fn mcp_post_head(extra: &str) -> String {
    format!(
        "POST /servers/demo/mcp HTTP/1.1\r\nHost: gw\r\nX-Authenticated-User: alice\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{extra}\r\n"
    )
}

/// Answered with 200 when served, so a 400 cannot be the upstream's.
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}"#;

#[test]
fn ambiguous_framing_is_refused_with_400_and_close() {
    let (_demo, gw) = gateway(&[]);
    let chunked = format!("{:x}\r\n{INITIALIZE}\r\n0\r\n\r\n", INITIALIZE.len());
    let cl = format!("Content-Length: {}\r\n", INITIALIZE.len());
    let cases = [
        format!(
            "{}{chunked}",
            mcp_post_head(&format!("{cl}Transfer-Encoding: chunked\r\n"))
        ),
        format!(
            "{}{chunked}",
            mcp_post_head("Transfer-Encoding: identity, chunked\r\n")
        ),
        format!(
            "{}{chunked}",
            mcp_post_head("Transfer-Encoding: chunked, chunked\r\n")
        ),
        format!(
            "{}{chunked}",
            mcp_post_head("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")
        ),
        format!(
            "{}{INITIALIZE}",
            mcp_post_head(&cl).replace("Host: gw\r\n", "Host: gw\n")
        ),
        format!(
            "{}{INITIALIZE}",
            mcp_post_head(&cl).replace("Host: gw\r\n", "")
        ),
    ];
    for raw in &cases {
        let out = exchange(&gw, raw.as_bytes());
        assert!(out.starts_with("HTTP/1.1 400 "), "{raw:?} got {out}");
        assert!(out.contains("Connection: close\r\n"), "{out}");
        assert!(
            out.contains("application/json") && out.contains(r#""error""#),
            "{out}"
        );
    }
    // Pingora itself refuses differing lengths (with an empty body).
    let two = mcp_post_head(&format!("{cl}Content-Length: 5\r\n"));
    let out = exchange(&gw, format!("{two}{INITIALIZE}").as_bytes());
    assert!(
        out.starts_with("HTTP/1.1 400 ") && out.contains("Connection: close"),
        "{out}"
    );
    // HTTP/1.0 needs no Host.
    let out = exchange(&gw, b"GET /health HTTP/1.0\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let (_demo, gw) = gateway(&[]);
    let body = INITIALIZE;
    let head = mcp_post_head(&format!(
        "Expect: 100-continue\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    ));
    let mut conn = connect(&gw);
    conn.write_all(head.as_bytes()).expect("write");
    conn.set_read_timeout(Some(Duration::from_millis(800)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let n = conn
        .read(&mut buf)
        .expect("100 Continue before the body is sent");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{:?}",
        &buf[..n]
    );
    conn.write_all(body.as_bytes()).expect("write body");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let (out, _) = read_until_closed(&mut conn);
    assert!(out.contains("HTTP/1.1 200 "), "{out}");

    // A refused request gets its refusal instead, and the body is never sent.
    let head = mcp_post_head("Expect: 100-continue\r\nContent-Length: 10\r\n")
        .replace("X-Authenticated-User: alice\r\n", "");
    let out = exchange(
        &gw,
        head.replace("/servers/demo/", "/servers/nope/").as_bytes(),
    );
    assert!(out.starts_with("HTTP/1.1 404 "), "{out}");
}
