//! The gateway's own MCP server: `/mcp` (everything the caller may use),
//! `/servers/{virtual}/mcp` (a virtual server) and, over another transport,
//! `/ws`. One rmcp [`ServerHandler`] per session; everything it answers
//! comes from the [`Federation`], and the decisions (paging, error codes,
//! which name a call is for) are plain functions below.

use super::direct::DirectSessions;
use super::relay::FrontClient;
use super::{CallContext, CallError, Caller, Scope, SharedFederation};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelledNotificationParam, ErrorCode, ErrorData,
    GetPromptRequestParams, GetPromptResponse, Implementation, InitializeRequestParams,
    InitializeResult, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, Peer, RequestContext};
use rmcp::{RoleServer, ServerHandler};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::{CancellationToken, DropGuard};

/// The name this server gives itself in `initialize`.
pub const SERVER_NAME: &str = "mcp-gateway";

/// The JSON-RPC code the core uses for a session it refuses
/// (`refusal::code::UNKNOWN_SESSION`), so a client sees one code for both.
pub const UNKNOWN_SESSION: i32 = crate::refusal::code::UNKNOWN_SESSION as i32;
/// `CallError::Forbidden`, as the contract names it.
pub const FORBIDDEN: i32 = -32001;
/// The code LSP and most MCP SDKs use for a request the client cancelled;
/// clients drop the answer to a cancelled request anyway.
pub const REQUEST_CANCELLED: i32 = -32800;

/// How the MCP front behaves; the defaults suit production.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// Items per `tools/list` (and prompts, resources) page.
    pub page_size: usize,
    /// A session with no traffic for this long is closed and forgotten
    /// (rmcp's keep-alive); its client must initialise again.
    pub session_idle: Duration,
    /// Open Streamable HTTP sessions at most; an `initialize` beyond them
    /// is refused (503) until one closes or idles out.
    pub max_sessions: usize,
    /// Cancelled at shutdown: every session and stream ends.
    pub shutdown: CancellationToken,
    /// Sessions whose calls the data plane may serve itself (`direct`).
    pub direct: Arc<DirectSessions>,
}

impl Default for FrontConfig {
    fn default() -> Self {
        let session_idle = Duration::from_secs(3600);
        FrontConfig {
            page_size: 100,
            session_idle,
            max_sessions: 10_000,
            shutdown: CancellationToken::new(),
            direct: Arc::new(DirectSessions::new(session_idle)),
        }
    }
}

/// Who a session belongs to: the principal and the virtual server of its
/// `initialize`. A request on the session from anyone else, or for another
/// scope, is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub principal: String,
    /// `None`: `/mcp`; `Some(name)`: the virtual server `name`.
    pub scope: Option<String>,
}

impl Binding {
    pub fn of(caller: &Caller, scope: &Scope) -> Self {
        Binding {
            principal: caller.identity.principal().to_owned(),
            scope: scope_name(scope).map(str::to_owned),
        }
    }
}

impl Binding {
    /// Whether this request's caller and scope are the session's own
    /// (without building a `Binding`: this runs on every request).
    pub fn holds(&self, caller: &Caller, scope: &Scope) -> bool {
        self.principal == caller.identity.principal() && self.scope.as_deref() == scope_name(scope)
    }
}

/// The `Mcp-Session-Id` of the HTTP request a message came in.
fn session_id(extensions: &rmcp::model::Extensions) -> Option<&str> {
    extensions
        .get::<http::request::Parts>()?
        .headers
        .get("mcp-session-id")?
        .to_str()
        .ok()
}

pub fn scope_name(scope: &Scope) -> Option<&str> {
    match scope {
        Scope::Everything => None,
        Scope::Virtual(v) => Some(&v.name),
    }
}

/// Where the handler finds the caller of each request.
#[derive(Clone)]
pub(crate) enum Origin {
    /// Streamable HTTP: every request carries the hand-over's `Caller` and
    /// `Scope` in the HTTP request's extensions.
    Http,
    /// A WebSocket: the connection is the session, authenticated once at
    /// the upgrade; `closed` fires when it goes away.
    Connection {
        caller: Box<Caller>,
        scope: Scope,
        closed: CancellationToken,
    },
}

