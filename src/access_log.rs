//! The access log: one line per request on the `log` target `access`, as
//! `key=value` text or one JSON object, and the request id it carries.
//! Formatting is a pure function of an [`AccessRecord`]; every value a
//! client controls is escaped, so no path, user name or request id can end
//! a line or forge a field. Nothing secret is an input: the session id is
//! reduced to a hash prefix, the path loses its query string.

use crate::config::LogFormat;
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `log` target of access lines, for `RUST_LOG=access=off` and the like.
pub const TARGET: &str = "access";

/// Longest `X-Request-Id` taken from a trusted proxy.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Hex digits of the session id's SHA-256 in the log: enough to follow one
/// session through the log, far too few to be the token.
const SESSION_HASH_HEX: usize = 12;

/// The format of access lines; `None`: `ACCESS_LOG=false`. Process-wide,
/// like the logger it writes through, set once at start-up.
static CONFIGURED: std::sync::OnceLock<Option<LogFormat>> = std::sync::OnceLock::new();

pub fn configure(settings: crate::config::LogSettings) {
    let _ = CONFIGURED.set(settings.access_log.then_some(settings.format));
}

/// The format to write access lines in, if they are on and `RUST_LOG`
/// lets `access` at `info` through.
pub fn enabled() -> Option<LogFormat> {
    let format = (*CONFIGURED.get()?)?;
    log::log_enabled!(target: TARGET, log::Level::Info).then_some(format)
}

/// Writes a finished access line (from [`format`]): appended to the log
/// buffer, whose thread writes it to stdout (see `log_writer`), so the
/// request never waits for stdout. Without that buffer (a library user
/// that did not install it), through the `log` crate like any line.
pub fn emit(mut line: String) {
    match crate::log_writer::global() {
        Some(writer) => {
            line.push('\n');
            writer.append(line.as_bytes());
        }
        None => log::info!(target: TARGET, "{line}"),
    }
}

/// What one access line says.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    pub time: SystemTime,
    pub method: &'a str,
    /// The request path without its query string.
    pub path: &'a str,
    pub server: Option<&'a str>,
    pub backend: Option<std::net::SocketAddr>,
    pub status: u16,
    pub duration: Duration,
    /// Response body bytes sent to the client.
    pub bytes: usize,
    pub user: Option<&'a str>,
    /// `jwt`, `proxy`, `anonymous`, or `none` when no identity was decided.
    pub identity_source: &'a str,
    /// The client's `Mcp-Session-Id`, hashed when written.
    pub session: Option<&'a [u8]>,
    pub request_id: &'a str,
}

/// A request id as a trusted proxy may set it: 1 to 128 visible ASCII.
pub fn is_sane_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.iter().all(u8::is_ascii_graphic)
}

/// A fresh request id: 128 pseudo-random bits as 32 hex digits, built on
/// the stack. Ids correlate log lines, they guard nothing: a per-thread
/// generator seeded once from the OS replaces a `getrandom` call per
/// request, which the benchmark showed on every request.
pub fn new_request_id() -> [u8; 32] {
    let bits = next_id_bits();
    let mut out = [0u8; 32];
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, pair) in out.chunks_exact_mut(2).enumerate() {
        let byte = (bits >> (120 - 8 * i)) as u8;
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
    out
}

