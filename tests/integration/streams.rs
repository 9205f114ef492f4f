//! Open event streams (issue 10): what the streams benchmark relies on and
//! what any memory saving for streams must keep. A stream stays open and
//! carries every event, and a client that leaves frees its upstream
//! connection at once, so a departed client holds nothing.

use crate::harness::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// An upstream that answers every request with an event stream of one event
/// every 50 ms, and reports on `closed` when the proxy closes a stream's
/// connection (a read sees the end, or a write fails). Connections that send
/// no request (health checks) are ignored. A legacy `/sse` stream starts
/// with its `endpoint` event.
fn ticking_upstream() -> (String, mpsc::Receiver<()>) {
    ticking_upstream_framed(Framing::Chunked)
}

/// How the upstream frames its event streams.
#[derive(Clone, Copy)]
enum Framing {
    Chunked,
    /// No length: the body ends when the connection closes.
    Close,
}

/// The upstream's own message URL in its `/sse` stream's `endpoint` event.
const UPSTREAM_ENDPOINT: &str = "/message?sessionId=upstream-1";

fn ticking_upstream_framed(framing: Framing) -> (String, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (closed_tx, closed) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let closed_tx = closed_tx.clone();
            std::thread::spawn(move || serve_ticks(conn, &closed_tx, framing));
        }
    });
    (format!("http://{addr}/mcp"), closed)
}

fn serve_ticks(conn: TcpStream, closed: &mpsc::Sender<()>, framing: Framing) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return, // a health check, or nothing asked
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push_str(&line),
        }
    }
    // The gateway's own catalog gathering (no user identity) is not a
    // client's stream: refused, so its connections never count as closed.
    if !head.to_ascii_lowercase().contains("x-authenticated-user:") {
        let mut conn = conn;
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    // The end of the connection, seen by a reader thread: the proxy sends
    // nothing more on a stream's connection until it closes it.
    let mut eof_reader = reader;
    let eof_tx = closed.clone();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        if matches!(eof_reader.read(&mut byte), Ok(0) | Err(_)) {
            let _ = eof_tx.send(());
        }
    });
    let sse = head_is_sse(&head);
    let mut conn = conn;
    let head = match framing {
        Framing::Chunked => {
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        }
        Framing::Close => "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
    };
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    let frame = |event: String| match framing {
        Framing::Chunked => format!("{:x}\r\n{event}\r\n", event.len()),
        Framing::Close => event,
    };
    if sse {
        let endpoint = format!("event: endpoint\ndata: {UPSTREAM_ENDPOINT}\n\n");
        if conn.write_all(frame(endpoint).as_bytes()).is_err() {
            return;
        }
    }
    for n in 0u64.. {
        let event = format!("event: message\ndata: {{\"tick\":{n}}}\n\n");
        if conn.write_all(frame(event).as_bytes()).is_err() {
            let _ = closed.send(());
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn head_is_sse(head: &str) -> bool {
    head.lines()
        .next()
        .is_some_and(|l| l.starts_with("GET /sse"))
}

/// A `POST` answered as an event stream, through the gateway.
fn open_post_stream(gw: &Gateway) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(&gw.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#;
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    headers.extend_from_slice(&ALICE);
    let request = raw_request(&gw.addr, "POST", "/servers/up/mcp", &headers, body);
    stream.write_all(request.as_bytes()).expect("write");
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    assert!(status.contains(" 200 "), "stream status: {status}");
    reader
}

/// Events arrive in order through a stream that `open` opens.
fn carries_every_event_in_order(open: fn(&Gateway) -> BufReader<TcpStream>) {
    let (url, _closed) = ticking_upstream();
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("up", &[url])]));
    let mut reader = open(&gw);
    for n in 0..20 {
        assert_eq!(next_data(&mut reader), format!("{{\"tick\":{n}}}"));
    }
}

/// A client that leaves a stream `open` opened frees its upstream connection.
fn frees_the_upstream_when_the_client_leaves(open: fn(&Gateway) -> BufReader<TcpStream>) {
    let (url, closed) = ticking_upstream();
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("up", &[url])]));
    let mut reader = open(&gw);
    next_data(&mut reader);
    assert!(
        closed.try_recv().is_err(),
        "the upstream connection closed while the client was there"
    );
    drop(reader);
    // Not a timing claim: the gateway notices at its next write (50 ms); the
    // bound only keeps a regression from hanging the suite.
    closed
        .recv_timeout(Duration::from_secs(10))
        .expect("the upstream connection was not closed after the client left");
}

