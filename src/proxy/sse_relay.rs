//! The legacy `/sse` stream on the lean path (see `relay`): its `endpoint`
//! event is rewritten (`legacy_sse::emit`) as the upstream's bytes arrive;
//! once it has passed, the relay copies the rest byte for byte.
//!
//! The relay keeps the upstream's framing, but the rewritten event has
//! another length than the upstream's. A close-delimited body needs nothing
//! more. A chunked one is decoded while the scan lasts and what the scan
//! emits goes out as chunks of the gateway's own; after it the decoder runs
//! on to the next point where the raw bytes can follow (the start of a
//! chunk-size line, or inside a chunk's data behind a chunk-size line for
//! the rest of it), and the relay passes the raw bytes from there.

use super::body_end::{BodyEnd, Framing};
use super::chunked::Dechunk;
use crate::legacy_sse::{self, EndpointScanner};
use bytes::Bytes;

/// What to write to the client after one read.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write these and feed the next read here too.
    More(Vec<u8>),
    /// Write these; every later read passes as it is.
    Passing(Vec<u8>),
}

pub struct EndpointRelay {
    scanner: EndpointScanner,
    /// The decoder of a chunked body; `None` for a close-delimited one.
    chunks: Option<Dechunk>,
}

impl EndpointRelay {
    pub fn new(chunked: bool) -> Self {
        EndpointRelay {
            scanner: EndpointScanner::default(),
            chunks: chunked.then(Dechunk::default),
        }
    }

    /// Feeds one read of the upstream's body (`None`: the upstream closed);
    /// `event` makes the replacement event. `Err`: why the stream must end
    /// (no endpoint event, or none the gateway can rewrite).
    pub fn feed(
        &mut self,
        raw: Option<&[u8]>,
        event: impl FnOnce(&str) -> Result<Bytes, String>,
    ) -> Result<Step, String> {
        let Some(chunks) = self.chunks.as_mut() else {
            let out = legacy_sse::emit(self.scanner.feed(raw), event)?;
            return Ok(if self.scanner.is_done() {
                Step::Passing(out.to_vec())
            } else {
                Step::More(out.to_vec())
            });
        };
        let Some(raw) = raw else {
            if self.scanner.is_done() {
                return Ok(Step::Passing(Vec::new()));
            }
            legacy_sse::emit(self.scanner.feed(None), event)?;
            return Err("the stream ended before its endpoint event".into());
        };
        let mut out = Vec::new();
        let mut data = Vec::new();
        let mut rest: &[u8] = &[];
        if self.scanner.is_done() {
            let used = chunks.decode(raw, Some(&mut data), true)?;
            push_chunk(&mut out, &data);
            rest = &raw[used..];
        } else {
            chunks.decode(raw, Some(&mut data), false)?;
            let mut emitted = legacy_sse::emit(self.scanner.feed(Some(&data)), event)?;
            if chunks.ended() && !self.scanner.is_done() {
                emitted = legacy_sse::emit(self.scanner.feed(None), |_| {
                    Err("the stream ended".to_string())
                })?;
            }
            push_chunk(&mut out, &emitted);
        }
        if !self.scanner.is_done() {
            return Ok(Step::More(out));
        }
        if chunks.ended() {
            out.extend_from_slice(b"0\r\n\r\n");
            return Ok(Step::Passing(out));
        }
        match chunks.boundary() {
            Some(left) => {
                if left > 0 {
                    out.extend_from_slice(format!("{left:x}\r\n").as_bytes());
                }
                out.extend_from_slice(rest);
                // The framing is followed on (see `into_end`).
                chunks.decode(rest, None, false)?;
                Ok(Step::Passing(out))
            }
            None => Ok(Step::More(out)),
        }
    }
}

impl EndpointRelay {
    /// Where the body ends, followed from the point where the bytes pass as
    /// they came (after `Step::Passing`).
    pub fn into_end(self) -> BodyEnd {
        match self.chunks {
            Some(chunks) => BodyEnd::following(chunks),
            None => BodyEnd::new(Framing::UntilClose),
        }
    }
}

