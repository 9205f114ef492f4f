//! The review's attacks on the admin service: each test is a way in, a
//! leak or a non-JSON answer that once worked (or was checked not to).

use super::*;

#[tokio::test]
async fn logout_with_both_credentials_revokes_both_sessions() {
    let f = Fixture::new();
    let (bearer_token, cookie_token) = (f.login().await, f.login().await);
    let bearer = format!("Bearer {bearer_token}");
    let cookie = format!("mcp_admin_session={cookie_token}");
    let r = f
        .call(
            "POST",
            "/auth/logout",
            &[("authorization", &bearer), ("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for h in [
        ("authorization", bearer.as_str()),
        ("cookie", cookie.as_str()),
    ] {
        let r = f.call("GET", "/api/servers", &[h], None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{h:?} still works");
    }
}

/// No spelling of an /api path reaches a handler without a credential,
/// and every refusal is the JSON error shape.
#[tokio::test]
async fn path_tricks_do_not_reach_the_api_unauthenticated() {
    let f = Fixture::new();
    for (method, path) in [
        ("GET", "/api/servers"),
        ("GET", "//api/servers"),
        ("GET", "/api//servers"),
        ("GET", "/api/servers/"),
        ("GET", "/API/servers"),
        ("GET", "/api/./servers"),
        ("GET", "/api/../api/servers"),
        ("GET", "/api%2Fservers"),
        ("GET", "/api/servers%2F"),
        ("GET", "/api/servers/from-yaml"),
        ("GET", "/api/servers/from-yaml%2F..%2F..%2Fconfig"),
        ("GET", "/api/config"),
        ("GET", "/api/config/"),
        ("GET", "/api/audit"),
        ("HEAD", "/api/servers"),
        ("OPTIONS", "/api/servers"),
        ("TRACE", "/api/servers"),
        ("DELETE", "/api/servers/from-yaml"),
    ] {
        let r = f.call(method, path, &[], None).await;
        assert!(
            matches!(r.status.as_u16(), 401 | 404 | 405),
            "{method} {path}: {} {}",
            r.status,
            r.text
        );
        if method != "HEAD" {
            r.error();
        }
        assert!(!r.text.contains("from-yaml"), "{method} {path}: {}", r.text);
        assert!(!r.text.contains("JWT_SECRET_KEY"), "{method} {path}");
    }
}

/// axum's own extractor rejections are plain text; the API promises JSON.
#[tokio::test]
async fn undecodable_paths_and_queries_are_json_400s() {
    let f = Fixture::new();
    let bearer = f.bearer().await;
    for (method, path) in [
        ("GET", "/api/servers/%FF"),
        ("GET", "/api/servers/%FF/health"),
        ("DELETE", "/api/servers/%FF"),
        ("DELETE", "/api/servers/a?version=%FF"),
    ] {
        let r = f
            .call(method, path, &[("authorization", &bearer)], None)
            .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {}",
            r.text
        );
        r.error();
    }
}

/// A server's credential header that is another's identity header made
/// the data plane drop the server with the credential, even when the write
/// was to the other one: the API now refuses the write that would do it.
#[tokio::test]
async fn a_write_that_would_unroute_another_server_is_refused() {
    let f = Fixture::new();
    let bearer = f.bearer().await;
    let auth = [("authorization", bearer.as_str())];
    let post = |body: serde_json::Value| {
        let f = &f;
        async move {
            f.call("POST", "/api/servers", &auth, Some(&body.to_string()))
                .await
        }
    };
    let keyed = post(serde_json::json!({
        "name": "keyed", "urls": ["http://127.0.0.1:9/mcp"],
        "upstream_auth": {"type": "headers", "headers": {"X-Api-Key": "k"}}
    }))
    .await;
    assert_eq!(keyed.status, StatusCode::CREATED, "{}", keyed.text);
    let r = post(serde_json::json!({
        "name": "ident", "urls": ["http://127.0.0.1:9/mcp"],
        "auth_mode": "proxy", "proxy_header": "X-Api-Key"
    }))
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.error().field().as_deref(), Some("proxy_header"));
    assert!(r.text.contains("keyed"), "{}", r.text);

    let ident = post(serde_json::json!({
        "name": "ident", "urls": ["http://127.0.0.1:9/mcp"],
        "auth_mode": "proxy", "proxy_header": "X-Employee-Id"
    }))
    .await;
    assert_eq!(ident.status, StatusCode::CREATED, "{}", ident.text);
    let r = post(serde_json::json!({
        "name": "spoof", "urls": ["http://127.0.0.1:9/mcp"],
        "upstream_auth": {"type": "headers", "headers": {"x-employee-id": "ceo"}}
    }))
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.error().field().as_deref(), Some("upstream_auth"));

    // Disabled it is not routed, so it may be stored; enabling it is the
    // write that would clash.
    let r = post(serde_json::json!({
        "name": "spoof", "urls": ["http://127.0.0.1:9/mcp"], "enabled": false,
        "upstream_auth": {"type": "headers", "headers": {"x-employee-id": "ceo"}}
    }))
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = f
        .call(
            "PATCH",
            "/api/servers/spoof",
            &auth,
            Some(r#"{"enabled":true}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let r = f
        .call(
            "PATCH",
            "/api/servers/ident",
            &auth,
            Some(r#"{"proxy_header":"x-api-key"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    // A change that clashes with nothing still goes through.
    let r = f
        .call(
            "PATCH",
            "/api/servers/ident",
            &auth,
            Some(r#"{"description":"fine"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// schemathesis: `[null, null]` was a valid PATCH (serde reads a struct
/// from an array too) and bumped the version changing nothing.
#[tokio::test]
async fn an_array_is_not_a_body() {
    let f = Fixture::new();
    let bearer = f.bearer().await;
    let auth = [("authorization", bearer.as_str())];
    let r = f
        .call(
            "POST",
            "/api/servers",
            &auth,
            Some(r#"["made",["http://127.0.0.1:9/mcp"]]"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    r.error();
    let create = r#"{"name":"arr","urls":["http://127.0.0.1:9/mcp"]}"#;
    let r = f.call("POST", "/api/servers", &auth, Some(create)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = f
        .call("PATCH", "/api/servers/arr", &auth, Some("[null, null]"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = f.call("GET", "/api/servers/arr", &auth, None).await;
    assert_eq!(r.json()["version"], 1, "{}", r.text);
}
