//! Every row of DESIGN.md's identity table, end to end.

use crate::harness::*;
use serde_json::json;

fn one_server(demo: &Demo) -> String {
    servers_yaml(&[("demo", &[demo.url()])])
}

fn status_of(gw: &Gateway, headers: &[(&str, &str)]) -> u16 {
    gw.initialize("demo", headers).0.status
}

#[test]
fn jwt_mode_takes_the_identity_from_sub_then_email() {
    let demo = Demo::start("d");
    let gw = Gateway::start(&[("JWT_SECRET_KEY", SECRET)], &one_server(&demo));
    let sub = bearer(&jwt(
        json!({"sub": "alice", "email": "a@x", "exp": in_an_hour()}),
    ));
    let seen = gw.upstream_view("demo", &[("Authorization", &sub)]);
    assert_eq!(seen["headers"]["x-authenticated-user"], "alice");
    let email = bearer(&jwt(
        json!({"email": "bob@example.com", "exp": in_an_hour()}),
    ));
    let seen = gw.upstream_view("demo", &[("Authorization", &email)]);
    assert_eq!(seen["headers"]["x-authenticated-user"], "bob@example.com");
    // In JWT-only mode a proxy header is no credential.
    assert_eq!(status_of(&gw, &[("X-Authenticated-User", "alice")]), 401);
}

#[test]
fn invalid_jwt_is_401_even_with_a_proxy_header() {
    let demo = Demo::start("d");
    let gw = Gateway::start(
        &[("JWT_SECRET_KEY", SECRET), ("TRUST_PROXY_AUTH", "true")],
        &one_server(&demo),
    );
    let expired = bearer(&jwt(json!({"sub": "alice", "exp": 1_000})));
    let forged = {
        let t = jwt(json!({"sub": "alice", "exp": in_an_hour()}));
        bearer(&format!("{}x", &t[..t.len() - 1]))
    };
    for auth in [expired, forged, "Bearer not-a-jwt".to_string()] {
        let (r, sid) = gw.initialize(
            "demo",
            &[("Authorization", &auth), ("X-Authenticated-User", "alice")],
        );
        assert_eq!(r.status, 401, "{auth}: {r:?}");
        assert!(sid.is_none());
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token"));
        let body = r.json();
        assert_eq!(body["jsonrpc"], "2.0");
        assert_eq!(body["error"]["code"], -32006);
    }
}

#[test]
fn dual_mode_accepts_either_credential() {
    let demo = Demo::start("d");
    let gw = Gateway::start(
        &[
            ("JWT_SECRET_KEY", SECRET),
            ("MCP_CLIENT_AUTH_ENABLED", "true"),
            ("TRUST_PROXY_AUTH", "true"),
            ("PROXY_USER_HEADER", "X-Auth-Request-Email"),
        ],
        &one_server(&demo),
    );
    let token = bearer(&jwt(json!({"sub": "jwt-user", "exp": in_an_hour()})));
    let seen = gw.upstream_view("demo", &[("Authorization", &token)]);
    assert_eq!(seen["headers"]["x-auth-request-email"], "jwt-user");
    let seen = gw.upstream_view("demo", &[("X-Auth-Request-Email", "user@example.com")]);
    assert_eq!(seen["headers"]["x-auth-request-email"], "user@example.com");
}

#[test]
fn proxy_only_mode_uses_the_configured_header() {
    let demo = Demo::start("d");
    let gw = Gateway::start(
        &[
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
            ("PROXY_USER_HEADER", "Remote-User"),
        ],
        &one_server(&demo),
    );
    let seen = gw.upstream_view("demo", &[("Remote-User", "dave")]);
    assert_eq!(seen["headers"]["remote-user"], "dave");
    // A bearer token is not a credential here, and never travels upstream.
    let token = bearer(&jwt(json!({"sub": "x", "exp": in_an_hour()})));
    assert_eq!(status_of(&gw, &[("Authorization", &token)]), 401);
    let v = gw
        .request("GET", "/version", &[("Remote-User", "dave")], "")
        .json();
    assert_eq!(
        v["identity"],
        json!({"user": "dave", "source": "proxy_header"})
    );
}

#[test]
fn no_credential_is_401_when_auth_is_required_else_anonymous() {
    let demo = Demo::start("d");
    let strict = Gateway::start(
        &[
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
        ],
        &one_server(&demo),
    );
    let (r, _) = strict.initialize("demo", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"mcp-gateway\"")
    );
    let lax = Gateway::start(
        &[
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
            ("AUTH_REQUIRED", "false"),
        ],
        &one_server(&demo),
    );
    let seen = lax.upstream_view("demo", &[]);
    assert!(
        seen["headers"].get("x-authenticated-user").is_none(),
        "{seen}"
    );
}