/// SplitMix64 twice per id, its state seeded per thread from the OS (or
/// the clock if that fails) and told apart by thread by the seed.
fn next_id_bits() -> u128 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<Option<u64>> = const { Cell::new(None) };
    }
    fn split_mix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    STATE.with(|cell| {
        let mut state = cell.get().unwrap_or_else(|| {
            let mut seed = [0u8; 8];
            if getrandom::fill(&mut seed).is_err() {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                seed = (nanos as u64).to_be_bytes();
            }
            u64::from_be_bytes(seed)
        });
        let high = split_mix(&mut state);
        let low = split_mix(&mut state);
        cell.set(Some(state));
        (u128::from(high) << 64) | u128::from(low)
    })
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// `n` in decimal, at least `width` digits: the access line is formatted on
/// every request, and `write!` costs several times this.
fn push_decimal(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n > 0 || digits.len() - i < width.max(1) {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    for &d in &digits[i..] {
        out.push(d as char);
    }
}

/// `SocketAddr`'s `Display` text. An IPv4 backend (nearly every one) is
/// written digit by digit: through `fmt` it was a quarter of the line's
/// cost (~1,300 instructions per request).
fn push_socket_addr(out: &mut String, addr: std::net::SocketAddr) {
    match addr {
        std::net::SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u64::from(octet), 1);
            }
            out.push(':');
            push_decimal(out, u64::from(v4.port()), 1);
        }
        std::net::SocketAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
}

/// Milliseconds with three decimals, from the duration's microseconds.
fn push_millis(out: &mut String, d: Duration) {
    let micros = d.as_micros().min(u128::from(u64::MAX)) as u64;
    push_decimal(out, micros / 1000, 1);
    out.push('.');
    push_decimal(out, micros % 1000, 3);
}

/// The first hex digits of the SHA-256 of a session id.
pub fn session_hash(session: &[u8]) -> String {
    let digest = Sha256::digest(session);
    let mut out = hex(&digest[..SESSION_HASH_HEX / 2]);
    out.truncate(SESSION_HASH_HEX);
    out
}

/// The line, without its newline.
pub fn format(record: &AccessRecord, format: LogFormat) -> String {
    let mut out = String::with_capacity(256);
    match format {
        LogFormat::Text => format_text(record, &mut out),
        LogFormat::Json => format_json(record, &mut out),
    }
    out
}

fn format_text(r: &AccessRecord, out: &mut String) {
    let session = r.session.map(session_hash);
    out.push_str("time=");
    rfc3339(r.time, out);
    for (key, value) in [
        ("method", Some(r.method)),
        ("path", Some(r.path)),
        ("server", r.server),
    ] {
        text_field(out, key, value);
    }
    match r.backend {
        Some(b) => {
            out.push_str(" backend=");
            push_socket_addr(out, b);
        }
        None => out.push_str(" backend=-"),
    }
    out.push_str(" status=");
    push_decimal(out, u64::from(r.status), 1);
    out.push_str(" duration_ms=");
    push_millis(out, r.duration);
    out.push_str(" bytes=");
    push_decimal(out, r.bytes as u64, 1);
    text_field(out, "user", r.user);
    text_field(out, "identity_source", Some(r.identity_source));
    text_field(out, "session", session.as_deref());
    text_field(out, "request_id", Some(r.request_id));
}

/// ` key=value`; a value with anything but plain visible ASCII is quoted
/// and escaped as a JSON string; a missing one is `-`.
fn text_field(out: &mut String, key: &str, value: Option<&str>) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    match value {
        None => out.push('-'),
        Some(v)
            if !v.is_empty()
                && v != "-"
                && v.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' && b != b'=') =>
        {
            out.push_str(v)
        }
        Some(v) => json_string(out, v),
    }
}

fn format_json(r: &AccessRecord, out: &mut String) {
    let session = r.session.map(session_hash);
    out.push_str("{\"time\":\"");
    rfc3339(r.time, out);
    out.push('"');
    json_field(out, "method", Some(r.method));
    json_field(out, "path", Some(r.path));
    json_field(out, "server", r.server);
    match r.backend {
        Some(b) => {
            out.push_str(",\"backend\":\"");
            push_socket_addr(out, b);
            out.push('"');
        }
        None => out.push_str(",\"backend\":null"),
    }
    out.push_str(",\"status\":");
    push_decimal(out, u64::from(r.status), 1);
    out.push_str(",\"duration_ms\":");
    push_millis(out, r.duration);
    out.push_str(",\"bytes\":");
    push_decimal(out, r.bytes as u64, 1);
    json_field(out, "user", r.user);
    json_field(out, "identity_source", Some(r.identity_source));
    json_field(out, "session", session.as_deref());
    json_field(out, "request_id", Some(r.request_id));
    out.push('}');
}

