//! The HTTP/1.1 heads of the lean stream path (see `relay`): which requests
//! take it, the request head sent upstream, the upstream's response head
//! parsed, and the head written back to the client.
//!
//! The body passes through byte for byte (its framing, chunked or not, is
//! the upstream's), so both connections close when the response ends: the
//! upstream is asked for `Connection: close`, the client is told the same.

use crate::routing::Endpoint;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;

/// Longest upstream response head the relay reads; Pingora's own limit for a
/// header is 64 KiB, a stream's head is a few hundred bytes.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), beside
/// the ones `Connection` names. `Transfer-Encoding` is one too, but on the
/// response it is kept: the relay forwards the upstream's framing as is.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// What decides whether a request takes the lean path.
pub struct Candidate<'a> {
    pub http1: bool,
    pub method: &'a Method,
    pub version: Version,
    pub endpoint: Endpoint,
    pub headers: &'a HeaderMap,
}

impl<'a> Candidate<'a> {
    /// The request `session` holds, routed to `endpoint`.
    pub fn of(session: &'a Session, endpoint: Endpoint) -> Self {
        let req = session.req_header();
        Candidate {
            http1: matches!(session.as_downstream(), ServerSession::H1(_)),
            method: &req.method,
            version: req.version,
            endpoint,
            headers: &req.headers,
        }
    }
}

/// The Streamable HTTP GET stream and the legacy `/sse` stream over HTTP/1.1
/// without a body, upgrade or `Expect`: the requests that only ever wait
/// for events, so nothing of the general proxy path is needed once their
/// head is through (the `/sse` stream's endpoint event is rewritten by the
/// relay, see `sse_relay`). POSTs have a path of their own (`post_relay`).
pub fn takes_lean_path(c: &Candidate) -> bool {
    c.http1
        && c.method == Method::GET
        && c.version == Version::HTTP_11
        && matches!(c.endpoint, Endpoint::Mcp | Endpoint::Sse)
        && !c.headers.contains_key(TRANSFER_ENCODING)
        && !c.headers.contains_key(UPGRADE)
        && !c.headers.contains_key(EXPECT)
        && c.headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .all(|v| v.as_bytes() == b"0")
}

/// The hop-by-hop headers present and the ones `Connection` names, to be
/// removed as Pingora's upstream request policy does before
/// `upstream_request_filter`. On a request `Transfer-Encoding` goes too (the
/// lean path has no body); a response keeps it: its body passes as framed.
pub fn hop_by_hop_names(headers: &HeaderMap, request: bool) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| headers.contains_key(n))
        .collect();
    for name in HOP_BY_HOP {
        if headers.contains_key(name) {
            names.push(HeaderName::from_static(name));
        }
    }
    if request && headers.contains_key(TRANSFER_ENCODING) {
        names.push(TRANSFER_ENCODING);
    }
    // `Connection: keep-alive` names one of the fixed ones.
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// The request head sent upstream; `target` is the path and query. The
/// header names keep the spelling Pingora's case map holds.
pub fn request_head(request: &RequestHeader, target: &str) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(request.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    request.header_to_h1_wire(&mut head);
    head.extend_from_slice(b"\r\n");
    head
}

/// Whether a `Connection` header names `token` (`close`, say).
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a response body is chunked: `chunked` is its last coding
/// (RFC 9112 §6.1); the relay decodes it to rewrite the `/sse` endpoint event.
pub fn is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        // Empty list elements do not count (RFC 9110 §5.6.1).
        .and_then(|v| v.rsplit(',').map(str::trim).find(|c| !c.is_empty()))
        .is_some_and(|coding| coding.eq_ignore_ascii_case("chunked"))
}

/// An upstream response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// An HTTP/1.0 response: its connection is not kept.
    pub http10: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Bytes the head took; what follows in the buffer is body.
    pub len: usize,
}

/// Parses the response head at the start of `buf`: `Ok(None)` while it is
/// incomplete, an error (the upstream is broken: 502) when it is malformed
/// or too long. An informational head (`1xx`) is returned like any other.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, &'static str> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_RESPONSE_HEAD {
            Err("response head too long")
        } else {
            Ok(None)
        };
    };
    if end + 4 > MAX_RESPONSE_HEAD {
        return Err("response head too long");
    }
    let mut lines = buf[..end].split(|&b| b == b'\n').map(|l| {
        // Every line but the last ends in "\r\n"; a bare "\n" is refused.
        l.strip_suffix(b"\r").unwrap_or(l)
    });
    let status_line = lines.next().ok_or("empty response head")?;
    let (status, http10) = parse_status_line(status_line)?;
    let mut headers = Vec::new();
    for line in lines {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return Err("folded header line");
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or("header line without a colon")?;
        let name = HeaderName::from_bytes(&line[..colon]).map_err(|_| "invalid header name")?;
        let value = line[colon + 1..].trim_ascii();
        let value = HeaderValue::from_bytes(value).map_err(|_| "invalid header value")?;
        headers.push((name, value));
    }
    if buf[..end].contains(&b'\n')
        && buf[..end]
            .split(|&b| b == b'\n')
            .rev()
            .skip(1)
            .any(|l| !l.ends_with(b"\r"))
    {
        return Err("bare LF in the response head");
    }
    Ok(Some(ResponseHead {
        status,
        http10,
        headers,
        len: end + 4,
    }))
}

/// The status, and whether the upstream speaks HTTP/1.0.
fn parse_status_line(line: &[u8]) -> Result<(StatusCode, bool), &'static str> {
    let (rest, http10) = match (
        line.strip_prefix(b"HTTP/1.1 "),
        line.strip_prefix(b"HTTP/1.0 "),
    ) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) => return Err("not an HTTP/1 status line"),
    };
    let code = rest.get(..3).ok_or("short status line")?;
    if rest.get(3).is_some_and(|b| *b != b' ') {
        return Err("malformed status code");
    }
    let status = StatusCode::from_bytes(code).map_err(|_| "malformed status code")?;
    Ok((status, http10))
}

