//! The front end to end, in process: the router served on a real TCP port
//! behind a stand-in for the hand-over middleware, driven by rmcp's own
//! client, raw HTTP and a WebSocket client, against a fake federation.

use super::front::router_with;
use super::mcp::FrontConfig;
use super::{CallContext, CallError, Caller, Federation, Scope, SharedFederation, VirtualScope};
use crate::identity::{Identity, IdentitySource};
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientRequest, ContentBlock, JsonObject,
    PaginatedRequestParams, ProgressNotificationParam, Prompt, Resource, Tool,
};
use rmcp::service::{NotificationContext, PeerRequestOptions};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// Two servers' tools; `alpha-wait` blocks until cancelled, `alpha-progress`
/// reports three times, `beta-fail` is a tool's own error.
struct FakeFederation {
    changes: watch::Sender<u64>,
    /// `alpha-wait` started (with the caller's principal).
    started: mpsc::UnboundedSender<String>,
    /// `alpha-wait` saw its cancellation.
    cancelled: mpsc::UnboundedSender<()>,
    callers: Mutex<Vec<String>>,
}

fn tool(name: &str) -> Tool {
    let schema: JsonObject = serde_json::from_value(json!({"type": "object"})).unwrap_or_default();
    Tool::new(name.to_owned(), format!("{name} (fake)"), Arc::new(schema))
}

const TOOLS: &[&str] = &[
    "alpha-echo",
    "alpha-progress",
    "alpha-wait",
    "beta-fail",
    "beta-two",
];

fn in_scope(name: &str, scope: &Scope) -> bool {
    match scope {
        Scope::Everything => true,
        Scope::Virtual(v) => v.include.iter().any(|inc| {
            let server = inc.trim_end_matches("/*");
            name.starts_with(&format!("{server}-"))
        }),
    }
}

#[async_trait]
impl Federation for FakeFederation {
    fn scope(&self, virtual_server: Option<&str>) -> Option<Scope> {
        match virtual_server {
            None => Some(Scope::Everything),
            Some("team") => Some(team()),
            Some(_) => None,
        }
    }

    fn list_tools(&self, _caller: &Caller, scope: &Scope) -> Vec<Tool> {
        TOOLS
            .iter()
            .filter(|n| in_scope(n, scope))
            .map(|n| tool(n))
            .collect()
    }

    fn list_prompts(&self, _caller: &Caller, _scope: &Scope) -> Vec<Prompt> {
        vec![Prompt::new("alpha-greet", Some("a greeting"), None)]
    }

    fn list_resources(&self, _caller: &Caller, _scope: &Scope) -> Vec<Resource> {
        Vec::new()
    }

