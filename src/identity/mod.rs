//! Who is calling: a pure decision over the request headers and the peer
//! address, with no I/O, so it runs on the hot path and in benchmarks alike.
//! The rules are the identity table of DESIGN.md.

mod token_cache;

use crate::config::{AuthMode, ServerSpec, Settings};
use http::header::{AUTHORIZATION, CONNECTION};
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;

/// Longest identity a proxy header may carry; real user ids and emails are far shorter.
const MAX_IDENTITY_LEN: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    Jwt,
    ProxyHeader,
    Anonymous,
}

impl IdentitySource {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentitySource::Jwt => "jwt",
            IdentitySource::ProxyHeader => "proxy_header",
            IdentitySource::Anonymous => "anonymous",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub source: IdentitySource,
}

impl Identity {
    pub fn anonymous() -> Self {
        Identity {
            user: "anonymous".into(),
            source: IdentitySource::Anonymous,
        }
    }

    /// Whether the gateway itself vouches for this caller (JWT or trusted proxy).
    pub fn is_authenticated(&self) -> bool {
        self.source != IdentitySource::Anonymous
    }

    /// The principal a session token is bound to; anonymous callers share one
    /// that no authenticated user name can equal.
    pub fn principal(&self) -> &str {
        match self.source {
            IdentitySource::Anonymous => "\0anonymous",
            _ => &self.user,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// A Bearer token was presented and failed; never falls back to another method.
    InvalidToken(String),
    /// No credential, and one is required. `proxy_expected` feeds `mcp_proxy_header_missing`.
    MissingCredential { proxy_expected: bool },
    /// The identity header appeared more than once.
    DuplicateHeader,
    /// The request's `Connection` header nominates the identity header.
    NominatedByConnection,
    /// The identity header came from a peer outside `TRUSTED_PROXIES`.
    UntrustedPeer,
    /// The identity header's value is empty, too long or not visible ASCII.
    InvalidHeaderValue,
}

impl AuthError {
    /// Safe to show the caller: says what to fix, reveals nothing of the configuration.
    pub fn message(&self) -> String {
        match self {
            AuthError::InvalidToken(why) => format!("invalid bearer token: {why}"),
            AuthError::MissingCredential { .. } => "authentication required".into(),
            AuthError::DuplicateHeader => "identity header appears more than once".into(),
            AuthError::NominatedByConnection => {
                "identity header is nominated by the Connection header".into()
            }
            AuthError::UntrustedPeer => "identity header not accepted from this peer".into(),
            AuthError::InvalidHeaderValue => "identity header value is invalid".into(),
        }
    }

    /// Label for `mcp_auth_failures_total{reason}`: a small fixed set.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::MissingCredential { .. } => "missing_credential",
            AuthError::DuplicateHeader => "duplicate_header",
            AuthError::NominatedByConnection => "connection_nominated",
            AuthError::UntrustedPeer => "untrusted_peer",
            AuthError::InvalidHeaderValue => "invalid_header_value",
        }
    }
}

/// HMAC JWT verification, configured once.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    verified: token_cache::TokenCache,
}

/// Distinct verified tokens remembered per verifier.
const TOKEN_CACHE_CAPACITY: usize = 10_000;

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    email: Option<String>,
    /// NumericDate: some issuers write fractions.
    exp: f64,
}

impl JwtVerifier {
    pub fn new(settings: &Settings, audience: Option<&str>) -> Option<Self> {
        let secret = settings.auth.jwt.secret.as_ref()?;
        let mut validation = Validation::new(settings.auth.jwt.algorithm);
        // A configured audience or issuer must be present, not merely not wrong.
        let mut required = vec!["exp"];
        match audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &settings.auth.jwt.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Some(JwtVerifier {
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            verified: token_cache::TokenCache::new(TOKEN_CACHE_CAPACITY),
        })
    }

    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(user) = self.verified.get(token, now) {
            return Ok(user);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::InvalidToken(jwt_error_text(e.kind())))?;
        let claims = data.claims;
        let user = claims
            .sub
            .filter(|s| !s.is_empty())
            .or(claims.email.filter(|s| !s.is_empty()))
            .ok_or_else(|| AuthError::InvalidToken("token has neither sub nor email".into()))?;
        // Remembered only until `exp` itself: stricter than the verifier's leeway.
        self.verified.insert(token, &user, claims.exp as u64);
        Ok(user)
    }
}