fn json_field(out: &mut String, key: &str, value: Option<&str>) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
    match value {
        None => out.push_str("null"),
        Some(v) => json_string(out, v),
    }
}

/// A JSON string literal. Non-ASCII is escaped too, so the line is ASCII
/// whatever the client sent and no terminal or log shipper reinterprets it.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Any other log line, with its newline: `time LEVEL target: message` with
/// control characters blanked (a message may quote client input), or one
/// JSON object with `time`, `level`, `target`, `message`.
pub fn format_message(
    time: SystemTime,
    level: &str,
    target: &str,
    message: &str,
    format: LogFormat,
) -> String {
    let mut line = String::with_capacity(64 + message.len());
    match format {
        LogFormat::Text => {
            rfc3339(time, &mut line);
            let _ = write!(line, " {level} {target}: ");
            line.extend(
                message
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c }),
            );
        }
        LogFormat::Json => {
            line.push_str("{\"time\":\"");
            rfc3339(time, &mut line);
            line.push_str("\",\"level\":");
            json_string(&mut line, level);
            line.push_str(",\"target\":");
            json_string(&mut line, target);
            line.push_str(",\"message\":");
            json_string(&mut line, message);
            line.push('}');
        }
    }
    line.push('\n');
    line
}

/// `2026-11-29T01:02:03.456Z`.
pub fn rfc3339(time: SystemTime, out: &mut String) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    push_decimal(out, y.max(0) as u64, 4);
    out.push('-');
    push_decimal(out, u64::from(m), 2);
    out.push('-');
    push_decimal(out, u64::from(d), 2);
    out.push('T');
    push_decimal(out, rest / 3600, 2);
    out.push(':');
    push_decimal(out, rest / 60 % 60, 2);
    out.push(':');
    push_decimal(out, rest % 60, 2);
    out.push('.');
    push_decimal(out, u64::from(since.subsec_millis()), 3);
    out.push('Z');
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so no date crate is needed for a timestamp.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn socket_addresses_read_as_their_display_text() {
        for text in [
            "127.0.0.1:9000",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.0.12.7:80",
            "[::1]:4444",
        ] {
            let addr: std::net::SocketAddr = text.parse().unwrap();
            let mut out = String::new();
            super::push_socket_addr(&mut out, addr);
            assert_eq!(out, addr.to_string());
        }
    }

    use super::*;

    fn record<'a>(path: &'a str, user: Option<&'a str>) -> AccessRecord<'a> {
        AccessRecord {
            time: UNIX_EPOCH + Duration::from_millis(1_764_378_123_456),
            method: "POST",
            path,
            server: Some("demo"),
            backend: Some("127.0.0.1:9000".parse().unwrap()),
            status: 200,
            duration: Duration::from_micros(1500),
            bytes: 42,
            user,
            identity_source: "proxy",
            session: Some(b"secret-session-token"),
            request_id: "abc-123",
        }
    }

    #[test]
    fn text_line_has_every_field() {
        let line = format(&record("/servers/demo/mcp", Some("alice")), LogFormat::Text);
        assert_eq!(
            line,
            format!(
                "time=2025-11-29T01:02:03.456Z method=POST path=/servers/demo/mcp server=demo \
                 backend=127.0.0.1:9000 status=200 duration_ms=1.500 bytes=42 user=alice \
                 identity_source=proxy session={} request_id=abc-123",
                session_hash(b"secret-session-token")
            )
        );
        assert!(!line.contains("secret-session-token"));
    }

    #[test]
    fn json_line_is_one_object_with_the_named_fields() {
        let line = format(&record("/servers/demo/mcp", None), LogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for key in [
            "time",
            "method",
            "path",
            "server",
            "backend",
            "status",
            "duration_ms",
            "bytes",
            "user",
            "identity_source",
            "session",
            "request_id",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {line}");
        }
        assert_eq!(v["status"], 200);
        assert_eq!(v["user"], serde_json::Value::Null);
        assert_eq!(v["session"].as_str().unwrap().len(), SESSION_HASH_HEX);
    }

    #[test]
    fn user_controlled_values_cannot_forge_a_line_or_a_field() {
        let evil_user = "bob\" status=500 user=admin\nmethod=GET";
        let evil_path = "/a b\r\n{\"status\":1}";
        let text = format(&record(evil_path, Some(evil_user)), LogFormat::Text);
        assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
        assert_eq!(unquoted_spaces(&text), 11, "twelve fields: {text}");
        assert!(text.contains(r#"user="bob\" status=500 user=admin\nmethod=GET""#));
        let json = format(&record(evil_path, Some(evil_user)), LogFormat::Json);
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["user"], evil_user);
        assert_eq!(v["path"], evil_path);
        assert_eq!(v["status"], 200);
        // Non-ASCII is escaped, and still decodes to what was sent.
        let json = format(&record("/", Some("josé\u{2028}")), LogFormat::Json);
        assert!(json.is_ascii());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["user"], "josé\u{2028}");
        let text = format(&record("/", Some("-")), LogFormat::Text);
        assert!(
            text.contains(r#" user="-""#),
            "a user named - is not a missing one"
        );
    }

    /// Field separators of a text line: spaces outside quoted values.
    fn unquoted_spaces(line: &str) -> usize {
        let (mut quoted, mut escaped, mut n) = (false, false, 0);
        for c in line.chars() {
            match (quoted, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (_, false, '"') => quoted = !quoted,
                (false, _, ' ') => n += 1,
                _ => {}
            }
        }
        n
    }

    #[test]
    fn request_ids() {
        assert!(is_sane_request_id(b"abc-123_x.y"));
        assert!(is_sane_request_id(&[b'a'; MAX_REQUEST_ID_LEN]));
        assert!(!is_sane_request_id(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
        assert!(!is_sane_request_id(b""));
        assert!(!is_sane_request_id(b"a b"));
        assert!(!is_sane_request_id(b"a\nb"));
        let (a, b) = (new_request_id(), new_request_id());
        assert!(a.iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a, b);
        // Another thread does not repeat this one's ids.
        let other = std::thread::spawn(new_request_id).join().unwrap();
        assert_ne!(other, a);
        assert_ne!(other, b);
    }

    #[test]
    fn other_lines_stay_one_line() {
        let text = format_message(
            UNIX_EPOCH,
            "WARN",
            "mcp_gateway",
            "a\nb\u{85}c",
            LogFormat::Text,
        );
        assert_eq!(text, "1970-01-01T00:00:00.000Z WARN mcp_gateway: a b c\n");
        let json = format_message(UNIX_EPOCH, "INFO", "t", "say \"hi\"\n", LogFormat::Json);
        assert_eq!(json.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["message"], "say \"hi\"\n");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn numbers() {
        let mut s = String::new();
        push_decimal(&mut s, 0, 1);
        s.push(' ');
        push_decimal(&mut s, 7, 3);
        s.push(' ');
        push_decimal(&mut s, 18_446_744_073_709_551_615, 1);
        s.push(' ');
        push_millis(&mut s, Duration::from_micros(12_034_005));
        s.push(' ');
        push_millis(&mut s, Duration::ZERO);
        assert_eq!(s, "0 007 18446744073709551615 12034.005 0.000");
        assert_eq!(hex(&[0x00, 0x9f, 0xff]), "009fff");
    }

    #[test]
    fn dates() {
        let mut s = String::new();
        rfc3339(UNIX_EPOCH, &mut s);
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
        s.clear();
        // 2000-02-29, a leap day in a century leap year.
        rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400), &mut s);
        assert_eq!(s, "2000-02-29T00:00:00.000Z");
    }
}
