//! Who is calling: a pure decision over the request headers and the peer
//! address, with no I/O, so it runs on the hot path and in benchmarks alike.
//! The rules are the identity table of DESIGN.md.

mod jwt;
mod proxy_header;
mod token_cache;

pub use jwt::{JwtVerifier, CLOCK_LEEWAY_SECS};
pub use proxy_header::MAX_PAYLOAD_LEN;

use crate::config::{AuthMode, AuthSettings, ServerSpec, Settings};
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;

/// Who is on the other end of the connection: its address and, on an mTLS
/// connection, the names of its verified client certificate (DNS SANs and
/// subject CN, lower-cased).
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer<'a> {
    pub ip: Option<IpAddr>,
    /// `None`: no verified client certificate on this connection.
    pub cert_names: Option<&'a [String]>,
}

impl From<Option<IpAddr>> for Peer<'_> {
    fn from(ip: Option<IpAddr>) -> Self {
        Peer {
            ip,
            cert_names: None,
        }
    }
}

/// Longest identity forwarded upstream; real user ids and emails are far shorter.
pub const MAX_IDENTITY_LEN: usize = 512;

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

/// A user name, shared: the token cache hands out the same allocation on
/// every hit, so a request costs a reference count, not a copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserName(Arc<str>);

impl UserName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for UserName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for UserName {
    #[inline]
    fn from(s: &str) -> Self {
        UserName(s.into())
    }
}

impl PartialEq<str> for UserName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for UserName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for UserName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserName,
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

/// Why `user` cannot be sent upstream, byte for byte, as the identity
/// header's value. An identity the upstream would receive altered (a control
/// character dropped or splitting the header, edge spaces trimmed by every
/// HTTP parser) or not at all must be refused: forwarding the request without
/// it would make an authenticated caller anonymous upstream.
///
/// Non-ASCII UTF-8 (`josé@example.com`) is accepted and sent as its raw UTF-8
/// bytes (RFC 9110 obs-text): that is what the IdP issued and the upstream
/// gets it exactly; refusing would lock out internationalised addresses, and
/// re-encoding it (percent or RFC 2047) would make it collide with a user
/// literally named that way.
#[inline]
pub fn unforwardable(user: &str) -> Option<&'static str> {
    if user.is_empty() {
        Some("is empty")
    } else if user.len() > MAX_IDENTITY_LEN {
        Some("is longer than 512 bytes")
    } else if user.bytes().any(|b| b < 0x20 || b == 0x7f)
        || (!user.is_ascii() && user.chars().any(char::is_control))
    {
        Some("holds control characters")
    } else if user.starts_with(' ') || user.ends_with(' ') {
        Some("has leading or trailing spaces")
    } else {
        None
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
    /// The identity header's value cannot be used; says why.
    InvalidHeaderValue(String),
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
            AuthError::InvalidHeaderValue(why) => format!("identity header {why}"),
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
            AuthError::InvalidHeaderValue(_) => "invalid_header_value",
        }
    }
}

/// The resolved authentication rules for one route (the global ones, or a
/// server's `auth_mode` override), built once at start-up.
#[derive(Clone)]
pub struct AuthPolicy {
    pub jwt: Option<Arc<JwtVerifier>>,
    pub proxy_header: Option<HeaderName>,
    /// `PROXY_USER_CLAIM`: the proxy header holds a base64 JSON payload and
    /// the user is this claim of it. Only for the header `PROXY_USER_HEADER`
    /// names: a server's own `proxy_header` may come from another proxy.
    pub proxy_claim: Option<Arc<str>>,
    /// Empty: any peer may send the identity header.
    pub trusted_proxies: Arc<[IpNet]>,
    /// `TRUSTED_PROXY_CERT_NAMES`; when set, the identity header also
    /// needs a verified client certificate carrying one of them.
    pub trusted_cert_names: Arc<[String]>,
    pub auth_required: bool,
}

impl AuthPolicy {
    pub fn global(settings: &Settings) -> Self {
        let mut policy = AuthPolicy {
            jwt: settings
                .auth
                .mcp_client_auth_enabled
                .then(|| JwtVerifier::new(&settings.auth, settings.auth.jwt.audience.as_deref()))
                .flatten()
                .map(Arc::new),
            proxy_header: settings
                .auth
                .trust_proxy_auth
                .then(|| settings.auth.proxy_user_header.clone()),
            proxy_claim: None,
            trusted_proxies: settings.auth.trusted_proxies.clone().into(),
            trusted_cert_names: settings.auth.trusted_proxy_cert_names.clone().into(),
            auth_required: settings.auth.auth_required,
        };
        policy.set_claim(&settings.auth);
        policy
    }

    /// A server's policy: `inherit` is the global one; `proxy` and `jwt`
    /// select exactly one method, as the server's own declaration.
    pub fn for_server(settings: &AuthSettings, global: &AuthPolicy, spec: &ServerSpec) -> Self {
        Self::for_mode(
            settings,
            global,
            spec.auth_mode,
            spec.proxy_header.as_ref(),
            spec.jwt_audience.as_deref(),
        )
    }