/// Appends `data` as one chunk; nothing for no data (an empty chunk would
/// end the body).
fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if !data.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINT: &[u8] = b"event: endpoint\ndata: /messages?s=1\n\n";
    const GATEWAY: &str = "event: endpoint\ndata: /gw?t=x\n\n";

    fn event(upstream: &str) -> Result<Bytes, String> {
        assert_eq!(upstream, "/messages?s=1");
        Ok(Bytes::from_static(GATEWAY.as_bytes()))
    }

    fn chunk(data: &[u8]) -> Vec<u8> {
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Decodes a whole chunked body: its data, and whether it ended.
    fn decode_all(raw: &[u8]) -> (Vec<u8>, bool) {
        let mut d = Dechunk::default();
        let mut data = Vec::new();
        let used = d.decode(raw, Some(&mut data), false).expect("well formed");
        assert_eq!(used, raw.len());
        (data, d.ended())
    }

    /// Feeds `reads` and gathers what goes to the client, raw once passing.
    fn relay(chunked: bool, reads: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut r = EndpointRelay::new(chunked);
        let mut out = Vec::new();
        let mut passing = false;
        for read in reads {
            if passing {
                out.extend_from_slice(read);
                continue;
            }
            match r.feed(Some(read), event).expect("rewritten") {
                Step::More(b) => out.extend(b),
                Step::Passing(b) => {
                    out.extend(b);
                    passing = true;
                }
            }
        }
        (out, passing)
    }

    #[test]
    fn a_close_delimited_stream_is_rewritten_then_passed() {
        let (out, passing) = relay(
            false,
            &[
                b": hi\n\nevent: endp",
                b"oint\ndata: /messages?s=1\n\nevent: m",
            ],
        );
        assert!(passing);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(": hi\n\n{GATEWAY}event: m")
        );
    }

    #[test]
    fn a_chunked_stream_is_rechunked_until_a_boundary_then_passed_raw() {
        // The endpoint event split across chunks and reads, and a read that
        // ends inside the next chunk's data: the rest of that chunk goes
        // behind a size line of its own, then everything passes raw.
        let mut upstream = chunk(b": hi\n\nevent: endp");
        upstream.extend(chunk(b"oint\ndata: /messages?s=1\n\n"));
        upstream.extend(chunk(b"event: message\ndata: 1\n\n"));
        upstream.extend(chunk(b"event: message\ndata: 2\n\n"));
        upstream.extend_from_slice(b"0\r\n\r\n");
        for cut in 1..upstream.len() {
            for second in [cut, (cut + 7).min(upstream.len())] {
                let (a, rest) = upstream.split_at(cut);
                let (b, c) = rest.split_at(second - cut);
                let (out, passing) = relay(true, &[a, b, c]);
                let (data, ended) = decode_all(&out);
                assert!(
                    ended,
                    "cut {cut}/{second}: {}",
                    String::from_utf8_lossy(&out)
                );
                assert_eq!(
                    String::from_utf8(data).unwrap(),
                    format!(
                        ": hi\n\n{GATEWAY}event: message\ndata: 1\n\nevent: message\ndata: 2\n\n"
                    ),
                    "cut {cut}/{second}"
                );
                assert!(passing, "cut {cut}/{second}");
            }
        }
    }

    #[test]
    fn after_the_endpoint_the_relay_passes_raw_bytes_from_the_next_boundary() {
        // The read ends inside the next chunk's data: what was decoded of
        // it goes out with the rewritten event, then a size line for the
        // rest of that chunk.
        let mut first = chunk(ENDPOINT);
        first.extend_from_slice(b"18\r\ne");
        let mut r = EndpointRelay::new(true);
        let mut expected = chunk(format!("{GATEWAY}e").as_bytes());
        expected.extend_from_slice(b"17\r\n");
        assert_eq!(r.feed(Some(&first), event), Ok(Step::Passing(expected)));
        // Ending on a chunk boundary: nothing more to add.
        let mut r = EndpointRelay::new(true);
        let expected = chunk(GATEWAY.as_bytes());
        assert_eq!(
            r.feed(Some(&chunk(ENDPOINT)), event),
            Ok(Step::Passing(expected))
        );
    }

    #[test]
    fn streams_without_an_endpoint_event_end() {
        let mut r = EndpointRelay::new(true);
        let mut body = chunk(b"event: message\ndata: 1\n\n");
        body.extend_from_slice(b"0\r\n\r\n");
        assert!(r.feed(Some(&body), event).is_err(), "ended without one");
        let mut r = EndpointRelay::new(true);
        assert_eq!(
            r.feed(Some(&chunk(b": hi\n\n")), event),
            Ok(Step::More(Vec::new()))
        );
        assert!(r.feed(None, event).is_err(), "closed without one");
        let mut r = EndpointRelay::new(false);
        let big = vec![b'a'; legacy_sse::MAX_SCAN + 1];
        assert!(
            r.feed(Some(&big), event).is_err(),
            "none in the first bytes"
        );
        let mut r = EndpointRelay::new(false);
        let refused = r.feed(Some(ENDPOINT), |_| Err("cannot seal".into()));
        assert_eq!(refused, Err("cannot seal".to_string()));
    }

    #[test]
    fn malformed_chunking_is_refused() {
        for raw in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"1\r\naXY",
            b"ffffffffffffffff1\r\n",
        ] {
            let mut d = Dechunk::default();
            assert!(d.decode(raw, None, false).is_err(), "{raw:?}");
        }
        // Extensions and trailers are read past.
        let (data, ended) = decode_all(b"3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n");
        assert_eq!(data, b"abc");
        assert!(ended);
    }
}
