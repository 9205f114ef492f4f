//! The back of federation (issue 9): the catalog of every registered
//! server's tools, prompts and resources, gathered over MCP by
//! [`refresh::Refresher`]; name resolution ([`naming`]); calls on a
//! caller's behalf over pooled sessions ([`upstream`]); and
//! [`CatalogFederation`], the [`Federation`] the front is written against.
//!
//! Who may use what: a server's tools are visible to and callable by a
//! caller exactly when a direct request with the same headers and peer to
//! `/servers/S/mcp` would be authenticated by S's auth policy; the call
//! then goes upstream with S's header policy.

pub mod clients;
mod fetch;
pub mod health;
pub mod model;
pub mod naming;
pub mod refresh;
pub mod relay;
pub mod schema;
pub mod session;
pub mod upstream;
pub mod uri_template;
pub mod wire;
pub mod wire_pool;
pub mod wire_read;

use crate::config::Settings;
use crate::federation::{
    CallContext, CallError, Caller, Federation, Scope, ToolEntry, VirtualScope,
};
use crate::identity::{Identity, Peer};
use crate::snapshot::{Routing, Snapshot};
use crate::state::ServerRuntime;
use async_trait::async_trait;
use model::{Catalog, CatalogStore, ServerCatalog};
use naming::{includes, includes_server, ToolRef};
use refresh::{RefreshSettings, Refresher};
use rmcp::model::{
    CallToolResult, GetPromptResult, JsonObject, Prompt, ReadResourceResult, Resource,
    ResourceTemplate, Tool,
};
use serde_json::value::RawValue;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use upstream::{SessionPool, Timeouts};

/// Finds a virtual server by name (the routing snapshot's
/// `virtual_servers`, wired in by the service that owns them).
pub trait VirtualLookup: Send + Sync + 'static {
    fn virtual_scope(&self, name: &str) -> Option<Arc<VirtualScope>>;
}

impl<F> VirtualLookup for F
where
    F: Fn(&str) -> Option<Arc<VirtualScope>> + Send + Sync + 'static,
{
    fn virtual_scope(&self, name: &str) -> Option<Arc<VirtualScope>> {
        self(name)
    }
}

/// No virtual servers.
pub fn no_virtual_servers(_: &str) -> Option<Arc<VirtualScope>> {
    None
}

/// How long an unused pooled upstream session stays open.
pub const SESSION_IDLE: Duration = Duration::from_secs(300);
/// How often idle sessions are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// What the catalog needs from the settings.
#[derive(Debug, Clone)]
pub struct CatalogOptions {
    pub separator: String,
    pub refresh: RefreshSettings,
    pub sessions: Timeouts,
}

impl CatalogOptions {
    pub fn from_settings(settings: &Settings) -> Self {
        let upstream = &settings.upstream;
        // `initialize` and each list: a connection, then a request.
        let request = upstream.connect_timeout * 2 + Duration::from_secs(10);
        CatalogOptions {
            separator: upstream.tool_name_separator.clone(),
            refresh: RefreshSettings {
                interval: upstream.catalog_refresh_interval,
                connect_timeout: upstream.connect_timeout,
                request_timeout: request,
            },
            sessions: Timeouts {
                connect: upstream.connect_timeout,
                initialize: request,
                read: upstream.read_timeout,
                idle: SESSION_IDLE,
            },
        }
    }
}

/// The catalog and the calls: the [`Federation`] of this gateway.
pub struct CatalogFederation {
    routing: Arc<Routing>,
    store: Arc<CatalogStore>,
    refresher: Refresher,
    pool: SessionPool,
    virtuals: Box<dyn VirtualLookup>,
}

/// A server that admits the caller, with the identity it gives them.
type Admitted = Option<(Arc<ServerRuntime>, Identity)>;

/// Per request: each server's auth decision made once.
struct Admission<'a> {
    caller: &'a Caller,
    snapshot: &'a Snapshot,
    decided: RefCell<HashMap<u32, Admitted>>,
}

impl<'a> Admission<'a> {
    fn new(caller: &'a Caller, snapshot: &'a Snapshot) -> Self {
        Admission {
            caller,
            snapshot,
            decided: RefCell::new(HashMap::new()),
        }
    }

    /// The server's runtime and the identity its policy gives the caller,
    /// or `None` when it refuses (or the server left the routing).
    fn admit(&self, at: u32, entry: &ServerCatalog) -> Admitted {
        if let Some(known) = self.decided.borrow().get(&at) {
            return known.clone();
        }
        let decision = self.snapshot.server(&entry.name).and_then(|server| {
            authenticate(server, self.caller)
                .ok()
                .map(|identity| (server.clone(), identity))
        });
        self.decided.borrow_mut().insert(at, decision.clone());
        decision
    }
}

/// What a direct request to the server's own route would be decided as.
fn authenticate(
    server: &ServerRuntime,
    caller: &Caller,
) -> Result<Identity, crate::identity::AuthError> {
    server.auth.authenticate(
        &caller.headers,
        Peer {
            ip: caller.peer,
            cert_names: caller.cert_names.as_deref(),
        },
    )
}

