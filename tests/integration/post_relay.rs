//! MCP POSTs on the gateway's lean path (issue 10): a POST answered as an
//! event stream leaves the proxy's request state behind, yet both of its
//! connections serve the next request when the response ends, whatever the
//! upstream's framing; an idle upstream connection the upstream closed is
//! replaced without the client noticing; a broken response, POST's or
//! GET stream's, is not passed off as complete.

use crate::harness::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the scripted upstream answers to the `n`th user request (from 0),
/// and whether it then closes the connection without saying so.
type Script = fn(usize) -> (String, bool);

/// An upstream that answers user requests (those carrying the caller's
/// header) by `script`, on as many requests per connection as the proxy
/// sends; the counter reports how many connections carried user requests.
/// The catalog's own gathering is refused with `Connection: close`.
fn scripted_upstream(script: Script) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (connections, requests) = (counted.clone(), requests.clone());
            std::thread::spawn(move || serve(conn, script, &connections, &requests));
        }
    });
    (format!("http://{addr}/mcp"), connections)
}

fn serve(conn: TcpStream, script: Script, connections: &AtomicUsize, requests: &AtomicUsize) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut conn = conn;
    let mut counted = false;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push_str(&line),
            }
        }
        let lower = head.to_ascii_lowercase();
        let length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if !lower.contains("x-authenticated-user:") {
            let _ = conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        if !counted {
            counted = true;
            connections.fetch_add(1, Ordering::SeqCst);
        }
        let (answer, close) = script(requests.fetch_add(1, Ordering::SeqCst));
        // Event by event, as a tool that works between them would send.
        for part in answer.split_inclusive("\n\n") {
            if conn.write_all(part.as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if close {
            return;
        }
    }
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

/// An event stream of three events, chunked.
fn chunked_stream(n: usize) -> String {
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for i in 0..3 {
        out.push_str(&chunk(&format!(
            "event: message\ndata: {{\"request\":{n},\"event\":{i}}}\n\n"
        )));
    }
    out.push_str("0\r\n\r\n");
    out
}

/// A JSON answer with a `Content-Length`.
fn sized_json(n: usize) -> String {
    let body = format!(r#"{{"jsonrpc":"2.0","id":{n},"result":{{}}}}"#);
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn post(gw: &Gateway, extra: &[(&str, &str)]) -> String {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    headers.extend_from_slice(&ALICE);
    headers.extend_from_slice(extra);
    raw_keepalive_request(&gw.addr, "POST", "/servers/up/mcp", &headers, PING)
}

fn connect(gw: &Gateway) -> BufReader<TcpStream> {
    let conn = TcpStream::connect(&gw.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    BufReader::new(conn)
}

/// Sends `request` on a new connection and reads until the gateway closes it.
fn until_closed(gw: &Gateway, request: &str) -> String {
    let mut conn = connect(gw);
    conn.get_mut().write_all(request.as_bytes()).expect("send");
    let mut all = Vec::new();
    let _ = conn.read_to_end(&mut all);
    String::from_utf8_lossy(&all).into_owned()
}

/// The server's request counts of one status class.
fn counted(gw: &Gateway, class: &str) -> f64 {
    let series = format!("mcp_requests_total{{server=\"up\",status=\"{class}\"}}");
    metric(&gw.metrics(), &series)
}

fn exchange(conn: &mut BufReader<TcpStream>, request: &str) -> Response {
    conn.get_mut()
        .write_all(request.as_bytes())
        .expect("send request");
    read_response(conn).expect("a whole response")
}

#[test]
fn streamed_and_plain_answers_keep_both_connections() {
    let (url, connections) = scripted_upstream(|n| {
        if n % 2 == 0 {
            (chunked_stream(n), false)
        } else {
            (sized_json(n), false)
        }
    });
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("up", &[url])]));
    let mut conn = connect(&gw);
    for n in 0..6 {
        let answer = exchange(&mut conn, &post(&gw, &[]));
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.header("connection"),
            Some("keep-alive"),
            "{answer:?}"
        );
        if n % 2 == 0 {
            assert!(answer.header("x-request-id").is_some(), "{answer:?}");
            for i in 0..3 {
                let event = format!("data: {{\"request\":{n},\"event\":{i}}}");
                assert!(answer.body.contains(&event), "{event} in {answer:?}");
            }
        } else {
            assert_eq!(answer.json()["id"], n, "{answer:?}");
        }
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "every request went on one upstream connection"
    );
}

#[test]
fn an_idle_upstream_connection_the_upstream_closed_is_replaced() {
    // The upstream closes after every answer without saying so first.
    let (url, connections) = scripted_upstream(|n| (sized_json(n), true));
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("up", &[url])]));
    let mut conn = connect(&gw);
    for n in 0..3 {
        let answer = exchange(&mut conn, &post(&gw, &[]));
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.json()["id"], n, "{answer:?}");
        // Time for the close to arrive before the next request.
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[test]
fn a_client_asking_to_close_is_answered_and_closed() {
    let (url, _) = scripted_upstream(|n| (chunked_stream(n), false));
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("up", &[url])]));
    let mut conn = connect(&gw);
    let answer = exchange(&mut conn, &post(&gw, &[("Connection", "close")]));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).expect("closed, not reset");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn a_close_delimited_stream_ends_with_the_client_connection() {
    let (url, _) = scripted_upstream(|n| {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
        (format!("{head}event: message\ndata: {n}\n\n"), true)
    });
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("up", &[url])]));
    let mut conn = connect(&gw);
    conn.get_mut()
        .write_all(post(&gw, &[]).as_bytes())
        .expect("send");
    let mut all = String::new();
    conn.read_to_string(&mut all)
        .expect("the body until the close");
    assert!(all.starts_with("HTTP/1.1 200"), "{all}");
    assert!(
        all.to_ascii_lowercase().contains("connection: close"),
        "{all}"
    );
    assert!(all.ends_with("data: 0\n\n"), "{all}");
}