#[test]
fn everything_off_is_anonymous_with_the_documented_warning() {
    let demo = Demo::start("d");
    let gw = Gateway::start(&[("MCP_CLIENT_AUTH_ENABLED", "false")], &one_server(&demo));
    let seen = gw.upstream_view("demo", &[("X-Authenticated-User", "mallory")]);
    assert!(
        seen["headers"].get("x-authenticated-user").is_none(),
        "{seen}"
    );
    let log = gw
        .proc
        .output_when(|log| log.contains("MCP client authentication is disabled"));
    assert!(
        log.contains("MCP client authentication is disabled but trust_proxy_auth is not set"),
        "{log}"
    );
}

#[test]
fn per_server_auth_modes_override_the_global_one() {
    let demo = Demo::start("d");
    let yaml = format!(
        "servers:\n  - name: internal\n    urls: [{u}]\n    auth_mode: proxy\n    proxy_header: X-Employee-Id\n  - name: external\n    urls: [{u}]\n    auth_mode: jwt\n    jwt_audience: external-clients\n  - name: plain\n    urls: [{u}]\n",
        u = demo.url()
    );
    let gw = Gateway::start(
        &[
            ("JWT_SECRET_KEY", SECRET),
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
        ],
        &yaml,
    );
    let seen = gw.upstream_view("internal", &[("X-Employee-Id", "e-42")]);
    assert_eq!(seen["headers"]["x-employee-id"], "e-42");
    assert_eq!(
        gw.initialize("internal", &[("X-Authenticated-User", "e-42")])
            .0
            .status,
        401
    );

    let good = bearer(&jwt(
        json!({"sub": "ext", "aud": "external-clients", "exp": in_an_hour()}),
    ));
    let wrong = bearer(&jwt(
        json!({"sub": "ext", "aud": "other", "exp": in_an_hour()}),
    ));
    assert_eq!(
        gw.initialize("external", &[("Authorization", &good)])
            .0
            .status,
        200
    );
    assert_eq!(
        gw.initialize("external", &[("Authorization", &wrong)])
            .0
            .status,
        401
    );
    assert_eq!(
        gw.initialize("external", &[("X-Authenticated-User", "u")])
            .0
            .status,
        401
    );

    assert_eq!(
        gw.initialize("plain", &[("X-Authenticated-User", "u")])
            .0
            .status,
        200
    );
}

/// A dual-mode gateway (JWT and proxy header) with one demo server.
fn dual(demo: &Demo, extra: &[(&str, &str)]) -> Gateway {
    let mut env = vec![("JWT_SECRET_KEY", SECRET), ("TRUST_PROXY_AUTH", "true")];
    env.extend_from_slice(extra);
    Gateway::start(&env, &one_server(demo))
}

/// The 401 for `headers`, with the body's message.
fn refused(gw: &Gateway, headers: &[(&str, &str)]) -> String {
    let (r, sid) = gw.initialize("demo", headers);
    assert_eq!(r.status, 401, "{headers:?}: {r:?}");
    assert!(sid.is_none());
    r.json()["error"]["message"]
        .as_str()
        .expect("message")
        .to_string()
}

#[test]
fn identities_that_cannot_be_forwarded_exactly_are_401_never_anonymous() {
    let demo = Demo::start("d");
    let gw = dual(&demo, &[]);
    for claims in [
        json!({"sub": "alice\r\nX-Admin: 1"}),
        json!({"sub": "al\u{1}ice"}),
        json!({"sub": "alice\u{7f}"}),
        json!({"sub": "alice\n"}),
        json!({"sub": " alice"}),
        json!({"email": "bob@example.com\r"}),
    ] {
        let mut claims = claims;
        claims["exp"] = json!(in_an_hour());
        let token = bearer(&jwt(claims.clone()));
        let message = refused(
            &gw,
            &[("Authorization", &token), ("X-Authenticated-User", "carol")],
        );
        assert!(
            message.contains("cannot be forwarded"),
            "{claims}: {message}"
        );
    }
    // Proxy-header values the same: a tab survives HTTP parsing, and must
    // not survive authentication.
    let message = refused(&gw, &[("X-Authenticated-User", "car\tol")]);
    assert!(message.contains("control characters"), "{message}");

    // Non-ASCII UTF-8 travels as its exact bytes, from either source.
    let token = bearer(&jwt(
        json!({"sub": "josé@example.com", "exp": in_an_hour()}),
    ));
    for headers in [
        [("Authorization", token.as_str())],
        [("X-Authenticated-User", "josé@example.com")],
    ] {
        let seen = gw.upstream_view("demo", &headers);
        assert_eq!(seen["headers"]["x-authenticated-user"], "josé@example.com");
    }
}

