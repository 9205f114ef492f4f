//! Bearer JWTs: HMAC verification with the claims rules of DESIGN.md, and
//! the verified tokens remembered so a client's repeated token costs a
//! lookup, not a verification.

use super::token_cache::TokenCache;
use super::{unforwardable, AuthError, UserName};
use crate::config::AuthSettings;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::AUTHORIZATION;
use http::HeaderMap;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

/// Clock skew tolerated on `exp` and `nbf`, in seconds. Issuer and gateway
/// clocks are NTP-synchronised to well under a second, but a token minted on
/// a host whose clock runs a little ahead must not fail for a minute; 60 s is
/// jsonwebtoken's default and what most IdP libraries use, and it bounds how
/// long an expired token is still honoured. Cache hits are stricter: a
/// remembered token stops at `exp` itself.
pub const CLOCK_LEEWAY_SECS: u64 = 60;

/// Distinct verified tokens remembered per verifier.
const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// HMAC JWT verification, configured once.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    verified: TokenCache,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    email: Option<String>,
    /// NumericDate: some issuers write fractions. Optional here so that its
    /// absence is reported by the required-claims check, which names it.
    #[serde(default)]
    exp: Option<f64>,
}

/// The only JOSE header parameter the gateway has to look at itself:
/// jsonwebtoken ignores `crit`, which RFC 7515 §4.1.11 forbids.
#[derive(Deserialize)]
struct JoseHeader {
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

fn invalid(why: impl Into<String>) -> AuthError {
    AuthError::InvalidToken(why.into())
}

impl JwtVerifier {
    pub fn new(settings: &AuthSettings, audience: Option<&str>) -> Option<Self> {
        let secret = settings.jwt.secret.as_ref()?;
        let mut validation = Validation::new(settings.jwt.algorithm);
        validation.validate_nbf = true;
        validation.leeway = CLOCK_LEEWAY_SECS;
        // A configured audience or issuer must be present, not merely not wrong.
        let mut required = vec!["exp"];
        match audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &settings.jwt.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Some(JwtVerifier {
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            verified: TokenCache::new(TOKEN_CACHE_CAPACITY),
        })
    }

    pub fn verify(&self, token: &str) -> Result<UserName, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(user) = self.verified.get(token, now) {
            return Ok(user);
        }
        refuse_critical_extensions(token)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| invalid(jwt_error_text(e.kind())))?;
        let claims = data.claims;
        // `sub` wins when present: falling back to `email` because `sub` is
        // unusable would pick another identity than the issuer meant.
        let (claim, user) = match (claims.sub, claims.email) {
            (Some(sub), _) if !sub.is_empty() => ("sub", sub),
            (_, Some(email)) if !email.is_empty() => ("email", email),
            _ => return Err(invalid("token has neither sub nor email")),
        };
        if let Some(why) = unforwardable(&user) {
            return Err(invalid(format!(
                "claim {claim} {why}, so it cannot be forwarded as the identity"
            )));
        }
        let user = UserName::from(user.as_str());
        if let Some(exp) = claims.exp {
            // Remembered only until `exp` itself: stricter than the leeway.
            self.verified.insert(token, &user, exp as u64, now);
        }
        Ok(user)
    }
}

/// The gateway implements no JWS extension, so a token that marks any header
/// parameter critical must be refused, not verified as if it were absent.
/// Parsed only on a cache miss: a remembered token passed this check.
fn refuse_critical_extensions(token: &str) -> Result<(), AuthError> {
    let segment = token.split('.').next().unwrap_or_default();
    let header: JoseHeader = URL_SAFE_NO_PAD
        .decode(segment)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| invalid("malformed token header"))?;
    match header.crit {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(crit) => {
            let names: Vec<&str> = crit
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            Err(invalid(format!(
                "token header marks [{}] critical (crit); no JWS extension is supported",
                names.join(", ")
            )))
        }
    }
}

