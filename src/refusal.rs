//! Every refusal the gateway writes itself, as one typed value. Each knows
//! its HTTP status, its JSON-RPC error code, its message and its metric
//! reason, so the same case gets the same answer wherever it is decided
//! (admission, a failed upstream, a local endpoint). The codes are the
//! table in the README; clients may rely on them.

use crate::responses::{self, ErrorShape, LocalResponse};
use crate::session::SessionError;
use pingora::{ErrorSource, ErrorType};

/// JSON-RPC codes. `-32600` and `-32603` are JSON-RPC's own; the rest are
/// in the range JSON-RPC leaves to servers (-32000 to -32099).
pub mod code {
    /// The MCP SDKs' (TypeScript) code for "Session not found", so a client
    /// sees the same code whether the gateway or the MCP server refused.
    pub const UNKNOWN_SESSION: i64 = -32001;
    pub const UNKNOWN_SERVER: i64 = -32002;
    pub const NO_HEALTHY_BACKEND: i64 = -32003;
    pub const UPSTREAM_FAILED: i64 = -32004;
    pub const UPSTREAM_TIMEOUT: i64 = -32005;
    pub const UNAUTHENTICATED: i64 = -32006;
    pub const ORIGIN_NOT_ALLOWED: i64 = -32007;
    pub const METHOD_NOT_ALLOWED: i64 = -32008;
    pub const NOT_FOUND: i64 = -32009;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// nginx's status for a client that closed the connection before the
/// response was complete; never sent, only counted and logged.
pub const CLIENT_CLOSED: u16 = 499;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A path the gateway does not serve.
    NotFound,
    /// `/servers/{name}/…` for a name that is not registered.
    UnknownServer,
    /// A session token that does not open, expired, or belongs to another
    /// server or caller; the message says which (`SessionError::message`).
    UnknownSession(&'static str),
    /// The session's replica is down: the client must initialise again.
    SessionBackendGone,
    MethodNotAllowed {
        allow: &'static str,
    },
    /// 401 with the RFC 6750 challenge; `invalid_token` adds its error.
    Unauthenticated {
        message: String,
        invalid_token: bool,
    },
    /// `Origin` present and not allowed (DNS-rebinding protection, CORS).
    OriginNotAllowed,
    /// A `/metrics` scrape whose bearer token is not `METRICS_TOKEN`.
    MetricsTokenInvalid,
    DuplicateSessionHeader,
    MissingSessionId,
    /// A request Pingora could not parse.
    BadRequest,
    /// Framing two parties could read differently (RFC 9112 §6.3), or a
    /// missing `Host`: the message names the problem.
    MalformedRequest(&'static str),
    NoHealthyBackend,
    UpstreamFailed,
    UpstreamTimeout,
    Internal,
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NotFound
            | Refusal::UnknownServer
            | Refusal::UnknownSession(_)
            | Refusal::SessionBackendGone => 404,
            Refusal::MethodNotAllowed { .. } => 405,
            Refusal::Unauthenticated { .. } | Refusal::MetricsTokenInvalid => 401,
            Refusal::OriginNotAllowed => 403,
            Refusal::DuplicateSessionHeader
            | Refusal::MissingSessionId
            | Refusal::BadRequest
            | Refusal::MalformedRequest(_) => 400,
            Refusal::NoHealthyBackend => 503,
            Refusal::UpstreamFailed => 502,
            Refusal::UpstreamTimeout => 504,
            Refusal::Internal => 500,
        }
    }

