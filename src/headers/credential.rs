//! The credential the gateway itself presents to a server's replicas,
//! turned into header values once per server (marked sensitive, so no
//! debug output or HPACK table ever holds them).

use super::is_reserved_name;
use crate::config::UpstreamCredential;
use base64::Engine;
use http::header::{self, HeaderName, HeaderValue};

/// Hop-by-hop names (RFC 9110 7.6.1): a proxy consumes them, so a
/// credential sent under one would not reach the server.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The headers a server's credential adds to each upstream request.
#[derive(Debug, Clone, Default)]
pub struct UpstreamCredentialHeaders {
    /// `Authorization`, which a client's accepted `X-Upstream-Authorization`
    /// replaces.
    pub authorization: Option<HeaderValue>,
    /// Other headers (a `headers` credential), always the gateway's.
    pub others: Vec<(HeaderName, HeaderValue)>,
}

fn sensitive(value: &str, what: &str) -> Result<HeaderValue, String> {
    let mut v =
        HeaderValue::from_str(value).map_err(|_| format!("{what} is not a valid header value"))?;
    if value.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    v.set_sensitive(true);
    Ok(v)
}

impl UpstreamCredentialHeaders {
    /// Fails with the reason when a value cannot be a header value, or a
    /// `headers` credential names an identity, hop-by-hop or gateway-owned
    /// header (the message never contains a secret).
    pub fn prepare(
        credential: &UpstreamCredential,
        identity_headers: &[HeaderName],
    ) -> Result<Self, String> {
        let mut out = UpstreamCredentialHeaders::default();
        match credential {
            UpstreamCredential::None => {}
            UpstreamCredential::Bearer(token) => {
                out.authorization = Some(sensitive(
                    &format!("Bearer {}", token.expose()),
                    "the bearer token",
                )?);
            }
            UpstreamCredential::Basic { username, password } => {
                if username.contains(':') {
                    return Err("a basic username may not contain ':'".into());
                }
                let pair = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                out.authorization = Some(sensitive(&format!("Basic {encoded}"), "the password")?);
            }
            UpstreamCredential::Headers(headers) => {
                for (name, secret) in headers {
                    if identity_headers.contains(name) {
                        return Err(format!(
                            "{name} carries identity; it cannot be a credential"
                        ));
                    }
                    if HOP_BY_HOP.contains(&name.as_str()) {
                        return Err(format!("{name} is hop-by-hop"));
                    }
                    let value = sensitive(secret.expose(), &format!("the value of {name}"))?;
                    if name == header::AUTHORIZATION {
                        out.authorization = Some(value);
                    } else if is_reserved_name(name) {
                        return Err(format!("{name} is set by the gateway or the client"));
                    } else {
                        out.others.push((name.clone(), value));
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.authorization.is_none() && self.others.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn ids() -> Vec<HeaderName> {
        vec![HeaderName::from_static("x-authenticated-user")]
    }

    #[test]
    fn bearer_and_basic_become_authorization() {
        let bearer = UpstreamCredential::Bearer(Secret::new("tok-1"));
        let h = UpstreamCredentialHeaders::prepare(&bearer, &ids()).unwrap();
        let v = h.authorization.unwrap();
        assert_eq!(v, "Bearer tok-1");
        assert!(v.is_sensitive());
        let basic = UpstreamCredential::Basic {
            username: "svc".into(),
            password: Secret::new("pw"),
        };
        let h = UpstreamCredentialHeaders::prepare(&basic, &ids()).unwrap();
        assert_eq!(h.authorization.unwrap(), "Basic c3ZjOnB3");
        let none = UpstreamCredentialHeaders::prepare(&UpstreamCredential::None, &ids()).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn header_credentials_refuse_identity_and_hop_by_hop_names() {
        let with = |name: &'static str| {
            UpstreamCredential::Headers(vec![(
                HeaderName::from_static(name),
                Secret::new("s3cret"),
            )])
        };
        let ok = UpstreamCredentialHeaders::prepare(&with("x-api-key"), &ids()).unwrap();
        assert_eq!(ok.others.len(), 1);
        assert!(ok.others[0].1.is_sensitive());
        for bad in [
            "x-authenticated-user",
            "connection",
            "te",
            "host",
            "mcp-session-id",
        ] {
            let e = UpstreamCredentialHeaders::prepare(&with(bad), &ids()).unwrap_err();
            assert!(e.contains(bad), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn unusable_values_are_refused_without_echoing_them() {
        let bad = UpstreamCredential::Bearer(Secret::new("a\nb"));
        let e = UpstreamCredentialHeaders::prepare(&bad, &ids()).unwrap_err();
        assert!(!e.contains("a\nb"));
        let colon = UpstreamCredential::Basic {
            username: "a:b".into(),
            password: Secret::new("p"),
        };
        assert!(UpstreamCredentialHeaders::prepare(&colon, &ids()).is_err());
    }
}
