//! A chunked body's framing (RFC 9112 §7.1), followed byte by byte: the
//! `/sse` rewrite decodes with it, the POST relay only finds where the body
//! ends, so that both connections can be kept for the next request.
//!
//! The bytes pass to the client as they came, so the client must find the
//! same end: lines end in CRLF only (a bare LF is refused, as `httparse`
//! and Pingora refuse it), anything else is a malformed body (502).

/// Where the decoder is in a chunked body (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk-size line's hex digits (`digits` read so far).
    Size {
        digits: u8,
        value: u64,
    },
    /// After the digits: extensions up to the line's CR.
    SizeLine {
        value: u64,
    },
    /// The LF that ends a chunk-size line.
    SizeLf {
        value: u64,
    },
    /// Bytes of chunk data still to come (never 0).
    Data(u64),
    /// The CRLF after a chunk's data.
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines until an empty one.
    Trailer {
        line_len: usize,
    },
    /// The LF that ends a trailer line (or the body, after an empty one).
    TrailerLf {
        line_len: usize,
    },
    Ended,
}

#[derive(Debug)]
pub struct Dechunk {
    state: State,
}

impl Default for Dechunk {
    fn default() -> Self {
        Dechunk {
            state: Self::SIZE_START,
        }
    }
}

/// More hex digits than this is no chunk size a stream sends.
const MAX_SIZE_DIGITS: u8 = 15;

impl Dechunk {
    const SIZE_START: State = State::Size {
        digits: 0,
        value: 0,
    };

    /// The state after a chunk-size line: its data, or the trailer.
    fn after_size(size: u64) -> State {
        if size == 0 {
            State::Trailer { line_len: 0 }
        } else {
            State::Data(size)
        }
    }

    pub fn ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Where raw bytes may follow what was decoded: `Some(0)` at the start
    /// of a chunk-size line, `Some(n)` with `n` bytes of a chunk's data to
    /// come (behind a size line for them).
    pub fn boundary(&self) -> Option<u64> {
        match self.state {
            State::Size { digits: 0, .. } => Some(0),
            State::Data(left) => Some(left),
            _ => None,
        }
    }

    /// Decodes `raw` into `data` (or only follows the framing, without a
    /// sink), stopping at the end of the body, or with `stop` at the first
    /// boundary; returns the bytes consumed.
    pub fn decode(
        &mut self,
        raw: &[u8],
        mut data: Option<&mut Vec<u8>>,
        stop: bool,
    ) -> Result<usize, String> {
        let bad = |what: &str| Err(format!("malformed chunked body ({what})"));
        let mut i = 0;
        while i < raw.len() {
            if stop && self.boundary().is_some() {
                break;
            }
            let b = raw[i];
            self.state = match self.state {
                State::Data(left) => {
                    let n = left.min((raw.len() - i) as u64);
                    // `n` is at most `raw.len() - i`.
                    let end = i + n as usize;
                    if let Some(data) = data.as_mut() {
                        data.extend_from_slice(&raw[i..end]);
                    }
                    i = end;
                    self.state = if n == left {
                        State::DataCr
                    } else {
                        State::Data(left - n)
                    };
                    continue;
                }
                State::Ended => break,
                State::Size { digits, value } => match (b as char).to_digit(16) {
                    Some(d) if digits < MAX_SIZE_DIGITS => State::Size {
                        digits: digits + 1,
                        value: value * 16 + u64::from(d),
                    },
                    Some(_) => return bad("chunk size too large"),
                    None if digits == 0 => return bad("no chunk size"),
                    None if b == b'\r' => State::SizeLf { value },
                    None if matches!(b, b';' | b' ' | b'\t') => State::SizeLine { value },
                    None => return bad("chunk size"),
                },
                State::SizeLine { value } => match b {
                    b'\r' => State::SizeLf { value },
                    b'\n' => return bad("bare LF in a chunk-size line"),
                    _ => State::SizeLine { value },
                },
                State::SizeLf { value } => match b {
                    b'\n' => Self::after_size(value),
                    _ => return bad("CR without LF in a chunk-size line"),
                },
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    _ => return bad("no CRLF after chunk data"),
                },
                State::DataLf => match b {
                    b'\n' => Self::SIZE_START,
                    _ => return bad("no CRLF after chunk data"),
                },
                State::Trailer { line_len } => match b {
                    b'\r' => State::TrailerLf { line_len },
                    b'\n' => return bad("bare LF in the trailer"),
                    _ => State::Trailer {
                        line_len: line_len.saturating_add(1),
                    },
                },
                State::TrailerLf { line_len } => match b {
                    b'\n' if line_len == 0 => State::Ended,
                    b'\n' => State::Trailer { line_len: 0 },
                    _ => return bad("CR without LF in the trailer"),
                },
            };
            i += 1;
        }
        Ok(i)
    }
}
