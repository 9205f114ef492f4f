//! The gate in front of `/api`: finds the caller's credential (bearer
//! session token, admin JWT, Basic where allowed, the session cookie),
//! refuses cookie-authenticated writes from another origin, and hands the
//! handlers a [`Principal`].

use super::auth::{Principal, Via, SESSION_COOKIE};
use super::error::ApiError;
use super::AdminState;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// The peer's address when the service runs on a socket (absent in
/// in-process tests).
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The value of the session cookie, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The bearer token of `Authorization`, if that is its scheme.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A cookie-authenticated write must come from a page of this service:
/// its `Origin` (or, without one, its `Referer`) must name the host the
/// request was sent to. SameSite=Strict already keeps the cookie off
/// cross-site requests; this also covers same-site neighbours.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let claimed = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(claimed) = claimed else {
        return false;
    };
    let Some(rest) = claimed
        .strip_prefix("http://")
        .or_else(|| claimed.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.eq_ignore_ascii_case(host)
}

/// Who the request comes from, or why it is refused.
pub fn authenticate(state: &AdminState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let found = credential(state, headers);
    if state.auth.config().required {
        return found;
    }
    // Open: a valid credential still names the actor in the audit log.
    Ok(found.unwrap_or(Principal {
        actor: "anonymous".into(),
        via: Via::Open,
    }))
}

fn credential(state: &AdminState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let auth = &state.auth;
    let now = Instant::now();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
        if let Some(token) = bearer_token(headers) {
            // A session token is base64url; a JWT has three dotted parts.
            if !token.contains('.') {
                return auth
                    .session(token, now)
                    .map(|actor| Principal {
                        actor,
                        via: Via::Bearer,
                    })
                    .ok_or_else(|| {
                        ApiError::unauthorized("the session has expired or was revoked")
                    });
            }
            return auth
                .admin_jwt(token)
                .map(|actor| Principal {
                    actor,
                    via: Via::Jwt,
                })
                .map_err(ApiError::unauthorized);
        }
        if let Some((scheme, encoded)) = value.split_once(' ') {
            if scheme.eq_ignore_ascii_case("basic") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| ApiError::unauthorized("the Basic credentials are not base64"))?;
                return auth
                    .basic(&decoded)
                    .map(|actor| Principal {
                        actor,
                        via: Via::Basic,
                    })
                    .map_err(ApiError::unauthorized);
            }
        }
        return Err(ApiError::unauthorized(
            "unsupported Authorization scheme (Bearer expected)",
        ));
    }
    if let Some(token) = session_cookie(headers) {
        return auth
            .session(token, now)
            .map(|actor| Principal {
                actor,
                via: Via::Cookie,
            })
            .ok_or_else(|| ApiError::unauthorized("the session has expired or was revoked"));
    }
    Err(ApiError::unauthorized(
        "authentication required: log in at POST /auth/login",
    ))
}

/// Middleware for `/api`.
pub async fn require_admin(
    State(state): State<AdminState>,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = match authenticate(&state, req.headers()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if principal.via == Via::Cookie && is_write(req.method()) && !same_origin(req.headers()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "a write authenticated by the session cookie must come from the admin page \
             (Origin does not match); scripts should use the bearer token",
        )
        .into_response();
    }
    if principal.via == Via::Open && !host_is_an_address(req.headers()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "with AUTH_REQUIRED=false the admin API answers only requests addressed to an IP \
             address or localhost (a page on another host name could reach it by DNS rebinding)",
        )
        .into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Whether `Host` names an IP address or `localhost`, not a DNS name: the
/// open API's defence against DNS rebinding, where a page on the attacker's
/// name is pointed at this address and becomes same-origin with it.
pub fn host_is_an_address(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split_once(']')
                .is_some_and(|(a, _)| a.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_open_api_answers_addresses_not_names() {
        for ok in [
            "127.0.0.1:4445",
            "10.0.0.5",
            "localhost:4445",
            "LOCALHOST",
            "[::1]:4445",
        ] {
            assert!(host_is_an_address(&headers(&[("host", ok)])), "{ok}");
        }
        for refused in [
            "evil.example:4445",
            "evil.example",
            "127.0.0.1.nip.io",
            "[::1",
            "",
        ] {
            assert!(
                !host_is_an_address(&headers(&[("host", refused)])),
                "{refused}"
            );
        }
        assert!(!host_is_an_address(&headers(&[])));
    }

    #[test]
    fn origin_must_name_the_host() {
        let host = ("host", "127.0.0.1:4445");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:4445")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "https://127.0.0.1:4445")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("referer", "http://127.0.0.1:4445/admin?x")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:4445.evil")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin(&headers(&[host])));
        assert!(!same_origin(&headers(&[(
            "origin",
            "http://127.0.0.1:4445"
        )])));
    }

    #[test]
    fn finds_the_session_cookie_among_others() {
        let h = headers(&[("cookie", "a=1; mcp_admin_session=tok ; b=2")]);
        assert_eq!(session_cookie(&h), Some("tok"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "mcp_admin_session=")])),
            None
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "bearer x")])),
            Some("x")
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Basic x")])),
            None
        );
    }
}