fn jwt_error_text(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind::*;
    match kind {
        ExpiredSignature => "token expired",
        InvalidSignature => "bad signature",
        InvalidAudience => "wrong audience",
        InvalidIssuer => "wrong issuer",
        ImmatureSignature => "token not yet valid",
        InvalidAlgorithm => "algorithm not accepted",
        MissingRequiredClaim(_) => "missing required claim",
        _ => "malformed token",
    }
    .into()
}

/// The resolved authentication rules for one route (the global ones, or a
/// server's `auth_mode` override), built once at start-up.
#[derive(Clone)]
pub struct AuthPolicy {
    pub jwt: Option<Arc<JwtVerifier>>,
    pub proxy_header: Option<HeaderName>,
    /// Empty: any peer may send the identity header.
    pub trusted_proxies: Arc<[IpNet]>,
    pub auth_required: bool,
}

impl AuthPolicy {
    pub fn global(settings: &Settings) -> Self {
        AuthPolicy {
            jwt: settings
                .auth
                .mcp_client_auth_enabled
                .then(|| JwtVerifier::new(settings, settings.auth.jwt.audience.as_deref()))
                .flatten()
                .map(Arc::new),
            proxy_header: settings
                .auth
                .trust_proxy_auth
                .then(|| settings.auth.proxy_user_header.clone()),
            trusted_proxies: settings.auth.trusted_proxies.clone().into(),
            auth_required: settings.auth.auth_required,
        }
    }

    /// A server's policy: `inherit` is the global one; `proxy` and `jwt`
    /// select exactly one method, as the server's own declaration.
    pub fn for_server(settings: &Settings, global: &AuthPolicy, spec: &ServerSpec) -> Self {
        match spec.auth_mode {
            AuthMode::Inherit => {
                let mut policy = global.clone();
                if let (Some(_), Some(h)) = (&policy.proxy_header, &spec.proxy_header) {
                    policy.proxy_header = Some(h.clone());
                }
                if let (Some(_), Some(aud)) = (&policy.jwt, &spec.jwt_audience) {
                    policy.jwt = JwtVerifier::new(settings, Some(aud)).map(Arc::new);
                }
                policy
            }
            AuthMode::Proxy => AuthPolicy {
                jwt: None,
                proxy_header: Some(
                    spec.proxy_header
                        .clone()
                        .unwrap_or_else(|| settings.auth.proxy_user_header.clone()),
                ),
                trusted_proxies: global.trusted_proxies.clone(),
                auth_required: true,
            },
            AuthMode::Jwt => AuthPolicy {
                jwt: JwtVerifier::new(
                    settings,
                    spec.jwt_audience
                        .as_deref()
                        .or(settings.auth.jwt.audience.as_deref()),
                )
                .map(Arc::new),
                proxy_header: None,
                trusted_proxies: global.trusted_proxies.clone(),
                auth_required: true,
            },
        }
    }

    pub fn peer_is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer_in(&self.trusted_proxies, peer)
    }

    /// Decides who is calling. Every branch is a row of DESIGN.md's table.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Identity, AuthError> {
        if self.jwt.is_none() && self.proxy_header.is_none() {
            return Ok(Identity::anonymous());
        }
        if let Some(verifier) = &self.jwt {
            if let Some(token) = bearer_token(headers)? {
                return verifier.verify(token).map(|user| Identity {
                    user,
                    source: IdentitySource::Jwt,
                });
            }
        }
        if let Some(name) = &self.proxy_header {
            if let Some(user) = self.proxy_identity(name, headers, peer)? {
                return Ok(Identity {
                    user,
                    source: IdentitySource::ProxyHeader,
                });
            }
        }
        if self.auth_required {
            Err(AuthError::MissingCredential {
                proxy_expected: self.proxy_header.is_some(),
            })
        } else {
            Ok(Identity::anonymous())
        }
    }

    fn proxy_identity(
        &self,
        name: &HeaderName,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Option<String>, AuthError> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(AuthError::DuplicateHeader);
        }
        if nominated_by_connection(headers, name) {
            return Err(AuthError::NominatedByConnection);
        }
        if !self.peer_is_trusted(peer) {
            return Err(AuthError::UntrustedPeer);
        }
        let user = value
            .to_str()
            .map(str::trim)
            .map_err(|_| AuthError::InvalidHeaderValue)?;
        if user.is_empty() || user.len() > MAX_IDENTITY_LEN {
            return Err(AuthError::InvalidHeaderValue);
        }
        Ok(Some(user.to_string()))
    }
}