/// The head written to the client.
pub fn response_head(response: &ResponseHeader) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(response.status.as_str().as_bytes());
    head.push(b' ');
    let reason = response.status.canonical_reason().unwrap_or("");
    head.extend_from_slice(reason.as_bytes());
    head.extend_from_slice(b"\r\n");
    response.header_to_h1_wire(&mut head);
    head.extend_from_slice(b"\r\n");
    head
}

/// Requests and heads for the unit tests of the lean paths.
#[cfg(test)]
pub(super) mod test_support {
    use super::*;

    pub fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    pub fn candidate<'a>(method: &'a Method, headers: &'a HeaderMap) -> Candidate<'a> {
        Candidate {
            http1: true,
            method,
            version: Version::HTTP_11,
            endpoint: Endpoint::Mcp,
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{candidate, headers};
    use super::*;

    #[test]
    fn only_the_plain_get_stream_takes_the_lean_path() {
        let none = HeaderMap::new();
        let get = Method::GET;
        assert!(takes_lean_path(&candidate(&get, &none)));
        let zero = headers(&[("content-length", "0")]);
        assert!(takes_lean_path(&candidate(&get, &zero)));

        let post = Method::POST;
        assert!(!takes_lean_path(&candidate(&post, &none)));
        for h in [
            headers(&[("content-length", "5")]),
            headers(&[("transfer-encoding", "chunked")]),
            headers(&[("upgrade", "websocket")]),
            headers(&[("expect", "100-continue")]),
        ] {
            assert!(!takes_lean_path(&candidate(&get, &h)), "{h:?}");
        }
        let mut c = candidate(&get, &none);
        c.http1 = false;
        assert!(!takes_lean_path(&c), "HTTP/2");
        let mut c = candidate(&get, &none);
        c.version = Version::HTTP_10;
        assert!(!takes_lean_path(&c), "HTTP/1.0 cannot read a chunked body");
        let mut c = candidate(&get, &none);
        c.endpoint = Endpoint::Sse;
        assert!(takes_lean_path(&c), "the legacy /sse stream");
        c.endpoint = Endpoint::Message;
        assert!(!takes_lean_path(&c), "a legacy message");
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_found() {
        let h = headers(&[
            ("connection", "keep-alive, X-Secret, X-Absent"),
            ("x-secret", "s"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("accept", "text/event-stream"),
        ]);
        assert_eq!(
            hop_by_hop_names(&h, true),
            [
                "connection",
                "keep-alive",
                "te",
                "transfer-encoding",
                "x-secret"
            ]
        );
        let r = headers(&[("transfer-encoding", "chunked"), ("connection", "close")]);
        assert_eq!(
            hop_by_hop_names(&r, false),
            ["connection"],
            "the response keeps its framing"
        );
    }

    #[test]
    fn heads_are_written_with_the_spelling_pingora_keeps() {
        let mut req = RequestHeader::build(Method::GET, b"/ignored", None).unwrap();
        req.insert_header("Host", "up:8080").unwrap();
        req.insert_header("connection", "close").unwrap();
        assert_eq!(
            String::from_utf8(request_head(&req, "/mcp?x=1")).unwrap(),
            "GET /mcp?x=1 HTTP/1.1\r\nHost: up:8080\r\nconnection: close\r\n\r\n"
        );
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("Content-Type", "text/event-stream")
            .unwrap();
        assert_eq!(
            String::from_utf8(response_head(&resp)).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
        );
    }

    #[test]
    fn a_response_head_is_parsed_and_the_body_starts_after_it() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                    Mcp-Session-Id:  abc \r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello";
        let head = parse_response_head(raw).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.headers.len(), 3);
        assert_eq!(head.headers[1].0, "mcp-session-id");
        assert_eq!(head.headers[1].1, "abc");
        assert_eq!(&raw[head.len..], b"5\r\nhello");
        // HTTP/1.0 upstreams and statuses without a reason phrase.
        let head = parse_response_head(b"HTTP/1.0 405\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(head.http10);
        assert!(head.headers.is_empty());
        let head = parse_response_head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.status, StatusCode::CONTINUE);
        assert!(!head.http10);
        assert_eq!(head.len, 25);
    }

    #[test]
    fn chunked_is_the_last_transfer_coding() {
        for (values, chunked) in [
            (&["chunked"][..], true),
            (&["gzip, Chunked "][..], true),
            (&["gzip", "chunked"][..], true),
            (&["chunked, gzip"][..], false),
            (&["gzip, chunked, "][..], true),
            (&[][..], false),
        ] {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(TRANSFER_ENCODING, HeaderValue::from_static(v));
            }
            assert_eq!(is_chunked(&h), chunked, "{values:?}");
        }
    }

    #[test]
    fn an_incomplete_head_waits_for_more() {
        assert!(parse_response_head(b"").unwrap().is_none());
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nContent-")
            .unwrap()
            .is_none());
    }

    #[test]
    fn broken_heads_are_refused() {
        let long = {
            let mut v = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
            v.resize(MAX_RESPONSE_HEAD + 10, b'a');
            v
        };
        for raw in [
            &b"HTTP/2 200\r\n\r\n"[..],
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nx: a\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad name: a\r\n\r\n",
            b"HTTP/1.1 200 OK\nx: a\r\n\r\n",
            &long,
        ] {
            assert!(
                parse_response_head(raw).is_err(),
                "{}",
                String::from_utf8_lossy(&raw[..raw.len().min(60)])
            );
        }
    }
}
