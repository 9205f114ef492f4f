//! The identity header set by a trusted auth proxy: either the user name
//! itself (oauth2-proxy, Authelia, Cloudflare Access, ALB, Kong) or, with
//! `PROXY_USER_CLAIM`, a base64 JSON payload to take one claim from (Istio's
//! `outputPayloadToHeader`, Envoy's `forward_payload_header`).

use super::{unforwardable, AuthError, AuthPolicy, Peer, UserName};
use crate::headers::connection_nominates;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use http::{HeaderMap, HeaderName};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use std::fmt;

/// Longest payload header accepted. A JWT payload with group claims runs to
/// several KiB (Azure AD caps groups at 200 before switching to an overage
/// claim); 16 KiB of base64 holds 12 KiB of JSON and stays below common
/// proxies' header limits (Envoy 60 KiB in total, nginx 8–16 KiB per line).
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024;

/// Padded or not: Envoy pads only with `pad_forward_payload_header`.
const INDIFFERENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, INDIFFERENT);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, INDIFFERENT);

fn invalid(why: impl Into<String>) -> AuthError {
    AuthError::InvalidHeaderValue(why.into())
}

/// The user the proxy vouches for, if the request carries the header.
pub(super) fn identity(
    policy: &AuthPolicy,
    name: &HeaderName,
    headers: &HeaderMap,
    peer: Peer<'_>,
) -> Result<Option<UserName>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::DuplicateHeader);
    }
    if connection_nominates(headers, name) {
        return Err(AuthError::NominatedByConnection);
    }
    // A payload is unsigned by the time it reaches us: configuration makes
    // TRUSTED_PROXIES mandatory with PROXY_USER_CLAIM; this keeps it so.
    if !policy.peer_is_trusted(peer) || (policy.proxy_claim.is_some() && !policy.restricts_peers())
    {
        return Err(AuthError::UntrustedPeer);
    }
    let claimed;
    let user = match &policy.proxy_claim {
        None => plain_value(value.as_bytes())?,
        Some(claim) => {
            claimed = payload_claim(value.as_bytes(), claim)?;
            claimed.as_str()
        }
    };
    if let Some(why) = unforwardable(user) {
        return Err(invalid(format!("value {why}")));
    }
    Ok(Some(UserName::from(user)))
}

/// The header's value as the user name. UTF-8 is accepted (see
/// [`super::unforwardable`]); other bytes cannot be a name.
#[inline]
fn plain_value(bytes: &[u8]) -> Result<&str, AuthError> {
    // A header value holds no other ASCII whitespace than space and tab.
    std::str::from_utf8(bytes.trim_ascii()).map_err(|_| invalid("value is not UTF-8"))
}

/// The string claim `claim` of a base64 (standard or URL-safe, padded or
/// not) JSON object.
fn payload_claim(bytes: &[u8], claim: &str) -> Result<String, AuthError> {
    if bytes.len() > MAX_PAYLOAD_LEN {
        return Err(invalid("payload is longer than 16 KiB"));
    }
    let text = std::str::from_utf8(bytes.trim_ascii())
        .map_err(|_| invalid("is not a base64 JSON payload"))?;
    let engine = if text.contains(['+', '/']) {
        &STANDARD
    } else {
        &URL_SAFE
    };
    let json = engine
        .decode(text)
        .map_err(|_| invalid("is not a base64 JSON payload"))?;
    let mut de = serde_json::Deserializer::from_slice(&json);
    let found = ClaimOf(claim)
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|_| invalid("payload is not a JSON object"))?;
    match found {
        Found::Once(serde_json::Value::String(user)) => Ok(user),
        Found::Once(_) => Err(invalid(format!("payload claim {claim} is not a string"))),
        Found::Missing => Err(invalid(format!("payload has no claim {claim}"))),
        // Parsers disagree on which duplicate wins; refuse to guess.
        Found::Twice => Err(invalid(format!(
            "payload claim {claim} appears more than once"
        ))),
    }
}

enum Found {
    Missing,
    Once(serde_json::Value),
    Twice,
}

/// Reads one member of a JSON object and skips the rest without building
/// them: a payload of several KiB is parsed on every proxied request.
struct ClaimOf<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for ClaimOf<'_> {
    type Value = Found;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimOf<'_> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        let mut found = Found::Missing;
        while let Some(is_claim) = map.next_key_seed(KeyIs(self.0))? {
            found = match (is_claim, found) {
                (false, found) => {
                    map.next_value::<IgnoredAny>()?;
                    found
                }
                (true, Found::Missing) => Found::Once(map.next_value()?),
                (true, _) => {
                    map.next_value::<IgnoredAny>()?;
                    Found::Twice
                }
            };
        }
        Ok(found)
    }
}

