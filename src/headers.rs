//! The upstream header policy: which request headers an MCP server receives.
//! Built from an allowlist, never a denylist, so a header nobody thought of
//! (a cookie variant, an internal token) cannot leak upstream by default.

mod connection;
mod credential;

use crate::identity::Identity;
pub use connection::connection_nominates;
use connection::Nominated;
pub use credential::UpstreamCredentialHeaders;
use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;
use smallvec::SmallVec;
use std::fmt::Write;
use std::net::IpAddr;

/// Longest header value forwarded; longer ones are dropped with a warning.
pub const MAX_VALUE_LEN: usize = 4096;

pub static X_UPSTREAM_AUTHORIZATION: HeaderName =
    HeaderName::from_static("x-upstream-authorization");
pub static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The wire spelling of the custom names the gateway sets on every request,
/// so Pingora's case-preserving map takes a static string, not a copy.
pub fn wire_name(name: &HeaderName) -> Option<&'static str> {
    if name == X_FORWARDED_FOR {
        Some("X-Forwarded-For")
    } else if name == X_FORWARDED_PROTO {
        Some("X-Forwarded-Proto")
    } else if name == X_FORWARDED_HOST {
        Some("X-Forwarded-Host")
    } else {
        None
    }
}

/// What an MCP server needs from the client's request, forwarded as sent.
static ALLOWLIST: [HeaderName; 15] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::USER_AGENT,
    HeaderName::from_static("mcp-protocol-version"),
    HeaderName::from_static("last-event-id"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
    HeaderName::from_static("x-request-id"),
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
];

/// Never forwarded from the client, whatever a passthrough list says: the
/// gateway's own credentials, framing, and names the gateway owns.
fn never_from_client(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION
        || name == header::COOKIE
        || name == header::PROXY_AUTHORIZATION
        || name == header::HOST
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == X_UPSTREAM_AUTHORIZATION
        || name == MCP_SESSION_ID
}

/// Whether a name may not carry identity: the gateway sets it, forwards the
/// client's value of it as an MCP header, or treats it as a credential or
/// framing. An identity header named like one of these would either be
/// taken from the client as sent or clash with the gateway's own value.
pub fn is_reserved_name(name: &HeaderName) -> bool {
    ALLOWLIST.contains(name)
        || never_from_client(name)
        || wire_name(name).is_some()
        || name == header::PROXY_AUTHENTICATE
        || name == header::WWW_AUTHENTICATE
}

/// One server's header rules, resolved from the settings at start-up.
#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    /// Empty when `ENABLE_HEADER_PASSTHROUGH` is off.
    pub passthrough: Vec<HeaderName>,
    pub overwrite_base: bool,
    /// Every name that carries identity anywhere in the configuration (not
    /// only for this server); the client's value of any of them is never
    /// forwarded.
    pub identity_headers: Vec<HeaderName>,
    /// The name under which the authenticated identity is sent upstream.
    pub identity_out: HeaderName,
    /// What the gateway presents to this server's replicas.
    pub credential: UpstreamCredentialHeaders,
}

/// Per-request facts the policy needs besides the client's headers.
pub struct RequestFacts<'a> {
    pub identity: &'a Identity,
    pub peer: Option<IpAddr>,
    /// The peer may vouch for `X-Forwarded-*` (inside `TRUSTED_PROXIES`).
    pub peer_trusted: bool,
    /// The replica's `Host`, prepared once per replica URL.
    pub upstream_host: &'a HeaderValue,
    /// The upstream's own session id, decoded from the client's token.
    pub upstream_session: Option<&'a str>,
}

/// Why a header was dropped; logged by the caller, the request goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub name: HeaderName,
    pub why: &'static str,
}

/// The edits that turn the client's headers into the upstream's: computed
/// as a diff so the common request (a handful of allowlisted headers) costs
/// a few removals and inserts, not a rebuilt map.
#[derive(Debug, Default)]
pub struct HeaderEdits {
    /// Names whose every value is removed.
    pub remove: SmallVec<[HeaderName; 8]>,
    /// Set by the gateway, replacing any value the client sent.
    pub set: SmallVec<[(HeaderName, HeaderValue); 8]>,
    pub dropped: Vec<Dropped>,
}

