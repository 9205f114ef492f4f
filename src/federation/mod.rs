//! Federation (issue 9): the gateway's own MCP endpoints, which are not a
//! pipe to one server: `/tools`, `/tools/invoke/{name}`, `/rpc`, `/mcp`,
//! the virtual servers at `/servers/{virtual}/mcp`, and `/ws`.
//!
//! They are served by an internal axum service on a private Unix socket
//! that only the data plane reaches. The data plane authenticates the
//! caller first (the route's policy: the global one, or a virtual
//! server's), then proxies the request to the socket with the hand-over
//! headers of [`handover`], which it alone sets.
//!
//! Two halves meet at the [`Federation`] trait:
//! - the back (`crate::catalog`): the tool catalog gathered from every
//!   registered server over MCP, name resolution, and calls on the
//!   caller's behalf over pooled upstream sessions;
//! - the front (`mcp`, `ws`, `tools`): the HTTP and MCP protocol surface.

pub mod binding;
pub mod direct;
pub mod front;
#[cfg(test)]
mod front_tests;
pub mod handover;
pub mod mcp;
pub mod prompts;
pub mod relay;
pub mod rpc;
pub mod service;
pub mod tools;
pub mod ws;

use crate::identity::Identity;
use async_trait::async_trait;
use rmcp::model::{
    CallToolResult, GetPromptResult, JsonObject, ProgressNotificationParam, Prompt,
    ReadResourceResult, Resource, ResourceTemplate, Tool,
};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use handover::Caller;

/// Which part of the catalog a request sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `/mcp`, `/ws`, `/tools`, `/rpc`: everything the caller may use.
    Everything,
    /// `/servers/{name}/mcp` of a virtual server: what its `include` takes.
    Virtual(Arc<VirtualScope>),
}

/// A virtual server as the front sees it: its name and what it includes
/// (`server/tool`, `server/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualScope {
    pub name: String,
    pub include: Vec<String>,
}

/// Forwards an upstream's progress notification for one call to whoever
/// made it (the downstream MCP client), with the client's progress token.
pub type ProgressSink = Arc<dyn Fn(ProgressNotificationParam) + Send + Sync>;

/// What one tool call carries besides its name and arguments.
#[derive(Clone, Default)]
pub struct CallContext {
    /// Set when the downstream client asked for progress (`_meta.progressToken`).
    pub progress: Option<ProgressSink>,
    /// Cancelled when the downstream client cancels or goes away; the
    /// upstream call is then cancelled too (`notifications/cancelled`).
    pub cancel: CancellationToken,
    /// The MCP front client making the call, when it can answer server
    /// requests: the call then goes over upstream sessions of its own.
    pub client: Option<relay::FrontClient>,
    /// The client's id of the request this call serves (its `tools/call`).
    pub origin: Option<rmcp::model::RequestId>,
}

/// Why a call did not reach a tool, each with its HTTP status on
/// `/tools/invoke` and its JSON-RPC error on `/mcp` and `/rpc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// 404 / -32602: no tool by that name in the caller's scope.
    UnknownTool(String),
    /// 404 / -32602: a bare name that several servers offer.
    Ambiguous { name: String, servers: Vec<String> },
    /// 400 / -32602: the arguments fail the tool's input schema.
    InvalidArguments(String),
    /// 403 / -32001 (401 where no credential): the owning server's auth
    /// policy refuses this caller.
    Forbidden(String),
    /// 502 / -32603: the owning server cannot be reached or broke the protocol.
    Upstream(String),
    /// The caller cancelled.
    Cancelled,
}

/// One tool of `/tools`: the MCP `Tool` (qualified `name`) and what the
/// JSON view adds to it.
#[derive(Debug, Clone)]
pub struct ToolEntry {
    pub tool: Tool,
    pub server: String,
    /// The name the owning server knows it by.
    pub original_name: String,
    /// False while its server does not answer, or while its qualified name
    /// collides with another server's tool.
    pub available: bool,
    pub unavailable_reason: Option<String>,
}

