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
    let log = gw.proc.output();
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
