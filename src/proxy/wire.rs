//! A POST over plain HTTP/1.1 on the relay's pooled upstream connections,
//! for the gateway's own MCP requests (`catalog::wire`): the request is
//! written whole, the response head parsed (`stream_head`), the body
//! followed in its framing (`body_end`, `chunked`) and handed over as it
//! comes. A connection whose response ended cleanly goes back to the pool.

use super::body_end::{response_framing, Framing};
use super::chunked::Dechunk;
use super::stream_head::{connection_has, parse_response_head};
use super::upstream_pool;
use http::HeaderMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const READ: usize = 8 * 1024;

/// What the response said besides its body.
#[derive(Debug)]
pub struct Exchange {
    pub status: u16,
    pub session_id: Option<String>,
    /// The body is an event stream (else JSON or nothing).
    pub event_stream: bool,
}

/// Sends `request` (head and body) to `addr` and reads the response.
/// `on_body(event_stream, data)` gets the decoded body as it comes and
/// says whether to go on; stopping before the end costs the connection.
/// `timeout` bounds the connect and each wait for the server's bytes.
pub async fn post(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
    mut on_body: impl FnMut(bool, &[u8]) -> Result<bool, String>,
) -> Result<Exchange, String> {
    let mut stream = send(addr, request, timeout).await?;
    let mut buf = Vec::with_capacity(READ);
    let head = loop {
        if let Some(head) = parse_response_head(&buf)? {
            if head.status.is_informational() {
                buf.drain(..head.len);
                continue;
            }
            break head;
        }
        if fill(&mut stream, &mut buf, timeout).await? == 0 {
            return Err("the server closed the connection before answering".into());
        }
    };
    let headers: HeaderMap = head.headers.iter().cloned().collect();
    let framing = response_framing(head.status, &headers)?;
    let exchange = Exchange {
        status: head.status.as_u16(),
        session_id: headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        event_stream: headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes()
                .get(..17)
                .is_some_and(|t| t.eq_ignore_ascii_case(b"text/event-stream"))
        }),
    };
    let keep = !head.http10 && !connection_has(&headers, "close");
    buf.drain(..head.len);
    let stream_kind = exchange.event_stream;
    let ended = match framing {
        Framing::Empty => buf.is_empty(),
        Framing::Length(n) => {
            let mut left = n;
            loop {
                let take = (left as usize).min(buf.len());
                if take > 0 && !on_body(stream_kind, &buf[..take])? {
                    break false;
                }
                buf.drain(..take);
                left -= take as u64;
                if left == 0 {
                    break buf.is_empty();
                }
                if fill(&mut stream, &mut buf, timeout).await? == 0 {
                    return Err("the server closed the connection mid-body".into());
                }
            }
        }
        Framing::Chunked => {
            let mut chunks = Dechunk::default();
            let mut data = Vec::new();
            loop {
                data.clear();
                let used = chunks.decode(&buf, Some(&mut data), false)?;
                buf.drain(..used);
                if !data.is_empty() && !on_body(stream_kind, &data)? {
                    break false;
                }
                if chunks.ended() {
                    break buf.is_empty();
                }
                if fill(&mut stream, &mut buf, timeout).await? == 0 {
                    return Err("the server closed the connection mid-body".into());
                }
            }
        }
        Framing::UntilClose => {
            loop {
                if !buf.is_empty() && !on_body(stream_kind, &buf)? {
                    break;
                }
                buf.clear();
                if fill(&mut stream, &mut buf, timeout).await? == 0 {
                    break;
                }
            }
            false
        }
    };
    if ended && keep {
        upstream_pool::shared().put(addr, stream);
    }
    Ok(exchange)
}

/// Writes `request` on a pooled connection, or on a new one when that
/// fails to take it (a request not written is safe to write again).
async fn send(addr: SocketAddr, request: &[u8], timeout: Duration) -> Result<TcpStream, String> {
    if let Some(mut pooled) = upstream_pool::shared().take(addr) {
        if pooled.write_all(request).await.is_ok() {
            return Ok(pooled);
        }
    }
    let mut fresh = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = fresh.set_nodelay(true);
    fresh
        .write_all(request)
        .await
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    Ok(fresh)
}

/// Reads what the server sent next onto the end of `buf` (into its spare
/// capacity: no buffer of its own, which would sit in every call's future).
async fn fill(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<usize, String> {
    buf.reserve(READ);
    tokio::time::timeout(timeout, stream.read_buf(buf))
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs_f64()))?
        .map_err(|e| format!("reading: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request on a connection with the next
    /// of `answers`, and counts its connections.
    async fn scripted(answers: Vec<&'static str>) -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = 0;
            let mut answers = answers.into_iter().peekable();
            while let Ok((mut conn, _)) = listener.accept().await {
                connections += 1;
                loop {
                    let mut req = [0u8; 4096];
                    match conn.read(&mut req).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let Some(answer) = answers.next() else {
                        return connections;
                    };
                    conn.write_all(answer.as_bytes()).await.unwrap();
                    if answers.peek().is_none() {
                        // Holds the connection open until the client is done.
                        let _ = conn.read(&mut req).await;
                        return connections;
                    }
                }
            }
            connections
        });
        (addr, task)
    }

    #[tokio::test]
    async fn framings_are_followed_and_the_connection_is_kept() {
        let (addr, server) = scripted(vec![
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: s9\r\ncontent-length: 7\r\n\r\n{\"a\":1}",
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n5\r\ndata:\r\n3\r\n x\n\r\n1\r\n\n\r\n0\r\n\r\n",
            "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        let mut body = Vec::new();
        let e = post(
            addr,
            b"POST / HTTP/1.1\r\n\r\n",
            Duration::from_secs(5),
            |s, d| {
                assert!(!s);
                body.extend_from_slice(d);
                Ok(true)
            },
        )
        .await
        .unwrap();
        assert_eq!((e.status, e.session_id.as_deref()), (200, Some("s9")));
        assert_eq!(body, b"{\"a\":1}");
        let mut events = Vec::new();
        let e = post(
            addr,
            b"POST / HTTP/1.1\r\n\r\n",
            Duration::from_secs(5),
            |s, d| {
                assert!(s);
                events.extend_from_slice(d);
                Ok(true)
            },
        )
        .await
        .unwrap();
        assert!(e.event_stream);
        assert_eq!(events, b"data: x\n\n");
        let e = post(
            addr,
            b"POST / HTTP/1.1\r\n\r\n",
            Duration::from_secs(5),
            |_, _| Ok(true),
        )
        .await
        .unwrap();
        assert_eq!(e.status, 202);
        // One connection served all three.
        upstream_pool::shared().take(addr);
        assert_eq!(server.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_cut_body_is_an_error() {
        let (addr, _server) =
            scripted(vec!["HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{\"a\""]).await;
        // The server stops answering once out of script: the body never ends.
        let outcome = post(
            addr,
            b"POST / HTTP/1.1\r\n\r\n",
            Duration::from_millis(300),
            |_, _| Ok(true),
        )
        .await;
        assert!(outcome.is_err(), "{outcome:?}");
    }
}
