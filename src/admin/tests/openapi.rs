//! The OpenAPI document describes exactly the routes the router serves.

use super::*;
use crate::admin::ROUTES;
use std::collections::BTreeSet;

fn document() -> Value {
    serde_json::from_str(crate::admin::openapi::DOCUMENT).expect("openapi.json is JSON")
}

fn documented() -> BTreeSet<(String, String)> {
    let doc = document();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn the_document_is_openapi_3_1_and_lists_every_route() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let documented = documented();
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&routes).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:?}"
    );
}

#[test]
fn every_operation_has_responses_and_every_ref_resolves() {
    let doc = document();
    let text = doc.to_string();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            assert!(op["responses"].is_object(), "{method} {path}");
            assert!(op["operationId"].is_string(), "{method} {path}");
        }
    }
    let mut rest = text.as_str();
    while let Some(at) = rest.find("#/components/schemas/") {
        let tail = &rest[at + "#/components/schemas/".len()..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        assert!(
            doc["components"]["schemas"][&name].is_object(),
            "missing schema {name}"
        );
        rest = tail;
    }
}

/// The router answers every listed route (not the fallback 404 or a 405)
/// and refuses every other method on those paths.
#[tokio::test]
async fn the_router_serves_exactly_the_listed_routes() {
    let f = Fixture::new();
    let auth = f.bearer().await;
    let all = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    for path in paths {
        let concrete = path.replace("{name}", "from-yaml");
        for method in all {
            let listed = ROUTES.contains(&(method, path));
            let body = matches!(method, "POST" | "PUT" | "PATCH").then_some("{}");
            let r = f
                .call(
                    method,
                    &concrete,
                    &[("authorization", &auth), ("origin", ORIGIN)],
                    body,
                )
                .await;
            if listed {
                assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(
                    !(r.status == StatusCode::NOT_FOUND && r.text.contains("no such route")),
                    "{method} {path}"
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {}",
                    r.text
                );
            }
        }
    }
}
