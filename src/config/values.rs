//! Parsers for single configuration values. Each returns a message that
//! completes the sentence "VARIABLE: ..." so start-up errors read as one line.

use super::CacheType;
use http::HeaderName;
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
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

/// A claim name: `sub`, `email`, or a namespaced one such as
/// `https://example.com/claims/user`.
pub fn parse_claim_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty()
        || name.len() > 256
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("{name:?} is not a claim name (e.g. sub or email)"));
    }
    Ok(name.to_string())
}

/// A header that carries the caller's identity: not one the gateway sets,
/// forwards as an MCP header, or treats as a credential (the client's value
/// would travel as sent, or clash with the gateway's).
pub fn parse_identity_header_name(raw: &str) -> Result<HeaderName, String> {
    let name = parse_header_name(raw)?;
    if crate::headers::is_reserved_name(&name) {
        return Err(format!(
            "{:?} is a header the gateway sets or forwards itself; choose a dedicated identity header such as X-Authenticated-User",
            raw.trim()
        ));
    }
    Ok(name)
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

pub fn parse_algorithm(raw: &str) -> Result<Algorithm, String> {
    match raw.to_ascii_uppercase().as_str() {
        "HS256" => Ok(Algorithm::HS256),
        "HS384" => Ok(Algorithm::HS384),
        "HS512" => Ok(Algorithm::HS512),
        _ => Err(format!(
            "{raw:?} is not supported (HS256, HS384 or HS512; RS/ES keys come with JWKS support)"
        )),
    }
}

pub fn parse_cache_type(raw: &str) -> Result<CacheType, String> {
    match raw.to_ascii_lowercase().as_str() {
        "memory" => Ok(CacheType::Memory),
        "redis" => Ok(CacheType::Redis),
        "database" => Ok(CacheType::Database),
        "none" => Ok(CacheType::None),
        _ => Err(format!(
            "{raw:?} is not one of memory, redis, database, none"
        )),
    }
}

pub fn parse_redis_url(raw: &str) -> Result<Secret, String> {
    if raw.starts_with("redis://") || raw.starts_with("rediss://") {
        Ok(Secret::new(raw))
    } else {
        Err("expected a redis:// or rediss:// URL".into())
    }
}

pub fn parse_log_level(raw: &str) -> Result<String, String> {
    let level = raw.to_ascii_lowercase();
    match level.as_str() {
        "error" | "warn" | "info" | "debug" | "trace" | "off" => Ok(level),
        "warning" => Ok("warn".into()),
        "critical" => Ok("error".into()),
        _ => Err(format!(
            "{raw:?} is not one of error, warn, info, debug, trace, off"
        )),
    }
}

/// Checked now because TLS set-up would otherwise fail on the first request.
pub fn parse_pem_file(raw: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(raw).map_err(|e| format!("cannot read {raw:?}: {e}"))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("{raw:?} holds no PEM certificate"));
    }
    Ok(raw.to_string())
}

/// A bearer token clients must be able to send as `Authorization: Bearer
/// <token>`: visible ASCII, no spaces.
pub fn parse_bearer_token(raw: &str) -> Result<Secret, String> {
    if raw.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(Secret::new(raw))
    } else {
        Err(
            "must be visible ASCII without spaces (it travels as `Authorization: Bearer <token>`)"
                .into(),
        )
    }
}

/// `ALLOWED_ORIGINS`: a JSON array (ContextForge's form) or a comma
/// separated list of `scheme://host[:port]`, or `*`. Each is normalised as
/// browsers serialise an origin (lower case, no default port, no path), so
/// a listed origin matches the `Origin` header byte for byte.
pub fn parse_origin_list(raw: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = if raw.trim_start().starts_with('[') {
        serde_json::from_str(raw).map_err(|e| format!("expected a JSON array of origins: {e}"))?
    } else {
        raw.split(',').map(|s| s.trim().to_string()).collect()
    };
    items
        .iter()
        .filter(|o| !o.trim().is_empty())
        .map(|o| parse_origin(o.trim()))
        .collect()
}