/// Whether a key equals the claim name, compared without allocating when
/// the key has no escapes.
struct KeyIs<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a claim name")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use base64::engine::general_purpose::{STANDARD as STD_PAD, URL_SAFE_NO_PAD};
    use serde_json::json;

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
        let mapped = Some("::ffff:10.0.0.1".parse().unwrap());
        assert!(p.authenticate(&one, mapped).is_ok());
    }

    #[test]
    fn header_values_must_be_forwardable_exactly() {
        let p = policy(&[
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
        ]);
        for (value, want) in [
            (&b"  carol "[..], Ok("carol")),
            ("josé@example.com".as_bytes(), Ok("josé@example.com")),
            (b" ", Err("value is empty")),
            (b"a\tb", Err("value holds control characters")),
            (b"\xc2\x85x", Err("value holds control characters")),
            (b"caf\xe9", Err("value is not UTF-8")),
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                "x-authenticated-user",
                http::HeaderValue::from_bytes(value).unwrap(),
            );
            let got = p.authenticate(&h, LOCAL).map(|id| id.user.to_string());
            let want = want
                .map(str::to_string)
                .map_err(|w| AuthError::InvalidHeaderValue(w.into()));
            assert_eq!(got, want, "{value:?}");
        }
        let long = "a".repeat(super::super::MAX_IDENTITY_LEN + 1);
        assert!(p
            .authenticate(&headers(&[("x-authenticated-user", &long)]), LOCAL)
            .is_err());
    }

    fn istio(extra: &[(&str, &str)]) -> super::super::AuthPolicy {
        let mut pairs = vec![
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
            ("PROXY_USER_HEADER", "X-User-Id"),
            ("PROXY_USER_CLAIM", "email"),
            ("TRUSTED_PROXIES", "127.0.0.0/8"),
        ];
        pairs.extend_from_slice(extra);
        policy(&pairs)
    }

    #[test]
    fn payload_claims_in_every_base64_spelling() {
        let p = istio(&[]);
        // Realistic size: a Google/Azure payload with a few hundred groups.
        let groups: Vec<String> = (0..200)
            .map(|i| format!("group-{i:04}-engineering"))
            .collect();
        let payload = json!({
            "iss": "https://accounts.google.com", "sub": "1234567890",
            "email": "josé@example.com", "groups": groups,
            "nested": {"email": "not-this"}, "exp": 1_900_000_000
        })
        .to_string();
        assert!(payload.len() > 4096);
        for encoded in [
            URL_SAFE_NO_PAD.encode(&payload),
            STD_PAD.encode(&payload),
            base64::engine::general_purpose::URL_SAFE.encode(&payload),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(&payload),
        ] {
            let id = p
                .authenticate(&headers(&[("x-user-id", &encoded)]), LOCAL)
                .unwrap();
            assert_eq!(id.user, "josé@example.com");
        }
    }

    #[test]
    fn bad_payloads_are_refused_with_the_reason() {
        let p = istio(&[]);
        let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let huge =
            URL_SAFE_NO_PAD.encode(json!({"email": "a", "pad": "x".repeat(13_000)}).to_string());
        for (value, why) in [
            ("alice@example.com".to_string(), "not a base64 JSON payload"),
            ("not base64!".into(), "not a base64 JSON payload"),
            (URL_SAFE_NO_PAD.encode("[1,2]"), "not a JSON object"),
            (URL_SAFE_NO_PAD.encode("{\"email\":"), "not a JSON object"),
            (b64(json!({"sub": "a"})), "no claim email"),
            (b64(json!({"email": 7})), "claim email is not a string"),
            (b64(json!({"email": "a\r\nb"})), "control characters"),
            (
                URL_SAFE_NO_PAD.encode(r#"{"email":"a","email":"b"}"#),
                "more than once",
            ),
            (huge, "longer than 16 KiB"),
        ] {
            match p.authenticate(&headers(&[("x-user-id", &value)]), LOCAL) {
                Err(AuthError::InvalidHeaderValue(got)) => {
                    assert!(got.contains(why), "{value:.40}: {got}")
                }
                other => panic!("{value:.40}: {other:?}"),
            }
        }
        let outside = Some("10.0.0.1".parse().unwrap());
        let ok = b64(json!({"email": "a@x"}));
        assert_eq!(
            p.authenticate(&headers(&[("x-user-id", &ok)]), outside),
            Err(AuthError::UntrustedPeer)
        );
    }
}
