//! The admin API over the real store (`SqlRegistry` on a SQLite file):
//! the double's contract holds for the store too, and the store's own
//! audit records carry no secret either.

use super::*;
use crate::config::{Settings, Source};
use crate::registry::{DatabaseUrl, SqlRegistry};

const SECRET: &str = "sql-store-upstream-secret";

/// The admin API over a SQLite file seeded from a YAML file declaring the
/// server `from-yaml` and the virtual server `yaml-tools`.
pub(super) async fn over_the_store(dir: &std::path::Path) -> Fixture {
    let url = DatabaseUrl::parse(&format!("sqlite:///{}/mcp.db", dir.display())).expect("url");
    let store = SqlRegistry::connect(&url, &Secret::new("an-encryption-secret-for-tests"))
        .await
        .expect("store");
    let yaml = "servers:\n  - name: from-yaml\n    urls: [http://127.0.0.1:9/mcp]\n\
                virtual_servers:\n  - name: yaml-tools\n    include: [from-yaml/*]\n";
    let settings = Settings::load(
        &Source::from_pairs([
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
        ]),
        Some(("conf/gateway.yaml", yaml)),
    )
    .expect("settings");
    store
        .upsert_config(
            &settings.servers,
            &settings.virtual_servers,
            "conf/gateway.yaml",
        )
        .await
        .expect("upsert");
    let store = Arc::new(store);
    let health = Arc::new(FixedHealth::default());
    let state = AdminState::new(
        store.clone(),
        store,
        health.clone(),
        serde_json::json!({}),
        auth_config(),
    )
    .expect("state");
    Fixture {
        state,
        registry: Arc::new(MemoryRegistry::default()),
        health,
    }
}

