//! `/api/virtual-servers` over the real store (SQLite): the servers' API
//! contract (versions, configuration-owned records, the error shape) for
//! virtual servers, the name space they share with servers, and every
//! response in the shape the OpenAPI document gives.

use super::openapi::{conforms, document, response_schema};
use super::sql_store::over_the_store;
use super::*;
use crate::registry::BackendHealth;

#[tokio::test]
async fn virtual_servers_are_managed_like_servers_and_documented() {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = over_the_store(dir.path()).await;
    let doc = document();
    let auth = f.bearer().await;
    let h = [("authorization", auth.as_str())];
    // `from-yaml` is routed; `ghost` is not (yet).
    f.health.0.lock().unwrap().insert(
        "from-yaml".into(),
        vec![BackendHealth {
            replica: "http://127.0.0.1:9/mcp".into(),
            backend: "127.0.0.1:9".into(),
            healthy: true,
            last_check: None,
            consecutive_failures: 0,
            last_error: None,
        }],
    );

    let body = r#"{"name":"dev","include":["from-yaml/*","ghost/search"],
        "auth_mode":"proxy","proxy_header":"X-Employee-Id","description":"Dev tools"}"#;
    let r = f.call("POST", "/api/virtual-servers", &h, Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.header("location"), Some("/api/virtual-servers/dev"));
    let created = r.json();
    conforms(
        &doc,
        response_schema(&doc, "/api/virtual-servers", "post", 201),
        &created,
        "POST",
    );
    assert_eq!(created["version"], 1);
    assert_eq!(created["origin"], "api");
    assert_eq!(created["unresolved"], serde_json::json!(["ghost/search"]));

    // One name space: /servers/{name}/mcp must mean one thing.
    let again = f.call("POST", "/api/virtual-servers", &h, Some(body)).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert_eq!(again.error().field().as_deref(), Some("name"));
    let like_a_server = r#"{"name":"from-yaml","include":["from-yaml/*"]}"#;
    let r = f
        .call("POST", "/api/virtual-servers", &h, Some(like_a_server))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.error().text.contains("name of a server"), "{}", r.text);
    let like_a_virtual = r#"{"name":"dev","urls":["http://127.0.0.1:9/mcp"]}"#;
    let r = f
        .call("POST", "/api/servers", &h, Some(like_a_virtual))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(
        r.error().text.contains("name of a virtual server"),
        "{}",
        r.text
    );

    // The YAML rules, field named.
    for (bad, field) in [
        (r#"{"name":"x","include":["nope"]}"#, "include[0]"),
        (r#"{"name":"X"}"#, "name"),
        (
            r#"{"name":"x","auth_mode":"jwt","proxy_header":"X-U"}"#,
            "proxy_header",
        ),
        (r#"{"name":"x","urls":[]}"#, "urls"),
        (r#"{"name":"x","version":1}"#, "version"),
    ] {
        let r = f.call("POST", "/api/virtual-servers", &h, Some(bad)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert_eq!(r.error().field().as_deref(), Some(field), "{bad}");
    }

    for (path, doc_path) in [
        ("/api/virtual-servers", "/api/virtual-servers"),
        (
            "/api/virtual-servers?enabled=true&q=dev",
            "/api/virtual-servers",
        ),
        ("/api/virtual-servers/dev", "/api/virtual-servers/{name}"),
        (
            "/api/virtual-servers/yaml-tools",
            "/api/virtual-servers/{name}",
        ),
        ("/api/audit", "/api/audit"),
    ] {
        let r = f.call("GET", path, &h, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        conforms(
            &doc,
            response_schema(&doc, doc_path, "get", 200),
            &r.json(),
            path,
        );
    }
    let list = f.call("GET", "/api/virtual-servers", &h, None).await.json();
    assert_eq!(list["total"], 2, "{list}");
    let yaml = f
        .call("GET", "/api/virtual-servers/yaml-tools", &h, None)
        .await
        .json();
    assert_eq!(yaml["origin"], "config");
    assert_eq!(yaml["config_file"], "conf/gateway.yaml");

    // What GET returned goes back with PUT; a stale version is refused.
    let mut edited = created.clone();
    edited["include"] = serde_json::json!(["from-yaml/echo"]);
    let r = f
        .call(
            "PUT",
            "/api/virtual-servers/dev",
            &h,
            Some(&edited.to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    conforms(
        &doc,
        response_schema(&doc, "/api/virtual-servers/{name}", "put", 200),
        &r.json(),
        "PUT",
    );
    assert_eq!(r.json()["unresolved"], serde_json::json!([]));
    let stale = f
        .call(
            "PUT",
            "/api/virtual-servers/dev",
            &h,
            Some(&edited.to_string()),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.error().json()["error"]["current_version"], 2);
    let r = f
        .call(
            "PATCH",
            "/api/virtual-servers/dev",
            &h,
            Some(r#"{"proxy_header":null,"auth_mode":"jwt","version":2}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    conforms(
        &doc,
        response_schema(&doc, "/api/virtual-servers/{name}", "patch", 200),
        &r.json(),
        "PATCH",
    );
    assert_eq!(r.json()["auth_mode"], "jwt");
    assert_eq!(r.json()["proxy_header"], serde_json::Value::Null);

    // The file's virtual server changes only in the file.
    for (method, body) in [
        ("PATCH", Some(r#"{"enabled":false}"#)),
        ("PUT", Some(r#"{"name":"yaml-tools","version":1}"#)),
        ("DELETE", None),
    ] {
        let r = f
            .call(method, "/api/virtual-servers/yaml-tools", &h, body)
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{method}: {}", r.text);
        assert!(
            r.error().text.contains("conf/gateway.yaml"),
            "{method}: {}",
            r.text
        );
    }

    let r = f
        .call("DELETE", "/api/virtual-servers/dev?version=1", &h, None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let r = f.call("DELETE", "/api/virtual-servers/dev", &h, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = f.call("GET", "/api/virtual-servers/dev", &h, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.error().json()["error"]["message"],
        "no virtual server named \"dev\""
    );
    conforms(
        &doc,
        response_schema(&doc, "/api/virtual-servers/{name}", "get", 404),
        &r.json(),
        "404",
    );
    // Now a server may take the name.
    let r = f
        .call("POST", "/api/servers", &h, Some(like_a_virtual))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let audit = f
        .call("GET", "/api/audit?server=dev", &h, None)
        .await
        .json();
    let entries: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect = [
        ("server", "create"),
        ("virtual_server", "delete"),
        ("virtual_server", "patch"),
        ("virtual_server", "update"),
        ("virtual_server", "create"),
    ]
    .map(|(k, a)| (k.to_string(), a.to_string()));
    assert_eq!(entries, expect);
    conforms(
        &doc,
        response_schema(&doc, "/api/audit", "get", 200),
        &audit,
        "audit",
    );
}

/// A virtual server's `proxy_header` is an identity header: no server's
/// upstream credential may set it, whichever of the two is written last.
#[tokio::test]
async fn an_identity_header_clash_with_a_credential_is_refused_both_ways() {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = over_the_store(dir.path()).await;
    let auth = f.bearer().await;
    let h = [("authorization", auth.as_str())];
    let keyed = r#"{"name":"keyed","urls":["http://127.0.0.1:9/mcp"],
        "upstream_auth":{"type":"headers","headers":{"x-team-key":"k"}}}"#;
    let r = f.call("POST", "/api/servers", &h, Some(keyed)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = f
        .call(
            "POST",
            "/api/virtual-servers",
            &h,
            Some(r#"{"name":"team","auth_mode":"proxy","proxy_header":"X-Team-Key"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.error().field().as_deref(), Some("proxy_header"));

    let r = f
        .call(
            "POST",
            "/api/virtual-servers",
            &h,
            Some(r#"{"name":"team","auth_mode":"proxy","proxy_header":"X-Other-Id"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = f
        .call(
            "PATCH",
            "/api/servers/keyed",
            &h,
            Some(r#"{"upstream_auth":{"type":"headers","headers":{"x-other-id":"k"}}}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.error().field().as_deref(), Some("upstream_auth"));
    assert!(r.text.contains("virtual server"), "{}", r.text);
}
