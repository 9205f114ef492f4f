//! `GET /tools` and `POST /tools/invoke/{name}`: the catalog and the calls
//! as plain JSON over HTTP.
//!
//! `/tools` answers a plain JSON array, as the reference's clients expect;
//! the next page, when there is one, is named by the `X-Next-Cursor`
//! header (and a `Link: <…>; rel="next"` header with the whole URL).

use super::service::{caller_and_scope, error};
use super::{CallError, Caller, Scope, SharedFederation, ToolEntry};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use rmcp::model::JsonObject;
use serde::Deserialize;
use serde_json::{json, Value};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// The header naming the next page's cursor.
pub const NEXT_CURSOR: &str = "x-next-cursor";

/// A cursor is the offset of the page's first item, written so that
/// clients treat it as a token and not a number to compute with.
fn cursor_for(offset: usize) -> String {
    format!("o{offset:x}")
}

fn offset_of(cursor: &str) -> Option<usize> {
    let hex = cursor.strip_prefix('o')?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    usize::from_str_radix(hex, 16).ok()
}

/// One page of `items` from `cursor` (`None`: the start), and the cursor
/// of the next page if there are more. A cursor past the end is an empty
/// last page (the catalog may have shrunk since); a malformed one an error.
pub fn page<'a, T>(
    items: &'a [T],
    cursor: Option<&str>,
    limit: usize,
) -> Result<(&'a [T], Option<String>), &'static str> {
    let start = match cursor {
        None => 0,
        Some(c) => offset_of(c).ok_or("cursor: not a cursor this gateway issued")?,
    };
    let start = start.min(items.len());
    let end = start.saturating_add(limit).min(items.len());
    let next = (end < items.len()).then(|| cursor_for(end));
    Ok((&items[start..end], next))
}

/// `limit` and `cursor` of a query string, checked.
pub fn paging(query: Option<&str>) -> Result<(usize, Option<String>), String> {
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("limit: must be a whole number from 1 to {MAX_LIMIT}")
                    })?;
            }
            // Cursors are [0-9a-fo]: no percent-decoding needed.
            "cursor" => cursor = Some(value.to_string()),
            _ => {}
        }
    }
    Ok((limit, cursor))
}

/// The `/tools` view of one entry.
pub fn entry_json(entry: &ToolEntry) -> Value {
    let mut out = json!({
        "name": entry.tool.name,
        "originalName": entry.original_name,
        "server": entry.server,
        "description": entry.tool.description,
        "inputSchema": entry.tool.input_schema,
        "available": entry.available,
    });
    if let (Some(why), Some(map)) = (&entry.unavailable_reason, out.as_object_mut()) {
        map.insert("unavailableReason".into(), json!(why));
    }
    out
}

pub async fn list(
    State(fed): State<SharedFederation>,
    caller: Option<Extension<Caller>>,
    scope: Option<Extension<Scope>>,
    RawQuery(query): RawQuery,
) -> Response {
    let (caller, scope) = match caller_and_scope(caller, scope) {
        Ok(found) => found,
        Err(missing) => return missing.into_response(),
    };
    let (limit, cursor) = match paging(query.as_deref()) {
        Ok(p) => p,
        Err(why) => return error(400, &why),
    };
    let start = match cursor.as_deref().map(offset_of) {
        None => 0,
        Some(Some(offset)) => offset,
        Some(None) => return error(400, "cursor: not a cursor this gateway issued"),
    };
    let (items, more) = fed.tool_page(&caller, &scope, start, limit);
    let next = more.then(|| cursor_for(start + items.len()));
    let body: Vec<Value> = items.iter().map(entry_json).collect();
    let mut response = axum::Json(body).into_response();
    if let Some(next) = next {
        let headers = response.headers_mut();
        if let Ok(v) = http::HeaderValue::from_str(&next) {
            headers.insert(NEXT_CURSOR, v);
        }
        let link = format!("</tools?limit={limit}&cursor={next}>; rel=\"next\"");
        if let Ok(v) = http::HeaderValue::from_str(&link) {
            headers.insert(http::header::LINK, v);
        }
    }
    response
}

#[derive(Deserialize)]
struct InvokeBody {
    #[serde(default)]
    arguments: Option<JsonObject>,
}

