//! Which upstream silence limit a request gets.
//!
//! Pingora copies the peer's read timeout into the upstream session before
//! the request is sent and offers no hook to change it once the response
//! header is known, so the limit is selected from the request: whatever the
//! upstream *may* answer as an event stream gets the stream limit, since a
//! tool that works quietly or waits on the user (elicitation) sends nothing
//! for minutes between events.

use crate::routing::Endpoint;
use http::header::ACCEPT;
use http::{HeaderMap, Method};
use std::time::Duration;

/// The upstream read timeout (per read: the wait for the response header and
/// each pause between body chunks) for this request; `None` means no limit.
pub fn upstream_read_timeout(
    endpoint: Endpoint,
    method: &Method,
    headers: &HeaderMap,
    read_timeout: Duration,
    stream_idle_timeout: Option<Duration>,
) -> Option<Duration> {
    if may_stream(endpoint, method, headers) {
        stream_idle_timeout
    } else {
        Some(read_timeout)
    }
}

/// A GET on a stream endpoint opens a stream; any other request, whatever its
/// method, may be answered as one when its `Accept` names `text/event-stream`,
/// as a Streamable HTTP POST must. A wildcard (`*/*`, what curl, fetch and
/// httpx send by default) does not count: the MCP SDKs' servers answer 406
/// rather than stream to a client that did not name the event stream.
pub fn may_stream(endpoint: Endpoint, method: &Method, headers: &HeaderMap) -> bool {
    if method == Method::GET && matches!(endpoint, Endpoint::Mcp | Endpoint::Sse) {
        return true;
    }
    headers
        .get_all(ACCEPT)
        .iter()
        .any(|value| accepts_event_stream(value.as_bytes()))
}

/// Whether one `Accept` value lists `text/event-stream` with q > 0.
fn accepts_event_stream(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    text.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        media.eq_ignore_ascii_case("text/event-stream") && !parts.any(|p| is_q_zero(p.trim()))
    })
}

/// `q=0`, `q=0.0`, `q=0.000`: RFC 9110 §12.4.2 "not acceptable".
fn is_q_zero(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("q") && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_accept(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT, HeaderValue::from_static(v));
        }
        h
    }

    const READ: Duration = Duration::from_secs(300);
    const STREAM: Option<Duration> = Some(Duration::from_secs(3600));

    #[test]
    fn get_on_stream_endpoints_streams() {
        let none = HeaderMap::new();
        assert!(may_stream(Endpoint::Mcp, &Method::GET, &none));
        assert!(may_stream(Endpoint::Sse, &Method::GET, &none));
        assert!(!may_stream(Endpoint::Message, &Method::GET, &none));
        assert!(!may_stream(Endpoint::Mcp, &Method::DELETE, &none));
        assert!(!may_stream(Endpoint::Mcp, &Method::POST, &none));
    }

    #[test]
    fn post_streams_when_accept_admits_event_streams() {
        for accept in [
            "application/json, text/event-stream",
            "text/event-stream",
            "TEXT/Event-Stream;charset=utf-8",
            "application/json;q=0.9, text/event-stream;q=0.1",
        ] {
            let h = with_accept(&[accept]);
            assert!(may_stream(Endpoint::Mcp, &Method::POST, &h), "{accept}");
            assert_eq!(
                upstream_read_timeout(Endpoint::Mcp, &Method::POST, &h, READ, STREAM),
                STREAM
            );
        }
        // Any Accept header line counts, not just the first.
        let two = with_accept(&["application/json", "text/event-stream"]);
        assert!(may_stream(Endpoint::Message, &Method::POST, &two));
        // Whatever the method.
        assert!(may_stream(Endpoint::Mcp, &Method::DELETE, &two));
    }

    #[test]
    fn requests_that_refuse_event_streams_keep_the_read_timeout() {
        for accept in [
            "application/json",
            "text/event-stream;q=0",
            "text/event-stream; q=0.000, application/json",
            "text/plain",
            "text/event-streams",
            "*/*",
            "text/*",
        ] {
            let h = with_accept(&[accept]);
            assert!(!may_stream(Endpoint::Mcp, &Method::POST, &h), "{accept}");
            assert_eq!(
                upstream_read_timeout(Endpoint::Mcp, &Method::POST, &h, READ, STREAM),
                Some(READ)
            );
        }
    }

    #[test]
    fn no_stream_limit_means_none() {
        let h = with_accept(&["text/event-stream"]);
        assert_eq!(
            upstream_read_timeout(Endpoint::Mcp, &Method::POST, &h, READ, None),
            None
        );
    }
}
