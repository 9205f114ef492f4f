//! Prompts and resources of the catalog: listing them for a caller, and
//! `prompts/get` / `resources/read` on the owning server on the caller's
//! behalf, with the same admission (the server's own auth policy) and
//! scope (a virtual server's `include`) as tools.
//!
//! Prompts are named like tools (`<server><sep><prompt>`, bare where one
//! server alone offers it). Resources keep their URIs, which are unique
//! within a server but not across servers: a URI that several admitted
//! servers serve is refused as ambiguous rather than sent to one of them
//! at random; a virtual server that includes only one of them reads it.
//! A URI no server lists is looked up in the servers' resource templates.

use super::model::{Catalog, ServerCatalog};
use super::uri_template::template_matches;
use super::{authenticate, in_scope, server_in_scope, Admission, CatalogFederation};
use crate::federation::{CallError, Caller, Scope};
use crate::identity::Identity;
use crate::state::ServerRuntime;
use rmcp::model::{
    GetPromptResult, JsonObject, Prompt, ReadResourceResult, Resource, ResourceTemplate,
};
use std::sync::Arc;

/// The owning server's runtime, the identity it gives the caller, and the
/// server's own name for the item.
type Owner = (Arc<ServerRuntime>, Identity, String);

/// What `owns` found on one server: the server's own name for the item,
/// and the name a virtual server's `include` must give for it.
struct Found {
    original: String,
    included_as: String,
}

impl CatalogFederation {
    /// Each server of the scope whose `items` has something in the scope,
    /// admitted, with those items (in catalog order).
    fn visible<'c, T>(
        &self,
        catalog: &'c Catalog,
        caller: &Caller,
        scope: &Scope,
        items: impl Fn(&'c ServerCatalog) -> &'c [T],
        included_as: impl Fn(&T) -> &str,
    ) -> Vec<&'c T> {
        let snapshot = self.routing.current();
        let admission = Admission::new(caller, &snapshot);
        let mut out = Vec::new();
        for (i, server) in catalog.servers.iter().enumerate() {
            if !server_in_scope(scope, &server.name) || !server.is_available() {
                continue;
            }
            let mut taken = items(server)
                .iter()
                .filter(|item| in_scope(scope, &server.name, included_as(item)))
                .peekable();
            if taken.peek().is_some() && admission.admit(i as u32, server).is_some() {
                out.extend(taken);
            }
        }
        out
    }

    pub(super) fn prompts_for(&self, caller: &Caller, scope: &Scope) -> Vec<Prompt> {
        let catalog = self.store.current();
        self.visible(
            &catalog,
            caller,
            scope,
            |s| &s.prompts,
            |p| &p.original_name,
        )
        .into_iter()
        .map(|p| p.prompt.clone())
        .collect()
    }

    pub(super) fn resources_for(&self, caller: &Caller, scope: &Scope) -> Vec<Resource> {
        let catalog = self.store.current();
        self.visible(&catalog, caller, scope, |s| &s.resources, |r| &r.uri)
            .into_iter()
            .cloned()
            .collect()
    }

    pub(super) fn templates_for(&self, caller: &Caller, scope: &Scope) -> Vec<ResourceTemplate> {
        let catalog = self.store.current();
        self.visible(
            &catalog,
            caller,
            scope,
            |s| &s.templates,
            |t| &t.uri_template,
        )
        .into_iter()
        .cloned()
        .collect()
    }

    /// The one server that owns `name` among those `owns` finds it on, the
    /// caller admitted; for prompts and resources, which are far fewer than
    /// tools and need no index.
    fn owner(
        &self,
        catalog: &Catalog,
        admission: &Admission,
        scope: &Scope,
        name: &str,
        owns: impl Fn(&ServerCatalog) -> Option<Found>,
    ) -> Result<Owner, CallError> {
        let candidates: Vec<(u32, &Arc<ServerCatalog>, Found)> = catalog
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| server_in_scope(scope, &s.name))
            .filter_map(|(i, s)| owns(s).map(|found| (i as u32, s, found)))
            .filter(|(_, s, found)| in_scope(scope, &s.name, &found.included_as))
            .collect();
        let mut admitted: Vec<Owner> = candidates
            .iter()
            .filter_map(|(i, s, found)| {
                admission
                    .admit(*i, s)
                    .map(|(rt, id)| (rt, id, found.original.clone()))
            })
            .collect();
        match (admitted.len(), candidates.first()) {
            (1, _) => Ok(admitted.remove(0)),
            (0, None) => Err(CallError::UnknownTool(name.to_string())),
            (0, Some((_, refused, _))) => {
                // Refused by the server's own policy: say why, as its route
                // would (401/403), not "unknown".
                let why = admission
                    .snapshot
                    .server(&refused.name)
                    .and_then(|rt| authenticate(rt, admission.caller).err())
                    .map_or_else(|| "refused".to_string(), |e| e.message());
                Err(CallError::Forbidden(format!(
                    "server {}: {why}",
                    refused.name
                )))
            }
            _ => Err(CallError::Ambiguous {
                name: name.to_string(),
                servers: admitted.iter().map(|(rt, _, _)| rt.name.clone()).collect(),
            }),
        }
    }

    pub(super) async fn fetch_prompt(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<GetPromptResult, CallError> {
        let catalog = self.store.current();
        let snapshot = self.routing.current();
        let (server, identity, original) = {
            let admission = Admission::new(caller, &snapshot);
            let by = |qualified: bool| {
                move |s: &ServerCatalog| {
                    s.prompts
                        .iter()
                        .find(|p| {
                            if qualified {
                                p.prompt.name == name
                            } else {
                                p.original_name == name
                            }
                        })
                        .map(|p| Found {
                            original: p.original_name.clone(),
                            included_as: p.original_name.clone(),
                        })
                }
            };
            match self.owner(&catalog, &admission, scope, name, by(true)) {
                Err(CallError::UnknownTool(_)) => {
                    self.owner(&catalog, &admission, scope, name, by(false))?
                }
                other => other?,
            }
        };
        self.pool
            .get_prompt(&server, caller, &identity, &original, arguments)
            .await
    }

    pub(super) async fn fetch_resource(
        &self,
        caller: &Caller,
        scope: &Scope,
        uri: &str,
    ) -> Result<ReadResourceResult, CallError> {
        let catalog = self.store.current();
        let snapshot = self.routing.current();
        let (server, identity, _) = {
            let admission = Admission::new(caller, &snapshot);
            let listed = |s: &ServerCatalog| {
                s.resources.iter().find(|r| r.uri == uri).map(|r| Found {
                    original: r.uri.clone(),
                    included_as: r.uri.clone(),
                })
            };
            // Only where no server lists the URI: a listed resource is never
            // shadowed by another server's template that also fits it.
            let templated = |s: &ServerCatalog| {
                s.templates
                    .iter()
                    .find(|t| template_matches(&t.uri_template, uri))
                    .map(|t| Found {
                        original: uri.to_string(),
                        included_as: t.uri_template.clone(),
                    })
            };
            match self.owner(&catalog, &admission, scope, uri, listed) {
                Err(CallError::UnknownTool(_)) => {
                    self.owner(&catalog, &admission, scope, uri, templated)?
                }
                other => other?,
            }
        };
        self.pool
            .read_resource(&server, caller, &identity, uri)
            .await
    }
}
