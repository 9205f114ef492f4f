//! The catalog: what every registered server offers (its tools, every page
//! of them, its prompts and resources) and whether it answers. Immutable
//! and swapped whole, like the routing snapshot: a request loads it once.

use super::naming::{qualify, Collision, NameIndex, ToolRef};
use super::schema::InputCheck;
use arc_swap::ArcSwap;
use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;
use tokio::sync::watch;

/// Whether a server answered its last gathering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStatus {
    Available,
    /// Its last known tools stay listed, marked with this.
    Unavailable {
        reason: String,
        since: SystemTime,
    },
}

/// One tool as the catalog holds it.
pub struct CatalogTool {
    /// The server's tool with `name` set to the qualified name.
    pub tool: Tool,
    /// The name the server knows it by (what `tools/call` upstream sends).
    pub original_name: Arc<str>,
    /// Compiled on the first call, then kept with the tool.
    input_check: OnceLock<InputCheck>,
}

impl CatalogTool {
    pub fn new(mut tool: Tool, server: &str, separator: &str) -> Self {
        let original_name: Arc<str> = Arc::from(&*tool.name);
        tool.name = qualify(server, separator, &original_name).into();
        CatalogTool {
            tool,
            original_name,
            input_check: OnceLock::new(),
        }
    }

    pub fn input_check(&self) -> &InputCheck {
        self.input_check
            .get_or_init(|| InputCheck::compile(&self.tool.input_schema))
    }
}

/// One prompt as the catalog holds it: named like tools, `<server><sep><prompt>`.
#[derive(Clone)]
pub struct CatalogPrompt {
    /// The server's prompt with `name` set to the qualified name.
    pub prompt: Prompt,
    pub original_name: String,
}

/// What one server offers, as last gathered.
pub struct ServerCatalog {
    pub name: String,
    pub tools: Vec<CatalogTool>,
    pub prompts: Vec<CatalogPrompt>,
    pub resources: Vec<Resource>,
    /// `resources/templates/list`: URIs a server serves without listing them.
    pub templates: Vec<ResourceTemplate>,
    pub status: ServerStatus,
    /// When the lists were last gathered successfully (`None`: never).
    pub refreshed_at: Option<SystemTime>,
    /// When the server was last asked.
    pub checked_at: SystemTime,
}

impl ServerCatalog {
    /// A successful gathering.
    pub fn gathered(
        name: &str,
        separator: &str,
        tools: Vec<Tool>,
        prompts: Vec<Prompt>,
        resources: Vec<Resource>,
        now: SystemTime,
    ) -> Self {
        ServerCatalog {
            name: name.to_string(),
            tools: tools
                .into_iter()
                .map(|t| CatalogTool::new(t, name, separator))
                .collect(),
            prompts: prompts
                .into_iter()
                .map(|mut prompt| {
                    let original_name = std::mem::take(&mut prompt.name);
                    prompt.name = qualify(name, separator, &original_name);
                    CatalogPrompt {
                        prompt,
                        original_name,
                    }
                })
                .collect(),
            resources,
            templates: Vec::new(),
            status: ServerStatus::Available,
            refreshed_at: Some(now),
            checked_at: now,
        }
    }

    /// A failed gathering: the previous lists (if any) stay, marked
    /// unavailable since the first failure in a row.
    pub fn failed(
        name: &str,
        previous: Option<&ServerCatalog>,
        separator: &str,
        reason: String,
        now: SystemTime,
    ) -> Self {
        let since = match previous.map(|p| &p.status) {
            Some(ServerStatus::Unavailable { since, .. }) => *since,
            _ => now,
        };
        let templates = previous.map_or_else(Vec::new, |p| p.templates.clone());
        let (tools, prompts, resources) = match previous {
            Some(p) => (
                p.tools
                    .iter()
                    .map(|t| {
                        let mut tool = t.tool.clone();
                        tool.name = t.original_name.to_string().into();
                        CatalogTool::new(tool, name, separator)
                    })
                    .collect(),
                p.prompts.clone(),
                p.resources.clone(),
            ),
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        ServerCatalog {
            name: name.to_string(),
            tools,
            prompts,
            resources,
            templates,
            status: ServerStatus::Unavailable { reason, since },
            refreshed_at: previous.and_then(|p| p.refreshed_at),
            checked_at: now,
        }
    }

    /// The server's resource templates, as gathered with its lists.
    pub fn with_templates(mut self, templates: Vec<ResourceTemplate>) -> Self {
        self.templates = templates;
        self
    }

    pub fn is_available(&self) -> bool {
        self.status == ServerStatus::Available
    }

    pub fn unavailable_reason(&self) -> Option<&str> {
        match &self.status {
            ServerStatus::Available => None,
            ServerStatus::Unavailable { reason, .. } => Some(reason),
        }
    }
}

/// Every server's offer, with the name index over all of them.
pub struct Catalog {
    /// Bumped on every swap; what `changes()` reports.
    pub generation: u64,
    pub separator: Arc<str>,
    /// In name order.
    pub servers: Vec<Arc<ServerCatalog>>,
    pub index: NameIndex,
}

impl Catalog {
    pub fn empty(separator: &str) -> Self {
        Catalog {
            generation: 0,
            separator: separator.into(),
            servers: Vec::new(),
            index: NameIndex::default(),
        }
    }