fn jwt_error_text(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind::*;
    match kind {
        ExpiredSignature => "token expired",
        InvalidSignature => "bad signature",
        InvalidAudience => "wrong audience",
        InvalidIssuer => "wrong issuer",
        ImmatureSignature => "token not yet valid (nbf is in the future)",
        InvalidAlgorithm => "algorithm not accepted",
        MissingRequiredClaim(claim) => return format!("missing required claim {claim}"),
        _ => "malformed token",
    }
    .into()
}

/// The Bearer token, if the request carries exactly one `Authorization: Bearer`.
/// A Bearer credential that is empty is a bad credential, not an absent
/// one: it must not fall back to the proxy header.
pub(super) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("more than one Authorization header"));
    }
    let Ok(text) = value.to_str() else {
        return Err(invalid("malformed Authorization header"));
    };
    let text = text.trim_matches([' ', '\t']);
    let (scheme, token) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Basic and other schemes are not MCP client credentials.
        return Ok(None);
    }
    let token = token.trim_matches([' ', '\t']);
    if token.is_empty() {
        Err(invalid("empty bearer token"))
    } else {
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::IdentitySource;
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    use serde_json::json;

    fn bearer(t: &str) -> HeaderMap {
        headers(&[("authorization", &format!("Bearer {t}"))])
    }

    fn refusal(p: &super::super::AuthPolicy, t: &str) -> String {
        match p.authenticate(&bearer(t), LOCAL) {
            Err(AuthError::InvalidToken(why)) => why,
            other => panic!("expected invalid_token, got {other:?}"),
        }
    }

    /// An HS256 token with a header of our choosing (jsonwebtoken's `Header`
    /// cannot carry `crit`).
    fn token_with_header(header: serde_json::Value, claims: serde_json::Value) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    #[test]
    fn valid_jwt_gives_sub_then_email() {
        let p = policy(&[]);
        let t = token(json!({"sub": "alice", "exp": future()}));
        let id = p.authenticate(&bearer(&t), LOCAL).unwrap();
        assert_eq!(
            (id.user.as_str(), id.source),
            ("alice", IdentitySource::Jwt)
        );
        let t = token(json!({"email": "bob@example.com", "exp": future()}));
        let h = headers(&[("authorization", &format!("bearer {t}"))]);
        assert_eq!(p.authenticate(&h, LOCAL).unwrap().user, "bob@example.com");
    }

    #[test]
    fn invalid_jwt_never_falls_back_to_the_proxy_header() {
        let p = policy(&[("TRUST_PROXY_AUTH", "true")]);
        let expired = token(json!({"sub": "a", "exp": 1000}));
        for auth in [
            format!("Bearer {expired}"),
            "Bearer not.a.jwt".into(),
            // An empty Bearer is a bad credential, not a missing one.
            "Bearer".into(),
            "bearer ".into(),
            "BEARER \t ".into(),
            "Bearer\t".into(),
        ] {
            let h = headers(&[
                ("authorization", &auth),
                ("x-authenticated-user", "mallory"),
            ]);
            assert!(
                matches!(p.authenticate(&h, LOCAL), Err(AuthError::InvalidToken(_))),
                "{auth:?}"
            );
        }
        // Other schemes are no MCP credential: the proxy header decides.
        let h = headers(&[
            ("authorization", "Basic YTpi"),
            ("x-authenticated-user", "carol"),
        ]);
        assert_eq!(p.authenticate(&h, LOCAL).unwrap().user, "carol");
    }

    #[test]
    fn remembered_tokens_are_matched_whole_and_shared() {
        let p = policy(&[]);
        let t = token(json!({"sub": "alice", "exp": future()}));
        let first = p.authenticate(&bearer(&t), LOCAL).unwrap().user;
        let second = p.authenticate(&bearer(&t), LOCAL).unwrap().user;
        // A hit hands out the remembered name itself, not a copy.
        assert!(std::ptr::eq(first.as_str(), second.as_str()));
        // One byte off in the signature of a remembered token: verified, refused.
        let mut forged = t.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(matches!(
            p.authenticate(&bearer(&forged), LOCAL),
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[test]
    fn missing_claims_are_named() {
        let p = policy(&[("JWT_AUDIENCE", "mcp"), ("JWT_ISSUER", "https://idp")]);
        let all = json!({"sub": "a", "aud": "mcp", "iss": "https://idp", "exp": future()});
        assert!(p.authenticate(&bearer(&token(all.clone())), LOCAL).is_ok());
        for claim in ["exp", "aud", "iss"] {
            let mut claims = all.clone();
            claims.as_object_mut().unwrap().remove(claim);
            assert_eq!(
                refusal(&p, &token(claims)),
                format!("missing required claim {claim}")
            );
        }
        let wrong_aud = json!({"sub": "a", "aud": "other", "iss": "https://idp", "exp": future()});
        assert_eq!(refusal(&p, &token(wrong_aud)), "wrong audience");
    }

    #[test]
    fn nbf_is_checked_with_the_documented_leeway() {
        let p = policy(&[]);
        let now = jsonwebtoken::get_current_timestamp();
        for (nbf, ok) in [
            (now - 10, true),
            (now + CLOCK_LEEWAY_SECS - 5, true),
            (now + CLOCK_LEEWAY_SECS + 30, false),
            (now + 3600, false),
        ] {
            let t = token(json!({"sub": "a", "nbf": nbf, "exp": now + 7200}));
            let r = p.authenticate(&bearer(&t), LOCAL);
            assert_eq!(r.is_ok(), ok, "nbf {nbf} (now {now}): {r:?}");
            if !ok {
                assert!(refusal(&p, &t).contains("not yet valid"));
            }
        }
    }

    #[test]
    fn critical_header_parameters_are_refused() {
        let p = policy(&[]);
        let claims = json!({"sub": "a", "exp": future()});
        let plain = token_with_header(json!({"alg": "HS256", "typ": "JWT"}), claims.clone());
        assert!(p.authenticate(&bearer(&plain), LOCAL).is_ok());
        for crit in [
            json!(["b64"]),
            json!(["exp", "x-ext"]),
            json!([]),
            json!("b64"),
        ] {
            let t = token_with_header(
                json!({"alg": "HS256", "crit": crit, "b64": false}),
                claims.clone(),
            );
            let why = refusal(&p, &t);
            assert!(why.contains("crit"), "{crit}: {why}");
        }
    }

    #[test]
    fn identities_that_cannot_be_forwarded_exactly_are_refused() {
        let p = policy(&[("TRUST_PROXY_AUTH", "true")]);
        for (claims, claim) in [
            (json!({"sub": "alice\r\nX-Admin: 1"}), "sub"),
            (json!({"sub": "al\u{1}ice"}), "sub"),
            (json!({"sub": "alice\u{7f}"}), "sub"),
            (json!({"sub": " alice"}), "sub"),
            (json!({"email": "bob@example.com\n"}), "email"),
            // `sub` decides even when `email` would be clean.
            (json!({"sub": "a\u{0}", "email": "bob@example.com"}), "sub"),
        ] {
            let mut claims = claims;
            claims["exp"] = json!(future());
            let t = token(claims.clone());
            let h = headers(&[
                ("authorization", &format!("Bearer {t}")),
                ("x-authenticated-user", "carol"),
            ]);
            match p.authenticate(&h, LOCAL) {
                Err(AuthError::InvalidToken(why)) => {
                    assert!(why.contains(&format!("claim {claim} ")), "{why}");
                    assert!(why.contains("cannot be forwarded"), "{why}");
                }
                other => panic!("{claims}: {other:?}"),
            }
        }
        let t = token(json!({"sub": "josé@example.com", "exp": future()}));
        assert_eq!(
            p.authenticate(&bearer(&t), LOCAL).unwrap().user,
            "josé@example.com"
        );
    }
}
