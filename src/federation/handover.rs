//! The hand-over from the data plane to the federation service: headers
//! only the data plane sets (a client's own copies are removed before the
//! request is forwarded), checked by the service with a per-process secret
//! compared in constant time, as defence in depth behind the socket's
//! file permissions.

use crate::identity::{Identity, IdentitySource};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// Every hand-over header starts with this; the data plane removes any
/// header with this prefix that a client sent.
pub const PREFIX: &str = "x-mcp-gateway-";

/// The per-process secret (hex); proves the request came through the data plane.
pub const SECRET: HeaderName = HeaderName::from_static("x-mcp-gateway-handover");
/// The authenticated user (percent-encoded UTF-8).
pub const USER: HeaderName = HeaderName::from_static("x-mcp-gateway-user");
/// `jwt`, `proxy_header` or `anonymous` ([`IdentitySource::as_str`]).
pub const SOURCE: HeaderName = HeaderName::from_static("x-mcp-gateway-source");
/// The client's address as the data plane saw it.
pub const PEER: HeaderName = HeaderName::from_static("x-mcp-gateway-peer");
/// The verified client certificate's names (comma-separated), on mTLS.
pub const CERT_NAMES: HeaderName = HeaderName::from_static("x-mcp-gateway-cert-names");
/// The virtual server a `/servers/{name}/mcp` request is for.
pub const SCOPE: HeaderName = HeaderName::from_static("x-mcp-gateway-scope");

/// Who is calling, as the data plane resolved it, plus the client's own
/// headers (hand-over headers removed): the header policy of each owning
/// server is applied to these, exactly as on its proxied route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    pub peer: Option<IpAddr>,
    pub cert_names: Option<Vec<String>>,
    pub headers: HeaderMap,
}

impl Caller {
    pub fn source(&self) -> IdentitySource {
        self.identity.source
    }
}

/// Whether a header is one of the hand-over's (or pretends to be).
pub fn is_handover_header(name: &HeaderName) -> bool {
    name.as_str().starts_with(PREFIX)
}

