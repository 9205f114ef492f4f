//! Reading a server's answer to one request (`wire`): a JSON body or the
//! events of a stream, in any split, found by the request's id among the
//! server's notifications and its own requests; bounded in size.

use serde::Deserialize;
use serde_json::value::RawValue;

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

/// The answer to request `id` in a response body (JSON, or the events of
/// a stream), and the server's requests met before it.
#[derive(Debug, Default)]
pub struct Read {
    pub answer: Option<Result<Box<RawValue>, RpcError>>,
    /// `(id, method)` of each server request, to be answered.
    pub requests: Vec<(Box<RawValue>, String)>,
}

/// Reads one JSON-RPC message (or batch) for `read`.
pub(super) fn scan_message(data: &str, id: &str, read: &mut Read) -> Result<(), String> {
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

/// The largest message (an event's data, or a JSON body) read from a
/// server: a tool's answer may carry an image or a file, not without end.
pub const MAX_MESSAGE: usize = 32 << 20;

/// Feeds an event stream's bytes (any split); each complete event's data
/// is scanned as a message. Lines end in CR, LF or CRLF (the SSE grammar).
#[derive(Default)]
pub struct EventScanner {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The last byte fed was a CR: an LF first in the next bytes is its pair.
    after_cr: bool,
}

impl EventScanner {
    pub fn feed(&mut self, bytes: &[u8], id: &str, read: &mut Read) -> Result<(), String> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if std::mem::take(&mut self.after_cr) && rest[0] == b'\n' {
                rest = &rest[1..];
                continue;
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.line.extend_from_slice(rest);
                    rest = &[];
                }
                Some(i) => {
                    self.line.extend_from_slice(&rest[..i]);
                    self.after_cr = rest[i] == b'\r';
                    rest = &rest[i + 1..];
                    self.end_line(id, read)?;
                }
            }
            if self.line.len() + self.data.len() > MAX_MESSAGE {
                return Err(format!("an event longer than {MAX_MESSAGE} bytes"));
            }
        }
        Ok(())
    }

    fn end_line(&mut self, id: &str, read: &mut Read) -> Result<(), String> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if std::mem::take(&mut self.has_data) {
                let data = std::mem::take(&mut self.data);
                let text = std::str::from_utf8(&data).map_err(|_| "event data not UTF-8")?;
                scan_message(text, id, read)?;
            }
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line[..], &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        Ok(())
    }
}

/// Whether a `tools/call` result has the shape clients expect (an object
/// with a `content` array), without building it.
pub(super) fn is_call_result(result: &RawValue) -> bool {
    #[derive(Deserialize)]
    struct Shape {
        #[allow(dead_code)]
        content: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Shape>(result.get()).is_ok()
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
        assert_eq!(read.requests[0].0.get(), r#""s1""#);
    }

    #[test]
    fn line_endings_of_every_kind_end_events_and_lines() {
        let message = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
        let streams = [
            format!("data: {message}\n\r\n"),
            format!("data: {message}\r\rdata\r\r"),
            ": comment\revent: message\rdata:{\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1,\"result\":{\"content\":[]}}\r\r".to_string(),
        ];
        for stream in streams {
            for cut in 0..stream.len() {
                let mut r = Read::default();
                let mut e = EventScanner::default();
                e.feed(&stream.as_bytes()[..cut], "1", &mut r).unwrap();
                e.feed(&stream.as_bytes()[cut..], "1", &mut r).unwrap();
                let want = Some(Ok(r#"{"content":[]}"#));
                assert_eq!(answer(&r), want, "{stream:?} cut at {cut}");
            }
        }
        let mut e = EventScanner::default();
        let big = vec![b'x'; MAX_MESSAGE + 1];
        assert!(e.feed(&big, "1", &mut Read::default()).is_err());
    }

    #[test]
    fn a_result_must_be_a_call_tool_result() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        let good = r#"{"content":[{"type":"text","text":"x"}],"isError":false}"#;
        assert!(is_call_result(&raw(good)));
        assert!(!is_call_result(&raw("42")));
        assert!(!is_call_result(&raw(r#"{"content":3}"#)));
        assert!(!is_call_result(&raw("null")));
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
}
