//! MCP calls over plain HTTP/1.1, for the calls that need nothing of rmcp's
//! client: a `tools/call` on a shared session (no front client to relay
//! server requests to, no progress to forward) to a plain-HTTP replica.
//!
//! Through rmcp a call went through its service loop, the transport's
//! worker task, reqwest, and a typed model parsed and written again; here
//! it is one request written on a pooled connection (the data plane's own
//! `upstream_pool`), one response read, and the `result` kept as the raw
//! JSON the server wrote. The session is the gateway's own, opened with
//! `initialize` like rmcp's, with the same headers (the caller's, after the
//! server's header policy).
//!
//! What the server sends besides the response is handled as rmcp's shared
//! sessions do: notifications are dropped (a shared session has nobody to
//! give them to), a `ping` is answered, `roots/list` gets no roots, and any
//! other request is refused.

use super::wire_read::{is_call_result, scan_message, EventScanner, Read, RpcError, MAX_MESSAGE};
use crate::proxy::wire::{self as http1, Exchange};
use http::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The protocol revision the gateway asks for (as rmcp's client does).
const PROTOCOL_VERSION: &str = "2025-06-18";

/// How a call ended when it did not return a result.
#[derive(Debug, PartialEq)]
pub enum Failure {
    /// The server answered with a JSON-RPC error: the session is fine.
    Rpc(RpcError),
    /// The session is gone on the server's side (404): the call did not
    /// run, and may go again on a new session.
    SessionGone,
    /// The connection or the protocol broke: the session is dropped.
    Transport(String),
}

/// One session, pinned to the replica it was opened on.
pub struct WireSession {
    addr: SocketAddr,
    /// Request line and headers common to every request of the session,
    /// up to (without) `Content-Length`.
    head: Vec<u8>,
    next_id: AtomicU64,
}

/// What a session is opened with.
pub struct Endpoint<'a> {
    pub addr: SocketAddr,
    /// Path and query of the Streamable HTTP endpoint.
    pub path: &'a str,
    pub host: &'a HeaderValue,
    /// The session's headers (`session::session_headers`).
    pub headers: &'a HashMap<HeaderName, HeaderValue>,
}

/// A protocol revision as MCP names them (`2025-06-18`): safe in a header.
fn is_protocol_version(v: &str) -> bool {
    (1..=32).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The head common to a session's requests. The session id came through
/// `HeaderValue` (visible ASCII), the version through `is_protocol_version`.
fn common_head(endpoint: &Endpoint, session: Option<&str>, version: Option<&str>) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"POST ");
    head.extend_from_slice(endpoint.path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(endpoint.host.as_bytes());
    head.extend_from_slice(
        b"\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n",
    );
    for (name, value) in endpoint.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    for (name, value) in [
        ("mcp-session-id", session),
        ("mcp-protocol-version", version),
    ] {
        if let Some(value) = value {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
    }
    head
}

fn request(head: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + body.len() + 32);
    out.extend_from_slice(head);
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// The reply the gateway gives to a server request on a shared session.
fn reply_to(id: &RawValue, method: &str) -> String {
    let result = match method {
        "ping" => r#""result":{}"#.to_string(),
        "roots/list" => r#""result":{"roots":[]}"#.to_string(),
        _ => r#""error":{"code":-32601,"message":"no client to ask: this is the gateway's own session"}"#
            .to_string(),
    };
    format!(r#"{{"jsonrpc":"2.0","id":{},{result}}}"#, id.get())
}

impl WireSession {
    /// `initialize` and `notifications/initialized`, as rmcp's client does.
    pub async fn open(endpoint: Endpoint<'_>, timeout: Duration) -> Result<Self, String> {
        let head = common_head(&endpoint, None, None);
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"mcp-gateway","version":"{}"}}}}}}"#,
            env!("CARGO_PKG_VERSION")
        );
        let mut read = Read::default();
        let init_request = request(&head, init.as_bytes());
        let exchange = exchange(endpoint.addr, &init_request, "0", timeout, &mut read, None)
            .await
            .map_err(|f| format!("initialize failed: {f:?}"))?;
        let result = match read.answer {
            Some(Ok(result)) => result,
            Some(Err(e)) => return Err(format!("initialize refused: {} {}", e.code, e.message)),
            None => return Err("initialize: no answer".into()),
        };
        #[derive(Deserialize)]
        struct Init {
            #[serde(rename = "protocolVersion")]
            protocol_version: String,
        }
        let init: Init = serde_json::from_str(result.get())
            .map_err(|e| format!("initialize: unexpected result: {e}"))?;
        // It goes into every request head: a revision's name, nothing else.
        if !is_protocol_version(&init.protocol_version) {
            let shown: String = init.protocol_version.chars().take(40).collect();
            return Err(format!("initialize: not a protocol revision: {shown:?}"));
        }
        let opened = WireSession {
            addr: endpoint.addr,
            head: common_head(
                &endpoint,
                exchange.session_id.as_deref(),
                Some(&init.protocol_version),
            ),
            next_id: AtomicU64::new(1),
        };
        let done = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        opened
            .post(done.as_bytes(), "", timeout, &mut Read::default())
            .await
            .map_err(|f| format!("notifications/initialized failed: {f:?}"))?;
        Ok(opened)
    }

    /// The id of a new request on this session.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// `tools/call` of `tool` with `arguments` (a raw JSON object, or
    /// none) as request `id`: the raw `result` the server answered.
    pub async fn call(
        &self,
        id: u64,
        tool: &str,
        arguments: Option<&str>,
        timeout: Duration,
    ) -> Result<Box<RawValue>, Failure> {
        let name = Value::from(tool).to_string();
        let body = match arguments {
            Some(args) => format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":{name},"arguments":{args}}}}}"#
            ),
            None => format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":{name}}}}}"#
            ),
        };
        let mut read = Read::default();
        self.post(body.as_bytes(), &id.to_string(), timeout, &mut read)
            .await?;
        match read.answer {
            Some(Ok(result)) if is_call_result(&result) => Ok(result),
            Some(Ok(_)) => Err(Failure::Transport(
                "the answer to tools/call is not a CallToolResult".into(),
            )),
            Some(Err(e)) => Err(Failure::Rpc(e)),
            None => Err(Failure::Transport(
                "the server did not answer the call".into(),
            )),
        }
    }

    /// Tells the server to stop request `id` (best effort).
    pub async fn cancel(&self, id: u64, timeout: Duration) {
        let body = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id},"reason":"the caller cancelled"}}}}"#
        );
        let _ = self
            .post(body.as_bytes(), "", timeout, &mut Read::default())
            .await;
    }

    /// Ends the session on the server's side (best effort).
    pub async fn close(&self, timeout: Duration) {
        let Some(rest) = self.head.strip_prefix(b"POST ") else {
            return;
        };
        let mut delete = b"DELETE ".to_vec();
        delete.extend_from_slice(rest);
        let _ = exchange_quiet(self.addr, &request(&delete, b""), timeout).await;
    }

    async fn post(
        &self,
        body: &[u8],
        id: &str,
        timeout: Duration,
        read: &mut Read,
    ) -> Result<(), Failure> {
        let replies = Replies {
            addr: self.addr,
            head: &self.head,
            timeout,
        };
        let sent = request(&self.head, body);
        let exchange = exchange(self.addr, &sent, id, timeout, read, Some(replies)).await?;
        // Gone before it ran; an answer means it ran, and it is never sent again.
        if exchange.status == 404 && read.answer.is_none() {
            return Err(Failure::SessionGone);
        }
        if !(200..300).contains(&exchange.status) && read.answer.is_none() {
            return Err(Failure::Transport(format!("HTTP {}", exchange.status)));
        }
        Ok(())
    }
}

