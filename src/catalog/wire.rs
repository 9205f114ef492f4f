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

/// A JSON-RPC message as far as a call needs to read it.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<RpcError>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

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

fn common_head(endpoint: &Endpoint, session: Option<(&str, &str)>) -> Vec<u8> {
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
    if let Some((id, version)) = session {
        head.extend_from_slice(b"mcp-session-id: ");
        head.extend_from_slice(id.as_bytes());
        head.extend_from_slice(b"\r\nmcp-protocol-version: ");
        head.extend_from_slice(version.as_bytes());
        head.extend_from_slice(b"\r\n");
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

/// The answer to request `id` in a response body (JSON, or the events of
/// a stream), and the server's requests met before it.
#[derive(Debug, Default)]
pub struct Read {
    pub answer: Option<Result<Box<RawValue>, RpcError>>,
    /// `(id, method)` of each server request, to be answered.
    pub requests: Vec<(Box<RawValue>, String)>,
}

/// Reads one JSON-RPC message (or batch) for `read`.
fn scan_message(data: &str, id: &str, read: &mut Read) -> Result<(), String> {
    let data = data.trim();
    if data.is_empty() {
        return Ok(());
    }
    if data.starts_with('[') {
        let batch: Vec<&RawValue> =
            serde_json::from_str(data).map_err(|e| format!("not JSON-RPC: {e}"))?;
        for one in batch {
            scan_message(one.get(), id, read)?;
        }
        return Ok(());
    }
    let message: Message = serde_json::from_str(data).map_err(|e| format!("not JSON-RPC: {e}"))?;
    match (message.method, message.id) {
        (Some(method), Some(rid)) => read.requests.push((rid.to_owned(), method)),
        (Some(_), None) => {} // a notification
        (None, Some(rid)) if rid.get() == id => {
            read.answer = Some(match (message.result, message.error) {
                (Some(result), _) => Ok(result.to_owned()),
                (None, Some(error)) => Err(error),
                (None, None) => return Err("a response with neither result nor error".into()),
            });
        }
        (None, _) => {} // another request's answer: not ours to take
    }
    Ok(())
}

/// Feeds an event stream's bytes; complete events are scanned.
#[derive(Default)]
pub struct EventScanner {
    pending: Vec<u8>,
}

impl EventScanner {
    pub fn feed(&mut self, bytes: &[u8], id: &str, read: &mut Read) -> Result<(), String> {
        self.pending.extend_from_slice(bytes);
        loop {
            let Some((end, sep)) = event_end(&self.pending) else {
                return Ok(());
            };
            let event: Vec<u8> = self.pending.drain(..end + sep).collect();
            let text = std::str::from_utf8(&event[..end]).map_err(|_| "event not UTF-8")?;
            let mut data = String::new();
            for line in text.lines() {
                if let Some(value) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            scan_message(&data, id, read)?;
        }
    }
}

/// Where the first event in `buf` ends, and the separator's length.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        match &buf[i..] {
            [b'\n', b'\n', ..] => return Some((i, 2)),
            [b'\r', b'\n', b'\r', b'\n', ..] => return Some((i, 4)),
            [b'\r', b'\r', ..] => return Some((i, 2)),
            _ => i += 1,
        }
    }
    None
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
        let head = common_head(&endpoint, None);
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"mcp-gateway","version":"{}"}}}}}}"#,
            env!("CARGO_PKG_VERSION")
        );
        let mut read = Read::default();
        let exchange = exchange(
            endpoint.addr,
            &request(&head, init.as_bytes()),
            "0",
            timeout,
            &mut read,
        )
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
        let session = exchange.session_id;
        let head = match &session {
            Some(id) => common_head(&endpoint, Some((id, &init.protocol_version))),
            None => common_head(&endpoint, Some(("", &init.protocol_version))),
        };
        let opened = WireSession {
            addr: endpoint.addr,
            head: strip_empty_session(head, session.is_none()),
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
            Some(Ok(result)) => Ok(result),
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
        let exchange = exchange(self.addr, &request(&self.head, body), id, timeout, read).await?;
        if exchange.status == 404 {
            return Err(Failure::SessionGone);
        }
        // Answer what the server asked meanwhile, each on its own POST.
        for (rid, method) in std::mem::take(&mut read.requests) {
            let reply = reply_to(&rid, &method);
            let _ =
                exchange_quiet(self.addr, &request(&self.head, reply.as_bytes()), timeout).await;
        }
        if !(200..300).contains(&exchange.status) {
            return Err(Failure::Transport(format!("HTTP {}", exchange.status)));
        }
        Ok(())
    }
}

