//! Server→client requests (sampling, elicitation, roots) through the front:
//! what a call's upstream asks reaches the client that made the call, and
//! only it; a client that cannot answer is never asked.

// MCP 2026-07-28 (SEP-2577) deprecates sampling and roots in rmcp's model;
// the revisions clients and servers speak today have them, and the gateway
// relays what they speak.
#![allow(deprecated)]

use super::*;
use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
    ElicitRequestParams, ElicitResult, ElicitationCapability, ErrorData, ProtocolVersion,
    RootsCapabilities, SamplingCapability, ServerRequest,
};
use rmcp::service::RequestContext;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Tools the fake answers by asking the caller (not listed: the listing
/// tests count pages). Arguments: `"meet": true` waits for a second such
/// call; `limit_ms` bounds the wait for the client's answer.
pub(super) const TOOLS: &[&str] = &["alpha-sample", "alpha-elicit"];

/// The fake upstream's side: asks through the call's client as the pool's
/// sessions do, and returns the answer (or the error) as the tool's text.
pub(super) async fn call(
    fed: &FakeFederation,
    name: &str,
    arguments: Option<JsonObject>,
    context: CallContext,
) -> Result<CallToolResult, CallError> {
    let args = arguments.unwrap_or_default();
    fed.relayed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(context.client.as_ref().map(|c| c.capabilities.clone()));
    let Some(client) = context.client.clone() else {
        return Ok(CallToolResult::error(vec![ContentBlock::text(
            "no client to ask",
        )]));
    };
    if args.get("meet") == Some(&Value::Bool(true)) {
        fed.meet.wait().await;
    }
    let limit = args
        .get("limit_ms")
        .and_then(Value::as_u64)
        .unwrap_or(60_000);
    let request = if name == "alpha-sample" {
        json!({"method": "sampling/createMessage", "params": {
            "messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}],
            "maxTokens": 10}})
    } else {
        json!({"method": "elicitation/create", "params": {
            "message": "your name?",
            "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}})
    };
    let request: ServerRequest = serde_json::from_value(request).expect("a server request");
    let stop = context.cancel.clone().cancelled_owned();
    let answer = client
        .forward(
            request,
            context.origin.clone(),
            Duration::from_millis(limit),
            stop,
        )
        .await;
    Ok(match answer {
        Ok(answer) => CallToolResult::success(vec![ContentBlock::text(
            serde_json::to_string(&answer).unwrap_or_default(),
        )]),
        Err(e) => CallToolResult::error(vec![ContentBlock::text(format!(
            "{}: {}",
            e.code.0, e.message
        ))]),
    })
}

/// A client that answers sampling with its name, elicitation with its name
/// as `name`, and counts what it was asked.
#[derive(Clone)]
struct Answerer {
    name: &'static str,
    capabilities: ClientCapabilities,
    asked: Arc<AtomicUsize>,
    /// Never answers.
    silent: bool,
}

impl Answerer {
    fn new(name: &'static str, sampling: bool, elicitation: bool, roots: bool) -> Self {
        let mut capabilities = ClientCapabilities::default();
        capabilities.sampling = sampling.then(SamplingCapability::default);
        capabilities.elicitation = elicitation.then(ElicitationCapability::default);
        capabilities.roots = roots.then(RootsCapabilities::default);
        Answerer {
            name,
            capabilities,
            asked: Arc::default(),
            silent: false,
        }
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }

    async fn asked_now(&self) {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.silent {
            std::future::pending::<()>().await;
        }
    }
}

impl ClientHandler for Answerer {
    async fn create_message(
        &self,
        _params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.asked_now().await;
        let answer = json!({"model": "fake", "role": "assistant",
            "content": {"type": "text", "text": format!("answer from {}", self.name)}});
        serde_json::from_value(answer).map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    async fn create_elicitation(
        &self,
        _params: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.asked_now().await;
        let answer = json!({"action": "accept", "content": {"name": self.name}});
        serde_json::from_value(answer).map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    fn get_info(&self) -> ClientConfig {
        let mut config = ClientConfig::default();
        // The last revision with server→client requests (2026-07-28 has none).
        config.protocol_version = ProtocolVersion::V_2025_11_25;
        config.capabilities = self.capabilities.clone();
        config
    }
}

async fn connect<H: ClientHandler>(
    h: &Harness,
    handler: H,
) -> rmcp::service::RunningService<RoleClient, H> {
    let transport = StreamableHttpClientTransport::from_uri(format!("http://{}/mcp", h.addr));
    handler.serve(transport).await.expect("initialize")
}

fn call_params(name: &str, args: Value) -> CallToolRequestParams {
    let args: JsonObject = serde_json::from_value(args).expect("object");
    CallToolRequestParams::new(name.to_owned()).with_arguments(args)
}

fn text(result: &CallToolResult) -> String {
    serde_json::to_value(&result.content)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn two_clients_of_one_principal_each_answer_only_their_own_calls() {
    let h = start().await;
    let (a, b) = (
        Answerer::new("a", true, false, false),
        Answerer::new("b", true, false, false),
    );
    let client_a = connect(&h, a.clone()).await;
    let client_b = connect(&h, b.clone()).await;
    // Both calls are in flight before either asks its client.
    let meet = json!({"meet": true});
    let (ra, rb) = tokio::join!(
        client_a.call_tool(call_params("alpha-sample", meet.clone())),
        client_b.call_tool(call_params("alpha-sample", meet)),
    );
    let (ra, rb) = (ra.expect("a's call"), rb.expect("b's call"));
    assert_ne!(ra.is_error, Some(true), "{ra:?}");
    assert_ne!(rb.is_error, Some(true), "{rb:?}");
    assert!(text(&ra).contains("answer from a"), "{ra:?}");
    assert!(text(&rb).contains("answer from b"), "{rb:?}");
    assert_eq!((a.asked(), b.asked()), (1, 1));
    client_a.cancel().await.expect("close");
    client_b.cancel().await.expect("close");
}

#[tokio::test]
async fn a_client_without_the_capability_is_not_asked_and_lends_none_upstream() {
    let h = start().await;
    // No capabilities at all: its calls carry no client, so the pool uses
    // the shared sessions, which declare nothing.
    let (events, _) = mpsc::unbounded_channel();
    let plain = connect(&h, Recorder(events)).await;
    let r = plain
        .call_tool(call_params("alpha-sample", json!({})))
        .await
        .expect("call");
    assert!(text(&r).contains("no client to ask"), "{r:?}");
    // Elicitation only: what goes upstream has no sampling, and a server
    // that asks for sampling anyway is refused by the gateway.
    let elicit_only = Answerer::new("e", false, true, false);
    let client = connect(&h, elicit_only.clone()).await;
    let r = client
        .call_tool(call_params("alpha-sample", json!({})))
        .await
        .expect("call");
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("-32601"), "{r:?}");
    assert_eq!(elicit_only.asked(), 0);
    let relayed = h
        .fed
        .relayed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut expected = ClientCapabilities::default();
    expected.elicitation = Some(ElicitationCapability::default());
    assert_eq!(relayed, [None, Some(expected)]);
    plain.cancel().await.expect("close");
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn an_elicitation_goes_to_the_caller_and_its_answer_back() {
    let h = start().await;
    let answerer = Answerer::new("carol", false, true, false);
    let client = connect(&h, answerer.clone()).await;
    let r = client
        .call_tool(call_params("alpha-elicit", json!({})))
        .await
        .expect("call");
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let answer: Value = serde_json::from_str(
        r.content[0]
            .as_text()
            .map(|t| t.text.as_str())
            .unwrap_or("null"),
    )
    .expect("the answer as JSON");
    assert_eq!(answer["action"], "accept");
    assert_eq!(answer["content"]["name"], "carol");
    assert_eq!(answerer.asked(), 1);
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn a_client_that_never_answers_does_not_hold_the_call() {
    let h = start().await;
    let mut silent = Answerer::new("s", true, false, false);
    silent.silent = true;
    let client = connect(&h, silent.clone()).await;
    let r = client
        .call_tool(call_params("alpha-sample", json!({"limit_ms": 100})))
        .await
        .expect("the call ends");
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("did not answer in time"), "{r:?}");
    assert_eq!(silent.asked(), 1);
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn roots_list_changed_reaches_the_federation_for_that_client_only() {
    let mut h = start().await;
    let (events, _) = mpsc::unbounded_channel();
    let plain = connect(&h, Recorder(events)).await;
    // A client that never declared roots: nothing to tell upstream.
    plain.notify_roots_list_changed().await.expect("notify");
    let with_roots = connect(&h, Answerer::new("r", false, false, true)).await;
    with_roots
        .notify_roots_list_changed()
        .await
        .expect("notify");
    let first = h.roots_changed.recv().await.expect("a client id");
    with_roots
        .notify_roots_list_changed()
        .await
        .expect("notify");
    assert_eq!(h.roots_changed.recv().await, Some(first));
    plain.cancel().await.expect("close");
    with_roots.cancel().await.expect("close");
}

/// The `data:` messages among the SSE lines of `text`.
fn sse_messages(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

#[tokio::test]
async fn on_streamable_http_the_request_rides_the_calls_own_stream() {
    let h = start().await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/mcp", h.addr);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {"sampling": {}},
        "clientInfo": {"name": "raw", "version": "1"}}});
    let (status, session, _) = post(&http, &url, "alice", None, init).await;
    assert!(status.is_success(), "{status}");
    let session = session.expect("a session id");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    post(&http, &url, "alice", Some(&session), initialized).await;

    // No GET stream is open: the sampling request can only come on the
    // call's own response stream.
    let mut call = http
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("x-test-user", "alice")
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "alpha-sample", "arguments": {}}}))
        .send()
        .await
        .expect("the call's stream");
    let mut seen = String::new();
    let asked = loop {
        let chunk = call
            .chunk()
            .await
            .expect("read")
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
        let asked = sse_messages(&seen)
            .into_iter()
            .find(|m| m["method"] == "sampling/createMessage");
        if let Some(asked) = asked {
            break asked;
        }
    };
    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "model": "m", "role": "assistant",
        "content": {"type": "text", "text": "answer over http"}}});
    let (status, _, _) = post(&http, &url, "alice", Some(&session), answer).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    while let Some(chunk) = call.chunk().await.expect("read") {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let result = sse_messages(&seen)
        .into_iter()
        .find(|m| m["id"] == 7)
        .expect("the call's result on its stream");
    assert!(
        result["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("answer over http")),
        "{result}"
    );
}