    async fn call_tool(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        arguments: Option<JsonObject>,
        context: CallContext,
    ) -> Result<CallToolResult, CallError> {
        self.callers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(caller.identity.principal().to_owned());
        if !TOOLS.contains(&name) || !in_scope(name, scope) {
            return Err(CallError::UnknownTool(name.to_owned()));
        }
        match name {
            "alpha-echo" => {
                let args = Value::Object(arguments.unwrap_or_default());
                Ok(CallToolResult::success(vec![ContentBlock::text(
                    args.to_string(),
                )]))
            }
            "alpha-progress" => {
                for i in 1..=3 {
                    if let Some(progress) = &context.progress {
                        // The upstream's own token: the front must replace it.
                        let token =
                            rmcp::model::ProgressToken(rmcp::model::NumberOrString::Number(999));
                        progress(
                            ProgressNotificationParam::new(token, f64::from(i)).with_total(3.0),
                        );
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Ok(CallToolResult::success(vec![ContentBlock::text("done")]))
            }
            "alpha-wait" => {
                let _ = self.started.send(caller.identity.principal().to_owned());
                context.cancel.cancelled().await;
                let _ = self.cancelled.send(());
                Err(CallError::Cancelled)
            }
            "beta-fail" => Ok(CallToolResult::error(vec![ContentBlock::text("it broke")])),
            _ => Err(CallError::Upstream("beta is down".into())),
        }
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

fn team() -> Scope {
    Scope::Virtual(Arc::new(VirtualScope {
        name: "team".into(),
        include: vec!["beta/*".into()],
    }))
}

struct Harness {
    addr: SocketAddr,
    fed: Arc<FakeFederation>,
    started: mpsc::UnboundedReceiver<String>,
    cancelled: mpsc::UnboundedReceiver<()>,
}

/// Stands in for the service's hand-over middleware: `x-test-user` is the
/// principal (alice when absent), `/servers/{name}/mcp` is its scope.
async fn handover(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let user = request
        .headers()
        .get("x-test-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("alice")
        .to_owned();
    let caller = Caller {
        identity: Identity {
            user: user.as_str().into(),
            source: IdentitySource::ProxyHeader,
        },
        peer: None,
        cert_names: None,
        headers: request.headers().clone(),
    };
    let scope = if request.uri().path().starts_with("/servers/team/") {
        team()
    } else {
        Scope::Everything
    };
    request.extensions_mut().insert(caller);
    request.extensions_mut().insert(scope);
    next.run(request).await
}

async fn start() -> Harness {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (cancelled_tx, cancelled) = mpsc::unbounded_channel();
    let fed = Arc::new(FakeFederation {
        changes: watch::channel(0).0,
        started: started_tx,
        cancelled: cancelled_tx,
        callers: Mutex::new(Vec::new()),
    });
    let shared: SharedFederation = fed.clone();
    let config = FrontConfig {
        page_size: 2,
        ..FrontConfig::default()
    };
    let app = router_with(shared, config).layer(axum::middleware::from_fn(handover));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Harness {
        addr,
        fed,
        started,
        cancelled,
    }
}

#[derive(Debug, PartialEq)]
enum Event {
    Progress(f64),
    ListChanged,
}

#[derive(Clone)]
struct Recorder(mpsc::UnboundedSender<Event>);

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(Event::Progress(params.progress));
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.0.send(Event::ListChanged);
    }
}

#[tokio::test]
async fn an_rmcp_client_initialises_lists_calls_cancels_and_hears_list_changed() {
    let mut h = start().await;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let transport = StreamableHttpClientTransport::from_uri(format!("http://{}/mcp", h.addr));
    let client = Recorder(events_tx)
        .serve(transport)
        .await
        .expect("initialize");

    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("mcp-gateway")
    );
    assert_eq!(
        info.capabilities
            .tools
            .as_ref()
            .and_then(|t| t.list_changed),
        Some(true)
    );
    assert!(info.capabilities.prompts.is_some() && info.capabilities.resources.is_some());

    // Five tools, two per page: three pages, every tool once, in order.
    let mut names = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = client
            .list_tools(Some(PaginatedRequestParams::default().with_cursor(cursor)))
            .await
            .expect("tools/list");
        pages += 1;
        names.extend(page.tools.iter().map(|t| t.name.to_string()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, TOOLS);
    let prompts = client.list_prompts(None).await.expect("prompts/list");
    assert_eq!(prompts.prompts[0].name, "alpha-greet");
    client.list_resources(None).await.expect("resources/list");
    client
        .send_request(ClientRequest::PingRequest(Default::default()))
        .await
        .expect("ping");

    let args: JsonObject = serde_json::from_value(json!({"text": "hi"})).expect("object");
    let echoed = client
        .call_tool(CallToolRequestParams::new("alpha-echo").with_arguments(args))
        .await
        .expect("tools/call");
    assert_ne!(echoed.is_error, Some(true));
    assert!(format!("{:?}", echoed.content).contains("hi"));

    let failed = client
        .call_tool(CallToolRequestParams::new("beta-fail"))
        .await
        .expect("a tool's own error is a result");
    assert_eq!(failed.is_error, Some(true));

    let unknown = client
        .call_tool(CallToolRequestParams::new("nope"))
        .await
        .unwrap_err();
    let unknown = format!("{unknown:?}");
    assert!(
        unknown.contains("-32602") && unknown.contains("nope"),
        "{unknown}"
    );

    // Progress reaches the client (every rmcp request carries a token).
    client
        .call_tool(CallToolRequestParams::new("alpha-progress"))
        .await
        .expect("progress tool");
    for expected in 1..=3 {
        assert_eq!(
            events.recv().await,
            Some(Event::Progress(f64::from(expected)))
        );
    }

    // Cancellation: the fake sees the client's notifications/cancelled.
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(rmcp::model::Request::new(CallToolRequestParams::new(
                "alpha-wait",
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("send");
    assert_eq!(h.started.recv().await.as_deref(), Some("alice"));
    handle
        .cancel(Some("changed my mind".into()))
        .await
        .expect("cancel");
    assert_eq!(h.cancelled.recv().await, Some(()));

    // The catalog changes: the client hears list_changed.
    h.fed.changes.send_modify(|n| *n += 1);
    assert_eq!(events.recv().await, Some(Event::ListChanged));

    client.cancel().await.expect("close");
}

/// One JSON-RPC POST; the parsed messages of its answer (JSON or SSE), in order.
async fn post(
    http: &reqwest::Client,
    url: &str,
    user: &str,
    session: Option<&str>,
    body: Value,
) -> (reqwest::StatusCode, Option<String>, Vec<Value>) {
    let mut request = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("x-test-user", user)
        .json(&body);
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let text = response.text().await.expect("body");
    let messages = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        serde_json::from_str(&text).into_iter().collect()
    };
    (status, session, messages)
}

fn initialize(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}})
}

async fn open_session(http: &reqwest::Client, url: &str, user: &str) -> String {
    let (status, session, _) = post(http, url, user, None, initialize(1)).await;
    assert!(status.is_success(), "{status}");
    let session = session.expect("a session id");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, _) = post(http, url, user, Some(&session), initialized).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    session
}

#[tokio::test]
async fn a_session_opened_by_alice_is_refused_to_bob_and_to_another_scope() {
    let h = start().await;
    let http = reqwest::Client::new();
    let mcp = format!("http://{}/mcp", h.addr);
    let session = open_session(&http, &mcp, "alice").await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});

    let (status, _, body) = post(&http, &mcp, "bob", Some(&session), list.clone()).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(body[0]["error"]["code"], -32001);
    assert_eq!(body[0]["error"]["message"], "unknown session");

    let team = format!("http://{}/servers/team/mcp", h.addr);
    let (status, _, _) = post(&http, &team, "alice", Some(&session), list.clone()).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);

    let (status, _, body) = post(&http, &mcp, "alice", Some(&session), list).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(body[0]["result"]["tools"].as_array().map(Vec::len), Some(2));
    assert!(h
        .fed
        .callers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_empty());
}