/// One MCP session's server side.
pub struct FederationHandler {
    fed: SharedFederation,
    config: Arc<FrontConfig>,
    origin: Origin,
    /// Set by `initialize`; later requests must match it.
    bound: OnceLock<Binding>,
    /// Set by `initialize`: the client, when it declared capabilities that
    /// let servers ask it things (sampling, elicitation, roots).
    client: OnceLock<Option<FrontClient>>,
    /// Fires when rmcp drops this handler (the session ended), stopping
    /// the `list_changed` watcher.
    ended: CancellationToken,
    _end_on_drop: DropGuard,
}

impl FederationHandler {
    pub(crate) fn new(fed: SharedFederation, config: Arc<FrontConfig>, origin: Origin) -> Self {
        let ended = CancellationToken::new();
        FederationHandler {
            fed,
            config,
            origin,
            bound: OnceLock::new(),
            client: OnceLock::new(),
            _end_on_drop: ended.clone().drop_guard(),
            ended,
        }
    }

    /// The caller and scope of one request, checked against the session's
    /// binding. A request without them is a bug in the plumbing: refused
    /// with an internal error, never served as anonymous.
    fn caller(&self, extensions: &rmcp::model::Extensions) -> Result<(Caller, Scope), ErrorData> {
        let (caller, scope) = match &self.origin {
            Origin::Connection { caller, scope, .. } => ((**caller).clone(), scope.clone()),
            Origin::Http => {
                let parts = extensions.get::<http::request::Parts>();
                let caller = parts.and_then(|p| p.extensions.get::<Caller>());
                let scope = parts.and_then(|p| p.extensions.get::<Scope>());
                match (caller, scope) {
                    (Some(c), Some(s)) => (c.clone(), s.clone()),
                    _ => {
                        log::error!(
                            "federation: MCP request without the hand-over's Caller/Scope (a routing bug)"
                        );
                        return Err(ErrorData::internal_error(
                            "internal error: caller not resolved",
                            None,
                        ));
                    }
                }
            }
        };
        if let Some(bound) = self.bound.get() {
            if !bound.holds(&caller, &scope) {
                return Err(ErrorData::new(
                    ErrorCode(UNKNOWN_SESSION),
                    "unknown session",
                    None,
                ));
            }
        }
        Ok((caller, scope))
    }

    /// Lets the data plane serve this session's plain calls (`direct`):
    /// a Streamable HTTP session whose client answers no server requests
    /// (a call for one that does goes over its own upstream sessions,
    /// which relay them through rmcp).
    fn offer_direct_calls(&self, extensions: &rmcp::model::Extensions) {
        if !matches!(self.origin, Origin::Http) || !matches!(self.client.get(), Some(None)) {
            return;
        }
        if let (Some(session), Some(binding)) = (session_id(extensions), self.bound.get()) {
            self.config
                .direct
                .open(session, binding.clone(), self.ended.clone());
        }
    }

    /// The connection's own end, on WebSocket; never on HTTP, where the
    /// binding layer's per-request token does that job.
    fn connection_closed(&self) -> Option<&CancellationToken> {
        match &self.origin {
            Origin::Connection { closed, .. } => Some(closed),
            Origin::Http => None,
        }
    }
}

