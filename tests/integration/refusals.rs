//! The responses the gateway writes itself: distinct JSON-RPC codes, the
//! status a failed upstream maps to, `nosniff`, and clients that leave.

use crate::harness::*;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn unknown_server_and_unknown_session_have_distinct_codes_shared_with_the_server() {
    let demo = Demo::start("d");
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[demo.url()])]));
    let server = gw.mcp_post("nope", &ALICE, None, PING);
    assert_eq!(server.status, 404);
    let session = gw.mcp_post("demo", &ALICE, Some("not-a-token"), PING);
    assert_eq!(session.status, 404, "{session:?}");
    let (server_code, session_code) = (
        server.json()["error"]["code"].clone(),
        session.json()["error"]["code"].clone(),
    );
    assert_ne!(server_code, session_code, "unknown server vs session");
    // The MCP server itself answers an unknown session with the same code.
    let direct = request(
        &demo.addr,
        "POST",
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Mcp-Session-Id", "no-such-session"),
        ],
        PING,
    );
    assert_eq!(direct.status, 404);
    assert_eq!(direct.json()["error"]["code"], session_code);
}

#[test]
fn every_response_the_gateway_writes_carries_nosniff() {
    let demo = Demo::start("d");
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[demo.url()])]));
    let responses = [
        gw.request("GET", "/nowhere", &[], ""),
        gw.request("PUT", "/servers/demo/mcp", &ALICE, "{}"),
        gw.mcp_post("demo", &[], None, PING),
        gw.mcp_post("nope", &ALICE, None, PING),
        gw.request("GET", "/health", &[], ""),
        gw.request("GET", "/metrics", &[], ""),
        gw.request("GET", "/version", &[], ""),
    ];
    for r in responses {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
    }
}

/// An upstream that accepts connections (so the health check passes) and
/// never answers.
fn silent_upstream() -> (String, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap_or_else(|p| p.into_inner()).push(stream);
        }
    });
    (format!("http://{addr}/mcp"), held)
}

#[test]
fn an_upstream_timeout_is_504() {
    let (slow, _held) = silent_upstream();
    let mut env = PROXY_ENV.to_vec();
    // An MCP POST accepts an event stream, so the stream limit applies.
    env.push(("UPSTREAM_READ_TIMEOUT", "1"));
    env.push(("STREAM_IDLE_TIMEOUT", "1"));
    let gw = Gateway::start(&env, &servers_yaml(&[("slow", &[slow])]));
    let started = Instant::now();
    let r = gw.mcp_post("slow", &ALICE, None, PING);
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.json()["error"]["code"], -32005);
    assert!(started.elapsed() < Duration::from_secs(10));
    let metrics = gw.metrics();
    assert_eq!(
        metric(&metrics, "mcp_refusals_total{reason=\"upstream_timeout\"}"),
        1.0,
        "{metrics}"
    );
}

#[test]
fn a_client_closing_its_stream_is_499_and_no_error() {
    let demo = Demo::start("d");
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[demo.url()])]));
    let mut reader = open_session_stream(&gw, "demo", &ALICE);
    next_data(&mut reader);
    drop(reader);
    // The gateway notices when it next writes a tick (every 200 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    let series = "mcp_requests_total{server=\"demo\",status=\"499\"}";
    while metric(&gw.metrics(), series) < 1.0 {
        assert!(Instant::now() < deadline, "no 499 in\n{}", gw.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            "mcp_requests_total{server=\"demo\",status=\"1xx\"}"
        ),
        0.0
    );
    let log = gw.proc.output();
    assert!(
        !log.contains("Fail to proxy") && !log.contains("ERROR"),
        "a client leaving is not an error:\n{log}"
    );
}