impl HeaderEdits {
    /// Applies the edits to a plain map (the adapter does the same on
    /// Pingora's `RequestHeader`).
    pub fn apply(&self, map: &mut HeaderMap) {
        for name in &self.remove {
            map.remove(name);
        }
        for (name, value) in &self.set {
            map.insert(name.clone(), value.clone());
        }
    }
}

/// Appends `ip` as `Display` would; IPv4 without `core::fmt`, which cost
/// a quarter of the header policy on every request.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

pub fn is_clean_value(value: &HeaderValue) -> bool {
    value.len() <= MAX_VALUE_LEN
        && value
            .as_bytes()
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// An upstream credential must look like `Scheme credentials`, visible ASCII.
fn is_clean_credential(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    is_clean_value(value)
        && !bytes.is_empty()
        && bytes.iter().all(|&b| (0x20..0x7f).contains(&b))
        && bytes.iter().any(|&b| b != b' ')
}

impl HeaderPolicy {
    /// Whether a client header may travel upstream as sent. Nominated
    /// allowlisted names (`Upgrade`) are Pingora's upgrade handling, not ours.
    fn forwards(&self, name: &HeaderName, nominated: &Nominated) -> bool {
        ALLOWLIST.contains(name)
            || (self.passthrough.contains(name)
                && !never_from_client(name)
                && !self.identity_headers.contains(name)
                && !nominated.contains(name))
    }

    /// The edits for one request.
    pub fn plan(&self, client: &HeaderMap, facts: &RequestFacts) -> HeaderEdits {
        let mut edits = HeaderEdits::default();
        let nominated = Nominated::of(client);
        let keep_identity = !nominated.contains(&self.identity_out)
            && self.client_identity_is_authenticated(client, facts);
        for (name, value) in client {
            if edits.remove.last() == Some(name) || name == header::HOST {
                // `Host` is always replaced, never removed first.
                continue;
            }
            if keep_identity && name == self.identity_out {
                continue;
            }
            if !self.forwards(name, &nominated) {
                edits.remove.push(name.clone());
            } else if !is_clean_value(value) {
                edits.remove.push(name.clone());
                edits.dropped.push(Dropped {
                    name: name.clone(),
                    why: "control characters or longer than 4 KiB",
                });
            }
        }
        self.base_headers(client, facts, keep_identity, &nominated, &mut edits);
        edits
    }

    /// The client's identity header is exactly, and only, the value the
    /// gateway authenticated: the usual proxy-mode request needs no edit.
    fn client_identity_is_authenticated(&self, client: &HeaderMap, facts: &RequestFacts) -> bool {
        if !facts.identity.is_authenticated() {
            return false;
        }
        let mut values = client.get_all(&self.identity_out).iter();
        matches!(
            (values.next(), values.next()),
            (Some(v), None) if v.as_bytes() == facts.identity.user.as_bytes()
        )
    }

    /// Headers the gateway sets itself. A passthrough-listed client value
    /// replaces one only with `ENABLE_OVERWRITE_BASE_HEADERS`.
    fn base_headers(
        &self,
        client: &HeaderMap,
        facts: &RequestFacts,
        keep_identity: bool,
        nominated: &Nominated,
        edits: &mut HeaderEdits,
    ) {
        let set = |edits: &mut HeaderEdits, name: &HeaderName, value: HeaderValue| {
            let client_wins = self.overwrite_base
                && self.forwards(name, nominated)
                && client.contains_key(name)
                && !edits.remove.contains(name);
            if !client_wins {
                edits.set.push((name.clone(), value));
            }
        };
        set(edits, &header::HOST, facts.upstream_host.clone());
        if let Some(peer) = facts.peer {
            let prior = client
                .get(&X_FORWARDED_FOR)
                .filter(|v| facts.peer_trusted && is_clean_value(v))
                .and_then(|v| v.to_str().ok());
            let mut xff = String::with_capacity(prior.map_or(0, str::len) + 48);
            if let Some(p) = prior {
                xff.push_str(p);
                xff.push_str(", ");
            }
            push_ip(&mut xff, peer);
            // `from_maybe_shared` keeps the String's buffer: one allocation.
            if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(xff)) {
                set(edits, &X_FORWARDED_FOR, v);
            }
        }
        let proto = client
            .get(&X_FORWARDED_PROTO)
            .filter(|v| facts.peer_trusted && (v.as_bytes() == b"https" || v.as_bytes() == b"http"))
            .cloned()
            .unwrap_or(HeaderValue::from_static("http"));
        set(edits, &X_FORWARDED_PROTO, proto);
        if let Some(host) = client.get(header::HOST).filter(|v| is_clean_value(v)) {
            set(edits, &X_FORWARDED_HOST, host.clone());
        }
        if facts.identity.is_authenticated() && !keep_identity {
            // Bytes, not `from_str`: a UTF-8 identity travels as sent
            // (the authenticator refused anything not forwardable exactly).
            match HeaderValue::from_bytes(facts.identity.user.as_bytes()) {
                Ok(v) => edits.set.push((self.identity_out.clone(), v)),
                Err(_) => edits.dropped.push(Dropped {
                    name: self.identity_out.clone(),
                    why: "identity is not a valid header value",
                }),
            }
        }
        if let Some(v) = facts
            .upstream_session
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            edits.set.push((MCP_SESSION_ID.clone(), v));
        }
        for (name, value) in &self.credential.others {
            edits.set.push((name.clone(), value.clone()));
        }
        let mut authorization = self.credential.authorization.as_ref();
        if let Some(v) = client.get(&X_UPSTREAM_AUTHORIZATION) {
            let refused = if !facts.identity.is_authenticated() {
                Some("request was not authenticated by the gateway")
            } else if client.get_all(&X_UPSTREAM_AUTHORIZATION).iter().count() > 1 {
                Some("appears more than once")
            } else if nominated.contains(&X_UPSTREAM_AUTHORIZATION) {
                Some("nominated by the Connection header (hop-by-hop)")
            } else if !is_clean_credential(v) {
                Some("failed sanitisation")
            } else {
                None
            };
            match refused {
                Some(why) => edits.dropped.push(Dropped {
                    name: X_UPSTREAM_AUTHORIZATION.clone(),
                    why,
                }),
                None => authorization = Some(v),
            }
        }
        if let Some(v) = authorization {
            edits.set.push((header::AUTHORIZATION, v.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn identity_headers_cannot_be_ones_the_gateway_owns() {
        for name in [
            "x-request-id",
            "x-forwarded-proto",
            "host",
            "cookie",
            "mcp-session-id",
        ] {
            assert!(is_reserved_name(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["x-authenticated-user", "x-employee-id", "x-user-id"] {
            assert!(!is_reserved_name(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "127.0.0.1",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut text = String::from("x, ");
            super::push_ip(&mut text, ip);
            assert_eq!(text, format!("x, {ip}"));
        }
    }

    use super::*;
    use crate::identity::IdentitySource;

    fn policy(passthrough: &[&str], overwrite_base: bool) -> HeaderPolicy {
        HeaderPolicy {
            passthrough: passthrough
                .iter()
                .map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
                .collect(),
            overwrite_base,
            identity_headers: vec![HeaderName::from_static("x-authenticated-user")],
            identity_out: HeaderName::from_static("x-authenticated-user"),
            credential: UpstreamCredentialHeaders::default(),
        }
    }

    fn client(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    struct Out {
        map: HeaderMap,
        dropped: Vec<Dropped>,
    }

    impl Out {
        fn get(&self, name: &str) -> Option<&HeaderValue> {
            self.map.get(name)
        }
        fn count(&self, name: &str) -> usize {
            self.map.get_all(name).iter().count()
        }
    }

    fn run(p: &HeaderPolicy, client: &HeaderMap, facts: &RequestFacts) -> Out {
        let edits = p.plan(client, facts);
        let mut map = client.clone();
        edits.apply(&mut map);
        Out {
            map,
            dropped: edits.dropped,
        }
    }

    fn alice() -> Identity {
        Identity {
            user: "alice".into(),
            source: IdentitySource::ProxyHeader,
        }
    }

    static HOST: HeaderValue = HeaderValue::from_static("mcp.internal:3001");

    fn facts(identity: &Identity) -> RequestFacts<'_> {
        RequestFacts {
            identity,
            peer: Some("10.0.0.9".parse().unwrap()),
            peer_trusted: true,
            upstream_host: &HOST,
            upstream_session: None,
        }
    }

    #[test]
    fn only_allowlisted_headers_travel() {
        let id = alice();
        let h = client(&[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-06-18"),
            ("authorization", "Bearer gateway-token"),
            ("cookie", "session=1"),
            ("x-internal-secret", "s"),
            ("x-tenant-id", "t1"),
            ("host", "gateway.example.com"),
        ]);
        let out = run(&policy(&[], false), &h, &facts(&id));
        assert_eq!(out.get("content-type").unwrap(), "application/json");
        assert_eq!(out.get("mcp-protocol-version").unwrap(), "2025-06-18");
        assert!(out.get("authorization").is_none());
        assert!(out.get("cookie").is_none());
        assert!(out.get("x-internal-secret").is_none());
        assert!(out.get("x-tenant-id").is_none(), "passthrough is off");
        assert_eq!(out.get("host").unwrap(), "mcp.internal:3001");
        assert_eq!(out.get("x-forwarded-host").unwrap(), "gateway.example.com");
        assert_eq!(out.get("x-authenticated-user").unwrap(), "alice");
    }

    #[test]
    fn passthrough_adds_listed_headers_but_never_credentials() {
        let id = alice();
        let h = client(&[
            ("x-tenant-id", "t1"),
            ("x-groups", "a"),
            ("x-groups", "b"),
            ("authorization", "Bearer gateway-token"),
            ("cookie", "c=1"),
            ("x-authenticated-user", "mallory"),
        ]);
        let p = policy(
            &[
                "X-Tenant-Id",
                "X-Groups",
                "Authorization",
                "Cookie",
                "X-Authenticated-User",
            ],
            false,
        );
        let out = run(&p, &h, &facts(&id));
        assert_eq!(out.get("x-tenant-id").unwrap(), "t1");
        assert_eq!(out.count("x-groups"), 2);
        assert!(out.get("authorization").is_none());
        assert!(out.get("cookie").is_none());
        assert_eq!(out.get("x-authenticated-user").unwrap(), "alice");
    }

    #[test]
    fn client_identity_header_is_not_forwarded_for_anonymous_callers() {
        let id = Identity::anonymous();
        let h = client(&[
            ("x-authenticated-user", "mallory"),
            ("x_authenticated_user", "m2"),
        ]);
        let out = run(&policy(&["X-Authenticated-User"], true), &h, &facts(&id));
        assert!(out.get("x-authenticated-user").is_none());
        assert!(out.get("x_authenticated_user").is_none());
    }

    #[test]
    fn base_headers_win_unless_overwrite_is_on() {
        let id = alice();
        let h = client(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        let untrusted = RequestFacts {
            peer_trusted: false,
            ..facts(&id)
        };
        let out = run(&policy(&["X-Forwarded-For"], false), &h, &untrusted);
        assert_eq!(out.get("x-forwarded-for").unwrap(), "10.0.0.9");
        assert_eq!(out.get("x-forwarded-proto").unwrap(), "http");
        let out = run(&policy(&["X-Forwarded-For"], false), &h, &facts(&id));
        assert_eq!(out.get("x-forwarded-for").unwrap(), "1.2.3.4, 10.0.0.9");
        assert_eq!(out.get("x-forwarded-proto").unwrap(), "https");
        let out = run(&policy(&["X-Forwarded-For"], true), &h, &untrusted);
        assert_eq!(out.get("x-forwarded-for").unwrap(), "1.2.3.4");
        assert_eq!(out.count("x-forwarded-for"), 1);
    }

    #[test]
    fn upstream_authorization_is_renamed_only_when_authenticated() {
        let h = client(&[
            ("authorization", "Bearer gateway"),
            ("x-upstream-authorization", "Bearer upstream-token"),
        ]);
        let id = alice();
        let out = run(&policy(&[], false), &h, &facts(&id));
        assert_eq!(out.get("authorization").unwrap(), "Bearer upstream-token");
        assert!(out.get("x-upstream-authorization").is_none());
        let anon = Identity::anonymous();
        let out = run(&policy(&[], false), &h, &facts(&anon));
        assert!(out.get("authorization").is_none());
        assert_eq!(out.dropped[0].name, X_UPSTREAM_AUTHORIZATION);
    }

    #[test]
    fn the_servers_credential_goes_upstream_unless_the_client_names_its_own() {
        let mut p = policy(&["X-Api-Key"], false);
        let mut key = HeaderValue::from_static("server-key");
        key.set_sensitive(true);
        p.credential = UpstreamCredentialHeaders {
            authorization: Some(HeaderValue::from_static("Bearer server-token")),
            others: vec![(HeaderName::from_static("x-api-key"), key)],
        };
        let id = alice();
        let h = client(&[("authorization", "Bearer gateway"), ("x-api-key", "client")]);
        let out = run(&p, &h, &facts(&id));
        assert_eq!(out.get("authorization").unwrap(), "Bearer server-token");
        // The gateway's credential, not a passthrough value the client chose.
        assert_eq!(out.get("x-api-key").unwrap(), "server-key");
        assert_eq!(out.count("x-api-key"), 1);
        let h = client(&[("x-upstream-authorization", "Bearer mine")]);
        let out = run(&p, &h, &facts(&id));
        assert_eq!(out.get("authorization").unwrap(), "Bearer mine");
        // Refused (not authenticated): the server's own credential is sent.
        let anon = Identity::anonymous();
        let out = run(&p, &h, &facts(&anon));
        assert_eq!(out.get("authorization").unwrap(), "Bearer server-token");
    }

    #[test]
    fn bad_values_are_dropped_and_reported() {
        let id = alice();
        let long = "a".repeat(MAX_VALUE_LEN + 1);
        let mut h = client(&[("x-tenant-id", &long)]);
        h.insert(
            "x-upstream-authorization",
            HeaderValue::from_bytes(b"Bearer \xffx").unwrap(),
        );
        let out = run(&policy(&["X-Tenant-Id"], false), &h, &facts(&id));
        assert!(out.get("x-tenant-id").is_none());
        assert!(out.get("authorization").is_none());
        assert_eq!(out.dropped.len(), 2);
    }

    /// (request headers, a header that must be absent, a header and the value it must hold)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, (&'a str, &'a str));

    #[test]
    fn connection_nominated_headers_are_not_forwarded_or_renamed() {
        let id = alice();
        let p = policy(&["X-Tenant-Id", "X-Forwarded-Host"], true);
        let cases: [Case; 5] = [
            (
                &[
                    ("x-upstream-authorization", "Bearer up"),
                    ("connection", "close, X-Upstream-Authorization"),
                ],
                "authorization",
                ("x-authenticated-user", "alice"),
            ),
            (
                &[("x-tenant-id", "t1"), ("connection", "x-tenant-id")],
                "x-tenant-id",
                ("x-authenticated-user", "alice"),
            ),
            // A nominated identity header equal to the authenticated user is
            // stripped by Pingora, so the gateway must set its own.
            (
                &[
                    ("x-authenticated-user", "alice"),
                    ("connection", "x-authenticated-user"),
                ],
                "authorization",
                ("x-authenticated-user", "alice"),
            ),
            // A nominated passthrough value cannot replace a base header.
            (
                &[
                    ("x-forwarded-host", "evil"),
                    ("host", "gw"),
                    ("connection", "X-Forwarded-Host"),
                ],
                "authorization",
                ("x-forwarded-host", "gw"),
            ),
            // The upgrade handshake is Pingora's: `Upgrade` stays allowlisted.
            (
                &[("upgrade", "websocket"), ("connection", "Upgrade")],
                "authorization",
                ("upgrade", "websocket"),
            ),
        ];
        for (sent, absent, (name, value)) in cases {
            let out = run(&p, &client(sent), &facts(&id));
            assert!(out.get(absent).is_none(), "{sent:?}");
            let got = out.map.get_all(name).iter().collect::<Vec<_>>();
            assert_eq!(got, [value], "{sent:?}");
            if sent[0].0 == "x-upstream-authorization" {
                assert!(out.dropped[0].why.contains("Connection"));
            }
        }
    }

    #[test]
    fn utf8_identities_travel_as_their_bytes() {
        let id = Identity {
            user: "josé@example.com".into(),
            source: IdentitySource::Jwt,
        };
        let out = run(&policy(&[], false), &client(&[]), &facts(&id));
        let forwarded = out.get("x-authenticated-user").map(HeaderValue::as_bytes);
        assert_eq!(forwarded, Some("josé@example.com".as_bytes()));
    }

    #[test]
    fn upstream_session_replaces_the_clients() {
        let id = alice();
        let h = client(&[("mcp-session-id", "gateway-token")]);
        let f = RequestFacts {
            upstream_session: Some("upstream-42"),
            ..facts(&id)
        };
        let out = run(&policy(&["Mcp-Session-Id"], true), &h, &f);
        assert_eq!(out.count("mcp-session-id"), 1);
        assert_eq!(out.get("mcp-session-id").unwrap(), "upstream-42");
    }
}