/// A page of `items` from `cursor` (an offset this server issued), with the
/// cursor of the next page. A cursor this server did not issue is an
/// invalid-params error rather than the first page, so a client with a
/// stale or forged cursor learns it instead of looping.
pub fn page<T>(
    mut items: Vec<T>,
    cursor: Option<&str>,
    size: usize,
) -> Result<(Vec<T>, Option<String>), String> {
    let size = size.max(1);
    let start = match cursor {
        None => 0,
        Some(c) => match c.parse::<usize>() {
            Ok(n) if n <= items.len() => n,
            _ => return Err(format!("invalid cursor {c:?}")),
        },
    };
    let end = start.saturating_add(size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    items.truncate(end);
    items.drain(..start);
    Ok((items, next))
}

/// The JSON-RPC error for a call that did not reach a tool: the message
/// names the problem, the code is the contract's.
pub fn call_error(e: &CallError) -> ErrorData {
    match e {
        CallError::UnknownTool(name) => {
            ErrorData::invalid_params(format!("unknown tool {name:?}"), None)
        }
        CallError::Ambiguous { name, servers } => ErrorData::invalid_params(
            format!(
                "tool name {name:?} is ambiguous: offered by {}; use the qualified name",
                servers.join(", ")
            ),
            None,
        ),
        CallError::InvalidArguments(why) => {
            ErrorData::invalid_params(format!("invalid arguments: {why}"), None)
        }
        CallError::Forbidden(why) => {
            ErrorData::new(ErrorCode(FORBIDDEN), format!("forbidden: {why}"), None)
        }
        CallError::Upstream(why) => {
            ErrorData::internal_error(format!("upstream MCP server failed: {why}"), None)
        }
        CallError::Cancelled => {
            ErrorData::new(ErrorCode(REQUEST_CANCELLED), "request cancelled", None)
        }
    }
}

/// The tool a `tools/call` is for: the body's `params.name`, which an
/// `Mcp-Name` header, when the client sends one, must repeat (rmcp checks
/// that itself from protocol 2025-11-25's standard headers on; this covers
/// older clients too, so a middlebox routing on the header and the gateway
/// routing on the body can never disagree).
pub fn tool_name<'a>(header: Option<&http::HeaderValue>, body: &'a str) -> Result<&'a str, String> {
    match header {
        None => Ok(body),
        Some(h) if h.as_bytes() == body.as_bytes() => Ok(body),
        Some(h) => Err(format!(
            "Mcp-Name header {:?} does not match params.name {body:?}",
            String::from_utf8_lossy(h.as_bytes())
        )),
    }
}

/// Forwards a call's progress to the client in order, as it comes: the
/// sink (a plain `Fn`) queues, a task sends. Before the call's result goes
/// out, [`ProgressRelay::flush`] waits until everything queued was handed to
/// the transport, so no progress ever arrives after its result.
struct ProgressRelay {
    tx: tokio::sync::mpsc::UnboundedSender<Relay>,
}

