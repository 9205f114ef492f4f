//! Session tokens over the wire: what a client can read from them, which
//! transport accepts them, how long one lasts, and what happens to a
//! session whose backend died or whose endpoint cannot be rewritten.

use crate::harness::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const GATEWAY_UNKNOWN_SESSION: i64 = -32001;

fn one_demo(demo: &Demo) -> Gateway {
    Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[demo.url()])]))
}

/// The token in a rewritten legacy endpoint, `/servers/demo/message?sessionId=…`.
fn legacy_token(gw: &Gateway) -> (std::io::BufReader<std::net::TcpStream>, String) {
    let mut reader = open_stream(gw, "/servers/demo/sse", &ALICE);
    let endpoint = next_data(&mut reader);
    let token = endpoint
        .strip_prefix("/servers/demo/message?sessionId=")
        .unwrap_or_else(|| panic!("rewritten endpoint: {endpoint}"))
        .to_string();
    (reader, token)
}

#[test]
fn a_token_hides_the_upstream_session_id_and_is_short_ascii() {
    let demo = Demo::start("d");
    let gw = one_demo(&demo);
    let token = gw.initialize("demo", &ALICE).1.expect("sid");
    let upstream = gw.whoami("demo", &ALICE, &token)["session"]
        .as_str()
        .expect("upstream session id")
        .to_string();
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{token}"
    );
    assert!(token.len() <= 100, "{} characters: {token}", token.len());
    let raw = B64.decode(&token).expect("base64url");
    let readable = raw
        .windows(upstream.len())
        .any(|w| w == upstream.as_bytes());
    assert!(
        !readable,
        "the upstream id {upstream} is readable in {token}"
    );
}

#[test]
fn a_token_of_one_transport_is_refused_by_the_other_before_the_upstream() {
    let demo = Demo::start("d");
    let gw = one_demo(&demo);
    let streamable = gw.initialize("demo", &ALICE).1.expect("sid");
    let (_stream, legacy) = legacy_token(&gw);
    gw.wait_gathered("demo");
    let before = demo.mcp_requests();

    let mut headers = ALICE.to_vec();
    headers.push(("Content-Type", "application/json"));
    let path = format!("/servers/demo/message?sessionId={streamable}");
    let r = gw.request("POST", &path, &headers, PING);
    assert_eq!(r.status, 404, "Mcp-Session-Id as sessionId: {r:?}");
    assert_eq!(r.json()["error"]["code"], GATEWAY_UNKNOWN_SESSION, "{r:?}");

    let r = gw.mcp_post("demo", &ALICE, Some(&legacy), PING);
    assert_eq!(r.status, 404, "sessionId as Mcp-Session-Id: {r:?}");
    assert_eq!(r.json()["error"]["code"], GATEWAY_UNKNOWN_SESSION, "{r:?}");

    assert_eq!(demo.mcp_requests(), before, "nothing reached the upstream");
}

#[test]
fn the_session_id_is_issued_once_and_stays_stable() {
    let demo = Demo::start_with("d", &["--echo-session-id"]);
    let gw = one_demo(&demo);
    let (r, token) = gw.initialize("demo", &ALICE);
    assert_eq!(r.status, 200, "{r:?}");
    let token = token.expect("sid");
    // Past a second boundary, so a token re-sealed with a later expiry
    // would differ even without a random nonce.
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..3 {
        let r = gw.mcp_post("demo", &ALICE, Some(&token), PING);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("mcp-session-id"), Some(token.as_str()));
    }
    let other = gw.initialize("demo", &ALICE).1.expect("second sid");
    assert_ne!(other, token, "a new upstream session gets its own token");
}

#[test]
fn a_session_whose_replica_just_died_is_404_at_once_and_reinitialises() {
    let (a, mut b) = (Demo::start("a"), Demo::start("b"));
    // Health checks far apart: the 404 must not wait for one to notice.
    let mut env = PROXY_ENV.to_vec();
    env.push(("HEALTH_CHECK_INTERVAL", "3600"));
    let gw = Gateway::start(&env, &servers_yaml(&[("demo", &[a.url(), b.url()])]));
    let on_b = (0..4)
        .map(|_| gw.initialize("demo", &ALICE).1.expect("sid"))
        .find(|sid| gw.whoami("demo", &ALICE, sid)["server"] == "b")
        .expect("round robin puts a session on b");
    b.proc.child.kill().expect("kill b");
    b.proc.child.wait().expect("b exits");

    let started = Instant::now();
    let r = gw.mcp_post("demo", &ALICE, Some(&on_b), PING);
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(
        r.json()["error"]["message"],
        "session's backend is unavailable; initialize a new session"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    for _ in 0..2 {
        let (r, sid) = gw.initialize("demo", &ALICE);
        assert_eq!(r.status, 200, "re-initialize: {r:?}");
        assert_eq!(gw.whoami("demo", &ALICE, &sid.expect("sid"))["server"], "a");
    }
}

#[test]
fn an_endpoint_event_that_cannot_be_rewritten_ends_the_stream_with_a_warning() {
    for mode in ["invalid", "huge", "missing"] {
        let demo = Demo::start_with("d", &["--sse-endpoint", mode]);
        let gw = one_demo(&demo);
        let mut stream = TcpStream::connect(&gw.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let headers = [("Accept", "text/event-stream"), ALICE[0]];
        let request = raw_request(&gw.addr, "GET", "/servers/demo/sse", &headers, "");
        stream.write_all(request.as_bytes()).expect("write");
        // The response may be an error (nothing sent yet) or a stream
        // that stops; either way it must end.
        let mut seen = Vec::new();
        let ended = stream.read_to_end(&mut seen);
        let seen = String::from_utf8_lossy(&seen);
        assert!(ended.is_ok(), "{mode}: still open after {seen:?}");
        assert!(!seen.contains("event: endpoint"), "{mode}: {seen}");
        assert!(!seen.contains("sessionId="), "{mode}: {seen}");
        let log = gw.proc.output_when(|log| log.contains("endpoint event"));
        let warnings = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("endpoint event"))
            .count();
        assert_eq!(warnings, 1, "{mode}: one warning expected in\n{log}");
    }
}