    pub fn rpc_code(&self) -> i64 {
        match self {
            Refusal::NotFound => code::NOT_FOUND,
            Refusal::UnknownServer => code::UNKNOWN_SERVER,
            Refusal::UnknownSession(_) | Refusal::SessionBackendGone => code::UNKNOWN_SESSION,
            Refusal::MethodNotAllowed { .. } => code::METHOD_NOT_ALLOWED,
            Refusal::Unauthenticated { .. } | Refusal::MetricsTokenInvalid => code::UNAUTHENTICATED,
            Refusal::OriginNotAllowed => code::ORIGIN_NOT_ALLOWED,
            Refusal::DuplicateSessionHeader
            | Refusal::MissingSessionId
            | Refusal::BadRequest
            | Refusal::MalformedRequest(_) => code::INVALID_REQUEST,
            Refusal::NoHealthyBackend => code::NO_HEALTHY_BACKEND,
            Refusal::UpstreamFailed => code::UPSTREAM_FAILED,
            Refusal::UpstreamTimeout => code::UPSTREAM_TIMEOUT,
            Refusal::Internal => code::INTERNAL_ERROR,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Refusal::NotFound => "not found",
            Refusal::UnknownServer => "unknown server",
            Refusal::UnknownSession(why) => why,
            Refusal::SessionBackendGone => SessionError::BackendGone.message(),
            Refusal::MethodNotAllowed { .. } => "method not allowed",
            Refusal::Unauthenticated { message, .. } => message,
            Refusal::OriginNotAllowed => "origin not allowed",
            Refusal::MetricsTokenInvalid => "invalid metrics token",
            Refusal::DuplicateSessionHeader => "Mcp-Session-Id appears more than once",
            Refusal::MissingSessionId => "missing sessionId query parameter",
            Refusal::BadRequest => "bad request",
            Refusal::MalformedRequest(why) => why,
            Refusal::NoHealthyBackend => "no healthy backend for this server",
            Refusal::UpstreamFailed => "upstream MCP server failed",
            Refusal::UpstreamTimeout => "upstream MCP server timed out",
            Refusal::Internal => "internal error",
        }
    }

    /// The `reason` label of `mcp_refusals_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotFound => "not_found",
            Refusal::UnknownServer => "unknown_server",
            Refusal::UnknownSession(_) => "unknown_session",
            Refusal::SessionBackendGone => "session_backend_gone",
            Refusal::MethodNotAllowed { .. } => "method_not_allowed",
            Refusal::Unauthenticated { .. } => "unauthenticated",
            Refusal::OriginNotAllowed => "origin_not_allowed",
            Refusal::MetricsTokenInvalid => "metrics_token_invalid",
            Refusal::DuplicateSessionHeader => "duplicate_session_header",
            Refusal::MissingSessionId => "missing_session_id",
            Refusal::BadRequest => "bad_request",
            Refusal::MalformedRequest(_) => "malformed_request",
            Refusal::NoHealthyBackend => "no_healthy_backend",
            Refusal::UpstreamFailed => "upstream_failed",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::Internal => "internal_error",
        }
    }

    /// The complete response: a JSON-RPC error on MCP routes, plain JSON
    /// elsewhere, with the headers the case needs.
    pub fn response(&self, shape: ErrorShape) -> LocalResponse {
        let response = responses::error(shape, self.status(), self.rpc_code(), self.message());
        match self {
            Refusal::MethodNotAllowed { allow } => response.with_header("allow", *allow),
            Refusal::Unauthenticated { invalid_token, .. } => {
                response.with_header("www-authenticate", challenge(*invalid_token))
            }
            Refusal::MetricsTokenInvalid => {
                response.with_header("www-authenticate", challenge(true))
            }
            _ => response,
        }
    }
}

fn challenge(invalid_token: bool) -> &'static str {
    if invalid_token {
        "Bearer realm=\"mcp-gateway\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"mcp-gateway\""
    }
}

/// What a failed proxy attempt becomes: the refusal to write, or `None`
/// when the client has gone and there is no one to answer (counted as 499).
///
/// Pingora marks upstream timeouts `ConnectTimedout`/`ReadTimedout`/…
/// with source `Upstream`; its own default lumps them into 502, which tells
/// an operator "broken" when the truth is "slow".
pub fn for_proxy_error(etype: &ErrorType, source: &ErrorSource) -> Option<Refusal> {
    use ErrorType::*;
    if let HTTPStatus(status) = etype {
        return Some(match status {
            // Set by `fail_to_connect` for a session's pinned replica.
            404 => Refusal::SessionBackendGone,
            503 => Refusal::NoHealthyBackend,
            504 => Refusal::UpstreamTimeout,
            502 => Refusal::UpstreamFailed,
            400 => Refusal::BadRequest,
            _ => Refusal::Internal,
        });
    }
    match source {
        ErrorSource::Downstream => match etype {
            ConnectionClosed | ReadError | WriteError | ReadTimedout | WriteTimedout => None,
            _ => Some(Refusal::BadRequest),
        },
        ErrorSource::Upstream => Some(match etype {
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                Refusal::UpstreamTimeout
            }
            _ => Refusal::UpstreamFailed,
        }),
        ErrorSource::Internal | ErrorSource::Unset => Some(Refusal::Internal),
    }
}

