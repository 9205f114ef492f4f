//! The federation before the catalog is in: the virtual servers of the
//! routing snapshot, and no tools. `/tools` answers `[]`, every call 404.
//! Honest, not a fake: it is what a gateway without a catalog has.

use super::{CallContext, CallError, Caller, Federation, Scope};
use crate::snapshot::Routing;
use async_trait::async_trait;
use rmcp::model::{CallToolResult, JsonObject, Prompt, Resource, Tool};
use std::sync::Arc;

pub struct EmptyFederation {
    routing: Arc<Routing>,
    /// Never bumped: there is no catalog to change. Held so receivers
    /// never see the channel closed.
    changes: tokio::sync::watch::Sender<u64>,
}

impl EmptyFederation {
    pub fn new(routing: Arc<Routing>) -> Self {
        EmptyFederation {
            routing,
            changes: tokio::sync::watch::channel(0).0,
        }
    }
}

#[async_trait]
impl Federation for EmptyFederation {
    fn scope(&self, virtual_server: Option<&str>) -> Option<Scope> {
        match virtual_server {
            None => Some(Scope::Everything),
            Some(name) => self
                .routing
                .current()
                .virtual_server(name)
                .map(|v| Scope::Virtual(v.scope.clone())),
        }
    }

    fn list_tools(&self, _: &Caller, _: &Scope) -> Vec<Tool> {
        Vec::new()
    }

    fn list_prompts(&self, _: &Caller, _: &Scope) -> Vec<Prompt> {
        Vec::new()
    }

    fn list_resources(&self, _: &Caller, _: &Scope) -> Vec<Resource> {
        Vec::new()
    }

    async fn call_tool(
        &self,
        _: &Caller,
        _: &Scope,
        name: &str,
        _: Option<JsonObject>,
        _: CallContext,
    ) -> Result<CallToolResult, CallError> {
        Err(CallError::UnknownTool(name.to_string()))
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