/// The arguments of an invoke body; an empty body is a call without any.
pub fn invoke_arguments(body: &[u8]) -> Result<Option<JsonObject>, String> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Ok(None),
        // serde would read a JSON array as the struct's fields in order.
        Some(b'{') => {}
        Some(_) => return Err(r#"body: must be a JSON object: {"arguments": {...}}"#.into()),
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: InvokeBody = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("body: {}", e.inner())
        } else {
            format!("body: {path}: {}", e.inner())
        }
    })?;
    de.end().map_err(|e| format!("body: {e}"))?;
    Ok(parsed.arguments)
}

/// The HTTP status of a call that did not reach its tool.
pub fn status_of(e: &CallError, caller: &Caller) -> u16 {
    match e {
        CallError::UnknownTool(_) | CallError::Ambiguous { .. } => 404,
        CallError::InvalidArguments(_) => 400,
        CallError::Forbidden(_) if !caller.identity.is_authenticated() => 401,
        CallError::Forbidden(_) => 403,
        CallError::Upstream(_) => 502,
        CallError::Cancelled => crate::refusal::CLIENT_CLOSED,
    }
}

/// What the caller is told (nothing of the configuration beyond names).
pub fn message_of(e: &CallError) -> String {
    match e {
        CallError::UnknownTool(name) => format!("unknown tool {name:?}"),
        CallError::Ambiguous { name, servers } => format!(
            "tool {name:?} is offered by several servers ({}): use a qualified name",
            servers.join(", ")
        ),
        CallError::InvalidArguments(why) => format!("invalid arguments: {why}"),
        CallError::Forbidden(why) => why.clone(),
        CallError::Upstream(why) => format!("upstream MCP server failed: {why}"),
        CallError::Cancelled => "cancelled".into(),
    }
}