/// True when the error only says the client went away: not worth an
/// error line, counted under its own status.
pub fn is_client_gone(etype: &ErrorType, source: &ErrorSource) -> bool {
    for_proxy_error(etype, source).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn all() -> Vec<Refusal> {
        vec![
            Refusal::NotFound,
            Refusal::UnknownServer,
            Refusal::UnknownSession("session expired"),
            Refusal::SessionBackendGone,
            Refusal::MethodNotAllowed { allow: "GET" },
            Refusal::Unauthenticated {
                message: "m".into(),
                invalid_token: false,
            },
            Refusal::OriginNotAllowed,
            Refusal::MetricsTokenInvalid,
            Refusal::DuplicateSessionHeader,
            Refusal::MissingSessionId,
            Refusal::BadRequest,
            Refusal::NoHealthyBackend,
            Refusal::UpstreamFailed,
            Refusal::UpstreamTimeout,
            Refusal::Internal,
        ]
    }

    #[test]
    fn unknown_server_and_unknown_session_have_distinct_codes() {
        assert_ne!(
            Refusal::UnknownServer.rpc_code(),
            Refusal::UnknownSession("x").rpc_code()
        );
        assert_eq!(
            Refusal::SessionBackendGone.rpc_code(),
            code::UNKNOWN_SESSION
        );
    }

    #[test]
    fn every_status_class_has_its_own_code() {
        // Two refusals share a code only when they share the meaning: the
        // same status and the same thing for the client to do.
        let mut seen = std::collections::HashMap::new();
        for r in all() {
            if let Some(status) = seen.insert(r.rpc_code(), r.status()) {
                assert_eq!(status, r.status(), "code {} reused for {r:?}", r.rpc_code());
            }
        }
        let reasons: HashSet<_> = all().iter().map(Refusal::reason).collect();
        assert_eq!(reasons.len(), all().len(), "metric reasons are distinct");
    }

    #[test]
    fn responses_carry_status_code_and_headers() {
        let r = Refusal::MethodNotAllowed { allow: "POST" }.response(ErrorShape::JsonRpc);
        assert_eq!(r.status, 405);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["code"], code::METHOD_NOT_ALLOWED);
        assert!(r.extra_headers.contains(&("allow", "POST".to_string())));
        let r = Refusal::Unauthenticated {
            message: "bad".into(),
            invalid_token: true,
        }
        .response(ErrorShape::Plain);
        assert_eq!(r.status, 401);
        assert!(r
            .extra_headers
            .iter()
            .any(|(n, v)| *n == "www-authenticate" && v.contains("invalid_token")));
    }

    #[test]
    fn upstream_timeouts_are_504_not_502() {
        for t in [
            ErrorType::ConnectTimedout,
            ErrorType::ReadTimedout,
            ErrorType::WriteTimedout,
            ErrorType::TLSHandshakeTimedout,
        ] {
            assert_eq!(
                for_proxy_error(&t, &ErrorSource::Upstream),
                Some(Refusal::UpstreamTimeout),
                "{t:?}"
            );
        }
        for t in [
            ErrorType::ConnectRefused,
            ErrorType::ConnectionClosed,
            ErrorType::InvalidHTTPHeader,
            ErrorType::TLSHandshakeFailure,
        ] {
            assert_eq!(
                for_proxy_error(&t, &ErrorSource::Upstream),
                Some(Refusal::UpstreamFailed),
                "{t:?}"
            );
        }
    }

    #[test]
    fn statuses_set_by_the_gateway_win() {
        for source in [ErrorSource::Unset, ErrorSource::Upstream] {
            assert_eq!(
                for_proxy_error(&ErrorType::HTTPStatus(503), &source),
                Some(Refusal::NoHealthyBackend)
            );
        }
        assert_eq!(
            for_proxy_error(&ErrorType::InternalError, &ErrorSource::Internal),
            Some(Refusal::Internal)
        );
    }

    #[test]
    fn a_client_that_left_gets_nothing_and_is_499() {
        for t in [
            ErrorType::ConnectionClosed,
            ErrorType::ReadError,
            ErrorType::WriteError,
        ] {
            assert!(is_client_gone(&t, &ErrorSource::Downstream), "{t:?}");
            assert!(!is_client_gone(&t, &ErrorSource::Upstream), "{t:?}");
        }
        assert_eq!(
            for_proxy_error(&ErrorType::InvalidHTTPHeader, &ErrorSource::Downstream),
            Some(Refusal::BadRequest)
        );
    }
}