fn in_scope(scope: &Scope, server: &str, item: &str) -> bool {
    match scope {
        Scope::Everything => true,
        Scope::Virtual(v) => includes(&v.include, server, item),
    }
}

fn server_in_scope(scope: &Scope, server: &str) -> bool {
    match scope {
        Scope::Everything => true,
        Scope::Virtual(v) => includes_server(&v.include, server),
    }
}

impl CatalogFederation {
    pub fn new(
        routing: Arc<Routing>,
        options: &CatalogOptions,
        virtuals: Box<dyn VirtualLookup>,
    ) -> Self {
        let store = Arc::new(CatalogStore::new(&options.separator));
        CatalogFederation {
            refresher: Refresher::new(routing.clone(), store.clone(), options.refresh),
            routing,
            store,
            pool: SessionPool::new(options.sessions),
            virtuals,
        }
    }

    /// The store, for the MCP-level health reports.
    pub fn store(&self) -> Arc<CatalogStore> {
        self.store.clone()
    }

    /// The current catalog (for `/tools` paging, metrics, tests).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.store.current()
    }

    /// One refresh round now (`all`: every server, due or not).
    pub async fn refresh(&self, all: bool) -> refresh::RefreshReport {
        self.refresher.refresh(all).await
    }

    /// How many upstream sessions are pooled for calls.
    pub fn pooled_sessions(&self) -> usize {
        self.pool.len()
    }

    /// Keeps the catalog current and closes idle sessions until `stop`.
    pub async fn run(&self, stop: CancellationToken) {
        let sweep = async {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(SWEEP_EVERY) => self.pool.sweep(),
                }
            }
        };
        tokio::join!(self.refresher.run(stop.clone()), sweep);
    }

    /// Every tool of the scope with its server's admission, in catalog order.
    fn each_tool<'c>(
        &self,
        catalog: &'c Catalog,
        admission: &Admission,
        scope: &Scope,
        mut f: impl FnMut(&'c ServerCatalog, &'c model::CatalogTool),
    ) {
        for (i, server) in catalog.servers.iter().enumerate() {
            if !server_in_scope(scope, &server.name) {
                continue;
            }
            let mut admitted = None;
            for tool in &server.tools {
                if !in_scope(scope, &server.name, &tool.original_name) {
                    continue;
                }
                if *admitted.get_or_insert_with(|| admission.admit(i as u32, server).is_some()) {
                    f(server, tool);
                }
            }
        }
    }

    /// The owning server of tool `name`, the identity its policy gives the
    /// caller, and the server's own name for the tool, once the arguments
    /// pass the tool's input schema.
    fn prepare_call(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        arguments: &Option<JsonObject>,
    ) -> Result<(Arc<ServerRuntime>, Identity, Arc<str>), CallError> {
        let catalog = self.store.current();
        let snapshot = self.routing.current();
        let admission = Admission::new(caller, &snapshot);
        let at = self.resolve(&catalog, &admission, scope, name)?;
        let Some((entry, tool)) = catalog.tool(at) else {
            return Err(CallError::UnknownTool(name.to_string()));
        };
        let Some((server, identity)) = admission.admit(at.server, entry) else {
            return Err(CallError::UnknownTool(name.to_string()));
        };
        tool.input_check()
            .check(arguments.as_ref())
            .map_err(|problem| {
                CallError::InvalidArguments(format!("{}: {problem}", tool.tool.name))
            })?;
        Ok((server, identity, tool.original_name.clone()))
    }

    fn resolve(
        &self,
        catalog: &Catalog,
        admission: &Admission,
        scope: &Scope,
        name: &str,
    ) -> Result<ToolRef, CallError> {
        let server_name = |i: u32| {
            catalog
                .servers
                .get(i as usize)
                .map_or_else(String::new, |s| s.name.clone())
        };
        let scoped = |r: ToolRef| {
            catalog
                .tool(r)
                .is_some_and(|(s, t)| in_scope(scope, &s.name, &t.original_name))
        };
        let admitted = |r: ToolRef| {
            scoped(r)
                && catalog
                    .servers
                    .get(r.server as usize)
                    .is_some_and(|s| admission.admit(r.server, s).is_some())
        };
        match catalog.index.resolve(name, admitted, server_name) {
            Err(CallError::UnknownTool(_)) => {
                // A tool the caller's credentials do not reach: say so, as
                // the server's own route would (401/403), not "unknown".
                let found = catalog.index.resolve(name, scoped, server_name)?;
                let server = &catalog.servers[found.server as usize];
                let why = match admission.snapshot.server(&server.name) {
                    Some(rt) => authenticate(rt, admission.caller)
                        .err()
                        .map_or_else(|| "refused".to_string(), |e| e.message()),
                    None => return Err(CallError::UnknownTool(name.to_string())),
                };
                Err(CallError::Forbidden(format!(
                    "server {}: {why}",
                    server.name
                )))
            }
            other => other,
        }
    }
}