enum Relay {
    Progress(ProgressNotificationParam),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl ProgressRelay {
    fn start(
        peer: Peer<RoleServer>,
        token: rmcp::model::ProgressToken,
    ) -> (Self, super::ProgressSink) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Relay>();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                match msg {
                    Relay::Progress(p) => {
                        // A closed transport: the result will not get through either.
                        if peer.notify_progress(p).await.is_err() {
                            break;
                        }
                    }
                    Relay::Flush(done) => {
                        let _ = done.send(());
                        break;
                    }
                }
            }
        });
        let sink_tx = tx.clone();
        let sink: super::ProgressSink = Arc::new(move |mut p: ProgressNotificationParam| {
            // The client's token, whatever the upstream used.
            p.progress_token = token.clone();
            let _ = sink_tx.send(Relay::Progress(p));
        });
        (ProgressRelay { tx }, sink)
    }

    async fn flush(self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Relay::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Runs `call` with `cancel` also fired by `also` (the client going away):
/// the federation sees one token whatever ended the call.
async fn with_cancel_link<F: std::future::Future>(
    call: F,
    cancel: &CancellationToken,
    also: Vec<CancellationToken>,
) -> F::Output {
    if also.is_empty() {
        return call.await;
    }
    let link = async {
        let any = also.iter().map(|t| Box::pin(t.cancelled()));
        futures_util::future::select_all(any).await;
        cancel.cancel();
        std::future::pending::<()>().await
    };
    tokio::select! {
        out = call => out,
        _ = link => unreachable!("the link future never completes"),
    }
}

impl ServerHandler for FederationHandler {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let (caller, scope) = self.caller(&context.extensions)?;
        // The first initialize binds; a second one on the same session is
        // held to the first (rmcp refuses it anyway).
        let _ = self.bound.set(Binding::of(&caller, &scope));
        context.peer.set_peer_info(request.clone());
        let _ = self.client.set(FrontClient::of(&context.peer, &self.ended));
        self.negotiate_initialize(&request)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.offer_direct_calls(&context.extensions);
        let mut changes = self.fed.changes();
        changes.borrow_and_update();
        let peer = context.peer;
        let ended = self.ended.clone();
        let closed = self.connection_closed().cloned().unwrap_or_default();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    // One catalog holds all three lists: any may have changed.
                    changed = changes.changed() => {
                        if changed.is_err()
                            || peer.notify_tool_list_changed().await.is_err()
                            || peer.notify_prompt_list_changed().await.is_err()
                            || peer.notify_resource_list_changed().await.is_err()
                        {
                            break;
                        }
                    }
                    _ = ended.cancelled() => break,
                    _ = closed.cancelled() => break,
                }
            }
        });
    }

    /// A call the data plane serves for this session is cancelled here:
    /// rmcp knows only the calls it runs.
    async fn on_cancelled(
        &self,
        notification: CancelledNotificationParam,
        context: NotificationContext<RoleServer>,
    ) {
        if let (Some(session), Some(id)) = (
            session_id(&context.extensions),
            notification.request_id.as_ref(),
        ) {
            self.config.direct.cancel(session, id);
        }
    }

    async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
        if let Some(Some(client)) = self.client.get() {
            self.fed.roots_changed(client.id);
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let (caller, scope) = self.caller(&context.extensions)?;
        let cursor = request.as_ref().and_then(|r| r.cursor.as_deref());
        let (tools, next) = page(
            self.fed.list_tools(&caller, &scope),
            cursor,
            self.config.page_size,
        )
        .map_err(|e| ErrorData::invalid_params(e, None))?;
        let mut result = ListToolsResult::with_all_items(tools);
        result.next_cursor = next;
        Ok(result)
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let (caller, scope) = self.caller(&context.extensions)?;
        let cursor = request.as_ref().and_then(|r| r.cursor.as_deref());
        let (prompts, next) = page(
            self.fed.list_prompts(&caller, &scope),
            cursor,
            self.config.page_size,
        )
        .map_err(|e| ErrorData::invalid_params(e, None))?;
        let mut result = ListPromptsResult::with_all_items(prompts);
        result.next_cursor = next;
        Ok(result)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let (caller, scope) = self.caller(&context.extensions)?;
        let cursor = request.as_ref().and_then(|r| r.cursor.as_deref());
        let (resources, next) = page(
            self.fed.list_resources(&caller, &scope),
            cursor,
            self.config.page_size,
        )
        .map_err(|e| ErrorData::invalid_params(e, None))?;
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = next;
        Ok(result)
    }

    // Prompts and resources: see `super::prompts`.
    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let (caller, scope) = self.caller(&context.extensions)?;
        let size = self.config.page_size;
        super::prompts::list_resource_templates(&self.fed, &caller, &scope, request, size)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let (caller, scope) = self.caller(&context.extensions)?;
        super::prompts::get_prompt(&self.fed, &caller, &scope, request)
            .await
            .map(GetPromptResponse::Complete)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let (caller, scope) = self.caller(&context.extensions)?;
        super::prompts::read_resource(&self.fed, &caller, &scope, request)
            .await
            .map(ReadResourceResponse::Complete)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (caller, scope) = self.caller(&context.extensions)?;
        let parts = context.extensions.get::<http::request::Parts>();
        let header = parts.and_then(|p| p.headers.get("mcp-name"));
        let name =
            tool_name(header, &request.name).map_err(|e| ErrorData::invalid_params(e, None))?;

        let relay = context
            .meta
            .get_progress_token()
            .map(|token| ProgressRelay::start(context.peer.clone(), token));
        let (relay, progress) = match relay {
            Some((relay, sink)) => (Some(relay), Some(sink)),
            None => (None, None),
        };
        // rmcp cancels `context.ct` on the client's `notifications/cancelled`.
        let cancel = context.ct.clone();
        let mut also = Vec::new();
        if let Some(gone) = parts.and_then(|p| p.extensions.get::<super::binding::ClientGone>()) {
            also.push(gone.0.clone());
        }
        if let Some(closed) = self.connection_closed() {
            also.push(closed.clone());
        }
        let call_context = CallContext {
            progress,
            cancel: cancel.clone(),
            client: self.client.get().cloned().flatten(),
            origin: Some(context.id.clone()),
        };
        let outcome = with_cancel_link(
            self.fed
                .call_tool(&caller, &scope, name, request.arguments, call_context),
            &cancel,
            also,
        )
        .await;
        if let Some(relay) = relay {
            relay.flush().await;
        }
        match outcome {
            Ok(result) => Ok(CallToolResponse::Complete(result)),
            Err(e) => {
                if !matches!(e, CallError::Cancelled) {
                    log::info!(
                        "federation: tools/call {name:?} by {:?} failed: {e:?}",
                        caller.identity.principal()
                    );
                }
                Err(call_error(&e))
            }
        }
    }
}

