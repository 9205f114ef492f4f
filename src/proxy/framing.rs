//! Request framing the gateway refuses rather than guesses at.
//!
//! A request whose length two parties could read differently is how request
//! smuggling starts: RFC 9112 §6.3 lets a server refuse it with 400 and close
//! the connection. Pingora already refuses differing `Content-Length` values
//! before any phase runs; for a request with both `Transfer-Encoding` and
//! `Content-Length` it drops the latter from the parsed header (so the raw
//! bytes are read here) and for other codings it serves the request.

use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, Version};

/// Why a request header is refused; the text goes into the 400 body.
pub fn refusal(version: Version, headers: &HeaderMap, raw_header: &[u8]) -> Option<&'static str> {
    if version >= Version::HTTP_2 {
        // h2 frames bodies itself and rejects these fields in its codec.
        return None;
    }
    if has_bare_lf(raw_header) {
        return Some("bare LF in the request header");
    }
    let mut hosts = headers.get_all(HOST).iter();
    match (version, hosts.next(), hosts.next()) {
        (_, Some(_), Some(_)) => return Some("more than one Host header"),
        (Version::HTTP_11, None, _) => return Some("HTTP/1.1 request without Host"),
        _ => {}
    }
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next() {
        if codings.next().is_some()
            || !first
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked")
        {
            return Some("Transfer-Encoding other than chunked");
        }
        if headers.contains_key(CONTENT_LENGTH) || has_content_length_line(raw_header) {
            return Some("both Transfer-Encoding and Content-Length");
        }
    }
    let mut lengths = headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii);
    if let Some(first) = lengths.next() {
        if lengths.any(|other| other != first) {
            return Some("differing Content-Length values");
        }
    }
    None
}

/// `Expect: 100-continue` on HTTP/1.1: the client holds its body back until
/// told to go on (curl for a second, others for good).
pub fn expects_continue(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// httparse accepts a line ending in LF alone; an intermediary that does not
/// would see different header lines (RFC 9112 §2.2 allows refusing it).
/// Runs on every request: a branch-free fold over byte pairs, which the
/// compiler vectorises, costs a fraction of a byte-by-byte search.
fn has_bare_lf(raw: &[u8]) -> bool {
    let (Some(first), Some(rest)) = (raw.first(), raw.get(1..)) else {
        return false;
    };
    *first == b'\n'
        || raw.iter().zip(rest).fold(false, |found, (prev, b)| {
            found | ((*b == b'\n') & (*prev != b'\r'))
        })
}

fn has_content_length_line(raw: &[u8]) -> bool {
    const NAME: &[u8] = b"content-length:";
    raw.split(|b| *b == b'\n').any(|line| {
        line.get(..NAME.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(NAME))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The parsed header Pingora would hand over, and the raw bytes.
    fn req(lines: &[&str]) -> (HeaderMap, Vec<u8>) {
        let mut headers = HeaderMap::new();
        let mut raw = b"POST /servers/a/mcp HTTP/1.1\r\n".to_vec();
        for line in lines {
            raw.extend_from_slice(line.as_bytes());
            raw.extend_from_slice(b"\r\n");
            let (name, value) = line.split_once(':').expect("name: value");
            let name: http::HeaderName = name.parse().expect("name");
            headers.append(name, HeaderValue::from_str(value.trim()).expect("value"));
        }
        raw.extend_from_slice(b"\r\n");
        (headers, raw)
    }

    fn check(lines: &[&str]) -> Option<&'static str> {
        let (headers, raw) = req(lines);
        refusal(Version::HTTP_11, &headers, &raw)
    }

    #[test]
    fn plain_requests_pass() {
        assert_eq!(check(&["Host: a", "Content-Length: 5"]), None);
        assert_eq!(check(&["Host: a", "Transfer-Encoding: chunked"]), None);
        assert_eq!(check(&["Host: a", "transfer-encoding: Chunked "]), None);
        assert_eq!(check(&["Host: a"]), None);
        // Identical duplicates are one length (RFC 9110 §8.6).
        assert_eq!(check(&["Host: a", "Content-Length: 5, 5"]), None);
    }

    #[test]
    fn ambiguous_lengths_are_refused() {
        let both = "both Transfer-Encoding and Content-Length";
        let other = "Transfer-Encoding other than chunked";
        for (lines, why) in [
            (
                &["Host: a", "Content-Length: 5", "Transfer-Encoding: chunked"][..],
                both,
            ),
            (
                &["Host: a", "Transfer-Encoding: identity, chunked"][..],
                other,
            ),
            (
                &["Host: a", "Transfer-Encoding: chunked, chunked"][..],
                other,
            ),
            (&["Host: a", "Transfer-Encoding: gzip"][..], other),
            (
                &[
                    "Host: a",
                    "Transfer-Encoding: chunked",
                    "Transfer-Encoding: chunked",
                ][..],
                other,
            ),
            (
                &["Host: a", "Content-Length: 5", "Content-Length: 6"][..],
                "differing Content-Length values",
            ),
            (
                &["Host: a", "Content-Length: 5,6"][..],
                "differing Content-Length values",
            ),
        ] {
            assert_eq!(check(lines), Some(why), "{lines:?}");
        }
    }

    #[test]
    fn content_length_removed_by_pingora_is_still_seen() {
        let (mut headers, raw) =
            req(&["Host: a", "CONTENT-LENGTH: 5", "Transfer-Encoding: chunked"]);
        headers.remove(CONTENT_LENGTH);
        assert_eq!(
            refusal(Version::HTTP_11, &headers, &raw),
            Some("both Transfer-Encoding and Content-Length")
        );
    }

    #[test]
    fn host_is_required_once_on_http_1_1() {
        let (headers, raw) = req(&[]);
        assert_eq!(
            refusal(Version::HTTP_11, &headers, &raw),
            Some("HTTP/1.1 request without Host")
        );
        assert_eq!(refusal(Version::HTTP_10, &headers, &raw), None);
        assert_eq!(refusal(Version::HTTP_2, &headers, &raw), None);
        assert_eq!(
            check(&["Host: a", "Host: b"]),
            Some("more than one Host header")
        );
    }

    #[test]
    fn bare_lf_is_refused() {
        let (headers, _) = req(&["Host: a"]);
        let raw = b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n";
        assert_eq!(
            refusal(Version::HTTP_11, &headers, raw),
            Some("bare LF in the request header")
        );
        assert_eq!(
            refusal(Version::HTTP_11, &headers, b"GET / HTTP/1.1\nHost: a\n\n"),
            Some("bare LF in the request header")
        );
        assert!(has_bare_lf(b"\nGET"));
        assert!(!has_bare_lf(b"\r\n") && !has_bare_lf(b"") && !has_bare_lf(b"\r"));
    }

    #[test]
    fn expect_continue_only_on_http_1_1() {
        let (headers, _) = req(&["Host: a", "Expect: 100-Continue"]);
        assert!(expects_continue(Version::HTTP_11, &headers));
        assert!(!expects_continue(Version::HTTP_10, &headers));
        let (other, _) = req(&["Host: a", "Expect: something"]);
        assert!(!expects_continue(Version::HTTP_11, &other));
    }
}
