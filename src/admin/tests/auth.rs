//! Login, sessions, throttling, cookies, the Origin check and the other
//! credentials the admin API accepts.

use super::*;
use crate::admin::throttle::FREE_FAILURES;
use base64::Engine;

fn login_body(email: &str, password: &str) -> String {
    serde_json::json!({"email": email, "password": password}).to_string()
}

fn jwt(claims: Value, key: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn in_an_hour() -> u64 {
    jsonwebtoken::get_current_timestamp() + 3600
}

#[tokio::test]
async fn login_returns_a_token_and_a_strict_http_only_cookie() {
    let f = Fixture::new();
    let r = f
        .call(
            "POST",
            "/auth/login",
            &[],
            Some(&login_body(EMAIL, PASSWORD)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let token = r.json()["token"].as_str().unwrap().to_string();
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.starts_with(&format!("mcp_admin_session={token};")));
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");

    let over_tls = f
        .call(
            "POST",
            "/auth/login",
            &[("origin", "https://admin.example")],
            Some(&login_body(EMAIL, PASSWORD)),
        )
        .await;
    assert!(over_tls.header("set-cookie").unwrap().ends_with("; Secure"));
    let f = Fixture::with(|c| c.cookie_secure = true);
    let r = f
        .call(
            "POST",
            "/auth/login",
            &[],
            Some(&login_body(EMAIL, PASSWORD)),
        )
        .await;
    assert!(r.header("set-cookie").unwrap().ends_with("; Secure"));
}

#[tokio::test]
async fn bad_logins_are_401_and_never_echo_the_password() {
    let f = Fixture::new();
    for body in [
        login_body(EMAIL, "wrong-password-xyz"),
        login_body("eve@example.com", PASSWORD),
    ] {
        let r = f.call("POST", "/auth/login", &[], Some(&body)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        r.error();
        assert!(r.header("set-cookie").is_none());
        assert!(!r.text.contains("wrong-password-xyz") && !r.text.contains(PASSWORD));
    }
    let r = f
        .call(
            "POST",
            "/auth/login",
            &[],
            Some(r#"{"email":"a","password":"b","otp":1}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error().field().as_deref(), Some("otp"));
    let r = f
        .call("POST", "/auth/login", &[], Some(r#"{"email":"a""#))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = f
        .call(
            "POST",
            "/auth/login",
            &[("content-type", "text/plain")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_retry_after_and_success_resets() {
    let f = Fixture::new();
    for _ in 0..FREE_FAILURES - 1 {
        let r = f
            .call("POST", "/auth/login", &[], Some(&login_body(EMAIL, "nope")))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // A success before the limit clears the count.
    f.login().await;
    for _ in 0..FREE_FAILURES {
        f.call("POST", "/auth/login", &[], Some(&login_body(EMAIL, "nope")))
            .await;
    }
    let r = f
        .call(
            "POST",
            "/auth/login",
            &[],
            Some(&login_body(EMAIL, PASSWORD)),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    r.error();
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
}

#[tokio::test]
async fn failures_from_one_address_throttle_it_whatever_the_account() {
    let f = Fixture::new();
    let attacker = Some("10.9.8.7:5000".parse().unwrap());
    let other = Some("10.1.1.1:5000".parse().unwrap());
    for n in 0..FREE_FAILURES {
        let body = login_body(&format!("guess{n}@example.com"), "nope");
        let r = f
            .call_from(attacker, "POST", "/auth/login", &[], Some(&body))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let good = login_body(EMAIL, PASSWORD);
    let r = f
        .call_from(attacker, "POST", "/auth/login", &[], Some(&good))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert!(r.header("retry-after").is_some());
    let r = f
        .call_from(other, "POST", "/auth/login", &[], Some(&good))
        .await;
    assert_eq!(r.status, StatusCode::OK, "another address is not throttled");
}

#[tokio::test]
async fn the_api_needs_authentication() {
    let f = Fixture::new();
    for (method, path) in [
        ("GET", "/api/servers"),
        ("GET", "/api/servers/from-yaml"),
        ("GET", "/api/audit"),
        ("GET", "/api/config"),
        ("GET", "/api/servers/from-yaml/health"),
        ("DELETE", "/api/servers/from-yaml"),
    ] {
        let r = f.call(method, path, &[], None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        r.error();
    }
    for bad in ["Bearer not-a-session", "Bearer a.b.c", "Digest x"] {
        let r = f
            .call("GET", "/api/servers", &[("authorization", bad)], None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    for public in [
        "/health",
        "/openapi.json",
        "/",
        "/app.js",
        "/style.css",
        "/ready",
    ] {
        assert_eq!(
            f.call("GET", public, &[], None).await.status,
            StatusCode::OK,
            "{public}"
        );
    }
}

#[tokio::test]
async fn bearer_and_cookie_sessions_work_and_logout_revokes_both() {
    let f = Fixture::new();
    let token = f.login().await;
    let bearer = format!("Bearer {token}");
    let cookie = format!("mcp_admin_session={token}");
    assert_eq!(
        f.call("GET", "/api/servers", &[("authorization", &bearer)], None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        f.call("GET", "/api/servers", &[("cookie", &cookie)], None)
            .await
            .status,
        StatusCode::OK
    );
    let r = f
        .call("POST", "/auth/logout", &[("cookie", &cookie)], None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    for h in [
        ("authorization", bearer.as_str()),
        ("cookie", cookie.as_str()),
    ] {
        let r = f.call("GET", "/api/servers", &[h], None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{h:?}");
    }
}

#[tokio::test]
async fn cookie_writes_need_the_admin_pages_origin_bearer_writes_do_not() {
    let f = Fixture::new();
    let token = f.login().await;
    let cookie = format!("mcp_admin_session={token}");
    let body = r#"{"enabled": false}"#;
    let create = |name: &str| format!(r#"{{"name":"{name}","urls":["http://127.0.0.1:9/mcp"]}}"#);
    let r = f
        .call(
            "POST",
            "/api/servers",
            &[("cookie", &cookie)],
            Some(&create("a")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no Origin");
    r.error();
    let r = f
        .call(
            "POST",
            "/api/servers",
            &[("cookie", &cookie), ("origin", "http://evil.example")],
            Some(&create("a")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "foreign Origin");
    let r = f
        .call(
            "POST",
            "/api/servers",
            &[("cookie", &cookie), ("origin", ORIGIN)],
            Some(&create("a")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = f
        .call(
            "PATCH",
            "/api/servers/a",
            &[("cookie", &cookie), ("referer", &format!("{ORIGIN}/"))],
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "Referer fallback: {}", r.text);
    let r = f
        .call(
            "POST",
            "/api/servers",
            &[("authorization", &format!("Bearer {token}"))],
            Some(&create("b")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "bearer: {}", r.text);
    // Reads by cookie need no Origin.
    let r = f
        .call("GET", "/api/servers/a", &[("cookie", &cookie)], None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn an_admin_jwt_signed_with_the_gateway_key_works() {
    let f = Fixture::new();
    let admin = jwt(
        serde_json::json!({"sub": "ops@example.com", "is_admin": true, "exp": in_an_hour()}),
        JWT_KEY,
    );
    let r = f
        .call(
            "POST",
            "/api/servers",
            &[("authorization", &format!("Bearer {admin}"))],
            Some(r#"{"name":"by-jwt","urls":["http://127.0.0.1:9/mcp"]}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let audit = f
        .call(
            "GET",
            "/api/audit",
            &[("authorization", &format!("Bearer {admin}"))],
            None,
        )
        .await;
    assert_eq!(audit.json()["items"][0]["actor"], "ops@example.com");

    for (claims, key) in [
        (
            serde_json::json!({"sub": "u", "exp": in_an_hour()}),
            JWT_KEY,
        ),
        (
            serde_json::json!({"sub": "u", "is_admin": true, "exp": in_an_hour()}),
            "another-key-another-key-another-key",
        ),
        (
            serde_json::json!({"sub": "u", "is_admin": true, "exp": 1000}),
            JWT_KEY,
        ),
        (serde_json::json!({"sub": "u", "is_admin": true}), JWT_KEY),
    ] {
        let token = jwt(claims.clone(), key);
        let r = f
            .call(
                "GET",
                "/api/servers",
                &[("authorization", &format!("Bearer {token}"))],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{claims}");
        r.error();
    }
}

#[tokio::test]
async fn basic_auth_is_refused_by_default_and_accepted_with_the_flag() {
    let basic = |user: &str, pw: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    };
    let f = Fixture::new();
    let r = f
        .call(
            "GET",
            "/api/servers",
            &[("authorization", &basic("basic-admin", "basic-password"))],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.error().json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("disabled"));

    let f = Fixture::with(|c| c.allow_basic = true);
    let ok = f
        .call(
            "GET",
            "/api/servers",
            &[("authorization", &basic("basic-admin", "basic-password"))],
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let bad = f
        .call(
            "GET",
            "/api/servers",
            &[("authorization", &basic("basic-admin", "nope"))],
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn auth_required_false_opens_the_api() {
    let f = Fixture::with(|c| c.required = false);
    // Addressed by a host name, the open API could be a rebound page's.
    let named = f.call("GET", "/api/servers", &[], None).await;
    assert_eq!(named.status, StatusCode::FORBIDDEN, "{}", named.text);
    let r = f
        .call(
            "POST",
            "/api/servers",
            &[("host", "127.0.0.1:4445")],
            Some(r#"{"name":"open","urls":["http://127.0.0.1:9/mcp"]}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let audit = f
        .call("GET", "/api/audit", &[("host", "127.0.0.1:4445")], None)
        .await;
    assert_eq!(audit.json()["items"][0]["actor"], "anonymous");
    // A credential, when sent, still names the actor.
    let auth = f.bearer().await;
    f.call(
        "DELETE",
        "/api/servers/open",
        &[("authorization", &auth)],
        None,
    )
    .await;
    let audit = f
        .call("GET", "/api/audit", &[("host", "127.0.0.1:4445")], None)
        .await;
    assert_eq!(audit.json()["items"][0]["actor"], EMAIL);
}

#[tokio::test]
async fn without_an_admin_password_nobody_logs_in() {
    let f = Fixture::with(|c| c.admin_password = None);
    let r = f
        .call("POST", "/auth/login", &[], Some(&login_body(EMAIL, "")))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("PLATFORM_ADMIN_PASSWORD"));
}
