//! The OpenAPI document describes exactly the routes the router serves.

use super::*;
use crate::admin::ROUTES;
use std::collections::BTreeSet;

pub(super) fn document() -> Value {
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

/// The schema named `name`, its `$ref`s followed.
fn schema<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            schema(doc, &doc["components"]["schemas"][name])
        }
        None => node,
    }
}

/// `value` has every required property of `node` and no property the
/// schema does not describe, down through objects and arrays.
pub(super) fn conforms(doc: &Value, node: &Value, value: &Value, at: &str) {
    let mut node = schema(doc, node);
    // `oneOf` here is "one of some shapes, or null": an object takes the
    // first shape that describes each of its properties (a server's or a
    // virtual server's record in the audit log), else the first shape.
    if let (Some(alternatives), Some(object)) = (node["oneOf"].as_array(), value.as_object()) {
        let shapes: Vec<&Value> = alternatives
            .iter()
            .map(|a| schema(doc, a))
            .filter(|a| a["properties"].is_object())
            .collect();
        let fits = |shape: &&&Value| object.keys().all(|k| shape["properties"].get(k).is_some());
        if let Some(shape) = shapes.iter().find(fits).or(shapes.first()) {
            node = shape;
        }
    }
    if let (Some(props), Some(object)) = (node["properties"].as_object(), value.as_object()) {
        for key in object.keys() {
            assert!(props.contains_key(key), "{at}.{key}: not in the schema");
        }
        for required in node["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap_or_default();
            assert!(object.contains_key(key), "{at}.{key}: required, not sent");
        }
        for (key, v) in object {
            conforms(doc, &props[key], v, &format!("{at}.{key}"));
        }
    }
    if let Some(items) = value.as_array() {
        for (i, v) in items.iter().enumerate() {
            conforms(doc, &node["items"], v, &format!("{at}[{i}]"));
        }
    }
}

pub(super) fn response_schema<'a>(
    doc: &'a Value,
    path: &str,
    method: &str,
    status: u16,
) -> &'a Value {
    &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
        ["schema"]
}

/// The paths are not enough: the bodies the handlers send are the shapes
/// the document describes, and the bodies it offers are the ones accepted.
#[tokio::test]
async fn responses_have_the_documented_shapes() {
    let doc = document();
    let f = Fixture::new();
    let auth = f.bearer().await;
    let h = [("authorization", auth.as_str())];
    let create = r#"{"name":"shaped","urls":["http://127.0.0.1:9/mcp"],"tags":["t"],
        "upstream_auth":{"type":"headers","headers":{"x-api-key":"k"}}}"#;
    let r = f.call("POST", "/api/servers", &h, Some(create)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    conforms(
        &doc,
        response_schema(&doc, "/api/servers", "post", 201),
        &r.json(),
        "POST",
    );
    for (path, doc_path) in [
        ("/api/servers", "/api/servers"),
        ("/api/servers/shaped", "/api/servers/{name}"),
        ("/api/servers/from-yaml", "/api/servers/{name}"),
        ("/api/servers/shaped/health", "/api/servers/{name}/health"),
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
    let r = f.call("GET", "/api/servers/nope", &h, None).await;
    conforms(
        &doc,
        response_schema(&doc, "/api/servers/{name}", "get", 404),
        &r.json(),
        "404",
    );
}

#[test]
fn the_documented_request_limits_are_the_validators() {
    use crate::registry::{MAX_DESCRIPTION_CHARS, MAX_TAGS, MAX_TAG_CHARS, MAX_URLS};
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    for name in ["ServerCreate", "ServerInput", "ServerPatch"] {
        let p = &schemas[name]["properties"];
        assert_eq!(p["urls"]["maxItems"], MAX_URLS, "{name}");
        assert_eq!(p["tags"]["maxItems"], MAX_TAGS, "{name}");
        assert_eq!(p["tags"]["items"]["maxLength"], MAX_TAG_CHARS, "{name}");
        assert_eq!(
            p["description"]["maxLength"], MAX_DESCRIPTION_CHARS,
            "{name}"
        );
    }
    for name in ["ServerCreate", "ServerInput"] {
        let pattern = schemas[name]["properties"]["name"]["pattern"]
            .as_str()
            .unwrap();
        assert_eq!(pattern, "^[a-z0-9-]{1,63}$", "{name}");
        for (candidate, ok) in [("a-1", true), ("A", false), ("a_b", false), ("", false)] {
            assert_eq!(
                crate::config::is_valid_server_name(candidate),
                ok,
                "{candidate}"
            );
        }
    }
    let virtual_input = &schemas["VirtualServerInput"]["properties"];
    assert_eq!(
        virtual_input["include"]["maxItems"],
        crate::config::MAX_INCLUDE
    );
    assert_eq!(
        virtual_input["description"]["maxLength"],
        MAX_DESCRIPTION_CHARS
    );
    assert_eq!(
        virtual_input["jwt_audience"]["maxLength"],
        crate::config::MAX_AUDIENCE_CHARS
    );
    // POST refuses `version`, PUT requires it: the document says so.
    let post = schema(
        &doc,
        &doc["paths"]["/api/servers"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"],
    );
    assert!(post["properties"].get("version").is_none());
    let put = schema(
        &doc,
        &doc["paths"]["/api/servers/{name}"]["put"]["requestBody"]["content"]["application/json"]
            ["schema"],
    );
    assert!(put["required"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("version")));
}
