//! The legacy HTTP+SSE transport (MCP 2024-11-05) names its message URL in
//! the stream's first `endpoint` event. That URL points at the upstream, so
//! the gateway must replace it with its own `/servers/{name}/message` URL
//! carrying a signed token; this is the one place the gateway reads a
//! response body, and only until that first event has passed (bounded).

use bytes::{Bytes, BytesMut};

/// Give up if no endpoint event shows up in this many bytes.
pub const MAX_SCAN: usize = 8 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Nothing to emit yet.
    Hold,
    /// Emit these bytes unchanged; scanning is over.
    Pass(Bytes),
    /// No endpoint event within `MAX_SCAN` bytes or before the stream
    /// ended: without one the client cannot use the stream. Scanning is over.
    NoEndpoint,
    /// The endpoint event was found: emit `before`, then the replacement
    /// event, then `after`. Scanning is over.
    Found {
        before: Bytes,
        endpoint: String,
        after: Bytes,
    },
}

#[derive(Debug, Default)]
pub struct EndpointScanner {
    buf: BytesMut,
    done: bool,
}

impl EndpointScanner {
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds one body chunk (or `None` at the end of the stream).
    pub fn feed(&mut self, chunk: Option<&[u8]>) -> Scan {
        if self.done {
            return Scan::Pass(Bytes::copy_from_slice(chunk.unwrap_or_default()));
        }
        let end_of_stream = chunk.is_none();
        self.buf.extend_from_slice(chunk.unwrap_or_default());
        let mut start = 0;
        while let Some((len, sep)) = next_event(&self.buf[start..]) {
            let block = &self.buf[start..start + len];
            if let Some(endpoint) = endpoint_data(block) {
                self.done = true;
                let all = std::mem::take(&mut self.buf).freeze();
                return Scan::Found {
                    before: all.slice(..start),
                    endpoint,
                    after: all.slice(start + len + sep..),
                };
            }
            start += len + sep;
        }
        if end_of_stream || self.buf.len() > MAX_SCAN {
            self.done = true;
            self.buf = BytesMut::new();
            return Scan::NoEndpoint;
        }
        Scan::Hold
    }
}

/// The bytes one scan step emits, `event` making the gateway's `endpoint`
/// event from the upstream's URL; `Err` says why the stream must end. Both
/// of the proxy's paths (Pingora's body filter and the lean relay) use it.
pub fn emit(
    scan: Scan,
    event: impl FnOnce(&str) -> Result<Bytes, String>,
) -> Result<Bytes, String> {
    match scan {
        Scan::Hold => Ok(Bytes::new()),
        Scan::Pass(bytes) => Ok(bytes),
        Scan::NoEndpoint => Err(format!(
            "none within the first {MAX_SCAN} bytes or before the stream ended"
        )),
        Scan::Found {
            before,
            endpoint,
            after,
        } => event(&endpoint).map(|event| {
            let mut out = BytesMut::with_capacity(before.len() + event.len() + after.len());
            out.extend_from_slice(&before);
            out.extend_from_slice(&event);
            out.extend_from_slice(&after);
            out.freeze()
        }),
    }
}

/// Length of the next complete event block and of its terminating blank line.
fn next_event(buf: &[u8]) -> Option<(usize, usize)> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else if buf[i..].starts_with(b"\n\n") {
            Some((i, 2))
        } else {
            None
        }
    })
}

fn endpoint_data(block: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(block).ok()?;
    let mut is_endpoint = false;
    let mut data = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            is_endpoint = v.trim() == "endpoint";
        } else if let Some(v) = line.strip_prefix("data:") {
            data = Some(v.trim().to_string());
        }
    }
    data.filter(|_| is_endpoint)
}

/// The upstream's message endpoint as path and query, resolved against the
/// SSE path it was announced on (absolute URLs and relative paths both occur).
pub fn upstream_message_path(endpoint: &str, sse_path: &str) -> Option<String> {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        let uri: http::Uri = endpoint.parse().ok()?;
        return uri.path_and_query().map(|pq| pq.as_str().to_string());
    }
    if endpoint.starts_with('/') {
        return Some(endpoint.to_string());
    }
    let dir = sse_path.rsplit_once('/').map_or("", |(d, _)| d);
    Some(format!("{dir}/{endpoint}"))
}

/// The legacy SSE path beside a Streamable HTTP URL: `/api/mcp` → `/api/sse`.
pub fn sse_path_for(mcp_path: &str) -> String {
    let dir = mcp_path
        .trim_end_matches('/')
        .rsplit_once('/')
        .map_or("", |(d, _)| d);
    format!("{dir}/sse")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_endpoint_event_across_chunks() {
        let mut s = EndpointScanner::default();
        assert_eq!(s.feed(Some(b": hello\n\nevent: endpo")), Scan::Hold);
        match s.feed(Some(
            b"int\ndata: /messages/?session_id=abc\n\nevent: message\n",
        )) {
            Scan::Found {
                before,
                endpoint,
                after,
            } => {
                assert_eq!(&before[..], b": hello\n\n");
                assert_eq!(endpoint, "/messages/?session_id=abc");
                assert_eq!(&after[..], b"event: message\n");
            }
            other => panic!("{other:?}"),
        }
        assert!(s.is_done());
        assert_eq!(s.feed(Some(b"x")), Scan::Pass(Bytes::from_static(b"x")));
    }

    #[test]
    fn emits_the_replacement_between_the_surrounding_bytes() {
        let mut s = EndpointScanner::default();
        let found = s.feed(Some(b": hi\n\nevent: endpoint\ndata: /m?s=1\n\nevent: x\n"));
        let out = emit(found, |e| Ok(Bytes::from(format!("[{e}]")))).unwrap();
        assert_eq!(&out[..], b": hi\n\n[/m?s=1]event: x\n");
        assert_eq!(emit(Scan::Hold, |_| unreachable!()).unwrap(), Bytes::new());
        assert!(emit(Scan::NoEndpoint, |_| unreachable!()).is_err());
        let mut s = EndpointScanner::default();
        let found = s.feed(Some(b"event: endpoint\ndata: x\n\n"));
        assert_eq!(emit(found, |_| Err("no".into())), Err("no".to_string()));
    }

    #[test]
    fn gives_up_on_streams_without_an_endpoint() {
        let mut s = EndpointScanner::default();
        let big = vec![b'a'; MAX_SCAN + 1];
        assert_eq!(s.feed(Some(&big)), Scan::NoEndpoint);
        assert!(s.is_done());
        let mut s = EndpointScanner::default();
        assert_eq!(s.feed(Some(b"event: message\ndata: x\n\n")), Scan::Hold);
        assert_eq!(s.feed(None), Scan::NoEndpoint);
    }

    #[test]
    fn resolves_message_paths() {
        assert_eq!(
            upstream_message_path("/message?sessionId=1", "/sse").unwrap(),
            "/message?sessionId=1"
        );
        assert_eq!(
            upstream_message_path("http://h:1/m/?s=2", "/sse").unwrap(),
            "/m/?s=2"
        );
        assert_eq!(
            upstream_message_path("messages?s=3", "/api/sse").unwrap(),
            "/api/messages?s=3"
        );
        assert_eq!(sse_path_for("/mcp"), "/sse");
        assert_eq!(sse_path_for("/api/v1/mcp/"), "/api/v1/sse");
    }
}