/// A chunked event stream cut before its last chunk.
fn cut_stream(n: usize) -> (String, bool) {
    let mut answer = chunked_stream(n);
    answer.truncate(answer.len() - "0\r\n\r\n".len());
    (answer, true)
}

/// The session's GET stream, through the gateway (its lean path too).
fn get_stream(gw: &Gateway) -> String {
    let mut headers = vec![("Accept", "text/event-stream")];
    headers.extend_from_slice(&ALICE);
    raw_keepalive_request(&gw.addr, "GET", "/servers/up/mcp", &headers, "")
}

#[test]
fn a_get_stream_the_upstream_cuts_is_counted_as_broken() {
    let (url, _) = scripted_upstream(cut_stream);
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("up", &[url])]));
    let all = until_closed(&gw, &get_stream(&gw));
    assert!(all.contains("\"event\":2"), "{all}");
    assert_eq!((counted(&gw, "5xx"), counted(&gw, "2xx")), (1.0, 0.0));
}

#[test]
fn a_get_stream_that_ends_whole_is_complete_and_closed() {
    let (url, _) = scripted_upstream(|n| (chunked_stream(n), false));
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("up", &[url])]));
    // The upstream keeps its connection; the gateway ends the stream at
    // the body's last chunk all the same.
    let all = until_closed(&gw, &get_stream(&gw));
    assert!(all.ends_with("0\r\n\r\n"), "{all}");
    assert_eq!((counted(&gw, "5xx"), counted(&gw, "2xx")), (0.0, 1.0));
}

#[test]
fn a_stream_the_upstream_cuts_is_counted_as_broken_and_not_kept() {
    let (url, _) = scripted_upstream(cut_stream);
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("up", &[url])]));
    // The client's connection ends without the last chunk.
    let all = until_closed(&gw, &post(&gw, &[]));
    assert!(all.contains("\"event\":2"), "{all}");
    assert!(!all.ends_with("0\r\n\r\n"), "{all}");
    assert_eq!((counted(&gw, "5xx"), counted(&gw, "2xx")), (1.0, 0.0));
}

#[test]
fn a_request_sent_early_closes_the_connection_instead_of_being_misread() {
    let (url, _) = scripted_upstream(|n| (sized_json(n), false));
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("up", &[url])]));
    let mut conn = connect(&gw);
    // The next request follows the first one's body in the same write: the
    // gateway may read part of it with the body. It must not take what
    // follows for a request of its own.
    let two = format!("{}{}", post(&gw, &[]), post(&gw, &[]));
    conn.get_mut().write_all(two.as_bytes()).expect("send");
    let first = read_response(&mut conn).expect("the first answer");
    assert_eq!(first.status, 200, "{first:?}");
    if first.header("connection") == Some("close") {
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    } else {
        // Nothing was read past the first request: the second is answered.
        let second = read_response(&mut conn).expect("the second answer");
        assert_eq!(second.status, 200, "{second:?}");
        assert_eq!(second.json()["id"], 1, "{second:?}");
    }
}
