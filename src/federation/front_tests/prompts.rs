//! prompts/get, resources/read and resources/templates/list on the front:
//! what reaches the federation, and the JSON-RPC errors on the wire.

use super::*;
use rmcp::model::{
    ErrorCode, GetPromptRequestParams, PromptMessage, ReadResourceRequestParams, ResourceContents,
    Role,
};
use rmcp::service::ServiceError;

/// The fake's prompts: `alpha-greet` (bare `greet`), `beta-locked` that the
/// caller may not use, and `beta-down` whose server is gone.
pub(super) fn get_prompt(
    caller: &Caller,
    scope: &Scope,
    name: &str,
    arguments: Option<JsonObject>,
) -> Result<GetPromptResult, CallError> {
    if !in_scope(name, scope) && name != "greet" {
        return Err(CallError::UnknownTool(name.into()));
    }
    match name {
        "alpha-greet" | "greet" => {
            let who = arguments
                .as_ref()
                .and_then(|a| a.get("who"))
                .and_then(Value::as_str)
                .ok_or_else(|| CallError::InvalidArguments("who is required".into()))?;
            let text = format!("Hello, {who}! ({})", caller.identity.principal());
            Ok(GetPromptResult::new(vec![PromptMessage::new_text(
                Role::User,
                text,
            )]))
        }
        "beta-locked" => Err(CallError::Forbidden("server beta: refused".into())),
        "beta-down" => Err(CallError::Upstream(
            "server beta: connection refused".into(),
        )),
        _ => Err(CallError::UnknownTool(name.into())),
    }
}

/// `alpha://readme` is listed, `alpha://notes/{id}` a template, `dup://x`
/// served by two servers.
pub(super) fn read_resource(
    _caller: &Caller,
    _scope: &Scope,
    uri: &str,
) -> Result<ReadResourceResult, CallError> {
    if uri == "alpha://readme" || uri.starts_with("alpha://notes/") {
        return Ok(ReadResourceResult::new(vec![ResourceContents::text(
            format!("contents of {uri}"),
            uri,
        )]));
    }
    if uri == "dup://x" {
        return Err(CallError::Ambiguous {
            name: uri.into(),
            servers: vec!["alpha".into(), "beta".into()],
        });
    }
    Err(CallError::UnknownTool(uri.into()))
}

pub(super) fn templates() -> Vec<ResourceTemplate> {
    vec![ResourceTemplate::new("alpha://notes/{id}", "notes")]
}

fn mcp_error(e: ServiceError) -> rmcp::model::ErrorData {
    match e {
        ServiceError::McpError(e) => e,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

#[tokio::test]
async fn prompts_and_resources_are_fetched_through_the_front() {
    let h = start().await;
    let transport = StreamableHttpClientTransport::from_uri(format!("http://{}/mcp", h.addr));
    let (events_tx, _events) = mpsc::unbounded_channel();
    let client = Recorder(events_tx)
        .serve(transport)
        .await
        .expect("initialize");

    let args: JsonObject = serde_json::from_value(json!({"who": "bob"})).expect("object");
    let greeting = client
        .get_prompt(GetPromptRequestParams::new("alpha-greet").with_arguments(args.clone()))
        .await
        .expect("prompts/get");
    let text = serde_json::to_value(&greeting.messages[0].content).expect("content");
    assert_eq!(text["text"], "Hello, bob! (alice)");
    client
        .get_prompt(GetPromptRequestParams::new("greet").with_arguments(args))
        .await
        .expect("prompts/get by bare name");

    let readme = client
        .read_resource(ReadResourceRequestParams::new("alpha://readme"))
        .await
        .expect("resources/read");
    let contents = serde_json::to_value(&readme.contents).expect("contents");
    assert_eq!(contents[0]["text"], "contents of alpha://readme");

    let templates = client
        .list_resource_templates(None)
        .await
        .expect("resources/templates/list");
    assert_eq!(
        templates.resource_templates[0].uri_template,
        "alpha://notes/{id}"
    );

    // Each way of not reaching a prompt or resource, with its code.
    let unknown = mcp_error(
        client
            .get_prompt(GetPromptRequestParams::new("nope"))
            .await
            .unwrap_err(),
    );
    assert_eq!(unknown.code, ErrorCode::INVALID_PARAMS);
    assert!(unknown.message.contains("unknown prompt \"nope\""));
    let missing = mcp_error(
        client
            .get_prompt(GetPromptRequestParams::new("alpha-greet"))
            .await
            .unwrap_err(),
    );
    assert_eq!(missing.code, ErrorCode::INVALID_PARAMS);
    assert!(missing.message.contains("who is required"));
    let locked = mcp_error(
        client
            .get_prompt(GetPromptRequestParams::new("beta-locked"))
            .await
            .unwrap_err(),
    );
    assert_eq!(locked.code, ErrorCode(-32001));
    let down = mcp_error(
        client
            .get_prompt(GetPromptRequestParams::new("beta-down"))
            .await
            .unwrap_err(),
    );
    assert_eq!(down.code, ErrorCode::INTERNAL_ERROR);
    assert!(down.message.contains("server beta"), "{}", down.message);
    let ambiguous = mcp_error(
        client
            .read_resource(ReadResourceRequestParams::new("dup://x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(ambiguous.code, ErrorCode::INVALID_PARAMS);
    assert!(ambiguous.message.contains("alpha, beta"));
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn an_unknown_resource_is_resource_not_found_on_the_wire() {
    let h = start().await;
    let http = reqwest::Client::new();
    let mcp = format!("http://{}/mcp", h.addr);
    let session = open_session(&http, &mcp, "alice").await;
    let read = json!({"jsonrpc": "2.0", "id": 5, "method": "resources/read",
        "params": {"uri": "alpha://nope"}});
    let (status, _, body) = post(&http, &mcp, "alice", Some(&session), read).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(body[0]["error"]["code"], -32002, "{body:?}");
    assert_eq!(body[0]["error"]["data"]["uri"], "alpha://nope");
    // A virtual server's scope reaches the federation with the request.
    let team = format!("http://{}/servers/team/mcp", h.addr);
    let session = open_session(&http, &team, "alice").await;
    let get = json!({"jsonrpc": "2.0", "id": 6, "method": "prompts/get",
        "params": {"name": "alpha-greet", "arguments": {"who": "x"}}});
    let (_, _, body) = post(&http, &team, "alice", Some(&session), get).await;
    assert_eq!(body[0]["error"]["code"], -32602, "{body:?}");
}

/// Records which lists the server said changed.
#[derive(Clone)]
struct Lists(mpsc::UnboundedSender<&'static str>);

impl ClientHandler for Lists {
    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.0.send("prompts");
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.0.send("resources");
    }
}

#[tokio::test]
async fn a_catalog_change_tells_clients_the_prompt_and_resource_lists_changed() {
    let h = start().await;
    let (tx, mut heard) = mpsc::unbounded_channel();
    let transport = StreamableHttpClientTransport::from_uri(format!("http://{}/mcp", h.addr));
    let client = Lists(tx).serve(transport).await.expect("initialize");
    let info = client.peer_info().expect("server info");
    let prompts = info.capabilities.prompts.as_ref();
    let resources = info.capabilities.resources.as_ref();
    assert_eq!(prompts.and_then(|p| p.list_changed), Some(true));
    assert_eq!(resources.and_then(|r| r.list_changed), Some(true));
    h.fed.changes.send_modify(|n| *n += 1);
    let mut got = vec![heard.recv().await, heard.recv().await];
    got.sort();
    assert_eq!(got, [Some("prompts"), Some("resources")]);
    client.cancel().await.expect("close");
}