#[test]
fn not_yet_valid_and_critical_tokens_are_401() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let demo = Demo::start("d");
    let gw = dual(&demo, &[]);
    let now = jsonwebtoken::get_current_timestamp();
    let signed = |header: serde_json::Value, claims: serde_json::Value| {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let claims = |nbf: u64| json!({"sub": "alice", "nbf": nbf, "exp": now + 7200});
    for (token, expect) in [
        (
            signed(hs256.clone(), claims(now + 3600)),
            Some("not yet valid"),
        ),
        (
            signed(hs256.clone(), claims(now + 120)),
            Some("not yet valid"),
        ),
        // Within the 60 s clock leeway.
        (signed(hs256.clone(), claims(now + 20)), None),
        (signed(hs256.clone(), claims(now - 60)), None),
        (
            signed(
                json!({"alg": "HS256", "crit": ["b64"], "b64": false}),
                claims(now),
            ),
            Some("critical"),
        ),
        (
            signed(json!({"alg": "HS256", "crit": ["exp"]}), claims(now)),
            Some("critical"),
        ),
    ] {
        let auth = bearer(&token);
        let headers = [
            ("Authorization", auth.as_str()),
            ("X-Authenticated-User", "carol"),
        ];
        match expect {
            Some(why) => {
                let message = refused(&gw, &headers);
                assert!(message.contains(why), "{message}");
            }
            None => {
                let seen = gw.upstream_view("demo", &headers);
                assert_eq!(seen["headers"]["x-authenticated-user"], "alice");
            }
        }
    }
}

#[test]
fn an_empty_bearer_never_falls_back_to_the_proxy_header() {
    let demo = Demo::start("d");
    let gw = dual(&demo, &[]);
    for auth in ["Bearer", "Bearer ", "bearer", "BEARER   ", "Bearer \t"] {
        let (r, _) = gw.initialize(
            "demo",
            &[("Authorization", auth), ("X-Authenticated-User", "carol")],
        );
        assert_eq!(r.status, 401, "{auth:?}: {r:?}");
        assert!(r
            .header("www-authenticate")
            .is_some_and(|c| c.contains("invalid_token")));
    }
    // Another scheme is no MCP credential: the proxy header still decides.
    let seen = gw.upstream_view(
        "demo",
        &[
            ("Authorization", "Basic YTpi"),
            ("X-Authenticated-User", "carol"),
        ],
    );
    assert_eq!(seen["headers"]["x-authenticated-user"], "carol");
}

#[test]
fn a_missing_required_claim_is_named() {
    let demo = Demo::start("d");
    let gw = dual(
        &demo,
        &[
            ("JWT_AUDIENCE", "mcp"),
            ("JWT_ISSUER", "https://idp.example"),
        ],
    );
    let all = json!({"sub": "a", "aud": "mcp", "iss": "https://idp.example", "exp": in_an_hour()});
    assert_eq!(
        gw.initialize("demo", &[("Authorization", &bearer(&jwt(all.clone())))])
            .0
            .status,
        200
    );
    for claim in ["exp", "aud", "iss"] {
        let mut claims = all.clone();
        claims.as_object_mut().expect("object").remove(claim);
        let message = refused(&gw, &[("Authorization", &bearer(&jwt(claims)))]);
        assert!(
            message.ends_with(&format!("missing required claim {claim}")),
            "{message}"
        );
    }
}

#[test]
fn istio_payload_header_gives_the_configured_claim() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    let demo = Demo::start("d");
    let istio = [
        ("MCP_CLIENT_AUTH_ENABLED", "false"),
        ("TRUST_PROXY_AUTH", "true"),
        ("PROXY_USER_HEADER", "X-User-Id"),
        ("PROXY_USER_CLAIM", "email"),
    ];
    let mut env = istio.to_vec();
    env.push(("TRUSTED_PROXIES", "127.0.0.0/8"));
    let gw = Gateway::start(&env, &one_server(&demo));
    // A Google-style payload with enough groups to pass 4 KiB of base64.
    let groups: Vec<String> = (0..200)
        .map(|i| format!("team-{i:03}@example.com"))
        .collect();
    let payload = json!({
        "iss": "https://accounts.google.com", "sub": "110169484474386276334",
        "email": "alice@example.com", "email_verified": true, "groups": groups,
        "exp": in_an_hour()
    })
    .to_string();
    for encoded in [
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE.encode(&payload),
        STANDARD.encode(&payload),
    ] {
        assert!(encoded.len() > 4096);
        let seen = gw.upstream_view("demo", &[("X-User-Id", &encoded)]);
        // The upstream gets the user, not the payload, under the identity header.
        assert_eq!(seen["headers"]["x-user-id"], "alice@example.com");
    }
    for (value, why) in [
        ("alice@example.com".to_string(), "not a base64 JSON payload"),
        (URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#), "no claim email"),
        (URL_SAFE_NO_PAD.encode(r#"{"email":["a"]}"#), "not a string"),
    ] {
        let message = refused(&gw, &[("X-User-Id", &value)]);
        assert!(message.contains(why), "{message}");
    }

    let mut env = istio.to_vec();
    env.push(("TRUSTED_PROXIES", "10.0.0.0/8"));
    let outside = Gateway::start(&env, &one_server(&demo));
    let message = refused(
        &outside,
        &[("X-User-Id", &URL_SAFE_NO_PAD.encode(&payload))],
    );
    assert!(message.contains("not accepted from this peer"), "{message}");

    // Without TRUSTED_PROXIES any peer could forge a payload: refused at start-up.
    let (code, out) = Gateway::run_to_exit(&istio, &one_server(&demo), &["--check-config"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("TRUSTED_PROXIES"), "{out}");
}