pub fn peer_in(nets: &[IpNet], peer: Option<IpAddr>) -> bool {
    if nets.is_empty() {
        return true;
    }
    let Some(ip) = peer else { return false };
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

/// The Bearer token, if the request carries exactly one `Authorization: Bearer`.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::InvalidToken(
            "more than one Authorization header".into(),
        ));
    }
    let Ok(text) = value.to_str() else {
        return Err(AuthError::InvalidToken(
            "malformed Authorization header".into(),
        ));
    };
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim();
            if token.is_empty() {
                Err(AuthError::InvalidToken("empty bearer token".into()))
            } else {
                Ok(Some(token))
            }
        }
        // Basic and other schemes are not MCP client credentials.
        _ => Ok(None),
    }
}

fn nominated_by_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str().map_or(true, |s| {
            s.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let mut all = vec![("JWT_SECRET_KEY", SECRET)];
        all.extend_from_slice(pairs);
        Settings::load(&Source::from_pairs(all), None).unwrap()
    }

    fn policy(pairs: &[(&str, &str)]) -> AuthPolicy {
        AuthPolicy::global(&settings(pairs))
    }

    pub fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn future() -> u64 {
        jsonwebtoken::get_current_timestamp() + 600
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const LOCAL: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn valid_jwt_gives_sub_then_email() {
        let p = policy(&[]);
        let t = token(serde_json::json!({"sub": "alice", "exp": future()}));
        let id = p
            .authenticate(
                &headers(&[("authorization", &format!("Bearer {t}"))]),
                LOCAL,
            )
            .unwrap();
        assert_eq!(
            (id.user.as_str(), id.source),
            ("alice", IdentitySource::Jwt)
        );
        let t = token(serde_json::json!({"email": "bob@example.com", "exp": future()}));
        let id = p
            .authenticate(
                &headers(&[("authorization", &format!("bearer {t}"))]),
                LOCAL,
            )
            .unwrap();
        assert_eq!(id.user, "bob@example.com");
    }

    #[test]
    fn invalid_jwt_never_falls_back_to_the_proxy_header() {
        let p = policy(&[("TRUST_PROXY_AUTH", "true")]);
        let expired = token(serde_json::json!({"sub": "a", "exp": 1000}));
        let h = headers(&[
            ("authorization", &format!("Bearer {expired}")),
            ("x-authenticated-user", "mallory"),
        ]);
        assert!(matches!(
            p.authenticate(&h, LOCAL),
            Err(AuthError::InvalidToken(_))
        ));
        let h = headers(&[("authorization", "Bearer not.a.jwt")]);
        assert!(matches!(
            p.authenticate(&h, LOCAL),
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[test]
    fn remembered_tokens_are_matched_whole() {
        let p = policy(&[]);
        let t = token(serde_json::json!({"sub": "alice", "exp": future()}));
        let h = headers(&[("authorization", &format!("Bearer {t}"))]);
        for _ in 0..2 {
            assert_eq!(p.authenticate(&h, LOCAL).unwrap().user, "alice");
        }
        // One byte off in the signature of a remembered token: verified, refused.
        let mut forged = t.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let h = headers(&[("authorization", &format!("Bearer {forged}"))]);
        assert!(matches!(
            p.authenticate(&h, LOCAL),
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[test]
    fn jwt_without_exp_or_with_wrong_audience_is_refused() {
        let p = policy(&[("JWT_AUDIENCE", "mcp")]);
        let no_exp = token(serde_json::json!({"sub": "a", "aud": "mcp"}));
        let wrong_aud = token(serde_json::json!({"sub": "a", "aud": "other", "exp": future()}));
        let right = token(serde_json::json!({"sub": "a", "aud": "mcp", "exp": future()}));
        for (t, ok) in [(no_exp, false), (wrong_aud, false), (right, true)] {
            let h = headers(&[("authorization", &format!("Bearer {t}"))]);
            assert_eq!(p.authenticate(&h, LOCAL).is_ok(), ok);
        }
    }

    #[test]
    fn dual_mode_accepts_the_proxy_header_without_jwt() {
        let p = policy(&[("TRUST_PROXY_AUTH", "true")]);
        let id = p
            .authenticate(&headers(&[("X-Authenticated-User", "carol")]), LOCAL)
            .unwrap();
        assert_eq!(
            (id.user.as_str(), id.source),
            ("carol", IdentitySource::ProxyHeader)
        );
    }

    #[test]
    fn proxy_only_mode_uses_the_configured_header() {
        let p = policy(&[
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
            ("PROXY_USER_HEADER", "Remote-User"),
        ]);
        let id = p
            .authenticate(&headers(&[("remote-user", "dave")]), LOCAL)
            .unwrap();
        assert_eq!(id.user, "dave");
        // The default header name means nothing once another is configured.
        let e = p
            .authenticate(&headers(&[("x-authenticated-user", "dave")]), LOCAL)
            .unwrap_err();
        assert_eq!(
            e,
            AuthError::MissingCredential {
                proxy_expected: true
            }
        );
    }

    #[test]
    fn no_credential_depends_on_auth_required() {
        let strict = policy(&[]);
        assert!(strict.authenticate(&HeaderMap::new(), LOCAL).is_err());
        let lax = policy(&[("AUTH_REQUIRED", "false")]);
        assert_eq!(
            lax.authenticate(&HeaderMap::new(), LOCAL).unwrap(),
            Identity::anonymous()
        );
    }

    #[test]
    fn everything_off_is_anonymous() {
        let p = policy(&[("MCP_CLIENT_AUTH_ENABLED", "false")]);
        let h = headers(&[
            ("x-authenticated-user", "eve"),
            ("authorization", "Bearer x"),
        ]);
        assert_eq!(p.authenticate(&h, LOCAL).unwrap(), Identity::anonymous());
    }

    #[test]
    fn spoofing_attempts_are_refused() {
        let p = policy(&[
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
            ("TRUSTED_PROXIES", "10.0.0.0/8"),
        ]);
        let inside = Some("10.1.2.3".parse().unwrap());
        let outside = Some("192.168.1.1".parse().unwrap());
        let one = headers(&[("x-authenticated-user", "u")]);
        assert!(p.authenticate(&one, inside).is_ok());
        assert_eq!(p.authenticate(&one, outside), Err(AuthError::UntrustedPeer));
        assert_eq!(p.authenticate(&one, None), Err(AuthError::UntrustedPeer));
        let twice = headers(&[
            ("x-authenticated-user", "u"),
            ("X-Authenticated-User", "admin"),
        ]);
        assert_eq!(
            p.authenticate(&twice, inside),
            Err(AuthError::DuplicateHeader)
        );
        let nominated = headers(&[
            ("x-authenticated-user", "u"),
            ("connection", "keep-alive, X-Authenticated-User"),
        ]);
        assert_eq!(
            p.authenticate(&nominated, inside),
            Err(AuthError::NominatedByConnection)
        );
        let underscore = headers(&[("x_authenticated_user", "admin")]);
        assert!(matches!(
            p.authenticate(&underscore, inside),
            Err(AuthError::MissingCredential { .. })
        ));
        let empty = headers(&[("x-authenticated-user", " ")]);
        assert_eq!(
            p.authenticate(&empty, inside),
            Err(AuthError::InvalidHeaderValue)
        );
        let mapped = Some("::ffff:10.0.0.1".parse().unwrap());
        assert!(p.authenticate(&one, mapped).is_ok());
    }

    #[test]
    fn server_overrides_select_one_method() {
        let s = settings(&[
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
        ]);
        let global = AuthPolicy::global(&s);
        let yaml = "servers:\n  - {name: internal, urls: [http://h/mcp], auth_mode: proxy, proxy_header: X-Employee-Id}\n  - {name: external, urls: [http://h/mcp], auth_mode: jwt, jwt_audience: external-clients}\n";
        let s = Settings::load(
            &Source::from_pairs([
                ("JWT_SECRET_KEY", SECRET),
                ("MCP_CLIENT_AUTH_ENABLED", "false"),
                ("TRUST_PROXY_AUTH", "true"),
            ]),
            Some(("f", yaml)),
        )
        .unwrap();
        let internal = AuthPolicy::for_server(&s, &global, &s.servers[0]);
        let external = AuthPolicy::for_server(&s, &global, &s.servers[1]);
        assert_eq!(
            internal
                .authenticate(&headers(&[("x-employee-id", "e1")]), LOCAL)
                .unwrap()
                .user,
            "e1"
        );
        assert!(internal
            .authenticate(&headers(&[("x-authenticated-user", "e1")]), LOCAL)
            .is_err());
        let good =
            token(serde_json::json!({"sub": "x", "aud": "external-clients", "exp": future()}));
        let bad = token(serde_json::json!({"sub": "x", "exp": future()}));
        assert!(external
            .authenticate(
                &headers(&[("authorization", &format!("Bearer {good}"))]),
                LOCAL
            )
            .is_ok());
        assert!(external
            .authenticate(
                &headers(&[("authorization", &format!("Bearer {bad}"))]),
                LOCAL
            )
            .is_err());
        assert!(external
            .authenticate(&headers(&[("x-authenticated-user", "e1")]), LOCAL)
            .is_err());
    }
}
