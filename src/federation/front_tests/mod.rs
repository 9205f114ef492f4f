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
    CallToolRequestParams, CallToolResult, ClientRequest, ContentBlock, GetPromptResult,
    JsonObject, PaginatedRequestParams, ProgressNotificationParam, Prompt, ReadResourceResult,
    Resource, ResourceTemplate, Tool,
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
    /// What `relay::call` saw of each caller's server-request capabilities.
    relayed: Mutex<Vec<Option<rmcp::model::ClientCapabilities>>>,
    /// Where two `alpha-sample` calls with `"meet": true` wait for each other.
    meet: tokio::sync::Barrier,
    /// Front clients whose roots changed.
    roots_changed: mpsc::UnboundedSender<u64>,
}

impl FakeFederation {
    /// One whose events nobody listens to.
    fn quiet() -> Self {
        FakeFederation {
            changes: watch::channel(0).0,
            started: mpsc::unbounded_channel().0,
            cancelled: mpsc::unbounded_channel().0,
            callers: Mutex::new(Vec::new()),
            relayed: Mutex::new(Vec::new()),
            meet: tokio::sync::Barrier::new(2),
            roots_changed: mpsc::unbounded_channel().0,
        }
    }
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
        if relay::TOOLS.contains(&name) {
            return relay::call(self, name, arguments, context).await;
        }
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

    fn list_resource_templates(&self, _caller: &Caller, _scope: &Scope) -> Vec<ResourceTemplate> {
        prompts::templates()
    }

    async fn get_prompt(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<GetPromptResult, CallError> {
        prompts::get_prompt(caller, scope, name, arguments)
    }

    async fn read_resource(
        &self,
        caller: &Caller,
        scope: &Scope,
        uri: &str,
    ) -> Result<ReadResourceResult, CallError> {
        prompts::read_resource(caller, scope, uri)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn roots_changed(&self, client: u64) {
        let _ = self.roots_changed.send(client);
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
    roots_changed: mpsc::UnboundedReceiver<u64>,
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
    let (roots_tx, roots_changed) = mpsc::unbounded_channel();
    let fed = Arc::new(FakeFederation {
        changes: watch::channel(0).0,
        started: started_tx,
        cancelled: cancelled_tx,
        callers: Mutex::new(Vec::new()),
        relayed: Mutex::new(Vec::new()),
        meet: tokio::sync::Barrier::new(2),
        roots_changed: roots_tx,
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
        roots_changed,
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

mod client;
mod http;
mod prompts;
mod relay;
mod sdk;
mod ws;
