//! `X-Request-Id` as the gateway sends it up and back: one value per
//! request, rendered once and shared by the upstream request, the response
//! and the access line. Every proxied request pays for it, so it is kept
//! cheap: the value is one allocation its copies share, and the header goes
//! in under a static wire name (Pingora's case-preserving map copies a
//! `HeaderName` it has no spelling for).

use crate::access_log;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The spelling on the wire (HTTP/1); HTTP/2 lower-cases it.
const WIRE_NAME: &str = "X-Request-Id";

#[derive(Clone)]
pub(crate) struct RequestId {
    value: HeaderValue,
    /// The client's request carries an `X-Request-Id` (so does the upstream
    /// request, which starts as its copy): ours must replace it.
    client_sent_one: bool,
}

impl RequestId {
    /// A new id; `client_sent_one` when the client's request has an
    /// `X-Request-Id` that was not taken.
    pub fn new(client_sent_one: bool) -> RequestId {
        let digits = access_log::new_request_id();
        // Hex digits are always a valid value; the fallback is unreachable.
        let value = HeaderValue::from_maybe_shared(Bytes::from_owner(digits))
            .unwrap_or_else(|_| HeaderValue::from_static("-"));
        RequestId {
            value,
            client_sent_one,
        }
    }

    /// A trusted proxy's id, passed on as it came.
    pub fn forwarded(value: HeaderValue) -> RequestId {
        RequestId {
            value,
            client_sent_one: true,
        }
    }

    pub fn as_str(&self) -> &str {
        self.value.to_str().unwrap_or("-")
    }

    /// Into the upstream request: appended when the client sent none (no
    /// other value to look for and remove), else in place of the client's.
    pub fn add_to_request(&self, upstream: &mut RequestHeader) -> Result<()> {
        if self.client_sent_one {
            upstream.insert_header(WIRE_NAME, self.value.clone())
        } else {
            upstream
                .append_header(WIRE_NAME, self.value.clone())
                .map(|_| ())
        }
    }

    /// Into the response, in place of any the upstream sent.
    pub fn add_to_response(&self, response: &mut ResponseHeader) -> Result<()> {
        response.insert_header(WIRE_NAME, self.value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(req: &RequestHeader) -> String {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    fn request(client_id: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/mcp", None).unwrap();
        req.append_header("Host", "upstream").unwrap();
        if let Some(id) = client_id {
            req.append_header("x-request-id", id).unwrap();
        }
        req
    }

    #[test]
    fn a_new_id_is_32_hex_digits_and_replaces_the_clients() {
        let id = RequestId::new(true);
        assert_eq!(id.as_str().len(), 32);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(RequestId::new(false).as_str(), id.as_str());

        let mut req = request(Some("client-chosen"));
        id.add_to_request(&mut req).unwrap();
        let values: Vec<_> = req.headers.get_all(&X_REQUEST_ID).iter().collect();
        assert_eq!(values, [id.as_str()]);
        assert!(wire(&req).contains(&format!("X-Request-Id: {}\r\n", id.as_str())));
    }

    #[test]
    fn without_a_client_id_it_is_added_once() {
        let id = RequestId::new(false);
        let mut req = request(None);
        id.add_to_request(&mut req).unwrap();
        let values: Vec<_> = req.headers.get_all(&X_REQUEST_ID).iter().collect();
        assert_eq!(values, [id.as_str()]);
        assert!(wire(&req).starts_with("Host: upstream\r\nX-Request-Id: "));
    }

    #[test]
    fn the_response_carries_ours_not_the_upstreams() {
        let id = RequestId::forwarded(HeaderValue::from_static("proxy-7"));
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_header("X-Request-Id", "upstream-own").unwrap();
        id.add_to_response(&mut resp).unwrap();
        let values: Vec<_> = resp.headers.get_all(&X_REQUEST_ID).iter().collect();
        assert_eq!(values, ["proxy-7"]);
        assert_eq!(id.as_str(), "proxy-7");
    }
}
