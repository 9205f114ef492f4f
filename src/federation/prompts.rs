//! `prompts/get`, `resources/read` and `resources/templates/list` on the
//! MCP front (`/mcp`, virtual servers, `/ws`): what the handler answers,
//! and the JSON-RPC error for each way a request does not reach its
//! server. The handler in `mcp` only finds the caller and delegates here.

use super::mcp::FORBIDDEN;
use super::{CallError, Caller, Scope, SharedFederation};
use rmcp::model::{
    ErrorCode, ErrorData, GetPromptRequestParams, GetPromptResult, ListResourceTemplatesResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResult,
};
use serde_json::json;

/// The JSON-RPC error for a `prompts/get` that did not reach a prompt.
pub fn prompt_error(e: &CallError) -> ErrorData {
    match e {
        CallError::UnknownTool(name) => {
            ErrorData::invalid_params(format!("unknown prompt {name:?}"), None)
        }
        CallError::Ambiguous { name, servers } => ErrorData::invalid_params(
            format!(
                "prompt name {name:?} is ambiguous: offered by {}; use the qualified name",
                servers.join(", ")
            ),
            None,
        ),
        other => common_error(other),
    }
}

/// The JSON-RPC error for a `resources/read` that did not reach a
/// resource: an unknown URI is the specification's "Resource not found"
/// (-32002, with the URI in `data`; rmcp sends -32602 instead to clients of
/// protocol 2026-07-28 on, as that version asks).
pub fn resource_error(e: &CallError) -> ErrorData {
    match e {
        CallError::UnknownTool(uri) => {
            ErrorData::resource_not_found("Resource not found", Some(json!({"uri": uri})))
        }
        CallError::Ambiguous { name, servers } => ErrorData::invalid_params(
            format!(
                "resource {name:?} is served by more than one server ({}); read it through a \
                 virtual server that includes only one of them",
                servers.join(", ")
            ),
            Some(json!({"uri": name, "servers": servers})),
        ),
        other => common_error(other),
    }
}

fn common_error(e: &CallError) -> ErrorData {
    match e {
        CallError::InvalidArguments(why) => {
            ErrorData::invalid_params(format!("invalid arguments: {why}"), None)
        }
        CallError::Forbidden(why) => {
            ErrorData::new(ErrorCode(FORBIDDEN), format!("forbidden: {why}"), None)
        }
        // The message names the server (the pool puts it first).
        CallError::Upstream(why) => {
            ErrorData::internal_error(format!("upstream MCP server failed: {why}"), None)
        }
        CallError::Cancelled => ErrorData::new(
            ErrorCode(super::mcp::REQUEST_CANCELLED),
            "request cancelled",
            None,
        ),
        CallError::UnknownTool(name) => {
            ErrorData::invalid_params(format!("unknown name {name:?}"), None)
        }
        CallError::Ambiguous { name, servers } => ErrorData::invalid_params(
            format!("{name:?} is ambiguous: offered by {}", servers.join(", ")),
            None,
        ),
    }
}

/// Logged once per failed request, at the front (the back only returns it).
fn log_failure(what: &str, name: &str, caller: &Caller, e: &CallError) {
    if !matches!(e, CallError::Cancelled) {
        log::info!(
            "federation: {what} {name:?} by {:?} failed: {e:?}",
            caller.identity.principal()
        );
    }
}

pub(crate) async fn get_prompt(
    fed: &SharedFederation,
    caller: &Caller,
    scope: &Scope,
    request: GetPromptRequestParams,
) -> Result<GetPromptResult, ErrorData> {
    fed.get_prompt(caller, scope, &request.name, request.arguments)
        .await
        .map_err(|e| {
            log_failure("prompts/get", &request.name, caller, &e);
            prompt_error(&e)
        })
}

pub(crate) async fn read_resource(
    fed: &SharedFederation,
    caller: &Caller,
    scope: &Scope,
    request: ReadResourceRequestParams,
) -> Result<ReadResourceResult, ErrorData> {
    fed.read_resource(caller, scope, &request.uri)
        .await
        .map_err(|e| {
            log_failure("resources/read", &request.uri, caller, &e);
            resource_error(&e)
        })
}

pub(crate) fn list_resource_templates(
    fed: &SharedFederation,
    caller: &Caller,
    scope: &Scope,
    request: Option<PaginatedRequestParams>,
    page_size: usize,
) -> Result<ListResourceTemplatesResult, ErrorData> {
    let cursor = request.as_ref().and_then(|r| r.cursor.as_deref());
    let (templates, next) = super::mcp::page(
        fed.list_resource_templates(caller, scope),
        cursor,
        page_size,
    )
    .map_err(|e| ErrorData::invalid_params(e, None))?;
    let mut result = ListResourceTemplatesResult::with_all_items(templates);
    result.next_cursor = next;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_resource_is_the_specs_resource_not_found_with_its_uri() {
        let e = resource_error(&CallError::UnknownTool("demo://nope".into()));
        assert_eq!(e.code, ErrorCode(-32002));
        assert_eq!(e.message, "Resource not found");
        assert_eq!(e.data, Some(json!({"uri": "demo://nope"})));
    }

    #[test]
    fn an_unknown_prompt_is_invalid_params_naming_it() {
        let e = prompt_error(&CallError::UnknownTool("nope".into()));
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(
            e.message.contains("unknown prompt \"nope\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn ambiguity_names_the_servers_and_the_way_out() {
        let both = vec!["a".to_string(), "b".to_string()];
        let p = prompt_error(&CallError::Ambiguous {
            name: "greet".into(),
            servers: both.clone(),
        });
        assert_eq!(p.code, ErrorCode::INVALID_PARAMS);
        assert!(p.message.contains("a, b") && p.message.contains("qualified"));
        let r = resource_error(&CallError::Ambiguous {
            name: "demo://readme".into(),
            servers: both,
        });
        assert_eq!(r.code, ErrorCode::INVALID_PARAMS);
        assert!(r.message.contains("a, b") && r.message.contains("virtual server"));
    }

    #[test]
    fn refusals_and_upstream_failures_keep_the_tools_codes() {
        for error in [prompt_error, resource_error] {
            let forbidden = error(&CallError::Forbidden("server a: no".into()));
            assert_eq!(forbidden.code, ErrorCode(FORBIDDEN));
            let down = error(&CallError::Upstream("server a: connection refused".into()));
            assert_eq!(down.code, ErrorCode::INTERNAL_ERROR);
            assert!(down.message.contains("server a"), "{}", down.message);
            let invalid = error(&CallError::InvalidArguments("who is required".into()));
            assert_eq!(invalid.code, ErrorCode::INVALID_PARAMS);
        }
    }
}