#[tokio::test]
async fn rmcp_refusals_and_closed_sessions_answer_in_json() {
    let h = start().await;
    let http = reqwest::Client::new();
    let mcp = format!("http://{}/mcp", h.addr);
    let refused = http
        .post(&mcp)
        .header("accept", "text/plain")
        .header("content-type", "application/json")
        .json(&initialize(1))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), reqwest::StatusCode::NOT_ACCEPTABLE);
    let body: Value = refused.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], -32600);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("accept"), "{body}");

    let session = open_session(&http, &mcp, "alice").await;
    let deleted = http
        .delete(&mcp)
        .header("mcp-session-id", &session)
        .header("x-test-user", "alice")
        .send()
        .await
        .expect("delete");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, _, body) = post(&http, &mcp, "alice", Some(&session), list).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(body[0]["error"]["code"], -32001);
}

#[tokio::test]
async fn sessions_beyond_the_limit_are_refused_until_one_closes() {
    let fed = Arc::new(FakeFederation {
        changes: watch::channel(0).0,
        started: mpsc::unbounded_channel().0,
        cancelled: mpsc::unbounded_channel().0,
        callers: Mutex::new(Vec::new()),
    });
    let config = FrontConfig {
        max_sessions: 1,
        ..FrontConfig::default()
    };
    let app = router_with(fed, config).layer(axum::middleware::from_fn(handover));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::new();
    let mcp = format!("http://{addr}/mcp");
    let first = open_session(&http, &mcp, "alice").await;
    let (status, session, body) = post(&http, &mcp, "bob", None, initialize(1)).await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(session, None);
    assert!(body[0]["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("sessions")));

    let deleted = http
        .delete(&mcp)
        .header("mcp-session-id", &first)
        .send()
        .await
        .expect("delete");
    assert!(deleted.status().is_success());
    open_session(&http, &mcp, "bob").await;
}

#[tokio::test]
async fn a_virtual_server_lists_and_calls_only_what_it_includes() {
    let h = start().await;
    let http = reqwest::Client::new();
    let team = format!("http://{}/servers/team/mcp", h.addr);
    let session = open_session(&http, &team, "alice").await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (_, _, body) = post(&http, &team, "alice", Some(&session), list).await;
    let names: Vec<&str> = body[0]["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["beta-fail", "beta-two"]);
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "alpha-echo", "arguments": {}}});
    let (_, _, body) = post(&http, &team, "alice", Some(&session), call).await;
    assert_eq!(
        body.last().map(|m| m["error"]["code"].clone()),
        Some(json!(-32602))
    );
}