    /// The rules of [`for_server`](Self::for_server) from the three fields
    /// that decide them: a virtual server has them too.
    pub fn for_mode(
        settings: &AuthSettings,
        global: &AuthPolicy,
        auth_mode: AuthMode,
        proxy_header: Option<&HeaderName>,
        jwt_audience: Option<&str>,
    ) -> Self {
        let mut policy = match auth_mode {
            AuthMode::Inherit => {
                let mut policy = global.clone();
                if let (Some(_), Some(h)) = (&policy.proxy_header, proxy_header) {
                    policy.proxy_header = Some(h.clone());
                }
                if let (Some(_), Some(aud)) = (&policy.jwt, jwt_audience) {
                    policy.jwt = JwtVerifier::new(settings, Some(aud)).map(Arc::new);
                }
                policy
            }
            AuthMode::Proxy => AuthPolicy {
                jwt: None,
                proxy_header: Some(
                    proxy_header
                        .cloned()
                        .unwrap_or_else(|| settings.proxy_user_header.clone()),
                ),
                proxy_claim: None,
                trusted_proxies: global.trusted_proxies.clone(),
                trusted_cert_names: global.trusted_cert_names.clone(),
                auth_required: true,
            },
            AuthMode::Jwt => AuthPolicy {
                jwt: JwtVerifier::new(settings, jwt_audience.or(settings.jwt.audience.as_deref()))
                    .map(Arc::new),
                proxy_header: None,
                proxy_claim: None,
                trusted_proxies: global.trusted_proxies.clone(),
                trusted_cert_names: global.trusted_cert_names.clone(),
                auth_required: true,
            },
        };
        policy.set_claim(settings);
        policy
    }

    fn set_claim(&mut self, settings: &AuthSettings) {
        self.proxy_claim = match (&self.proxy_header, &settings.proxy_user_claim) {
            (Some(h), Some(claim)) if *h == settings.proxy_user_header => {
                Some(claim.as_str().into())
            }
            _ => None,
        };
    }