#[test]
fn a_stream_carries_every_event_in_order() {
    carries_every_event_in_order(open_post_stream);
}

#[test]
fn a_client_that_leaves_frees_its_upstream_connection() {
    frees_the_upstream_when_the_client_leaves(open_post_stream);
}

/// The Streamable HTTP GET stream, which the gateway relays on its lean
/// path (`proxy::relay`), not through Pingora's proxy.
fn open_get_stream(gw: &Gateway) -> BufReader<TcpStream> {
    open_stream(gw, "/servers/up/mcp", &ALICE)
}

#[test]
fn a_get_stream_carries_every_event_in_order() {
    carries_every_event_in_order(open_get_stream);
}

#[test]
fn a_client_that_leaves_a_get_stream_frees_its_upstream_connection() {
    frees_the_upstream_when_the_client_leaves(open_get_stream);
}

/// Many GET streams at once, each carrying its own events: the shape of the
/// streams benchmark, at a size a test run affords.
#[test]
fn many_get_streams_stay_open_together() {
    let (url, _closed) = ticking_upstream();
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("up", &[url])]));
    let mut readers: Vec<_> = (0..50).map(|_| open_get_stream(&gw)).collect();
    for round in 0..3 {
        for reader in &mut readers {
            assert_eq!(next_data(reader), format!("{{\"tick\":{round}}}"));
        }
    }
}

/// The legacy `/sse` stream, also relayed on the lean path: its endpoint
/// event comes first, rewritten to point at the gateway.
fn open_sse_stream(gw: &Gateway) -> BufReader<TcpStream> {
    let mut reader = open_stream(gw, "/servers/up/sse", &ALICE);
    let endpoint = next_data(&mut reader);
    assert!(
        endpoint.starts_with("/servers/up/message?sessionId="),
        "rewritten endpoint: {endpoint}"
    );
    reader
}

#[test]
fn a_legacy_sse_stream_carries_every_event_in_order() {
    carries_every_event_in_order(open_sse_stream);
}

#[test]
fn a_client_that_leaves_a_legacy_sse_stream_frees_its_upstream_connection() {
    frees_the_upstream_when_the_client_leaves(open_sse_stream);
}

/// The response head (after the status line) as lowercase lines.
fn read_head(reader: &mut BufReader<TcpStream>) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("head line");
        if line == "\r\n" {
            return head.to_ascii_lowercase();
        }
        head.push_str(&line);
    }
}

/// The rewritten event changes the body's length: a chunked stream still
/// reaches the client as well-formed chunks carrying every event, a
/// close-delimited one as it came.
#[test]
fn a_legacy_sse_stream_keeps_its_framing_through_the_rewrite() {
    for framing in [Framing::Chunked, Framing::Close] {
        let (url, _closed) = ticking_upstream_framed(framing);
        let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("up", &[url])]));
        let mut reader = open_stream(&gw, "/servers/up/sse", &ALICE);
        let head = read_head(&mut reader);
        let chunked = head.contains("transfer-encoding: chunked");
        assert_eq!(chunked, matches!(framing, Framing::Chunked), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        let mut data = Vec::new();
        let expected_ticks = (0..5).map(|n| format!("data: {{\"tick\":{n}}}\n\n"));
        let last = expected_ticks.clone().next_back().expect("ticks");
        while !String::from_utf8_lossy(&data).contains(&last) {
            if chunked {
                let mut size = String::new();
                reader.read_line(&mut size).expect("chunk size line");
                let size = usize::from_str_radix(size.trim_end(), 16)
                    .unwrap_or_else(|_| panic!("chunk size line {size:?}"));
                assert!(size > 0, "the body ended");
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).expect("chunk");
                assert_eq!(&chunk[size..], b"\r\n", "chunk of {size} bytes");
                data.extend_from_slice(&chunk[..size]);
            } else {
                let mut line = String::new();
                reader.read_line(&mut line).expect("line");
                data.extend_from_slice(line.as_bytes());
            }
        }
        let text = String::from_utf8(data).expect("utf-8");
        let (endpoint, rest) = text.split_once("\n\n").expect("the first event");
        assert!(
            endpoint.starts_with("event: endpoint\ndata: /servers/up/message?sessionId="),
            "{endpoint}"
        );
        assert!(!text.contains(UPSTREAM_ENDPOINT), "{text}");
        let ticks: String = expected_ticks
            .map(|t| format!("event: message\n{t}"))
            .collect();
        assert_eq!(rest, ticks);
    }
}
