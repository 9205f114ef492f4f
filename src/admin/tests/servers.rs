//! The registry API: CRUD, every error mapping, filters and paging,
//! health, audit, configuration, and secrets never coming back.

use super::*;
use crate::registry::BackendHealth;
use std::sync::atomic::Ordering;

const SECRET: &str = "upstream-secret-value-42";

fn server(name: &str) -> String {
    serde_json::json!({
        "name": name,
        "urls": ["http://127.0.0.1:9/mcp"],
        "tags": ["prod"],
        "description": "a test server",
        "upstream_auth": {"type": "bearer", "token": SECRET},
    })
    .to_string()
}

#[tokio::test]
async fn create_read_replace_patch_delete() {
    let f = Fixture::new();
    let auth = f.bearer().await;
    let h = [("authorization", auth.as_str())];

    let r = f
        .call("POST", "/api/servers", &h, Some(&server("git")))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.header("location"), Some("/api/servers/git"));
    let created = r.json();
    assert_eq!(created["version"], 1);
    assert_eq!(created["origin"], "api");
    assert_eq!(created["transport"], "streamable-http");
    assert_eq!(created["auth_mode"], "inherit");
    assert_eq!(
        created["upstream_auth"],
        serde_json::json!({"type": "bearer", "token": "set"})
    );

    let r = f.call("GET", "/api/servers/git", &h, None).await;
    assert_eq!(r.json(), created);

    // GET, edit, PUT back: the read-only fields are accepted and the
    // credential, absent from the body, is kept.
    let mut edited = created.clone();
    edited["description"] = "changed".into();
    edited.as_object_mut().unwrap().remove("upstream_auth");
    let r = f
        .call("PUT", "/api/servers/git", &h, Some(&edited.to_string()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["version"], 2);
    assert_eq!(r.json()["description"], "changed");
    assert_eq!(r.json()["upstream_auth"]["type"], "bearer");

    let r = f
        .call(
            "PATCH",
            "/api/servers/git",
            &h,
            Some(r#"{"enabled": false}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["enabled"], false);
    assert_eq!(r.json()["version"], 3);

    let r = f
        .call(
            "PATCH",
            "/api/servers/git",
            &h,
            Some(r#"{"upstream_auth": {"type": "none"}, "version": 3}"#),
        )
        .await;
    assert_eq!(
        r.json()["upstream_auth"],
        serde_json::json!({"type": "none"})
    );

    let r = f.call("DELETE", "/api/servers/git", &h, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.text.is_empty());
    let r = f.call("GET", "/api/servers/git", &h, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.error();
}

#[tokio::test]
async fn every_registry_error_has_its_status() {
    let f = Fixture::new();
    let auth = f.bearer().await;
    let h = [("authorization", auth.as_str())];
    f.call("POST", "/api/servers", &h, Some(&server("a"))).await;

    // Exists
    let r = f.call("POST", "/api/servers", &h, Some(&server("a"))).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error().field().as_deref(), Some("name"));
    // Conflict: a stale version
    let mut stale: Value = serde_json::from_str(&server("a")).unwrap();
    stale["version"] = 7.into();
    let r = f
        .call("PUT", "/api/servers/a", &h, Some(&stale.to_string()))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error().json()["error"]["current_version"], 1);
    let r = f
        .call(
            "PATCH",
            "/api/servers/a",
            &h,
            Some(r#"{"enabled":false,"version":9}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = f.call("DELETE", "/api/servers/a?version=9", &h, None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // ConfigOwned
    let r = f
        .call(
            "PATCH",
            "/api/servers/from-yaml",
            &h,
            Some(r#"{"enabled":false}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().text.contains("conf/gateway.yaml"));
    let r = f.call("DELETE", "/api/servers/from-yaml", &h, None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Invalid, named by the store
    let r = f
        .call(
            "POST",
            "/api/servers",
            &h,
            Some(&server("no spaces allowed")),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error().field().as_deref(), Some("name"));
    // NotFound
    for (m, body) in [
        ("GET", None),
        ("PATCH", Some(r#"{"enabled":true}"#)),
        ("DELETE", None),
    ] {
        let r = f.call(m, "/api/servers/ghost", &h, body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m}");
        r.error();
    }
    // Unavailable
    f.registry.down.store(true, Ordering::SeqCst);
    for (m, p, body) in [
        ("GET", "/api/servers", None),
        ("POST", "/api/servers", Some(server("b"))),
        ("GET", "/ready", None),
    ] {
        let r = f.call(m, p, &h, body.as_deref()).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{m} {p}");
        assert!(
            !r.error().text.contains("connection refused"),
            "db detail kept back"
        );
    }
    assert_eq!(
        f.call("GET", "/health", &[], None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let f = Fixture::new();
    let auth = f.bearer().await;
    let h = [("authorization", auth.as_str())];
    f.call("POST", "/api/servers", &h, Some(&server("a"))).await;
    let cases: [(&str, &str, &str, Option<&str>); 9] = [
        (
            "POST",
            "/api/servers",
            r#"{"name":"x","urls":[],"colour":"red"}"#,
            Some("colour"),
        ),
        ("POST", "/api/servers", r#"{"urls":[]}"#, Some("name")),
        (
            "POST",
            "/api/servers",
            r#"{"name":"x","urls":"http://h"}"#,
            Some("urls"),
        ),
        (
            "POST",
            "/api/servers",
            r#"{"name":"x","urls":[],"auth_mode":"magic"}"#,
            Some("auth_mode"),
        ),
        (
            "POST",
            "/api/servers",
            r#"{"name":"x","urls":[],"version":1}"#,
            Some("version"),
        ),
        (
            "POST",
            "/api/servers",
            r#"{"name":"x","urls":[],"upstream_auth":{"type":"bearer","token":"t","extra":1}}"#,
            Some("upstream_auth"),
        ),
        (
            "PUT",
            "/api/servers/a",
            r#"{"name":"a","urls":["http://h:1/mcp"]}"#,
            Some("version"),
        ),
        (
            "PUT",
            "/api/servers/a",
            r#"{"name":"b","urls":["http://h:1/mcp"],"version":1}"#,
            Some("name"),
        ),
        (
            "PATCH",
            "/api/servers/a",
            r#"{"enabled":"no"}"#,
            Some("enabled"),
        ),
    ];
    for (m, p, body, field) in cases {
        let r = f.call(m, p, &h, Some(body)).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{m} {p} {body}: {}",
            r.text
        );
        let got = r.error().field();
        let want = field.unwrap();
        assert!(
            got.as_deref().is_some_and(|g| g.starts_with(want)),
            "{body}: field {got:?}, want {want}"
        );
    }
    let r = f.call("POST", "/api/servers", &h, Some("{not json")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().text.contains("malformed JSON"));
    let r = f.call("GET", "/api/servers?limit=100000", &h, None).await;
    assert_eq!(r.error().field().as_deref(), Some("limit"));
    let r = f.call("GET", "/api/audit?what=1", &h, None).await;
    assert_eq!(r.error().field().as_deref(), Some("what"));
    let r = f.call("DELETE", "/api/servers/a?version=x", &h, None).await;
    assert_eq!(r.error().field().as_deref(), Some("version"));

    let big = format!(
        r#"{{"name":"x","urls":[],"description":"{}"}}"#,
        "a".repeat(70_000)
    );
    let r = f.call("POST", "/api/servers", &h, Some(&big)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    r.error();
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let f = Fixture::new();
    let auth = f.bearer().await;
    let h = [("authorization", auth.as_str())];
    for name in ["alpha", "beta", "gamma"] {
        f.call("POST", "/api/servers", &h, Some(&server(name)))
            .await;
    }
    f.call(
        "PATCH",
        "/api/servers/beta",
        &h,
        Some(r#"{"enabled":false,"tags":["dev"]}"#),
    )
    .await;
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    let all = f.call("GET", "/api/servers", &h, None).await.json();
    assert_eq!(names(&all), ["alpha", "beta", "from-yaml", "gamma"]);
    assert_eq!(all["total"], 4);
    assert_eq!(all["offset"], 0);
    assert_eq!(all["limit"], 100);
    let disabled = f
        .call("GET", "/api/servers?enabled=false", &h, None)
        .await
        .json();
    assert_eq!(names(&disabled), ["beta"]);
    let prod = f
        .call("GET", "/api/servers?tag=prod", &h, None)
        .await
        .json();
    assert_eq!(names(&prod), ["alpha", "gamma"]);
    let q = f.call("GET", "/api/servers?q=amm", &h, None).await.json();
    assert_eq!(names(&q), ["gamma"]);
    let page = f
        .call("GET", "/api/servers?offset=1&limit=2", &h, None)
        .await
        .json();
    assert_eq!(names(&page), ["beta", "from-yaml"]);
    assert_eq!(
        (page["total"].as_u64(), page["limit"].as_u64()),
        (Some(4), Some(2))
    );
    let yaml = all["items"][2].clone();
    assert_eq!(yaml["origin"], "config");
    assert_eq!(yaml["config_file"], "conf/gateway.yaml");
}

#[tokio::test]
async fn health_reports_each_backend() {
    let f = Fixture::new();
    let auth = f.bearer().await;
    let h = [("authorization", auth.as_str())];
    f.health.0.lock().unwrap().insert(
        "from-yaml".into(),
        vec![
            BackendHealth {
                replica: "http://127.0.0.1:9/mcp".into(),
                backend: "127.0.0.1:9".into(),
                healthy: false,
                last_check: Some(1_700_000_000),
                consecutive_failures: 3,
                last_error: Some("connection refused".into()),
            },
            BackendHealth {
                replica: "http://127.0.0.1:10/mcp".into(),
                backend: "127.0.0.1:10".into(),
                healthy: true,
                last_check: Some(1_700_000_000),
                consecutive_failures: 0,
                last_error: None,
            },
        ],
    );
    let r = f
        .call("GET", "/api/servers/from-yaml/health", &h, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["routed"], true);
    assert_eq!(v["backends"][0]["consecutive_failures"], 3);
    assert_eq!(v["backends"][0]["last_error"], "connection refused");
    assert_eq!(v["backends"][1]["healthy"], true);

    f.call("POST", "/api/servers", &h, Some(&server("new")))
        .await;
    let v = f
        .call("GET", "/api/servers/new/health", &h, None)
        .await
        .json();
    assert_eq!(
        (v["status"].as_str(), v["routed"].as_bool()),
        (Some("unknown"), Some(false))
    );
    let r = f.call("GET", "/api/servers/ghost/health", &h, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn secrets_never_come_back_from_any_endpoint() {
    let f = Fixture::new();
    let auth = f.bearer().await;
    let h = [("authorization", auth.as_str())];
    let mut replies = vec![f.call("POST", "/api/servers", &h, Some(&server("s"))).await];
    let basic = serde_json::json!({
        "upstream_auth": {"type": "basic", "username": "bot", "password": SECRET}
    });
    replies.push(
        f.call("PATCH", "/api/servers/s", &h, Some(&basic.to_string()))
            .await,
    );
    let headers = serde_json::json!({
        "upstream_auth": {"type": "headers", "headers": {"X-Api-Key": SECRET}}
    });
    replies.push(
        f.call("PATCH", "/api/servers/s", &h, Some(&headers.to_string()))
            .await,
    );
    for path in [
        "/api/servers",
        "/api/servers/s",
        "/api/audit",
        "/api/config",
        "/api/servers/s/health",
    ] {
        replies.push(f.call("GET", path, &h, None).await);
    }
    for r in &replies {
        assert!(r.status.is_success(), "{}", r.text);
        assert!(!r.text.contains(SECRET), "secret leaked: {}", r.text);
        assert!(!r.text.contains(PASSWORD));
    }
    let s = f.call("GET", "/api/servers/s", &h, None).await.json();
    assert_eq!(
        s["upstream_auth"],
        serde_json::json!({"type": "headers", "headers": {"x-api-key": "set"}})
    );
}

#[tokio::test]
async fn audit_config_and_the_actor() {
    let f = Fixture::new();
    let auth = f.bearer().await;
    let h = [("authorization", auth.as_str())];
    f.call("POST", "/api/servers", &h, Some(&server("a"))).await;
    f.call("DELETE", "/api/servers/a", &h, None).await;
    let audit = f
        .call("GET", "/api/audit?server=a&limit=1", &h, None)
        .await
        .json();
    assert_eq!(audit["total"], 2);
    assert_eq!(audit["items"][0]["action"], "delete");
    assert_eq!(audit["items"][0]["actor"], EMAIL);
    assert!(audit["items"][0]["after"].is_null());
    let config = f.call("GET", "/api/config", &h, None).await.json();
    assert_eq!(config["JWT_SECRET_KEY"], "***");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let f = Fixture::new();
    let r = f.call("GET", "/nowhere", &[], None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.error();
    let r = f.call("DELETE", "/health", &[], None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    r.error();
    let page = f.call("GET", "/", &[], None).await;
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
}