#[async_trait]
impl Federation for CatalogFederation {
    fn scope(&self, virtual_server: Option<&str>) -> Option<Scope> {
        match virtual_server {
            None => Some(Scope::Everything),
            Some(name) => self.virtuals.virtual_scope(name).map(Scope::Virtual),
        }
    }

    fn list_tools(&self, caller: &Caller, scope: &Scope) -> Vec<Tool> {
        let catalog = self.store.current();
        let snapshot = self.routing.current();
        let admission = Admission::new(caller, &snapshot);
        let mut out = Vec::new();
        self.each_tool(&catalog, &admission, scope, |server, tool| {
            if server.is_available() && !catalog.index.collides(&tool.tool.name) {
                out.push(tool.tool.clone());
            }
        });
        out
    }

    fn tool_entries(&self, caller: &Caller, scope: &Scope) -> Vec<ToolEntry> {
        let catalog = self.store.current();
        let snapshot = self.routing.current();
        let admission = Admission::new(caller, &snapshot);
        let mut out = Vec::new();
        self.each_tool(&catalog, &admission, scope, |server, tool| {
            out.push(tool_entry(&catalog, server, tool));
        });
        out
    }

    fn tool_page(
        &self,
        caller: &Caller,
        scope: &Scope,
        start: usize,
        limit: usize,
    ) -> (Vec<ToolEntry>, bool) {
        let catalog = self.store.current();
        let snapshot = self.routing.current();
        let admission = Admission::new(caller, &snapshot);
        let mut skip = start;
        let mut out = Vec::with_capacity(limit.min(1024));
        for (i, server) in catalog.servers.iter().enumerate() {
            if server.tools.is_empty() || !server_in_scope(scope, &server.name) {
                continue;
            }
            // Where the scope takes every tool of a server, the servers
            // before the page are skipped by their count, not tool by tool.
            if matches!(scope, Scope::Everything) && skip >= server.tools.len() {
                if admission.admit(i as u32, server).is_some() {
                    skip -= server.tools.len();
                }
                continue;
            }
            let mut admitted = None;
            for tool in &server.tools {
                if !in_scope(scope, &server.name, &tool.original_name) {
                    continue;
                }
                if !*admitted.get_or_insert_with(|| admission.admit(i as u32, server).is_some()) {
                    break;
                }
                if skip > 0 {
                    skip -= 1;
                } else if out.len() == limit {
                    return (out, true);
                } else {
                    out.push(tool_entry(&catalog, server, tool));
                }
            }
        }
        (out, false)
    }

    fn list_prompts(&self, caller: &Caller, scope: &Scope) -> Vec<Prompt> {
        self.prompts_for(caller, scope)
    }

    fn list_resources(&self, caller: &Caller, scope: &Scope) -> Vec<Resource> {
        self.resources_for(caller, scope)
    }

    fn list_resource_templates(&self, caller: &Caller, scope: &Scope) -> Vec<ResourceTemplate> {
        self.templates_for(caller, scope)
    }

    async fn call_tool(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        arguments: Option<JsonObject>,
        context: CallContext,
    ) -> Result<CallToolResult, CallError> {
        let (server, identity, original) = self.prepare_call(caller, scope, name, &arguments)?;
        self.pool
            .call(&server, caller, &identity, &original, arguments, context)
            .await
    }

    async fn call_tool_json(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        arguments: Option<JsonObject>,
        context: CallContext,
    ) -> Result<Box<RawValue>, CallError> {
        let (server, identity, original) = self.prepare_call(caller, scope, name, &arguments)?;
        self.pool
            .call_json(&server, caller, &identity, &original, arguments, context)
            .await
    }

    async fn get_prompt(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<GetPromptResult, CallError> {
        self.fetch_prompt(caller, scope, name, arguments).await
    }

    async fn read_resource(
        &self,
        caller: &Caller,
        scope: &Scope,
        uri: &str,
    ) -> Result<ReadResourceResult, CallError> {
        self.fetch_resource(caller, scope, uri).await
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.changes()
    }

    fn roots_changed(&self, client: u64) {
        self.pool.roots_changed(client);
    }
}

/// A tool as `GET /tools` lists it: unavailable, with the reason, when its
/// server is unreachable or its name is claimed by another server too.
fn tool_entry(catalog: &Catalog, server: &ServerCatalog, tool: &model::CatalogTool) -> ToolEntry {
    let reason = if catalog.index.collides(&tool.tool.name) {
        Some(format!(
            "the name {} is claimed by more than one server",
            tool.tool.name
        ))
    } else {
        server.unavailable_reason().map(str::to_string)
    };
    ToolEntry {
        tool: tool.tool.clone(),
        server: server.name.clone(),
        original_name: tool.original_name.to_string(),
        available: reason.is_none(),
        unavailable_reason: reason,
    }
}
