//! `AuthPolicy::authenticate` in JWT, proxy-header and dual mode (and the
//! per-server `auth_mode` overrides) over arbitrary headers and peers, with
//! real JWTs signed from arbitrary claims so the JWT path is reached.
//! Invariants: it never panics; an identity is only what the table allows
//! (a proxy identity is the one trimmed header value from a trusted peer, a
//! JWT identity needs a verifier, anonymous needs `AUTH_REQUIRED=false`);
//! an authenticated identity is always a valid header value (it is sent
//! upstream as one, UTF-8 bytes as they are).
#![no_main]

use arbitrary::Arbitrary;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::{encode, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use mcp_gateway::config::{Settings, Source};
use mcp_gateway::identity::{AuthPolicy, IdentitySource};
use std::net::IpAddr;
use std::sync::OnceLock;

const SECRET: &str = "fuzz-secret-that-is-at-least-32-bytes-long";

const SERVERS: &str = "servers:
  - name: p
    urls: [http://127.0.0.1:9/mcp]
    auth_mode: proxy
    proxy_header: X-Employee-Id
  - name: j
    urls: [http://127.0.0.1:9/mcp]
    auth_mode: jwt
    jwt_audience: aud-j
  - name: i
    urls: [http://127.0.0.1:9/mcp]
    proxy_header: X-Employee-Id
";

/// Every combination of mode, `AUTH_REQUIRED` and `TRUSTED_PROXIES`, each
/// global policy followed by its servers' policies.
fn policies() -> &'static [AuthPolicy] {
    static POLICIES: OnceLock<Vec<AuthPolicy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let mut out = Vec::new();
        for (jwt, proxy) in [("true", "false"), ("false", "true"), ("true", "true")] {
            for required in ["true", "false"] {
                for trusted in ["", "127.0.0.1/32,10.0.0.0/8"] {
                    let src = Source::from_pairs([
                        ("MCP_CLIENT_AUTH_ENABLED", jwt),
                        ("TRUST_PROXY_AUTH", proxy),
                        ("AUTH_REQUIRED", required),
                        ("TRUSTED_PROXIES", trusted),
                        ("JWT_SECRET_KEY", SECRET),
                    ]);
                    let settings =
                        Settings::load(&src, Some(("fuzz.yaml", SERVERS))).expect("valid settings");
                    let global = AuthPolicy::global(&settings);
                    for spec in &settings.servers {
                        out.push(AuthPolicy::for_server(&settings.auth, &global, spec));
                    }
                    out.push(global);
                }
            }
        }
        out
    })
}

const NAMES: &[&str] = &[
    "authorization",
    "x-authenticated-user",
    "x-employee-id",
    "x_authenticated_user",
    "connection",
    "cookie",
];

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Claims {
    sub: Option<String>,
    email: Option<String>,
    /// Seconds from now; negative is expired.
    exp: i32,
    aud: Option<bool>,
    wrong_key: bool,
    scheme: Option<String>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    policy: u8,
    headers: Vec<(Name, Vec<u8>)>,
    jwt: Option<Claims>,
    peer: Option<Peer>,
}

#[derive(Arbitrary, Debug)]
enum Peer {
    Loopback,
    V4([u8; 4]),
    V6([u8; 16]),
}

fn bearer(claims: &Claims) -> Option<HeaderValue> {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let mut body = serde_json::json!({ "exp": now + i64::from(claims.exp) });
    if let Some(sub) = &claims.sub {
        body["sub"] = sub.as_str().into();
    }
    if let Some(email) = &claims.email {
        body["email"] = email.as_str().into();
    }
    if let Some(aud) = claims.aud {
        body["aud"] = if aud { "aud-j" } else { "other" }.into();
    }
    let key = if claims.wrong_key {
        "another-key"
    } else {
        SECRET
    };
    let token = encode(
        &Header::default(),
        &body,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .ok()?;
    let scheme = claims.scheme.as_deref().unwrap_or("Bearer");
    HeaderValue::from_str(&format!("{scheme} {token}")).ok()
}

fuzz_target!(|input: Input| {
    let policies = policies();
    let policy = &policies[input.policy as usize % policies.len()];
    let mut headers = HeaderMap::new();
    if let Some(v) = input.jwt.as_ref().and_then(bearer) {
        headers.append(AUTHORIZATION, v);
    }
    for (name, value) in &input.headers {
        let name = match name {
            Name::Known(i) => NAMES[*i as usize % NAMES.len()],
            Name::Raw(s) => s,
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    let peer = input.peer.as_ref().map(|p| match p {
        Peer::Loopback => IpAddr::from([127, 0, 0, 1]),
        Peer::V4(b) => IpAddr::from(*b),
        Peer::V6(b) => IpAddr::from(*b),
    });

    let Ok(identity) = policy.authenticate(&headers, peer) else {
        return;
    };
    match identity.source {
        IdentitySource::ProxyHeader => {
            let name = policy
                .proxy_header
                .as_ref()
                .expect("proxy identity without a proxy header");
            let values: Vec<_> = headers.get_all(name).iter().collect();
            assert_eq!(
                values.len(),
                1,
                "proxy identity from {} values",
                values.len()
            );
            assert_eq!(
                // UTF-8 identities are accepted and forwarded as their bytes.
                std::str::from_utf8(values[0].as_bytes())
                    .ok()
                    .map(str::trim),
                Some(identity.user.as_str()),
                "proxy identity is not the header's value"
            );
            assert!(
                policy.peer_is_trusted(peer),
                "proxy identity from an untrusted peer"
            );
        }
        IdentitySource::Jwt => {
            assert!(policy.jwt.is_some(), "JWT identity without a verifier");
            assert!(
                headers.contains_key(AUTHORIZATION),
                "JWT identity without a token"
            );
        }
        IdentitySource::Anonymous => assert!(
            !policy.auth_required || (policy.jwt.is_none() && policy.proxy_header.is_none()),
            "anonymous although authentication is required"
        ),
    }
    if identity.is_authenticated() {
        assert!(
            HeaderValue::from_bytes(identity.user.as_bytes()).is_ok(),
            "authenticated identity {:?} is not a valid header value",
            identity.user
        );
    }
});
