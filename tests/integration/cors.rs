//! Browsers: CORS preflights answered by the gateway and the `Origin`
//! check against DNS rebinding.

use crate::harness::*;
use serde_json::json;

const INSPECTOR: &str = "http://localhost:6274";

fn gateway(demo: &Demo, extra: &[(&str, &str)]) -> Gateway {
    let mut env = vec![
        ("JWT_SECRET_KEY", SECRET),
        ("ALLOWED_ORIGINS", r#"["http://localhost:6274"]"#),
    ];
    env.extend_from_slice(extra);
    Gateway::start(&env, &servers_yaml(&[("demo", &[demo.url()])]))
}

fn preflight(gw: &Gateway, origin: &str) -> Response {
    gw.request(
        "OPTIONS",
        "/servers/demo/mcp",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type, mcp-session-id, mcp-protocol-version",
            ),
        ],
        "",
    )
}

#[test]
fn a_preflight_from_an_allowed_origin_is_answered_without_a_credential() {
    let demo = Demo::start("d");
    let gw = gateway(&demo, &[]);
    let r = preflight(&gw, INSPECTOR);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(INSPECTOR));
    let allowed = r
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for h in [
        "authorization",
        "content-type",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
        "x-upstream-authorization",
    ] {
        assert!(allowed.contains(h), "{h} not in {allowed}");
    }
    assert!(r
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("POST") && m.contains("DELETE")));
    assert!(r.body.is_empty());
}

#[test]
fn allowed_origins_can_read_responses_and_the_session_id() {
    let demo = Demo::start("d");
    let gw = gateway(&demo, &[]);
    let token = bearer(&jwt(json!({"sub": "alice", "exp": in_an_hour()})));
    let (r, sid) = gw.initialize("demo", &[("Authorization", &token), ("Origin", INSPECTOR)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(sid.is_some());
    assert_eq!(r.header("access-control-allow-origin"), Some(INSPECTOR));
    assert!(r
        .header("access-control-expose-headers")
        .is_some_and(|h| h.contains("Mcp-Session-Id")));
    assert!(r
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("vary") && v.contains("Origin")));
    // Its refusals too, so the page can show why.
    let r = gw.mcp_post("demo", &[("Origin", INSPECTOR)], None, "{}");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin"), Some(INSPECTOR));
}

#[test]
fn a_foreign_origin_is_refused_with_403_whatever_the_method() {
    let demo = Demo::start("d");
    let gw = gateway(&demo, &[]);
    let token = bearer(&jwt(json!({"sub": "alice", "exp": in_an_hour()})));
    // A DNS-rebinding page sends its own origin (and Host) to our address.
    let evil = "http://attacker.example:4444";
    let r = preflight(&gw, evil);
    assert_eq!(r.status, 403, "{r:?}");
    for method in ["POST", "GET", "DELETE"] {
        let r = gw.request(
            method,
            "/servers/demo/mcp",
            &[("Origin", evil), ("Authorization", &token)],
            "",
        );
        assert_eq!(r.status, 403, "{method}: {r:?}");
        assert_eq!(r.json()["error"]["code"], -32007);
        assert!(r.header("access-control-allow-origin").is_none());
    }
    let r = gw.request("GET", "/metrics", &[("Origin", evil)], "");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["status"], 403);
}

#[test]
fn with_cors_off_no_browser_origin_is_allowed() {
    let demo = Demo::start("d");
    let gw = gateway(&demo, &[("CORS_ENABLED", "false")]);
    assert_eq!(preflight(&gw, INSPECTOR).status, 403);
    let token = bearer(&jwt(json!({"sub": "alice", "exp": in_an_hour()})));
    let (r, _) = gw.initialize("demo", &[("Authorization", &token), ("Origin", INSPECTOR)]);
    assert_eq!(r.status, 403);
    // Clients that are not browsers send no Origin and are not affected.
    let (r, _) = gw.initialize("demo", &[("Authorization", &token)]);
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());
}