/// The user name as a header value: every byte outside `A-Z a-z 0-9 - . _ ~ @`
/// percent-encoded, so any UTF-8 name travels unchanged.
pub fn encode_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_user`]; `None` for anything it cannot have written.
pub fn decode_user(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The hand-over headers the data plane sets, for a caller it authenticated.
pub fn headers_for(
    secret: &HeaderValue,
    identity: &Identity,
    peer: Option<IpAddr>,
    cert_names: Option<&[String]>,
    virtual_server: Option<&str>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(6);
    out.push((SECRET, secret.clone()));
    out.push((SOURCE, HeaderValue::from_static(identity.source.as_str())));
    if identity.is_authenticated() {
        // Percent-encoded: always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&encode_user(&identity.user)) {
            out.push((USER, v));
        }
    }
    if let Some(ip) = peer {
        if let Ok(v) = HeaderValue::from_str(&ip.to_string()) {
            out.push((PEER, v));
        }
    }
    if let Some(names) = cert_names {
        let joined = names
            .iter()
            .map(|n| encode_user(n))
            .collect::<Vec<_>>()
            .join(",");
        if let Ok(v) = HeaderValue::from_str(&joined) {
            out.push((CERT_NAMES, v));
        }
    }
    if let Some(name) = virtual_server {
        if let Ok(v) = HeaderValue::from_str(name) {
            out.push((SCOPE, v));
        }
    }
    out
}

/// Why the service refuses a hand-over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoverError {
    /// No secret, several, or the wrong one: not from the data plane.
    Secret,
    /// The secret holds but a header is unreadable: a data-plane bug.
    Malformed(&'static str),
}

/// The one value of a header, if it appears exactly once.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a HeaderValue>, ()> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v)),
        _ => Err(()),
    }
}

/// The service's side: checks the secret in constant time, then reads the
/// caller and the virtual server's name (`None`: everything).
pub fn read(
    headers: &HeaderMap,
    secret: &HeaderValue,
) -> Result<(Caller, Option<String>), HandoverError> {
    let sent = single(headers, &SECRET)
        .ok()
        .flatten()
        .ok_or(HandoverError::Secret)?;
    if !bool::from(sent.as_bytes().ct_eq(secret.as_bytes())) {
        return Err(HandoverError::Secret);
    }
    let text = |name: &HeaderName, what: &'static str| -> Result<Option<&str>, HandoverError> {
        match single(headers, name) {
            Ok(Some(v)) => v
                .to_str()
                .map(Some)
                .map_err(|_| HandoverError::Malformed(what)),
            Ok(None) => Ok(None),
            Err(()) => Err(HandoverError::Malformed(what)),
        }
    };
    let source = match text(&SOURCE, "source")? {
        Some("jwt") => IdentitySource::Jwt,
        Some("proxy_header") => IdentitySource::ProxyHeader,
        Some("anonymous") => IdentitySource::Anonymous,
        _ => return Err(HandoverError::Malformed("source")),
    };
    let identity = match source {
        IdentitySource::Anonymous => Identity::anonymous(),
        _ => {
            let user = text(&USER, "user")?
                .and_then(decode_user)
                .filter(|u| !u.is_empty())
                .ok_or(HandoverError::Malformed("user"))?;
            Identity {
                user: user.as_str().into(),
                source,
            }
        }
    };
    let peer = match text(&PEER, "peer")? {
        Some(p) => Some(p.parse().map_err(|_| HandoverError::Malformed("peer"))?),
        None => None,
    };
    let cert_names = match text(&CERT_NAMES, "cert names")? {
        Some(list) => Some(
            list.split(',')
                .filter(|n| !n.is_empty())
                .map(|n| decode_user(n).ok_or(HandoverError::Malformed("cert names")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let scope = text(&SCOPE, "scope")?.map(str::to_string);
    let mut own = headers.clone();
    let handover_names: Vec<HeaderName> = own
        .keys()
        .filter(|n| is_handover_header(n))
        .cloned()
        .collect();
    for name in handover_names {
        own.remove(name);
    }
    Ok((
        Caller {
            identity,
            peer,
            cert_names,
            headers: own,
        },
        scope,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: HeaderValue = HeaderValue::from_static("s3cret");

    fn over(identity: &Identity, scope: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-tenant", HeaderValue::from_static("t1"));
        let certs = vec!["proxy.internal".to_string()];
        for (n, v) in headers_for(&KEY, identity, "10.0.0.7".parse().ok(), Some(&certs), scope) {
            h.insert(n, v);
        }
        h
    }

    #[test]
    fn users_round_trip_through_the_encoding() {
        for user in ["alice", "josé@example.com", "a b,c%d", "ü/é\u{1F600}"] {
            let encoded = encode_user(user);
            assert!(HeaderValue::from_str(&encoded).is_ok(), "{encoded}");
            assert!(!encoded.contains(','));
            assert_eq!(decode_user(&encoded).as_deref(), Some(user));
        }
        assert_eq!(decode_user("%zz"), None);
        assert_eq!(decode_user("%4"), None);
        assert_eq!(decode_user("%FF"), None);
    }

    #[test]
    fn the_caller_round_trips_and_loses_the_handover_headers() {
        let alice = Identity {
            user: "josé".into(),
            source: IdentitySource::Jwt,
        };
        let (caller, scope) = read(&over(&alice, Some("dev")), &KEY).unwrap();
        assert_eq!(caller.identity, alice);
        assert_eq!(caller.peer, "10.0.0.7".parse().ok());
        assert_eq!(
            caller.cert_names.as_deref(),
            Some(&["proxy.internal".to_string()][..])
        );
        assert_eq!(scope.as_deref(), Some("dev"));
        assert_eq!(caller.headers.get("x-tenant").unwrap(), "t1");
        assert!(caller.headers.keys().all(|n| !is_handover_header(n)));
        let (anon, scope) = read(&over(&Identity::anonymous(), None), &KEY).unwrap();
        assert!(!anon.identity.is_authenticated());
        assert_eq!(scope, None);
    }

    #[test]
    fn a_missing_duplicate_or_wrong_secret_is_refused() {
        let alice = Identity {
            user: "alice".into(),
            source: IdentitySource::ProxyHeader,
        };
        let mut h = over(&alice, None);
        h.remove(&SECRET);
        assert_eq!(read(&h, &KEY).unwrap_err(), HandoverError::Secret);
        let mut h = over(&alice, None);
        h.insert(&SECRET, HeaderValue::from_static("s3creT"));
        assert_eq!(read(&h, &KEY).unwrap_err(), HandoverError::Secret);
        let mut h = over(&alice, None);
        h.append(&SECRET, KEY);
        assert_eq!(read(&h, &KEY).unwrap_err(), HandoverError::Secret);
    }

    #[test]
    fn an_authenticated_source_without_a_user_is_malformed_not_anonymous() {
        let alice = Identity {
            user: "alice".into(),
            source: IdentitySource::ProxyHeader,
        };
        let mut h = over(&alice, None);
        h.remove(&USER);
        assert_eq!(
            read(&h, &KEY).unwrap_err(),
            HandoverError::Malformed("user")
        );
        let mut h = over(&alice, None);
        h.insert(&SOURCE, HeaderValue::from_static("root"));
        assert_eq!(
            read(&h, &KEY).unwrap_err(),
            HandoverError::Malformed("source")
        );
    }
}
