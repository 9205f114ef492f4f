//! The upstream header policy, observed by the demo server's `whoami`.

use crate::harness::*;
use serde_json::{json, Value};

fn gateway(demo: &Demo, extra: &[(&str, &str)], yaml: Option<String>) -> Gateway {
    let mut env = vec![
        ("MCP_CLIENT_AUTH_ENABLED", "true"),
        ("TRUST_PROXY_AUTH", "true"),
        ("JWT_SECRET_KEY", SECRET),
    ];
    env.extend_from_slice(extra);
    Gateway::start(
        &env,
        &yaml.unwrap_or_else(|| servers_yaml(&[("demo", &[demo.url()])])),
    )
}

fn seen_header<'a>(seen: &'a Value, name: &str) -> Option<&'a str> {
    seen["headers"].get(name).and_then(Value::as_str)
}

#[test]
fn allowlist_drops_credentials_and_unknown_headers() {
    let demo = Demo::start("d");
    let gw = gateway(&demo, &[], None);
    let token = bearer(&jwt(json!({"sub": "alice", "exp": in_an_hour()})));
    let seen = gw.upstream_view(
        "demo",
        &[
            ("Authorization", &token),
            ("Cookie", "gateway_session=secret"),
            ("X-Internal-Token", "t"),
            ("X-Tenant-Id", "t1"),
            ("MCP-Protocol-Version", "2025-06-18"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ],
    );
    let h = &seen["headers"];
    assert!(
        h.get("authorization").is_none(),
        "the gateway's credential leaked: {h}"
    );
    assert!(h.get("cookie").is_none());
    assert!(h.get("x-internal-token").is_none());
    assert!(
        h.get("x-tenant-id").is_none(),
        "passthrough is off by default"
    );
    assert_eq!(h["mcp-protocol-version"], "2025-06-18");
    assert!(h.get("traceparent").is_some());
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["host"], demo.addr.as_str());
    assert_eq!(h["x-authenticated-user"], "alice");
}

#[test]
fn passthrough_uses_the_global_list_or_the_servers_own() {
    let demo = Demo::start("d");
    let yaml = format!(
        "servers:\n  - name: demo\n    urls: [{u}]\n  - name: tenant\n    urls: [{u}]\n    passthrough_headers: [X-Groups]\n",
        u = demo.url()
    );
    let gw = gateway(
        &demo,
        &[
            ("ENABLE_HEADER_PASSTHROUGH", "true"),
            (
                "DEFAULT_PASSTHROUGH_HEADERS",
                r#"["X-Tenant-Id", "X-Authenticated-User", "Authorization", "Cookie"]"#,
            ),
        ],
        Some(yaml),
    );
    let sent = [
        ("X-Authenticated-User", "alice"),
        ("X-Tenant-Id", "t1"),
        ("X-Groups", "admins"),
        ("Cookie", "c=1"),
    ];
    let global = gw.upstream_view("demo", &sent);
    assert_eq!(seen_header(&global, "x-tenant-id"), Some("t1"));
    assert_eq!(seen_header(&global, "x-groups"), None);
    assert_eq!(
        seen_header(&global, "cookie"),
        None,
        "credentials never pass through"
    );
    assert_eq!(seen_header(&global, "x-authenticated-user"), Some("alice"));
    let own = gw.upstream_view("tenant", &sent);
    assert_eq!(seen_header(&own, "x-groups"), Some("admins"));
    assert_eq!(
        seen_header(&own, "x-tenant-id"),
        None,
        "the server's list replaces the global one"
    );
}