fn parse_origin(raw: &str) -> Result<String, String> {
    if raw == "*" {
        return Ok(raw.to_string());
    }
    let bad = || {
        format!("{raw:?} is not an origin like https://app.example.com or http://localhost:6274")
    };
    let uri: http::Uri = raw.parse().map_err(|_| bad())?;
    let scheme = uri
        .scheme_str()
        .map(str::to_ascii_lowercase)
        .ok_or_else(bad)?;
    let authority = uri.authority().ok_or_else(bad)?;
    let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if !matches!(scheme.as_str(), "http" | "https") || authority.as_str().contains('@') || !path_ok
    {
        return Err(bad());
    }
    let host = authority.host().to_ascii_lowercase();
    let default_port = if scheme == "https" { 443 } else { 80 };
    Ok(match authority.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

pub fn positive_seconds(raw: &str) -> Result<Duration, String> {
    parse_seconds(raw).and_then(|d| {
        if d.is_zero() {
            Err("must be greater than 0".into())
        } else {
            Ok(d)
        }
    })
}

/// The longest per-server `refresh_interval`: a catalog older than a day
/// is a configuration mistake, not a choice.
pub const MAX_REFRESH_INTERVAL_SECS: i64 = 86_400;

/// A server's `refresh_interval`, whole seconds from 1 to a day.
pub fn refresh_interval(secs: i64) -> Result<Duration, String> {
    if (1..=MAX_REFRESH_INTERVAL_SECS).contains(&secs) {
        Ok(Duration::from_secs(secs.unsigned_abs()))
    } else {
        Err(format!(
            "must be a whole number of seconds from 1 to {MAX_REFRESH_INTERVAL_SECS}, got {secs}"
        ))
    }
}

/// Under systemd's `RuntimeDirectory=` (`$RUNTIME_DIRECTORY`, private to
/// the service and not affected by `PrivateTmp=`), else in `/tmp`.
pub(super) fn default_upgrade_sock(runtime_directory: Option<&str>) -> PathBuf {
    // systemd joins several runtime directories with ':'; the first is ours.
    match runtime_directory.and_then(|d| d.split(':').next()) {
        Some(dir) if !dir.is_empty() => Path::new(dir).join("mcp-gateway-upgrade.sock"),
        _ => PathBuf::from("/tmp/mcp-gateway-upgrade.sock"),
    }
}

/// An absolute path short enough for `sun_path` (108 bytes with its NUL):
/// Pingora panics on a longer one at the moment of the upgrade.
pub(super) fn parse_upgrade_sock(raw: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(raw);
    if !path.is_absolute() {
        return Err(format!("{raw:?} is not an absolute path"));
    }
    if raw.len() > 100 {
        return Err(format!(
            "{} bytes is too long for a Unix socket path (at most 100)",
            raw.len()
        ));
    }
    Ok(path)
}

/// A tool name separator: visible, short, and never whitespace (a qualified
/// name travels in JSON-RPC, URLs and headers).
pub fn parse_tool_name_separator(raw: &str) -> Result<String, String> {
    if raw.is_empty() || raw.chars().count() > 8 {
        return Err("expected 1 to 8 characters".into());
    }
    if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err("may not contain whitespace, control characters or '/'".into());
    }
    Ok(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_refresh_interval_is_whole_seconds_up_to_a_day() {
        assert_eq!(refresh_interval(1), Ok(Duration::from_secs(1)));
        assert_eq!(refresh_interval(86_400), Ok(Duration::from_secs(86_400)));
        for bad in [0, -5, 86_401] {
            let e = refresh_interval(bad).unwrap_err();
            assert!(
                e.contains("from 1 to 86400") && e.contains(&bad.to_string()),
                "{e}"
            );
        }
    }

    #[test]
    fn the_yaml_files_refresh_interval_is_validated_with_its_field() {
        let yaml = |v: &str| {
            format!("servers:\n  - {{name: a, url: http://h/mcp, refresh_interval: {v}}}\n")
        };
        let env = |_: &str| None;
        let parsed = super::super::servers::parse_file_with_env(&yaml("30"), "g.yaml", &env)
            .map(|(s, _)| s)
            .expect("valid");
        assert_eq!(parsed[0].refresh_interval, Some(Duration::from_secs(30)));
        let e = super::super::servers::parse_file_with_env(&yaml("0"), "g.yaml", &env)
            .map(|(s, _)| s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("servers[0].refresh_interval"), "{e}");
        let e = super::super::servers::parse_file_with_env(&yaml("fast"), "g.yaml", &env)
            .map(|(s, _)| s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("refresh_interval"), "{e}");
    }

    #[test]
    fn the_upgrade_socket_goes_to_systemds_runtime_directory_when_there_is_one() {
        assert_eq!(
            default_upgrade_sock(Some("/run/mcp-gateway:/run/other")),
            Path::new("/run/mcp-gateway/mcp-gateway-upgrade.sock")
        );
        assert_eq!(
            default_upgrade_sock(None),
            Path::new("/tmp/mcp-gateway-upgrade.sock")
        );
        assert!(parse_upgrade_sock("/run/x.sock").is_ok());
        assert!(parse_upgrade_sock("x.sock").is_err());
        assert!(parse_upgrade_sock(&format!("/{}", "a".repeat(100))).is_err());
    }

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
    fn claim_names() {
        assert_eq!(parse_claim_name(" email ").unwrap(), "email");
        assert!(parse_claim_name("https://example.com/claims/user").is_ok());
        assert!(parse_claim_name("user name").is_err());
        assert!(parse_claim_name(&"c".repeat(257)).is_err());
    }

    #[test]
    fn cidrs_and_hosts() {
        let nets = parse_cidr_list("10.0.0.0/8, 127.0.0.1 ::1").unwrap();
        assert_eq!(nets.len(), 3);
        assert!(nets[1].contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
        assert!(parse_cidr_list("10.0.0.0/33").is_err());
    }

    #[test]
    fn bearer_tokens_are_header_safe() {
        assert!(parse_bearer_token("s3cr3t-Token_0123456789.~+/=").is_ok());
        assert!(parse_bearer_token("two words").is_err());
        assert!(parse_bearer_token("tab\there").is_err());
        assert!(parse_bearer_token("caf\u{e9}").is_err());
    }

    #[test]
    fn origins_are_json_or_comma_lists_normalised_as_browsers_send_them() {
        let want = vec![
            "http://localhost".to_string(),
            "https://app.example.com:8443".into(),
        ];
        assert_eq!(
            parse_origin_list(r#"["http://localhost:80/", "HTTPS://App.Example.com:8443"]"#),
            Ok(want.clone())
        );
        assert_eq!(
            parse_origin_list("http://localhost, https://app.example.com:8443"),
            Ok(want)
        );
        assert_eq!(
            parse_origin_list("https://a.example:443"),
            Ok(vec!["https://a.example".into()])
        );
        assert_eq!(parse_origin_list("*"), Ok(vec!["*".into()]));
        assert_eq!(parse_origin_list("[]"), Ok(vec![]));
        for bad in [
            "null",
            "localhost:6274",
            "ftp://a.example",
            "https://a.example/path",
            "https://user@a.example",
            "[\"http://a\"",
        ] {
            assert!(parse_origin_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}