/// The catalog and the calls, as the front needs them. No method makes an
/// upstream call except the calls themselves: lists come from the catalog.
#[async_trait]
pub trait Federation: Send + Sync + 'static {
    /// The scope a hand-over names (`None`: everything); `None` back when
    /// the virtual server no longer exists.
    fn scope(&self, virtual_server: Option<&str>) -> Option<Scope>;
    /// Tools the caller may use in `scope`, qualified names, in a stable order.
    fn list_tools(&self, caller: &Caller, scope: &Scope) -> Vec<Tool>;
    fn list_prompts(&self, caller: &Caller, scope: &Scope) -> Vec<Prompt>;
    fn list_resources(&self, caller: &Caller, scope: &Scope) -> Vec<Resource>;
    /// `resources/templates/list` of every server the caller may read.
    fn list_resource_templates(&self, caller: &Caller, scope: &Scope) -> Vec<ResourceTemplate> {
        let _ = (caller, scope);
        Vec::new()
    }
    /// Every tool of the caller's scope the caller may use, unavailable
    /// ones included (marked), in the order of `list_tools`.
    fn tool_entries(&self, caller: &Caller, scope: &Scope) -> Vec<ToolEntry> {
        self.list_tools(caller, scope)
            .into_iter()
            .map(|tool| ToolEntry {
                server: String::new(),
                original_name: tool.name.to_string(),
                tool,
                available: true,
                unavailable_reason: None,
            })
            .collect()
    }
    /// The `limit` entries of `tool_entries` from `start`, and whether more
    /// follow: a catalog of 100,000 tools serves a page without copying
    /// the rest.
    fn tool_page(
        &self,
        caller: &Caller,
        scope: &Scope,
        start: usize,
        limit: usize,
    ) -> (Vec<ToolEntry>, bool) {
        let mut entries = self.tool_entries(caller, scope);
        let end = start.saturating_add(limit);
        let more = entries.len() > end;
        entries.truncate(end);
        let page = entries.split_off(start.min(entries.len()));
        (page, more)
    }
    /// `tools/call` on the owning server on the caller's behalf.
    async fn call_tool(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        arguments: Option<JsonObject>,
        context: CallContext,
    ) -> Result<CallToolResult, CallError>;
    /// [`Self::call_tool`], the result as JSON text: the data plane passes
    /// it on without parsing it again.
    async fn call_tool_json(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        arguments: Option<JsonObject>,
        context: CallContext,
    ) -> Result<Box<serde_json::value::RawValue>, CallError> {
        let result = self
            .call_tool(caller, scope, name, arguments, context)
            .await?;
        serde_json::value::to_raw_value(&result)
            .map_err(|e| CallError::Upstream(format!("result not serialisable: {e}")))
    }
    /// `prompts/get` on the owning server on the caller's behalf; `name` as
    /// `list_prompts` gives it (qualified like tools), or bare where unambiguous.
    async fn get_prompt(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<GetPromptResult, CallError> {
        let _ = (caller, scope, arguments);
        Err(CallError::UnknownTool(name.to_string()))
    }
    /// `resources/read` on the server that lists `uri`, on the caller's behalf.
    async fn read_resource(
        &self,
        caller: &Caller,
        scope: &Scope,
        uri: &str,
    ) -> Result<ReadResourceResult, CallError> {
        let _ = (caller, scope);
        Err(CallError::UnknownTool(uri.to_string()))
    }
    /// Bumped whenever the catalog changes: `list_changed` to clients.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// The front client `client` ([`relay::FrontClient::id`]) sent
    /// `notifications/roots/list_changed`: tell the servers it has sessions with.
    fn roots_changed(&self, client: u64) {
        let _ = client;
    }
}

/// What the back gives the front.
pub type SharedFederation = Arc<dyn Federation>;

/// The caller's identity in a form for logs and pool keys.
pub fn principal(identity: &Identity) -> &str {
    identity.principal()
}