/// Where the server's requests during a call are answered: each at once,
/// on its own POST, since the server may wait for it before it answers.
struct Replies<'a> {
    addr: SocketAddr,
    head: &'a [u8],
    timeout: Duration,
}

/// At most this many server requests during one call.
const MAX_SERVER_REQUESTS: usize = 16;

impl Replies<'_> {
    fn send(
        &self,
        requests: &mut Vec<(Box<RawValue>, String)>,
        sent: &mut usize,
    ) -> Result<(), String> {
        for (rid, method) in requests.drain(..) {
            *sent += 1;
            if *sent > MAX_SERVER_REQUESTS {
                return Err(format!(
                    "more than {MAX_SERVER_REQUESTS} server requests during one call"
                ));
            }
            let reply = request(self.head, reply_to(&rid, &method).as_bytes());
            let (addr, timeout) = (self.addr, self.timeout);
            tokio::spawn(async move {
                if let Err(e) = exchange_quiet(addr, &reply, timeout).await {
                    log::debug!("federation: reply to the server's {method}: {e}");
                }
            });
        }
        Ok(())
    }
}

/// One request and its response, read into `read` for request `id`; the
/// server's requests meanwhile go to `replies` (dropped without).
async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    id: &str,
    timeout: Duration,
    read: &mut Read,
    replies: Option<Replies<'_>>,
) -> Result<Exchange, Failure> {
    let mut scanner = EventScanner::default();
    let mut json = Vec::new();
    let mut sent = 0;
    let outcome = http1::post(addr, request, timeout, |stream, chunk| {
        if stream {
            scanner.feed(chunk, id, read)?;
            if let Some(replies) = &replies {
                replies.send(&mut read.requests, &mut sent)?;
            }
            // Our answer ends what we wait for, even if the stream goes on.
            Ok(read.answer.is_none())
        } else {
            if json.len() + chunk.len() > MAX_MESSAGE {
                return Err(format!("an answer longer than {MAX_MESSAGE} bytes"));
            }
            json.extend_from_slice(chunk);
            Ok(true)
        }
    })
    .await
    .map_err(Failure::Transport)?;
    if !outcome.event_stream && !json.is_empty() {
        // An error status may come with a JSON-RPC error body: read it too.
        let scanned = std::str::from_utf8(&json)
            .map_err(|_| "body not UTF-8".to_string())
            .and_then(|text| scan_message(text, id, read));
        if let Err(why) = scanned {
            if (200..300).contains(&outcome.status) {
                return Err(Failure::Transport(why));
            }
        }
    }
    Ok(outcome)
}