#[test]
fn identity_header_travels_only_as_the_authenticated_value() {
    let demo = Demo::start("d");
    let gw = gateway(
        &demo,
        &[
            ("ENABLE_HEADER_PASSTHROUGH", "true"),
            ("ENABLE_OVERWRITE_BASE_HEADERS", "true"),
            ("DEFAULT_PASSTHROUGH_HEADERS", r#"["X-Authenticated-User"]"#),
        ],
        None,
    );
    let token = bearer(&jwt(json!({"sub": "alice", "exp": in_an_hour()})));
    // JWT wins over the proxy header in dual mode; the header's value is not forwarded.
    let seen = gw.upstream_view(
        "demo",
        &[("Authorization", &token), ("X-Authenticated-User", "admin")],
    );
    assert_eq!(seen_header(&seen, "x-authenticated-user"), Some("alice"));
}

#[test]
fn base_headers_are_protected_unless_overwrite_is_on() {
    let demo = Demo::start("d");
    let env = [
        ("ENABLE_HEADER_PASSTHROUGH", "true"),
        ("DEFAULT_PASSTHROUGH_HEADERS", r#"["X-Forwarded-Host"]"#),
        ("TRUSTED_PROXIES", "10.0.0.0/8"),
    ];
    // TRUSTED_PROXIES excludes loopback, so authenticate with a JWT.
    let token = bearer(&jwt(json!({"sub": "u", "exp": in_an_hour()})));
    let sent_jwt = [
        ("Authorization", token.as_str()),
        ("X-Forwarded-Host", "evil.example"),
    ];
    let protected = gateway(&demo, &env, None);
    let seen = protected.upstream_view("demo", &sent_jwt);
    assert_eq!(
        seen_header(&seen, "x-forwarded-host"),
        Some(protected.addr.as_str())
    );
    let mut env_over = env.to_vec();
    env_over.push(("ENABLE_OVERWRITE_BASE_HEADERS", "true"));
    let overwritten = gateway(&demo, &env_over, None);
    let seen = overwritten.upstream_view("demo", &sent_jwt);
    assert_eq!(seen_header(&seen, "x-forwarded-host"), Some("evil.example"));
}

#[test]
fn upstream_authorization_is_renamed_only_for_authenticated_requests() {
    let demo = Demo::start("d");
    let gw = gateway(&demo, &[], None);
    let token = bearer(&jwt(json!({"sub": "alice", "exp": in_an_hour()})));
    let seen = gw.upstream_view(
        "demo",
        &[
            ("Authorization", &token),
            ("X-Upstream-Authorization", "Bearer upstream-token"),
        ],
    );
    assert_eq!(
        seen_header(&seen, "authorization"),
        Some("Bearer upstream-token")
    );
    assert_eq!(seen_header(&seen, "x-upstream-authorization"), None);

    let anon = Gateway::start(
        &[("MCP_CLIENT_AUTH_ENABLED", "false")],
        &servers_yaml(&[("demo", &[demo.url()])]),
    );
    let seen = anon.upstream_view(
        "demo",
        &[("X-Upstream-Authorization", "Bearer upstream-token")],
    );
    assert_eq!(seen_header(&seen, "authorization"), None);
    // The log line may reach the file just after the response.
    let out = anon
        .proc
        .output_when(|o| o.contains("not authenticated by the gateway"));
    assert!(out.contains("not authenticated by the gateway"), "{out}");
}

#[test]
fn unsanitary_upstream_authorization_is_dropped_and_the_request_goes_on() {
    let demo = Demo::start("d");
    let gw = gateway(&demo, &[], None);
    let token = bearer(&jwt(json!({"sub": "alice", "exp": in_an_hour()})));
    let huge = format!("Bearer {}", "a".repeat(5000));
    let seen = gw.upstream_view(
        "demo",
        &[
            ("Authorization", &token),
            ("X-Upstream-Authorization", &huge),
        ],
    );
    assert_eq!(seen_header(&seen, "authorization"), None);
    // The log line may reach the file just after the response.
    let dropped = "dropped header x-upstream-authorization";
    let out = gw.proc.output_when(|o| o.contains(dropped));
    assert!(out.contains(dropped), "{out}");
}

#[test]
fn no_configured_identity_header_comes_from_the_client_for_any_server() {
    let demo = Demo::start("d");
    // `internal` trusts X-Employee-Id; `tenant` passes X-Employee-Id through.
    let yaml = format!(
        "servers:\n  - name: internal\n    urls: [{u}]\n    auth_mode: proxy\n    proxy_header: X-Employee-Id\n  - name: tenant\n    urls: [{u}]\n    passthrough_headers: [X-Employee-Id, X-Authenticated-User, X-Tenant-Id]\n",
        u = demo.url()
    );
    let gw = gateway(
        &demo,
        &[
            ("ENABLE_HEADER_PASSTHROUGH", "true"),
            ("ENABLE_OVERWRITE_BASE_HEADERS", "true"),
        ],
        Some(yaml),
    );
    let token = bearer(&jwt(json!({"sub": "alice", "exp": in_an_hour()})));
    let seen = gw.upstream_view(
        "tenant",
        &[
            ("Authorization", &token),
            ("X-Employee-Id", "boss"),
            ("X-Tenant-Id", "t1"),
        ],
    );
    assert_eq!(seen_header(&seen, "x-tenant-id"), Some("t1"));
    assert_eq!(seen_header(&seen, "x-employee-id"), None, "{seen}");
    assert_eq!(seen_header(&seen, "x-authenticated-user"), Some("alice"));
}

/// (request headers, a header that must be absent, a header and the value it must hold)
type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, (&'a str, &'a str));

#[test]
fn connection_nominated_headers_never_reach_the_upstream() {
    let demo = Demo::start("d");
    let gw = gateway(
        &demo,
        &[
            ("ENABLE_HEADER_PASSTHROUGH", "true"),
            ("DEFAULT_PASSTHROUGH_HEADERS", r#"["X-Tenant-Id"]"#),
        ],
        None,
    );
    let token = bearer(&jwt(json!({"sub": "alice", "exp": in_an_hour()})));
    let cases: [Case; 3] = [
        (
            &[
                ("X-Upstream-Authorization", "Bearer upstream-token"),
                ("Connection", "X-Upstream-Authorization"),
            ],
            "authorization",
            ("x-authenticated-user", "alice"),
        ),
        (
            &[("X-Tenant-Id", "t1"), ("Connection", "x-tenant-id")],
            "x-tenant-id",
            ("x-authenticated-user", "alice"),
        ),
        // The client's identity header, equal to the JWT's user and
        // nominated: the gateway's own value must still arrive.
        (
            &[
                ("X-Authenticated-User", "alice"),
                ("Connection", "X-Authenticated-User"),
            ],
            "x-upstream-authorization",
            ("x-authenticated-user", "alice"),
        ),
    ];
    for (extra, absent, (name, value)) in cases {
        let mut headers = vec![("Authorization", token.as_str())];
        headers.extend_from_slice(extra);
        let seen = gw.upstream_view("demo", &headers);
        assert_eq!(seen_header(&seen, absent), None, "{extra:?}: {seen}");
        assert_eq!(seen_header(&seen, name), Some(value), "{extra:?}: {seen}");
    }
}