/// A session id the server did not give leaves no empty header behind.
fn strip_empty_session(head: Vec<u8>, stateless: bool) -> Vec<u8> {
    if !stateless {
        return head;
    }
    let text = String::from_utf8_lossy(&head).replace("mcp-session-id: \r\n", "");
    text.into_bytes()
}

/// One request and its response, read into `read` for request `id`.
async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    id: &str,
    timeout: Duration,
    read: &mut Read,
) -> Result<Exchange, Failure> {
    let mut scanner = EventScanner::default();
    let mut json = Vec::new();
    let outcome = http1::post(addr, request, timeout, |stream, chunk| {
        if stream {
            scanner.feed(chunk, id, read)?;
            // Our answer ends what we wait for, even if the stream goes on.
            Ok(read.answer.is_none())
        } else {
            json.extend_from_slice(chunk);
            Ok(true)
        }
    })
    .await
    .map_err(Failure::Transport)?;
    if !outcome.event_stream && !json.is_empty() && (200..300).contains(&outcome.status) {
        let text =
            std::str::from_utf8(&json).map_err(|_| Failure::Transport("body not UTF-8".into()))?;
        scan_message(text, id, read).map_err(Failure::Transport)?;
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

    /// The answer as text, for comparing.
    fn answer(read: &Read) -> Option<Result<&str, &RpcError>> {
        read.answer.as_ref().map(|a| a.as_ref().map(|v| v.get()))
    }

    #[test]
    fn the_answer_is_found_among_notifications_and_requests() {
        let mut read = Read::default();
        let mut events = EventScanner::default();
        let stream = concat!(
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"ping\"}\r\n\r\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{\"x\":1}}\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n",
        );
        // Every split of the stream finds the same.
        for cut in 0..stream.len() {
            let mut r = Read::default();
            let mut e = EventScanner::default();
            e.feed(&stream.as_bytes()[..cut], "7", &mut r).unwrap();
            e.feed(&stream.as_bytes()[cut..], "7", &mut r).unwrap();
            assert_eq!(answer(&r), Some(Ok(r#"{"content":[]}"#)), "cut at {cut}");
        }
        events.feed(stream.as_bytes(), "7", &mut read).unwrap();
        assert_eq!(read.requests.len(), 1);
        assert_eq!(read.requests[0].1, "ping");
        assert_eq!(
            reply_to(&read.requests[0].0, "ping"),
            r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#
        );
    }

    #[test]
    fn errors_and_garbage_are_told_apart() {
        let mut read = Read::default();
        scan_message(
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"bad"}}"#,
            "3",
            &mut read,
        )
        .unwrap();
        let bad = RpcError {
            code: -32602,
            message: "bad".into(),
        };
        assert_eq!(answer(&read), Some(Err(&bad)));
        assert!(scan_message("{not json", "3", &mut Read::default()).is_err());
        assert!(scan_message(r#"{"jsonrpc":"2.0","id":3}"#, "3", &mut Read::default()).is_err());
        let mut batch = Read::default();
        scan_message(r#"[{"jsonrpc":"2.0","id":3,"result":1}]"#, "3", &mut batch).unwrap();
        assert_eq!(answer(&batch), Some(Ok("1")));
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
        let head = common_head(&endpoint, Some(("sid", "2025-06-18")));
        let text = String::from_utf8(request(&head, b"{}")).unwrap();
        assert!(
            text.starts_with("POST /mcp HTTP/1.1\r\nhost: up:8080\r\n"),
            "{text}"
        );
        assert!(text.contains("x-authenticated-user: alice\r\n"));
        assert!(text.contains("mcp-session-id: sid\r\nmcp-protocol-version: 2025-06-18\r\n"));
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"));
        let stateless = strip_empty_session(common_head(&endpoint, Some(("", "v"))), true);
        assert!(!String::from_utf8(stateless)
            .unwrap()
            .contains("mcp-session-id"));
    }
}