/// What the rest of the front needs to build handlers.
#[derive(Clone)]
pub(crate) struct HandlerFactory {
    pub fed: SharedFederation,
    pub config: Arc<FrontConfig>,
}

impl HandlerFactory {
    pub fn http(&self) -> FederationHandler {
        FederationHandler::new(self.fed.clone(), self.config.clone(), Origin::Http)
    }

    pub fn connection(
        &self,
        caller: Caller,
        scope: Scope,
        closed: CancellationToken,
    ) -> FederationHandler {
        FederationHandler::new(
            self.fed.clone(),
            self.config.clone(),
            Origin::Connection {
                caller: Box::new(caller),
                scope,
                closed,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_the_list_once_and_end_without_a_cursor() {
        let items: Vec<u32> = (0..250).collect();
        let (p1, c1) = page(items.clone(), None, 100).unwrap();
        assert_eq!((p1.len(), p1[0], c1.as_deref()), (100, 0, Some("100")));
        let (p2, c2) = page(items.clone(), c1.as_deref(), 100).unwrap();
        assert_eq!((p2[0], c2.as_deref()), (100, Some("200")));
        let (p3, c3) = page(items.clone(), c2.as_deref(), 100).unwrap();
        assert_eq!((p3.len(), p3[49], c3), (50, 249, None));
    }

    #[test]
    fn an_exact_multiple_ends_without_an_empty_page() {
        let (p, c) = page((0..100).collect::<Vec<u32>>(), None, 100).unwrap();
        assert_eq!((p.len(), c), (100, None));
        let (p, c) = page(Vec::<u32>::new(), None, 100).unwrap();
        assert_eq!((p.len(), c), (0, None));
    }

    #[test]
    fn a_cursor_this_server_did_not_issue_is_an_error() {
        let items: Vec<u32> = (0..10).collect();
        assert!(page(items.clone(), Some("abc"), 5)
            .unwrap_err()
            .contains("invalid cursor"));
        assert!(page(items.clone(), Some("11"), 5).is_err());
        assert!(page(items.clone(), Some("-1"), 5).is_err());
        // A list that shrank to exactly the cursor: an empty last page.
        assert_eq!(page(items, Some("10"), 5).unwrap(), (vec![], None));
    }

    #[test]
    fn call_errors_map_to_the_contracts_codes_and_name_the_problem() {
        let unknown = call_error(&CallError::UnknownTool("nope".into()));
        assert_eq!(unknown.code, ErrorCode::INVALID_PARAMS);
        assert!(unknown.message.contains("nope"));
        let ambiguous = call_error(&CallError::Ambiguous {
            name: "echo".into(),
            servers: vec!["a".into(), "b".into()],
        });
        assert_eq!(ambiguous.code, ErrorCode::INVALID_PARAMS);
        assert!(ambiguous.message.contains("a, b"));
        let invalid = call_error(&CallError::InvalidArguments("x is required".into()));
        assert_eq!(invalid.code, ErrorCode::INVALID_PARAMS);
        assert!(invalid.message.contains("x is required"));
        let upstream = call_error(&CallError::Upstream("connection refused".into()));
        assert_eq!(upstream.code, ErrorCode::INTERNAL_ERROR);
        assert!(upstream.message.contains("connection refused"));
        assert_eq!(
            call_error(&CallError::Forbidden("no".into())).code,
            ErrorCode(-32001)
        );
        assert_eq!(call_error(&CallError::Cancelled).code, ErrorCode(-32800));
    }

    #[test]
    fn the_mcp_name_header_must_repeat_the_body() {
        assert_eq!(tool_name(None, "a-echo"), Ok("a-echo"));
        let same = http::HeaderValue::from_static("a-echo");
        assert_eq!(tool_name(Some(&same), "a-echo"), Ok("a-echo"));
        let other = http::HeaderValue::from_static("b-delete");
        let err = tool_name(Some(&other), "a-echo").unwrap_err();
        assert!(err.contains("b-delete") && err.contains("a-echo"), "{err}");
    }
}