    /// Both rules that are configured must hold: the address is in
    /// `TRUSTED_PROXIES` and the client certificate carries a name of
    /// `TRUSTED_PROXY_CERT_NAMES`. Neither configured: any peer.
    pub fn peer_is_trusted<'a>(&self, peer: impl Into<Peer<'a>>) -> bool {
        let peer = peer.into();
        peer_in(&self.trusted_proxies, peer.ip)
            && (self.trusted_cert_names.is_empty()
                || peer
                    .cert_names
                    .is_some_and(|names| names_match(&self.trusted_cert_names, names)))
    }

    /// Whether trust depends on the client certificate's names: without
    /// `TRUSTED_PROXY_CERT_NAMES` the connection's are not looked up.
    pub fn checks_cert_names(&self) -> bool {
        !self.trusted_cert_names.is_empty()
    }

    /// Whether some rule restricts who may send the identity header.
    pub fn restricts_peers(&self) -> bool {
        !self.trusted_proxies.is_empty() || !self.trusted_cert_names.is_empty()
    }

    /// Decides who is calling. Every branch is a row of DESIGN.md's table.
    pub fn authenticate<'a>(
        &self,
        headers: &HeaderMap,
        peer: impl Into<Peer<'a>>,
    ) -> Result<Identity, AuthError> {
        let peer = peer.into();
        if self.jwt.is_none() && self.proxy_header.is_none() {
            return Ok(Identity::anonymous());
        }
        if let Some(verifier) = &self.jwt {
            if let Some(token) = jwt::bearer_token(headers)? {
                return verifier.verify(token).map(|user| Identity {
                    user,
                    source: IdentitySource::Jwt,
                });
            }
        }
        if let Some(name) = &self.proxy_header {
            if let Some(user) = proxy_header::identity(self, name, headers, peer)? {
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
}

/// Certificate names are DNS names or CNs: compared without case (both
/// sides are lower-cased when read).
fn names_match(trusted: &[String], presented: &[String]) -> bool {
    presented.iter().any(|p| trusted.iter().any(|t| t == p))
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

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::config::Source;

    pub const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

    pub fn settings(pairs: &[(&str, &str)]) -> Settings {
        let mut all = vec![("JWT_SECRET_KEY", SECRET)];
        all.extend_from_slice(pairs);
        Settings::load(&Source::from_pairs(all), None).unwrap()
    }

    pub fn policy(pairs: &[(&str, &str)]) -> AuthPolicy {
        AuthPolicy::global(&settings(pairs))
    }

    pub fn token(claims: serde_json::Value) -> String {
        use jsonwebtoken::{encode, EncodingKey, Header};
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    pub fn future() -> u64 {
        jsonwebtoken::get_current_timestamp() + 600
    }

    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        h
    }

    pub const LOCAL: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::config::Source;

    #[test]
    fn forwardable_identities() {
        for (user, ok) in [
            ("alice", true),
            ("josé@example.com", true),
            ("a b", true),
            ("", false),
            (" alice", false),
            ("alice ", false),
            ("a\tb", false),
            ("a\r\nx-admin: 1", false),
            ("a\u{1}", false),
            ("a\u{7f}", false),
            ("a\u{85}", false),
        ] {
            assert_eq!(unforwardable(user).is_none(), ok, "{user:?}");
            // What is accepted is exactly representable as a header value.
            if ok && !user.is_empty() {
                let v = http::HeaderValue::from_bytes(user.as_bytes()).unwrap();
                assert_eq!(v.as_bytes(), user.as_bytes());
            }
        }
        assert!(unforwardable(&"a".repeat(MAX_IDENTITY_LEN)).is_none());
        assert!(unforwardable(&"a".repeat(MAX_IDENTITY_LEN + 1)).is_some());
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
        let internal = AuthPolicy::for_server(&s.auth, &global, &s.servers[0]);
        let external = AuthPolicy::for_server(&s.auth, &global, &s.servers[1]);
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

    #[test]
    fn the_payload_claim_applies_to_the_global_header_only() {
        let yaml = "servers:\n  - {name: a, urls: [http://h/mcp], auth_mode: proxy, proxy_header: X-Employee-Id}\n  - {name: b, urls: [http://h/mcp], auth_mode: proxy}\n";
        let s = Settings::load(
            &Source::from_pairs([
                ("MCP_CLIENT_AUTH_ENABLED", "false"),
                ("TRUST_PROXY_AUTH", "true"),
                ("PROXY_USER_HEADER", "X-User-Id"),
                ("PROXY_USER_CLAIM", "email"),
                ("TRUSTED_PROXIES", "127.0.0.1"),
            ]),
            Some(("f", yaml)),
        )
        .unwrap();
        let global = AuthPolicy::global(&s);
        assert_eq!(global.proxy_claim.as_deref(), Some("email"));
        let a = AuthPolicy::for_server(&s.auth, &global, &s.servers[0]);
        let b = AuthPolicy::for_server(&s.auth, &global, &s.servers[1]);
        assert_eq!(a.proxy_claim, None);
        assert_eq!(b.proxy_claim.as_deref(), Some("email"));
    }
}

#[cfg(test)]
mod peer_tests {
    use super::testing::*;
    use super::*;

    fn with_names(pairs: &[(&str, &str)], names: &[&str]) -> AuthPolicy {
        let mut p = policy(pairs);
        p.trusted_cert_names = names.iter().map(|n| n.to_string()).collect();
        p
    }

    #[test]
    fn cert_names_alone_need_a_certificate_with_one_of_them() {
        let p = with_names(&[("TRUST_PROXY_AUTH", "true")], &["proxy.internal"]);
        let h = headers(&[("X-Authenticated-User", "carol")]);
        let good = ["proxy.internal".to_string()];
        let other = ["other.internal".to_string()];
        let from = |names: Option<&'static [String]>| Peer {
            ip: Some(IpAddr::from([10, 9, 9, 9])),
            cert_names: names,
        };
        let good: &'static [String] = Box::leak(Box::new(good));
        let other: &'static [String] = Box::leak(Box::new(other));
        assert_eq!(p.authenticate(&h, from(Some(good))).unwrap().user, "carol");
        assert_eq!(
            p.authenticate(&h, from(Some(other))),
            Err(AuthError::UntrustedPeer)
        );
        assert_eq!(
            p.authenticate(&h, from(None)),
            Err(AuthError::UntrustedPeer)
        );
        assert_eq!(p.authenticate(&h, LOCAL), Err(AuthError::UntrustedPeer));
    }

    #[test]
    fn with_trusted_proxies_both_must_hold() {
        let p = with_names(
            &[
                ("TRUST_PROXY_AUTH", "true"),
                ("TRUSTED_PROXIES", "127.0.0.1"),
            ],
            &["proxy.internal"],
        );
        let names = ["proxy.internal".to_string()];
        let inside = Peer {
            ip: LOCAL,
            cert_names: Some(&names),
        };
        let outside = Peer {
            ip: Some(IpAddr::from([10, 0, 0, 1])),
            cert_names: Some(&names),
        };
        assert!(p.peer_is_trusted(inside));
        assert!(!p.peer_is_trusted(outside));
        assert!(!p.peer_is_trusted(LOCAL));
        // Without names configured the certificate is not looked at.
        let ips_only = policy(&[("TRUSTED_PROXIES", "127.0.0.1")]);
        assert!(ips_only.peer_is_trusted(LOCAL));
        assert!(ips_only.restricts_peers() && p.restricts_peers());
        assert!(!policy(&[]).restricts_peers());
    }
}