#[tokio::test]
async fn progress_arrives_before_the_result_with_the_clients_token() {
    let h = start().await;
    let http = reqwest::Client::new();
    let mcp = format!("http://{}/mcp", h.addr);
    let session = open_session(&http, &mcp, "alice").await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "alpha-progress", "arguments": {}, "_meta": {"progressToken": "tok-1"}}});
    let (_, _, messages) = post(&http, &mcp, "alice", Some(&session), call).await;
    let kinds: Vec<String> = messages
        .iter()
        .map(|m| match m["method"].as_str() {
            Some(method) => format!(
                "{method}:{}:{}",
                m["params"]["progressToken"], m["params"]["progress"]
            ),
            None => format!("answer:{}", m["id"]),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "notifications/progress:\"tok-1\":1.0",
            "notifications/progress:\"tok-1\":2.0",
            "notifications/progress:\"tok-1\":3.0",
            "answer:7",
        ]
    );
}

#[tokio::test]
async fn a_dropped_connection_cancels_its_call() {
    let mut h = start().await;
    let http = reqwest::Client::new();
    let mcp = format!("http://{}/mcp", h.addr);
    let session = open_session(&http, &mcp, "alice").await;
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": "alpha-wait", "arguments": {}}});
    let response = http
        .post(&mcp)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&call)
        .send()
        .await
        .expect("send");
    assert_eq!(h.started.recv().await.as_deref(), Some("alice"));
    drop(response);
    assert_eq!(h.cancelled.recv().await, Some(()));
}

