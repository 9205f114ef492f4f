//! Browsers: the `Origin` check the MCP specification asks for against DNS
//! rebinding, and CORS, both answered by the gateway from configuration
//! (`CORS_ENABLED`, `ALLOWED_ORIGINS`) whatever the MCP server behind it
//! would say.
//!
//! A request without `Origin` is not from a browser page (MCP SDKs, curl,
//! Prometheus, probes) and passes untouched. A request with one passes only
//! if CORS is on and the origin is listed; otherwise it is refused with 403,
//! whatever the method: a page on `http://attacker.example` that rebinds its
//! name to the gateway's address sends its own origin, never a listed one.
//! With CORS off no origin is listed: browsers are not clients.

use crate::responses::LocalResponse;
use bytes::Bytes;
use http::header::{ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::{HeaderMap, HeaderName, Method};

/// Request headers MCP clients send; passthrough headers are added.
const BASE_ALLOWED_HEADERS: [&str; 10] = [
    "Authorization",
    "Content-Type",
    "Accept",
    "Mcp-Session-Id",
    "MCP-Protocol-Version",
    "Last-Event-ID",
    "X-Upstream-Authorization",
    "traceparent",
    "tracestate",
    "X-Request-Id",
];
/// Response headers a page's script may read: the session id it must send
/// back, and the challenge that starts an OAuth flow.
const EXPOSED_HEADERS: &str = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate";
const ALLOWED_METHODS: &str = "GET, POST, DELETE, OPTIONS";
/// How long a browser may cache a preflight (Chrome caps it at 7200).
const PREFLIGHT_MAX_AGE: &str = "600";

/// What to do with a request before routing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Go on; `Some(origin)` is a browser origin allowed to read the
    /// response (see [`CorsPolicy::response_headers`]).
    Pass(Option<String>),
    /// A CORS preflight from an allowed origin: answer it (see
    /// [`CorsPolicy::preflight`]), no credential needed.
    Preflight(String),
    /// `Origin` present and not allowed: 403.
    Refuse,
}

#[derive(Debug, Clone)]
pub struct CorsPolicy {
    enabled: bool,
    any_origin: bool,
    /// Normalised (`scheme://host[:port]`, lower case, no default port).
    origins: Vec<String>,
    allowed_headers: String,
}

impl CorsPolicy {
    /// `origins` as `ALLOWED_ORIGINS` parsed them; `*` means any.
    pub fn new(enabled: bool, origins: &[String], passthrough: &[HeaderName]) -> Self {
        let mut headers: Vec<String> = BASE_ALLOWED_HEADERS.map(str::to_string).to_vec();
        for name in passthrough {
            if !headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name.as_str()))
            {
                headers.push(name.as_str().to_string());
            }
        }
        CorsPolicy {
            enabled,
            any_origin: origins.iter().any(|o| o == "*"),
            origins: origins.iter().filter(|o| *o != "*").cloned().collect(),
            allowed_headers: headers.join(", "),
        }
    }

    fn allows(&self, origin: &str) -> bool {
        self.enabled
            && (self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)))
    }

    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Check {
        let mut values = headers.get_all(ORIGIN).iter();
        let origin = match (values.next(), values.next()) {
            (None, _) => return Check::Pass(None),
            (Some(v), None) => match v.to_str() {
                Ok(o) => o,
                Err(_) => return Check::Refuse,
            },
            // Two origins: no browser sends that.
            (Some(_), Some(_)) => return Check::Refuse,
        };
        if !self.allows(origin) {
            return Check::Refuse;
        }
        if method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
            Check::Preflight(origin.to_string())
        } else {
            Check::Pass(Some(origin.to_string()))
        }
    }

    /// 204 with what the browser asked, for an allowed origin.
    pub fn preflight(&self, origin: &str) -> LocalResponse {
        let mut response = LocalResponse {
            status: 204,
            content_type: "",
            body: Bytes::new(),
            extra_headers: self.response_headers(Some(origin)),
        };
        response.extra_headers.extend([
            ("access-control-allow-methods", ALLOWED_METHODS.to_string()),
            ("access-control-allow-headers", self.allowed_headers.clone()),
            ("access-control-max-age", PREFLIGHT_MAX_AGE.to_string()),
            (
                "vary",
                "Access-Control-Request-Method, Access-Control-Request-Headers".to_string(),
            ),
        ]);
        response
    }

    /// Headers for any response (local or proxied) to a request that
    /// passed [`check`](Self::check): `Vary: Origin` whenever CORS is on,
    /// so a cache never hands one origin's answer to another, and the
    /// allow/expose headers for an allowed origin.
    pub fn response_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        if !self.enabled {
            return Vec::new();
        }
        let mut out = vec![("vary", "Origin".to_string())];
        if let Some(origin) = origin {
            if self.any_origin && !self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
                // A wildcard grants no credentials: a page anywhere may call,
                // but not with the user's cookies for an auth proxy.
                out.push(("access-control-allow-origin", "*".to_string()));
            } else {
                out.push(("access-control-allow-origin", origin.to_string()));
                out.push(("access-control-allow-credentials", "true".to_string()));
            }
            out.push(("access-control-expose-headers", EXPOSED_HEADERS.to_string()));
        }
        out
    }
}