pub async fn invoke(
    State(fed): State<SharedFederation>,
    caller: Option<Extension<Caller>>,
    scope: Option<Extension<Scope>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (caller, scope) = match caller_and_scope(caller, scope) {
        Ok(found) => found,
        Err(missing) => return missing.into_response(),
    };
    super::service::local(super::direct::invoke(&fed, &caller, &scope, &name, &body).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::service::tests::{handed_over, send, FakeFederation};

    #[tokio::test]
    async fn a_refused_caller_is_401_when_anonymous_else_403() {
        let fed = FakeFederation::shared(0);
        let call = |user| handed_over("POST", "/tools/invoke/z-private", user, "{}");
        let (status, headers, _) = send(fed.clone(), call(None)).await;
        assert_eq!(status, 401);
        assert!(headers.get("www-authenticate").is_some());
        let (status, headers, body) = send(fed, call(Some("alice"))).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("server z refuses this caller"))
        );
        assert!(headers.get("www-authenticate").is_none());
    }

    #[test]
    fn pages_follow_each_other_to_the_end() {
        let items: Vec<u32> = (0..250).collect();
        let (first, next) = page(&items, None, 100).unwrap();
        assert_eq!((first.len(), first[0]), (100, 0));
        let (second, next) = page(&items, next.as_deref(), 100).unwrap();
        assert_eq!(second[0], 100);
        let (third, next) = page(&items, next.as_deref(), 100).unwrap();
        assert_eq!((third.len(), next), (50, None));
        assert_eq!(page(&items, Some("o1000"), 10).unwrap().0.len(), 0);
        for bad in ["", "12", "o", "ozz", "o11111111111111111"] {
            assert!(page(&items, Some(bad), 10).is_err(), "{bad}");
        }
    }

    #[test]
    fn paging_parameters_are_checked() {
        assert_eq!(paging(None).unwrap(), (DEFAULT_LIMIT, None));
        assert_eq!(
            paging(Some("limit=5&cursor=o5&x=1")).unwrap(),
            (5, Some("o5".into()))
        );
        for bad in ["limit=0", "limit=1001", "limit=abc", "limit="] {
            assert!(paging(Some(bad)).unwrap_err().starts_with("limit"), "{bad}");
        }
    }

    #[test]
    fn invoke_bodies_name_their_problem() {
        assert_eq!(invoke_arguments(b"").unwrap(), None);
        assert_eq!(invoke_arguments(b"{}").unwrap(), None);
        let args = invoke_arguments(br#"{"arguments": {"text": "hi"}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(args["text"], "hi");
        let e = invoke_arguments(br#"{"arguments": "hi"}"#).unwrap_err();
        assert!(
            e.starts_with("body: arguments: invalid type: string"),
            "{e}"
        );
        let e = invoke_arguments(b"{\"arguments\": {").unwrap_err();
        assert!(e.starts_with("body: "), "{e}");
        let e = invoke_arguments(b"[1]").unwrap_err();
        assert!(e.contains("must be a JSON object"), "{e}");
        assert!(invoke_arguments(b"{} {}").is_err());
    }

    #[tokio::test]
    async fn tools_lists_the_callers_tools_as_a_plain_array() {
        let fed = FakeFederation::shared(0);
        let (status, _, body) =
            send(fed.clone(), handed_over("GET", "/tools", Some("alice"), "")).await;
        assert_eq!(status, 200);
        let names: Vec<&str> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a-echo", "a-fail", "b-down"]);
        assert_eq!(body[0]["inputSchema"]["type"], "object");
        assert_eq!(body[0]["available"], true);
        assert_eq!(body[0]["description"], "echoes");
        // The anonymous caller sees its own (empty) view, not alice's.
        let (_, _, body) = send(fed, handed_over("GET", "/tools", None, "")).await;
        assert_eq!(body, json!([]));
    }

    #[tokio::test]
    async fn tools_pages_with_a_next_cursor_header() {
        let fed = FakeFederation::shared(5);
        let (status, headers, body) = send(
            fed.clone(),
            handed_over("GET", "/tools?limit=6", Some("a"), ""),
        )
        .await;
        assert_eq!((status, body.as_array().unwrap().len()), (200, 6));
        let next = headers
            .get(NEXT_CURSOR)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(headers
            .get("link")
            .unwrap()
            .to_str()
            .unwrap()
            .contains(&next));
        let uri = format!("/tools?limit=6&cursor={next}");
        let (_, headers, body) = send(fed.clone(), handed_over("GET", &uri, Some("a"), "")).await;
        assert_eq!(body.as_array().unwrap().len(), 2);
        assert!(headers.get(NEXT_CURSOR).is_none());
        let (status, _, body) =
            send(fed, handed_over("GET", "/tools?limit=0", Some("a"), "")).await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().starts_with("limit"));
    }

    #[tokio::test]
    async fn invoke_maps_each_outcome_to_its_status() {
        let fed = FakeFederation::shared(0);
        let call = |name: &str, body: &str| {
            handed_over(
                "POST",
                &format!("/tools/invoke/{name}"),
                Some("alice"),
                body,
            )
        };
        let (status, _, body) = send(
            fed.clone(),
            call("a-echo", r#"{"arguments":{"text":"hi"}}"#),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["content"][0]["text"], "alice: hi");
        assert_eq!(body["isError"], false);
        let (status, _, body) =
            send(fed.clone(), call("a-fail", r#"{"arguments":{"text":"x"}}"#)).await;
        assert_eq!((status, &body["isError"]), (200, &json!(true)));
        let (status, _, body) = send(fed.clone(), call("nope", r#"{"arguments":{}}"#)).await;
        assert_eq!((status, body["status"].as_u64()), (404, Some(404)));
        let (status, _, body) = send(fed.clone(), call("a-echo", r#"{"arguments":{}}"#)).await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("text"));
        let (status, _, body) = send(fed.clone(), call("a-echo", r#"{"arguments":[1]}"#)).await;
        assert_eq!(status, 400);
        assert!(body["error"]
            .as_str()
            .unwrap()
            .starts_with("body: arguments:"));
        let (status, _, _) =
            send(fed.clone(), call("b-down", r#"{"arguments":{"text":"x"}}"#)).await;
        assert_eq!(status, 502);
        // A qualified name with an encoded character reaches the federation decoded.
        let (status, _, body) = send(fed, call("a%2Decho", r#"{"arguments":{"text":"e"}}"#)).await;
        assert_eq!(
            (status, &body["content"][0]["text"]),
            (200, &json!("alice: e"))
        );
    }
}