#[tokio::test]
async fn the_api_over_the_sqlite_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = over_the_store(dir.path()).await;
    let auth = f.bearer().await;
    let h = [("authorization", auth.as_str())];
    let body = serde_json::json!({
        "name": "stored",
        "urls": ["http://127.0.0.1:9/mcp"],
        "tags": ["t"],
        "upstream_auth": {"type": "basic", "username": "bot", "password": SECRET},
    })
    .to_string();

    let r = f.call("POST", "/api/servers", &h, Some(&body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["upstream_auth"]["password"], "set");
    assert_eq!(
        f.call("POST", "/api/servers", &h, Some(&body)).await.status,
        StatusCode::CONFLICT
    );

    let mut edited = r.json();
    edited["description"] = "edited".into();
    edited.as_object_mut().unwrap().remove("upstream_auth");
    let r = f
        .call("PUT", "/api/servers/stored", &h, Some(&edited.to_string()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["upstream_auth"]["type"], "basic", "kept");
    let stale = f
        .call("PUT", "/api/servers/stored", &h, Some(&edited.to_string()))
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.json()["error"]["current_version"], 2);

    let r = f
        .call(
            "PATCH",
            "/api/servers/stored",
            &h,
            Some(r#"{"enabled":false}"#),
        )
        .await;
    assert_eq!(r.json()["enabled"], false);
    let r = f
        .call(
            "PATCH",
            "/api/servers/from-yaml",
            &h,
            Some(r#"{"enabled":false}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text.contains("conf/gateway.yaml"), "{}", r.text);
    let r = f
        .call(
            "POST",
            "/api/servers",
            &h,
            Some(r#"{"name":"bad","urls":["ftp://nowhere"]}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.field().unwrap().starts_with("urls"), "{}", r.text);

    let list = f.call("GET", "/api/servers?enabled=true", &h, None).await;
    assert_eq!(list.json()["total"], 1, "{}", list.text);
    let r = f.call("DELETE", "/api/servers/stored", &h, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let audit = f.call("GET", "/api/audit?server=stored", &h, None).await;
    assert_eq!(audit.json()["items"][0]["action"], "delete");
    assert_eq!(audit.json()["items"][0]["actor"], EMAIL);
    assert_eq!(
        f.call("GET", "/ready", &[], None).await.status,
        StatusCode::OK
    );
    for path in ["/api/servers", "/api/audit", "/api/servers/from-yaml"] {
        let r = f.call("GET", path, &h, None).await;
        assert!(!r.text.contains(SECRET), "{path}: {}", r.text);
    }
}

/// A URL carrying credentials or a query is refused without echoing the
/// secret in the 400 (which clients and proxies log): the real store
/// validates, the double does not.
#[tokio::test]
async fn a_refused_url_does_not_echo_its_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = over_the_store(dir.path()).await;
    let bearer = f.bearer().await;
    for url in [
        "http://bot:hunter2@127.0.0.1:9/mcp",
        "http://127.0.0.1:9/mcp?token=hunter2",
    ] {
        let body = format!(r#"{{"name":"leaky","urls":["{url}"]}}"#);
        let r = f
            .call(
                "POST",
                "/api/servers",
                &[("authorization", &bearer)],
                Some(&body),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(!r.text.contains("hunter2"), "{}", r.text);
    }
}

/// The database going away under a running service: every route that
/// needs it answers the JSON 503 at once, nothing hangs or panics, and
/// the database's own words stay in the log.
#[tokio::test]
async fn a_database_gone_mid_service_is_a_json_503() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url =
        DatabaseUrl::parse(&format!("sqlite:///{}/mcp.db", dir.path().display())).expect("url");
    let store = Arc::new(
        SqlRegistry::connect(&url, &Secret::new("an-encryption-secret-for-tests"))
            .await
            .expect("store"),
    );
    let health = Arc::new(FixedHealth::default());
    let state = AdminState::new(
        store.clone(),
        store.clone(),
        health.clone(),
        serde_json::json!({}),
        auth_config(),
    )
    .expect("state");
    let f = Fixture {
        state,
        registry: Arc::new(MemoryRegistry::default()),
        health,
    };
    let auth = f.bearer().await;
    store.close().await;
    let server = r#"{"name":"n","urls":["http://127.0.0.1:9/mcp"]}"#;
    for (method, path, body) in [
        ("GET", "/api/servers", None),
        ("GET", "/api/servers/n", None),
        ("POST", "/api/servers", Some(server)),
        (
            "PUT",
            "/api/servers/n",
            Some(r#"{"name":"n","urls":["http://127.0.0.1:9/mcp"],"version":1}"#),
        ),
        ("PATCH", "/api/servers/n", Some(r#"{"enabled":false}"#)),
        ("DELETE", "/api/servers/n", None),
        ("GET", "/api/servers/n/health", None),
        ("GET", "/api/audit", None),
        ("GET", "/ready", None),
    ] {
        let started = std::time::Instant::now();
        let r = f
            .call(method, path, &[("authorization", &auth)], body)
            .await;
        println!("{method} {path}: {} in {:?}", r.status, started.elapsed());
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}: {}",
            r.text
        );
        r.error();
        assert!(!r.text.contains("closed"), "{method} {path}: {}", r.text);
    }
}

/// Writers who read the same version race: exactly one PUT wins, the
/// others get 409 with the version now current, and the audit log holds
/// one update.
#[tokio::test]
async fn concurrent_puts_at_one_version_let_exactly_one_through() {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = Arc::new(over_the_store(dir.path()).await);
    let auth = f.bearer().await;
    let create = r#"{"name":"raced","urls":["http://127.0.0.1:9/mcp"]}"#;
    let r = f
        .call(
            "POST",
            "/api/servers",
            &[("authorization", &auth)],
            Some(create),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let (f, auth) = (f.clone(), auth.clone());
            tokio::spawn(async move {
                let body = format!(
                    r#"{{"name":"raced","urls":["http://127.0.0.1:9/mcp"],"description":"writer {i}","version":1}}"#
                );
                f.call("PUT", "/api/servers/raced", &[("authorization", &auth)], Some(&body))
                    .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for w in writers {
        let r = w.await.expect("writer");
        if r.status == StatusCode::CONFLICT {
            assert_eq!(r.json()["error"]["current_version"], 2, "{}", r.text);
        }
        statuses.push(r.status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
    let r = f
        .call(
            "GET",
            "/api/audit?server=raced",
            &[("authorization", &auth)],
            None,
        )
        .await;
    let actions: Vec<_> = r.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(actions, ["update", "create"]);
}

/// The real store's audit entries (its own redacted before/after, not the
/// double's) have the documented shape; schemathesis found they did not.
#[tokio::test]
async fn the_stores_audit_entries_have_the_documented_shape() {
    use super::openapi::{conforms, document, response_schema};
    let dir = tempfile::tempdir().expect("temp dir");
    let f = over_the_store(dir.path()).await;
    let auth = f.bearer().await;
    let h = [("authorization", auth.as_str())];
    let create = r#"{"name":"shaped","urls":["http://127.0.0.1:9/mcp"],
        "upstream_auth":{"type":"bearer","token":"t"}}"#;
    let r = f.call("POST", "/api/servers", &h, Some(create)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = f
        .call(
            "PATCH",
            "/api/servers/shaped",
            &h,
            Some(r#"{"enabled":false}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let doc = document();
    let r = f.call("GET", "/api/audit", &h, None).await;
    // The two the file declared (a server and a virtual server), then two.
    assert_eq!(r.json()["total"], 4, "{}", r.text);
    conforms(
        &doc,
        response_schema(&doc, "/api/audit", "get", 200),
        &r.json(),
        "audit",
    );
}