async fn exchange_quiet(addr: SocketAddr, request: &[u8], timeout: Duration) -> Result<(), String> {
    http1::post(addr, request, timeout, |_, _| Ok(true))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_request_gets_the_answer_a_shared_session_gives() {
        let id = RawValue::from_string(r#""s1""#.into()).unwrap();
        let ping = r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#;
        assert_eq!(reply_to(&id, "ping"), ping);
        assert!(reply_to(&id, "roots/list").contains(r#""roots":[]"#));
        assert!(reply_to(&id, "sampling/createMessage").contains("-32601"));
    }

    #[test]
    fn requests_carry_the_session_and_the_callers_headers() {
        let host = HeaderValue::from_static("up:8080");
        let mut headers = HashMap::new();
        headers.insert(
            HeaderName::from_static("x-authenticated-user"),
            HeaderValue::from_static("alice"),
        );
        let endpoint = Endpoint {
            addr: "127.0.0.1:1".parse().unwrap(),
            path: "/mcp",
            host: &host,
            headers: &headers,
        };
        let head = common_head(&endpoint, Some("sid"), Some("2025-06-18"));
        let text = String::from_utf8(request(&head, b"{}")).unwrap();
        assert!(
            text.starts_with("POST /mcp HTTP/1.1\r\nhost: up:8080\r\n"),
            "{text}"
        );
        assert!(text.contains("x-authenticated-user: alice\r\n"));
        assert!(text.contains("mcp-session-id: sid\r\nmcp-protocol-version: 2025-06-18\r\n"));
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"));
        let stateless = common_head(&endpoint, None, Some("2025-06-18"));
        assert!(!String::from_utf8(stateless)
            .unwrap()
            .contains("mcp-session-id"));
        assert!(is_protocol_version("2025-06-18"));
        assert!(!is_protocol_version(
            "2025-06-18\r\ntransfer-encoding: chunked"
        ));
        assert!(!is_protocol_version(""));
    }

    /// A scripted MCP server: `initialize` answers with `version`, then
    /// every `tools/call` is answered on an event stream that first asks
    /// the client a `ping` and waits for the reply before it answers.
    async fn asking_server(version: &'static str) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (pinged_tx, pinged_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let pinged_tx = pinged_tx.clone();
                let mut pinged_rx = pinged_rx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    loop {
                        let n = match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let req = String::from_utf8_lossy(&buf[..n]).to_string();
                        let body = req.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
                        let reply = if body.contains("\"initialize\"") {
                            let json = format!(
                                r#"{{"jsonrpc":"2.0","id":0,"result":{{"protocolVersion":"{version}","capabilities":{{}},"serverInfo":{{"name":"s","version":"1"}}}}}}"#
                            );
                            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: S1\r\ncontent-length: {}\r\n\r\n{json}", json.len())
                        } else if body.contains("tools/call") {
                            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                            let ask = "data: {\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"ping\"}\n\n";
                            conn.write_all(
                                format!("{head}{:x}\r\n{ask}\r\n", ask.len()).as_bytes(),
                            )
                            .await
                            .unwrap();
                            // The answer waits for the gateway's reply to the ping.
                            while !*pinged_rx.borrow_and_update() {
                                if pinged_rx.changed().await.is_err() {
                                    return;
                                }
                            }
                            let answer = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}\n\n";
                            format!("{:x}\r\n{answer}\r\n0\r\n\r\n", answer.len())
                        } else {
                            if body.contains("\"srv-1\"") && body.contains("\"result\"") {
                                let _ = pinged_tx.send(true);
                            }
                            "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_string()
                        };
                        conn.write_all(reply.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        addr
    }

    fn endpoint<'a>(
        addr: SocketAddr,
        host: &'a HeaderValue,
        headers: &'a HashMap<HeaderName, HeaderValue>,
    ) -> Endpoint<'a> {
        Endpoint {
            addr,
            path: "/mcp",
            host,
            headers,
        }
    }

    #[tokio::test]
    async fn a_server_request_mid_call_is_answered_before_the_answer_comes() {
        let addr = asking_server("2025-06-18").await;
        let (host, headers) = (HeaderValue::from_static("s"), HashMap::new());
        let session = WireSession::open(endpoint(addr, &host, &headers), Duration::from_secs(5))
            .await
            .expect("opened");
        let id = session.next_id();
        let call = session.call(id, "t", Some("{}"), Duration::from_secs(5));
        let result = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("no deadlock")
            .expect("the answer");
        assert_eq!(result.get(), r#"{"content":[]}"#);
    }

    #[tokio::test]
    async fn a_protocol_version_that_is_not_a_revision_is_refused() {
        let addr = asking_server("2025-06-18\\r\\nx-injected: 1").await;
        let (host, headers) = (HeaderValue::from_static("s"), HashMap::new());
        let opened =
            WireSession::open(endpoint(addr, &host, &headers), Duration::from_secs(5)).await;
        let Err(why) = opened else {
            panic!("opened with a header in the version");
        };
        assert!(why.contains("not a protocol revision"), "{why}");
    }
}
