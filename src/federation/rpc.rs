//! `POST /rpc`: the catalog over plain JSON-RPC 2.0 (`tools/list`,
//! `tools/call`, `ping`, a minimal `initialize`), one request or a batch,
//! without MCP sessions, as ContextForge's clients use it.
//!
//! A body that is not JSON-RPC at all is refused with 400 and a JSON-RPC
//! error; every answer to a well-formed request is 200, errors included,
//! as JSON-RPC over HTTP expects. Notifications get no answer (202 when
//! nothing else is answered).

use super::service::{caller_and_scope, rpc_error};
use super::tools::{message_of, page, DEFAULT_LIMIT};
use super::{CallContext, CallError, Caller, Scope, SharedFederation};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use rmcp::model::JsonObject;
use serde_json::{json, Value};

pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The MCP SDKs' code for a refused caller.
    pub const FORBIDDEN: i64 = -32001;
    /// LSP's "request cancelled", which MCP clients know.
    pub const CANCELLED: i64 = -32800;
}

/// Most requests one batch may carry.
pub const MAX_BATCH: usize = 100;

/// The protocol version `initialize` answers when the client names none.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// The JSON-RPC error of a call that did not reach its tool.
pub fn code_of(e: &CallError) -> i64 {
    match e {
        CallError::UnknownTool(_)
        | CallError::Ambiguous { .. }
        | CallError::InvalidArguments(_) => code::INVALID_PARAMS,
        CallError::Forbidden(_) => code::FORBIDDEN,
        CallError::Upstream(_) => code::INTERNAL_ERROR,
        CallError::Cancelled => code::CANCELLED,
    }
}

fn failure(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn success(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// One request's answer; `None` for a notification.
async fn answer(
    fed: &SharedFederation,
    caller: &Caller,
    scope: &Scope,
    request: Value,
) -> Option<Value> {
    let Value::Object(mut request) = request else {
        return Some(failure(
            &Value::Null,
            code::INVALID_REQUEST,
            "a request must be an object",
        ));
    };
    let id = request.remove("id");
    let id_ok = matches!(
        &id,
        None | Some(Value::String(_) | Value::Number(_) | Value::Null)
    );
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let shown_id = id.clone().unwrap_or(Value::Null);
    if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") || !id_ok {
        return Some(failure(
            &shown_id,
            code::INVALID_REQUEST,
            "not a JSON-RPC 2.0 request",
        ));
    }
    let Some(method) = method else {
        return Some(failure(
            &shown_id,
            code::INVALID_REQUEST,
            "method: missing or not a string",
        ));
    };
    // A notification: nothing to answer, and no effect here.
    let id = id?;
    let params = request.remove("params").unwrap_or(Value::Null);
    if !matches!(params, Value::Null | Value::Object(_)) {
        return Some(failure(
            &id,
            code::INVALID_PARAMS,
            "params: must be an object",
        ));
    }
    Some(match method.as_str() {
        "ping" => success(&id, json!({})),
        "initialize" => {
            let version = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or(PROTOCOL_VERSION);
            success(
                &id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "mcp-gateway", "version": env!("CARGO_PKG_VERSION")},
                }),
            )
        }
        "tools/list" => {
            let cursor = params.get("cursor").and_then(Value::as_str);
            let tools = fed.list_tools(caller, scope);
            match page(&tools, cursor, DEFAULT_LIMIT) {
                Ok((items, next)) => {
                    let mut result = json!({"tools": items});
                    if let (Some(next), Some(map)) = (next, result.as_object_mut()) {
                        map.insert("nextCursor".into(), json!(next));
                    }
                    success(&id, result)
                }
                Err(why) => failure(&id, code::INVALID_PARAMS, why),
            }
        }
        "tools/call" => match call_params(&params) {
            Err(why) => failure(&id, code::INVALID_PARAMS, &why),
            Ok((name, arguments)) => {
                let context = CallContext::default();
                let _cancel_on_drop = context.cancel.clone().drop_guard();
                // As the data plane calls (`direct`): over the wire where it can.
                match fed
                    .call_tool_json(caller, scope, &name, arguments, context)
                    .await
                {
                    Ok(result) => match serde_json::from_str(result.get()) {
                        Ok(result) => success(&id, result),
                        Err(e) => failure(&id, code::INTERNAL_ERROR, &e.to_string()),
                    },
                    Err(e) => failure(&id, code_of(&e), &message_of(&e)),
                }
            }
        },
        other => failure(
            &id,
            code::METHOD_NOT_FOUND,
            &format!("method {other:?} not found"),
        ),
    })
}

