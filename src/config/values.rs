//! Parsers for single configuration values. Each returns a message that
//! completes the sentence "VARIABLE: ..." so start-up errors read as one line.

use http::HeaderName;
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// A secret that never prints: `Debug` and `Display` show a placeholder, so
/// a `{:?}` of `Settings` in a log line cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Booleans as pydantic (the reference implementation) accepts them.
pub fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Ok(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Ok(false),
        _ => Err(format!("expected a boolean (true or false), got {raw:?}")),
    }
}

pub fn parse_header_name(raw: &str) -> Result<HeaderName, String> {
    let trimmed = raw.trim();
    if trimmed.contains('_') {
        // Proxies disagree on whether `_` equals `-`; a name with `_` is a
        // spoofing vector, never a legitimate identity or passthrough header.
        return Err(format!("header name {trimmed:?} contains '_'"));
    }
    HeaderName::from_bytes(trimmed.as_bytes())
        .map_err(|_| format!("{trimmed:?} is not a valid HTTP header name"))
}

/// A JSON array of header names, e.g. `["X-Tenant-Id", "X-Request-Id"]`.
pub fn parse_header_list(raw: &str) -> Result<Vec<HeaderName>, String> {
    let names: Vec<String> = serde_json::from_str(raw)
        .map_err(|e| format!("expected a JSON array of header names: {e}"))?;
    names.iter().map(|n| parse_header_name(n)).collect()
}

/// Comma- or whitespace-separated CIDRs; a bare address means a single host.
pub fn parse_cidr_list(raw: &str) -> Result<Vec<IpNet>, String> {
    raw.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not a CIDR (e.g. 10.0.0.0/8) or an IP address"))
        })
        .collect()
}

pub fn parse_u64(raw: &str) -> Result<u64, String> {
    raw.trim()
        .parse()
        .map_err(|_| format!("expected a non-negative integer, got {raw:?}"))
}

/// Seconds, fractions allowed (`0.5`), so tests can run health checks fast.
pub fn parse_seconds(raw: &str) -> Result<Duration, String> {
    let secs: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {raw:?}"))?;
    if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("expected a number of seconds, got {raw:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_follow_pydantic() {
        assert_eq!(parse_bool("TRUE"), Ok(true));
        assert_eq!(parse_bool(" off "), Ok(false));
        assert!(parse_bool("maybe").unwrap_err().contains("boolean"));
    }

    #[test]
    fn header_lists_are_json() {
        let names = parse_header_list(r#"["X-Tenant-Id", "x-groups"]"#).unwrap();
        assert_eq!(names[0].as_str(), "x-tenant-id");
        assert!(parse_header_list("X-Tenant-Id").is_err());
        assert!(parse_header_list(r#"["bad header"]"#).is_err());
        assert!(parse_header_list(r#"["X_Tenant"]"#).is_err());
    }

    #[test]
    fn cidrs_and_hosts() {
        let nets = parse_cidr_list("10.0.0.0/8, 127.0.0.1 ::1").unwrap();
        assert_eq!(nets.len(), 3);
        assert!(nets[1].contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
        assert!(parse_cidr_list("10.0.0.0/33").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}