/// Response headers an MCP server may set that are the gateway's to decide.
pub const UPSTREAM_CORS_HEADERS: [&str; 6] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
];

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy(enabled: bool, origins: &[&str]) -> CorsPolicy {
        let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
        CorsPolicy::new(enabled, &origins, &[HeaderName::from_static("x-tenant-id")])
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const INSPECTOR: &str = "http://localhost:6274";

    #[test]
    fn requests_without_origin_pass_whatever_the_setting() {
        for enabled in [true, false] {
            let p = policy(enabled, &[]);
            assert_eq!(p.check(&Method::POST, &HeaderMap::new()), Check::Pass(None));
            // OPTIONS without Origin is not a preflight: routing answers it.
            let h = headers(&[("access-control-request-method", "POST")]);
            assert_eq!(p.check(&Method::OPTIONS, &h), Check::Pass(None));
        }
    }

    #[test]
    fn a_foreign_origin_is_refused_whatever_the_method() {
        let p = policy(true, &[INSPECTOR]);
        let evil = headers(&[
            ("origin", "http://attacker.example:4444"),
            ("access-control-request-method", "POST"),
        ]);
        for m in [Method::GET, Method::POST, Method::DELETE, Method::OPTIONS] {
            assert_eq!(p.check(&m, &evil), Check::Refuse, "{m}");
        }
        let null = headers(&[("origin", "null")]);
        assert_eq!(p.check(&Method::POST, &null), Check::Refuse);
        let two = headers(&[("origin", INSPECTOR), ("origin", INSPECTOR)]);
        assert_eq!(p.check(&Method::POST, &two), Check::Refuse);
    }

    #[test]
    fn with_cors_off_no_browser_origin_is_allowed() {
        let p = policy(false, &[INSPECTOR, "*"]);
        let h = headers(&[("origin", INSPECTOR)]);
        assert_eq!(p.check(&Method::POST, &h), Check::Refuse);
        assert!(p.response_headers(None).is_empty());
    }

    #[test]
    fn an_allowed_preflight_is_answered_without_credentials() {
        let p = policy(true, &[INSPECTOR]);
        let h = headers(&[
            ("origin", INSPECTOR),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type, mcp-session-id",
            ),
        ]);
        assert_eq!(
            p.check(&Method::OPTIONS, &h),
            Check::Preflight(INSPECTOR.into())
        );
        let r = p.preflight(INSPECTOR);
        assert_eq!(r.status, 204);
        let get = |name: &str| {
            r.extra_headers
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        assert_eq!(get("access-control-allow-origin"), INSPECTOR);
        assert_eq!(get("access-control-allow-credentials"), "true");
        for h in [
            "Authorization",
            "Content-Type",
            "Mcp-Session-Id",
            "MCP-Protocol-Version",
            "Last-Event-ID",
            "X-Upstream-Authorization",
            "x-tenant-id",
        ] {
            assert!(get("access-control-allow-headers").contains(h), "{h}");
        }
        assert!(get("access-control-allow-methods").contains("DELETE"));
        assert!(get("access-control-expose-headers").contains("Mcp-Session-Id"));
        assert!(get("vary").contains("Origin"));
    }

    #[test]
    fn allowed_requests_expose_the_session_id() {
        let p = policy(true, &[INSPECTOR]);
        let h = headers(&[("origin", "HTTP://LOCALHOST:6274")]);
        assert_eq!(
            p.check(&Method::POST, &h),
            Check::Pass(Some("HTTP://LOCALHOST:6274".into()))
        );
        let out = p.response_headers(Some(INSPECTOR));
        assert!(out.contains(&("vary", "Origin".into())));
        assert!(out.contains(&("access-control-expose-headers", EXPOSED_HEADERS.to_string())));
        assert_eq!(p.response_headers(None), vec![("vary", "Origin".into())]);
    }

    #[test]
    fn a_wildcard_allows_any_origin_without_credentials() {
        let p = policy(true, &["*"]);
        let h = headers(&[("origin", "https://anywhere.example")]);
        assert!(matches!(p.check(&Method::POST, &h), Check::Pass(Some(_))));
        let out = p.response_headers(Some("https://anywhere.example"));
        assert!(out.contains(&("access-control-allow-origin", "*".into())));
        assert!(!out
            .iter()
            .any(|(n, _)| *n == "access-control-allow-credentials"));
    }
}
