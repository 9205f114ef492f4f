//! Client keep-alive: many requests on one connection, the idle timeout,
//! and idle connections closed when the gateway stops. The gateway waits
//! for idle connections itself (`src/proxy/keepalive.rs`), so these are its
//! behaviours, not Pingora's.

use crate::harness::*;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const PROXY_ENV: [(&str, &str); 2] = [
    ("MCP_CLIENT_AUTH_ENABLED", "false"),
    ("TRUST_PROXY_AUTH", "true"),
];

fn connect(gw: &Gateway) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(&gw.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    BufReader::new(stream)
}

fn send(conn: &mut BufReader<TcpStream>, raw: &str) -> Response {
    conn.get_mut().write_all(raw.as_bytes()).expect("write");
    read_response(conn).expect("a response on the open connection")
}

fn health(gw: &Gateway) -> String {
    raw_keepalive_request(&gw.addr, "GET", "/health", &[], "")
}

/// Reads until the gateway closes the connection; how long that took.
fn time_until_closed(conn: &mut BufReader<TcpStream>) -> Duration {
    let started = Instant::now();
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest)
        .expect("the gateway closes the idle connection (read timed out)");
    assert!(rest.is_empty(), "unexpected bytes: {rest:?}");
    started.elapsed()
}

#[test]
fn one_connection_carries_many_requests() {
    let demo = Demo::start("d");
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[demo.url()])]));
    let initialize = raw_keepalive_request(
        &gw.addr,
        "POST",
        "/servers/demo/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("X-Authenticated-User", "alice"),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}"#,
    );
    let mut conn = connect(&gw);
    for round in 0..3 {
        let h = send(&mut conn, &health(&gw));
        assert_eq!(h.status, 200, "round {round}: {h:?}");
        let i = send(&mut conn, &initialize);
        assert_eq!(i.status, 200, "round {round}: {i:?}");
        assert!(i.header("mcp-session-id").is_some(), "{i:?}");
    }
    // The next request's first byte arriving alone, the rest later.
    let raw = health(&gw);
    conn.get_mut()
        .write_all(&raw.as_bytes()[..1])
        .expect("write");
    std::thread::sleep(Duration::from_millis(200));
    let r = send(&mut conn, &raw[1..]);
    assert_eq!(r.status, 200, "{r:?}");
}

/// A gateway with `KEEPALIVE_TIMEOUT=1` and a connection that has completed
/// one request.
fn one_second_keepalive() -> (Gateway, BufReader<TcpStream>) {
    let mut env = PROXY_ENV.to_vec();
    env.push(("KEEPALIVE_TIMEOUT", "1"));
    let gw = Gateway::start(&env, "servers: []\n");
    let mut conn = connect(&gw);
    assert_eq!(send(&mut conn, &health(&gw)).status, 200);
    (gw, conn)
}

fn assert_closed_by_the_timeout(conn: &mut BufReader<TcpStream>) {
    let after = time_until_closed(conn);
    assert!(
        after >= Duration::from_millis(800),
        "closed after {after:?}, before KEEPALIVE_TIMEOUT"
    );
}

#[test]
fn idle_connection_closes_after_keepalive_timeout() {
    let (gw, mut conn) = one_second_keepalive();
    // Within the timeout the connection is still there.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(send(&mut conn, &health(&gw)).status, 200);
    assert_closed_by_the_timeout(&mut conn);
}

#[test]
fn a_stalled_request_on_a_reused_connection_is_cut_off() {
    let (_gw, mut conn) = one_second_keepalive();
    // Pingora alone would wait for the rest of this header forever.
    conn.get_mut().write_all(b"GET /hea").expect("write");
    assert_closed_by_the_timeout(&mut conn);
}

#[test]
fn idle_connections_do_not_hold_up_shutdown() {
    let mut env = PROXY_ENV.to_vec();
    env.push(("SHUTDOWN_DRAIN_SECONDS", "0"));
    let mut gw = Gateway::start(&env, "servers: []\n");
    let mut conn = connect(&gw);
    assert_eq!(send(&mut conn, &health(&gw)).status, 200);
    gw.proc.signal("-TERM");
    // An idle connection is not a request in flight: nothing waits for it.
    let closed = time_until_closed(&mut conn);
    assert!(
        closed < Duration::from_secs(4),
        "idle connection held {closed:?} after SIGTERM"
    );
    let status = gw
        .proc
        .wait_exit(Duration::from_secs(15))
        .expect("exits after closing idle connections");
    assert!(status.success(), "{status}");
}
