//! Attempts to pass as someone else: every one must fail.

use crate::harness::*;
use serde_json::json;

fn proxy_gateway(demo: &Demo, extra: &[(&str, &str)]) -> Gateway {
    let mut env = vec![
        ("MCP_CLIENT_AUTH_ENABLED", "false"),
        ("TRUST_PROXY_AUTH", "true"),
        ("JWT_SECRET_KEY", SECRET),
    ];
    env.extend_from_slice(extra);
    Gateway::start(&env, &servers_yaml(&[("demo", &[demo.url()])]))
}

#[test]
fn duplicated_identity_header_is_refused() {
    let demo = Demo::start("d");
    let gw = proxy_gateway(&demo, &[]);
    let (r, _) = gw.initialize(
        "demo",
        &[
            ("X-Authenticated-User", "alice"),
            ("X-Authenticated-User", "admin"),
        ],
    );
    assert_eq!(r.status, 401);
    assert!(r.body.contains("more than once"), "{}", r.body);
}

#[test]
fn identity_header_nominated_by_connection_is_refused() {
    let demo = Demo::start("d");
    let gw = proxy_gateway(&demo, &[]);
    // `Connection: close` comes from the harness; a second Connection header
    // nominates the identity header as hop-by-hop.
    let (r, _) = gw.initialize(
        "demo",
        &[
            ("Connection", "X-Authenticated-User"),
            ("X-Authenticated-User", "admin"),
        ],
    );
    assert_eq!(r.status, 401, "{r:?}");
}

#[test]
fn underscore_variant_is_neither_identity_nor_forwarded() {
    let demo = Demo::start("d");
    let gw = proxy_gateway(
        &demo,
        &[
            ("ENABLE_HEADER_PASSTHROUGH", "true"),
            (
                "DEFAULT_PASSTHROUGH_HEADERS",
                r#"["X-Authenticated-User", "X-Tenant-Id"]"#,
            ),
        ],
    );
    let (r, _) = gw.initialize("demo", &[("X_Authenticated_User", "admin")]);
    assert_eq!(r.status, 401);
    let seen = gw.upstream_view(
        "demo",
        &[
            ("X-Authenticated-User", "alice"),
            ("X_Authenticated_User", "admin"),
        ],
    );
    assert_eq!(seen["headers"]["x-authenticated-user"], "alice");
    assert!(
        seen["headers"].get("x_authenticated_user").is_none(),
        "{seen}"
    );
}

#[test]
fn identity_header_from_outside_trusted_proxies_is_refused() {
    let demo = Demo::start("d");
    let outside = proxy_gateway(&demo, &[("TRUSTED_PROXIES", "10.0.0.0/8")]);
    let (r, _) = outside.initialize("demo", &[("X-Authenticated-User", "alice")]);
    assert_eq!(r.status, 401);
    assert!(r.body.contains("not accepted from this peer"), "{}", r.body);
    let inside = proxy_gateway(&demo, &[("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1/32")]);
    assert_eq!(
        inside
            .initialize("demo", &[("X-Authenticated-User", "alice")])
            .0
            .status,
        200
    );
}

#[test]
fn forged_and_foreign_session_tokens_are_404() {
    let demo = Demo::start("d");
    let gw = proxy_gateway(&demo, &[]);
    let alice = [("X-Authenticated-User", "alice")];
    let bob = [("X-Authenticated-User", "bob")];
    let (_, sid) = gw.initialize("demo", &alice);
    let sid = sid.expect("session");
    assert_eq!(gw.whoami("demo", &alice, &sid)["server"], "d");

    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    let foreign = gw.mcp_post("demo", &bob, Some(&sid), list);
    assert_eq!(foreign.status, 404, "{foreign:?}");
    assert_eq!(foreign.json()["error"]["code"], -32001);

    let mut forged = sid.clone().into_bytes();
    forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert_eq!(gw.mcp_post("demo", &alice, Some(&forged), list).status, 404);
    // The upstream's raw id is not a valid gateway session either.
    let raw = gw.whoami("demo", &alice, &sid)["session"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(gw.mcp_post("demo", &alice, Some(&raw), list).status, 404);
}

#[test]
fn expired_session_tokens_are_404() {
    let demo = Demo::start("d");
    let gw = proxy_gateway(&demo, &[("MCP_SESSION_TTL", "1")]);
    let alice = [("X-Authenticated-User", "alice")];
    let (_, sid) = gw.initialize("demo", &alice);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = gw.mcp_post(
        "demo",
        &alice,
        Some(&sid.expect("sid")),
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], json!("session expired"));
}