#[tokio::test]
async fn a_request_without_the_handover_is_an_internal_error_not_anonymous() {
    let fed = Arc::new(FakeFederation {
        changes: watch::channel(0).0,
        started: mpsc::unbounded_channel().0,
        cancelled: mpsc::unbounded_channel().0,
        callers: Mutex::new(Vec::new()),
    });
    let app = router_with(fed, FrontConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::new();
    let (status, session, body) = post(
        &http,
        &format!("http://{addr}/mcp"),
        "alice",
        None,
        initialize(1),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        (session, body[0]["error"]["code"].clone()),
        (None, json!(-32603))
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_send(ws: &mut Ws, value: &Value) {
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        value.to_string().into(),
    ))
    .await
    .expect("send frame");
}

/// The next text frame, as JSON.
async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await.expect("a frame").expect("frame ok") {
            tokio_tungstenite::tungstenite::Message::Text(t) => {
                return serde_json::from_str(t.as_str()).expect("frame is JSON")
            }
            tokio_tungstenite::tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn ws_serves_the_same_json_rpc_and_survives_a_malformed_frame() {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let h = start().await;
    let mut request = format!("ws://{}/ws", h.addr)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("x-test-user", http::HeaderValue::from_static("carol"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");

    ws_send(&mut ws, &initialize(1)).await;
    let init = ws_next(&mut ws).await;
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["serverInfo"]["name"], "mcp-gateway");
    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;

    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    let list = ws_next(&mut ws).await;
    assert_eq!(list["id"], 2);
    assert_eq!(list["result"]["tools"].as_array().map(Vec::len), Some(2));
    assert_eq!(list["result"]["nextCursor"], "2");

    ws.send(Message::Text("{not json".into()))
        .await
        .expect("send");
    let parse_error = ws_next(&mut ws).await;
    assert_eq!(parse_error["error"]["code"], -32700);
    assert_eq!(parse_error["id"], Value::Null);

    // Still alive: a call with progress, progress first.
    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "alpha-progress", "arguments": {}, "_meta": {"progressToken": 5}}}),
    )
    .await;
    for expected in 1..=3 {
        let progress = ws_next(&mut ws).await;
        assert_eq!(progress["method"], "notifications/progress");
        assert_eq!(progress["params"]["progressToken"], 5);
        assert_eq!(progress["params"]["progress"], f64::from(expected));
    }
    let answer = ws_next(&mut ws).await;
    assert_eq!(answer["id"], 3);
    assert_eq!(answer["result"]["content"][0]["text"], "done");
    assert_eq!(
        h.fed
            .callers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_slice(),
        ["carol"]
    );

    // list_changed on the socket too.
    h.fed.changes.send_modify(|n| *n += 1);
    assert_eq!(
        ws_next(&mut ws).await["method"],
        "notifications/tools/list_changed"
    );

    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send");
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1003);
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn ws_cancels_a_call_when_the_socket_goes_away() {
    let mut h = start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", h.addr))
        .await
        .expect("upgrade");
    ws_send(&mut ws, &initialize(1)).await;
    ws_next(&mut ws).await;
    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "alpha-wait", "arguments": {}}}),
    )
    .await;
    assert_eq!(h.started.recv().await.as_deref(), Some("alice"));
    drop(ws);
    assert_eq!(h.cancelled.recv().await, Some(()));
}

/// The SDK venv `make deps-test` makes under the target directory (or
/// `MCP_SDK_PYTHON`); missing, the test fails saying how to fix it.
fn sdk_python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("MCP_SDK_PYTHON") {
        return p.into();
    }
    // The test binary is target/<profile>/deps/<name>.
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target directory")
        .to_path_buf();
    let python = target.join("tmp/mcp-sdk-venv/bin/python");
    assert!(
        python.exists(),
        "the MCP Python SDK is not installed at {}: run `make deps-test` or set MCP_SDK_PYTHON",
        python.display()
    );
    python
}

#[tokio::test]
async fn the_official_python_sdk_initialises_pages_calls_and_sees_progress_first() {
    let h = start().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/federation/front_sdk_client.py"
    );
    let url = format!("http://{}/mcp", h.addr);
    let python = sdk_python();
    // The server runs on this runtime: the client waits on another thread.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args([script, &url])
            .output()
    })
    .await
    .expect("joined")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(seen["server"], "mcp-gateway");
    assert_eq!(seen["tools"], json!(TOOLS));
    assert_eq!(seen["pages"], 3);
    assert!(seen["echo"]
        .as_str()
        .is_some_and(|e| e.contains("from python")));
    assert_eq!(
        seen["events"],
        json!(["progress 1", "progress 2", "progress 3", "result"])
    );
    assert_eq!(seen["failed_is_error"], true);
}