/// `name` and `arguments` of a `tools/call`'s params.
pub fn call_params(params: &Value) -> Result<(String, Option<JsonObject>), String> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or("params.name: missing or not a string")?;
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => return Err("params.arguments: must be an object".into()),
    };
    Ok((name.to_string(), arguments))
}

pub async fn handle(
    State(fed): State<SharedFederation>,
    caller: Option<Extension<Caller>>,
    scope: Option<Extension<Scope>>,
    body: Bytes,
) -> Response {
    let (caller, scope) = match caller_and_scope(caller, scope) {
        Ok(found) => found,
        Err(missing) => return missing.into_response(),
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return rpc_error(400, code::PARSE_ERROR, &format!("body: {e}")),
    };
    match parsed {
        Value::Array(batch) => {
            if batch.is_empty() || batch.len() > MAX_BATCH {
                return rpc_error(
                    400,
                    code::INVALID_REQUEST,
                    &format!("a batch holds 1 to {MAX_BATCH} requests"),
                );
            }
            let mut answers = Vec::with_capacity(batch.len());
            // One after the other: a batch is one caller's, and its calls
            // may depend on each other's effects.
            for request in batch {
                answers.extend(answer(&fed, &caller, &scope, request).await);
            }
            if answers.is_empty() {
                return http::StatusCode::ACCEPTED.into_response();
            }
            axum::Json(Value::Array(answers)).into_response()
        }
        single => match answer(&fed, &caller, &scope, single).await {
            Some(v) => axum::Json(v).into_response(),
            None => http::StatusCode::ACCEPTED.into_response(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::service::tests::{handed_over, send, FakeFederation};

    async fn rpc(body: &str) -> (u16, Value) {
        let fed = FakeFederation::shared(0);
        let (status, _, json) = send(fed, handed_over("POST", "/rpc", Some("alice"), body)).await;
        (status, json)
    }

    #[tokio::test]
    async fn tools_list_and_call() {
        let (status, v) = rpc(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).await;
        assert_eq!(status, 200);
        assert_eq!(v["id"], 1);
        assert_eq!(v["result"]["tools"][0]["name"], "a-echo");
        assert!(v["result"].get("nextCursor").is_none());
        let (_, v) = rpc(r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"a-echo","arguments":{"text":"hi"}}}"#).await;
        assert_eq!(v["id"], "x");
        assert_eq!(v["result"]["content"][0]["text"], "alice: hi");
    }

    #[tokio::test]
    async fn errors_are_json_rpc_errors() {
        for (body, status, code) in [
            ("{", 400, code::PARSE_ERROR),
            ("[]", 400, code::INVALID_REQUEST),
            ("3", 200, code::INVALID_REQUEST),
            (r#"{"id":1,"method":"ping"}"#, 200, code::INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","id":1}"#, 200, code::INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#,
                200,
                code::METHOD_NOT_FOUND,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
                200,
                code::INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}"#,
                200,
                code::INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"b-down","arguments":{"text":"x"}}}"#,
                200,
                code::INTERNAL_ERROR,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"zz"}}"#,
                200,
                code::INVALID_PARAMS,
            ),
        ] {
            let (got, v) = rpc(body).await;
            assert_eq!(
                (got, v["error"]["code"].as_i64()),
                (status, Some(code)),
                "{body}: {v}"
            );
            assert_eq!(v["jsonrpc"], "2.0");
        }
    }

    #[tokio::test]
    async fn batches_answer_each_request_but_not_notifications() {
        let (status, v) = rpc(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}]"#).await;
        assert_eq!(status, 200);
        let answers = v.as_array().unwrap();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0]["result"], json!({}));
        assert_eq!(answers[1]["result"]["protocolVersion"], "2025-03-26");
        let (status, _) = rpc(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
        assert_eq!(status, 202);
    }
}
