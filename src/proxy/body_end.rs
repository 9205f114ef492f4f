//! Where an upstream response's body ends while its bytes pass through as
//! they came (the POST relay, see `post_relay`): the client gets the
//! upstream's own framing, and the gateway follows it only to know when
//! the response is complete, so that both connections serve the next
//! request.

use super::chunked::Dechunk;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode};

/// How a response's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (`204`, `304`).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes: the client's connection closes with it.
    UntilClose,
}

/// The framing of a final response to a POST; `Err` for a head whose
/// length cannot be known (conflicting `Content-Length` values).
pub fn response_framing(status: StatusCode, headers: &HeaderMap) -> Result<Framing, &'static str> {
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Empty);
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        // A coding other than a final `chunked` is read until the close.
        return Ok(if super::stream_head::is_chunked(headers) {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let text = std::str::from_utf8(part.trim_ascii()).map_err(|_| "bad Content-Length")?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err("bad Content-Length");
            }
            let n: u64 = text.parse().map_err(|_| "bad Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length values");
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

/// Follows a body as its bytes pass.
#[derive(Debug)]
pub struct BodyEnd {
    left: Left,
}

#[derive(Debug)]
enum Left {
    Bytes(u64),
    Chunks(Dechunk),
    UntilClose,
    Done,
}

impl BodyEnd {
    pub fn new(framing: Framing) -> Self {
        let left = match framing {
            Framing::Empty => Left::Done,
            Framing::Length(n) => Left::Bytes(n),
            Framing::Chunked => Left::Chunks(Dechunk::default()),
            Framing::UntilClose => Left::UntilClose,
        };
        BodyEnd { left }
    }

    /// A chunked body followed on from where `chunks` is.
    pub fn following(chunks: Dechunk) -> Self {
        let left = if chunks.ended() {
            Left::Done
        } else {
            Left::Chunks(chunks)
        };
        BodyEnd { left }
    }

    /// How many bytes at the start of `raw` belong to the body (what
    /// follows is not the response's: the connection cannot be reused).
    pub fn feed(&mut self, raw: &[u8]) -> Result<usize, String> {
        match &mut self.left {
            Left::Done => Ok(0),
            Left::UntilClose => Ok(raw.len()),
            Left::Bytes(n) => {
                // `used` is at most `raw.len()`.
                let used = (*n).min(raw.len() as u64);
                *n -= used;
                if *n == 0 {
                    self.left = Left::Done;
                }
                Ok(used as usize)
            }
            Left::Chunks(chunks) => {
                let used = chunks.decode(raw, None, false)?;
                if chunks.ended() {
                    self.left = Left::Done;
                }
                Ok(used)
            }
        }
    }

    /// The whole body has passed.
    pub fn is_done(&self) -> bool {
        matches!(self.left, Left::Done)
    }

    /// The body ends when the upstream closes (then a close is its end,
    /// not a failure).
    pub fn until_close(&self) -> bool {
        matches!(self.left, Left::UntilClose)
    }
}

#[cfg(test)]
mod tests {
    use super::super::stream_head::test_support::headers;
    use super::*;

    #[test]
    fn framing_follows_rfc_9112() {
        let ok = StatusCode::OK;
        let f = |pairs: &[(&'static str, &'static str)]| response_framing(ok, &headers(pairs));
        assert_eq!(f(&[("content-length", "12")]), Ok(Framing::Length(12)));
        assert_eq!(f(&[("content-length", "0")]), Ok(Framing::Empty));
        assert_eq!(f(&[("content-length", "7, 7")]), Ok(Framing::Length(7)));
        assert!(f(&[("content-length", "7"), ("content-length", "8")]).is_err());
        assert!(f(&[("content-length", "-1")]).is_err());
        assert!(f(&[("content-length", "")]).is_err());
        assert!(f(&[("content-length", "99999999999999999999999")]).is_err());
        assert_eq!(f(&[("transfer-encoding", "chunked")]), Ok(Framing::Chunked));
        // Transfer-Encoding wins over Content-Length.
        assert_eq!(
            f(&[("transfer-encoding", "chunked"), ("content-length", "3")]),
            Ok(Framing::Chunked)
        );
        assert_eq!(f(&[("transfer-encoding", "gzip")]), Ok(Framing::UntilClose));
        assert_eq!(f(&[]), Ok(Framing::UntilClose));
        let none = headers(&[("content-length", "5")]);
        assert_eq!(
            response_framing(StatusCode::NO_CONTENT, &none),
            Ok(Framing::Empty)
        );
    }

    #[test]
    fn a_sized_body_ends_at_its_length_whatever_the_reads() {
        let mut end = BodyEnd::new(Framing::Length(5));
        assert_eq!(end.feed(b"ab"), Ok(2));
        assert!(!end.is_done());
        assert_eq!(end.feed(b"cdeXYZ"), Ok(3));
        assert!(end.is_done());
        assert_eq!(end.feed(b"more"), Ok(0));
    }

    #[test]
    fn a_chunked_body_ends_after_its_trailer_at_every_split() {
        let body: &[u8] = b"4\r\nevt\n\r\n10;ext=1\r\ndata: 0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        for a in 0..=body.len() {
            for b in a..=body.len() {
                let mut end = BodyEnd::new(Framing::Chunked);
                let mut used = 0;
                for part in [&body[..a], &body[a..b], &body[b..]] {
                    used += end.feed(part).expect("well formed");
                }
                assert_eq!(used, body.len(), "split {a}/{b}");
                assert!(end.is_done(), "split {a}/{b}");
            }
        }
        // Bytes after the last chunk are not the body's.
        let mut end = BodyEnd::new(Framing::Chunked);
        let mut with_extra = body.to_vec();
        with_extra.extend_from_slice(b"HTTP/1.1 200");
        assert_eq!(end.feed(&with_extra), Ok(body.len()));
        assert!(end.is_done());
    }

    #[test]
    fn a_malformed_chunked_body_is_an_error() {
        // Bare LFs too: the client's parser would find another end.
        for raw in [
            &b"zz\r\n"[..],
            b"3\nabc\r\n",
            b"3\r\nabc\n",
            b"3;x=1\nabc\r\n",
            b"3\rXabc",
            b"0\r\nX-T: 1\n\r\n",
            b"0\r\n\n",
        ] {
            let mut end = BodyEnd::new(Framing::Chunked);
            assert!(end.feed(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    /// Whatever an upstream sends, in whatever reads: no panic, never more
    /// bytes used than read, nothing used once the body is done.
    #[test]
    fn garbage_in_any_split_is_followed_without_panicking() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const ALPHABET: &[u8] = b"0123456789abcdefABCDEF\r\n;= \tzx";
        for _ in 0..2_000 {
            let len = (next() % 64) as usize;
            let raw: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            for framing in [Framing::Chunked, Framing::Length(next() % 40)] {
                let mut end = BodyEnd::new(framing);
                let mut rest = &raw[..];
                while !rest.is_empty() {
                    let take = 1 + (next() as usize % rest.len());
                    let (part, after) = rest.split_at(take);
                    match end.feed(part) {
                        Ok(used) => {
                            assert!(used <= part.len());
                            if end.is_done() {
                                assert_eq!(end.feed(after), Ok(0));
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                    rest = after;
                }
            }
        }
    }

    #[test]
    fn a_close_delimited_body_never_ends_by_itself() {
        let mut end = BodyEnd::new(Framing::UntilClose);
        assert_eq!(end.feed(b"anything"), Ok(8));
        assert!(!end.is_done());
        assert!(end.until_close());
        assert!(BodyEnd::new(Framing::Empty).is_done());
    }
}