    /// The catalog of `servers` (any order) and the collisions in it.
    pub fn build(
        separator: Arc<str>,
        mut servers: Vec<Arc<ServerCatalog>>,
        generation: u64,
    ) -> (Self, Vec<Collision>) {
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        let index = NameIndex::build(
            servers
                .iter()
                .map(|s| s.tools.iter().map(|t| (&*t.tool.name, &*t.original_name))),
        );
        let collisions = index
            .collisions()
            .into_iter()
            .map(|(qualified, owners)| Collision {
                qualified: qualified.to_string(),
                owners: owners
                    .iter()
                    .map(|r| {
                        let s = &servers[r.server as usize];
                        (
                            s.name.clone(),
                            s.tools[r.tool as usize].original_name.to_string(),
                        )
                    })
                    .collect(),
            })
            .collect();
        (
            Catalog {
                generation,
                separator,
                servers,
                index,
            },
            collisions,
        )
    }

    pub fn server(&self, name: &str) -> Option<&Arc<ServerCatalog>> {
        self.servers
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.servers[i])
    }

    pub fn tool(&self, at: ToolRef) -> Option<(&Arc<ServerCatalog>, &CatalogTool)> {
        let server = self.servers.get(at.server as usize)?;
        Some((server, server.tools.get(at.tool as usize)?))
    }

    /// How many tools the catalog holds.
    pub fn tool_count(&self) -> usize {
        self.servers.iter().map(|s| s.tools.len()).sum()
    }
}

/// The current catalog, swapped whole; every swap bumps the generation
/// that `changes()` watchers see.
pub struct CatalogStore {
    current: ArcSwap<Catalog>,
    changes: watch::Sender<u64>,
    pub separator: Arc<str>,
}

impl CatalogStore {
    pub fn new(separator: &str) -> Self {
        CatalogStore {
            current: ArcSwap::from_pointee(Catalog::empty(separator)),
            changes: watch::Sender::new(0),
            separator: separator.into(),
        }
    }

    pub fn current(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Builds the catalog of `servers` as the next generation, swaps it in
    /// and returns its collisions. One writer (the refresher) at a time.
    pub fn replace(&self, servers: Vec<Arc<ServerCatalog>>) -> Vec<Collision> {
        let generation = self.current.load().generation + 1;
        let (catalog, collisions) = Catalog::build(self.separator.clone(), servers, generation);
        self.current.store(Arc::new(catalog));
        self.changes.send_replace(generation);
        collisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn tool(name: &str) -> Tool {
        let schema = json!({"type": "object", "properties": {}});
        let serde_json::Value::Object(schema) = schema else {
            unreachable!()
        };
        Tool::new(name.to_string(), "test tool", Arc::new(schema))
    }

    #[test]
    fn tools_carry_qualified_and_original_names() {
        let now = SystemTime::now();
        let s = ServerCatalog::gathered("demo", "-", vec![tool("echo")], vec![], vec![], now);
        assert_eq!(s.tools[0].tool.name, "demo-echo");
        assert_eq!(&*s.tools[0].original_name, "echo");
        assert!(s.is_available());
    }

    #[test]
    fn a_failure_keeps_the_last_tools_and_the_first_failure_time() {
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(100);
        let t1 = t0 + std::time::Duration::from_secs(300);
        let t2 = t1 + std::time::Duration::from_secs(300);
        let ok = ServerCatalog::gathered("demo", "-", vec![tool("echo")], vec![], vec![], t0);
        let down = ServerCatalog::failed("demo", Some(&ok), "-", "refused".into(), t1);
        assert_eq!(down.tools[0].tool.name, "demo-echo");
        assert_eq!(down.unavailable_reason(), Some("refused"));
        assert_eq!(down.refreshed_at, Some(t0));
        let still = ServerCatalog::failed("demo", Some(&down), "-", "timeout".into(), t2);
        assert_eq!(
            still.status,
            ServerStatus::Unavailable {
                reason: "timeout".into(),
                since: t1
            }
        );
        let never = ServerCatalog::failed("new", None, "-", "refused".into(), t0);
        assert!(never.tools.is_empty() && never.refreshed_at.is_none());
    }

    #[test]
    fn the_catalog_is_in_name_order_and_reports_collisions() {
        let now = SystemTime::now();
        let a = ServerCatalog::gathered("a", "-", vec![tool("b-c")], vec![], vec![], now);
        let ab = ServerCatalog::gathered("a-b", "-", vec![tool("c")], vec![], vec![], now);
        let (catalog, collisions) = Catalog::build("-".into(), vec![Arc::new(ab), Arc::new(a)], 1);
        assert_eq!(catalog.servers[0].name, "a");
        assert!(catalog.server("a-b").is_some() && catalog.server("zz").is_none());
        assert_eq!(collisions.len(), 1);
        assert_eq!(
            collisions[0].owners,
            vec![
                ("a".to_string(), "b-c".to_string()),
                ("a-b".to_string(), "c".to_string())
            ]
        );
        assert_eq!(catalog.tool_count(), 2);
    }
}
