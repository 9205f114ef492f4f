//! Keeps the catalog in step with the routing snapshot: a new or changed
//! server is gathered at once, a removed one leaves, every server is
//! gathered again each refresh interval (its own `refresh_interval`, else
//! `CATALOG_REFRESH_INTERVAL`) and when it says its lists changed.
//! Gathered as the gateway itself: the server's registered upstream
//! credential, never a user's.
//!
//! After each gathering the gateway keeps that session open (one per
//! server) to hear `notifications/*/list_changed`; the next gathering
//! replaces it, so the `initialize` of every refresh is also the MCP-level
//! health check.

use super::model::{CatalogStore, ServerCatalog};
use super::session::{self, UpstreamHandler, UpstreamSession};
use crate::config::ServerSpec;
use crate::snapshot::Routing;
use crate::state::ServerRuntime;
use http::{HeaderName, HeaderValue};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Servers gathered at once: 1,000 servers never mean 1,000 connections.
pub const CONCURRENCY: usize = 16;
/// Results swapped into the catalog together (fewer index rebuilds).
const BATCH: usize = 64;
/// How often the refresher looks at the routing snapshot for new servers.
const WATCH_TICK: Duration = Duration::from_secs(1);
/// How soon a server whose gathering failed is gathered again (at most its
/// refresh interval).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct RefreshSettings {
    pub interval: Duration,
    pub connect_timeout: Duration,
    /// For `initialize` and for each list.
    pub request_timeout: Duration,
}

/// What one refresh did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshReport {
    pub gathered: Vec<String>,
    pub failed: Vec<String>,
    pub removed: Vec<String>,
}

/// What the refresher remembers of each server between rounds.
struct Known {
    /// The spec it was last gathered with: a changed spec is gathered anew.
    spec: ServerSpec,
    due: Instant,
}

pub struct Refresher {
    routing: Arc<Routing>,
    store: Arc<CatalogStore>,
    settings: RefreshSettings,
    known: Mutex<HashMap<String, Known>>,
    /// The gateway's own session per server, held for `list_changed`.
    held: Mutex<HashMap<String, UpstreamSession>>,
    changed_tx: mpsc::UnboundedSender<String>,
    changed_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    /// Collisions already logged, so each is logged once.
    reported: Mutex<HashSet<String>>,
}

impl Refresher {
    pub fn new(routing: Arc<Routing>, store: Arc<CatalogStore>, settings: RefreshSettings) -> Self {
        let (changed_tx, changed_rx) = mpsc::unbounded_channel();
        Refresher {
            routing,
            store,
            settings,
            known: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            changed_tx,
            changed_rx: tokio::sync::Mutex::new(changed_rx),
            reported: Mutex::new(HashSet::new()),
        }
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(&self, stop: CancellationToken) {
        let mut rx = self.changed_rx.lock().await;
        let mut changed: HashSet<String> = HashSet::new();
        loop {
            self.refresh_with(false, &changed).await;
            changed.clear();
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(WATCH_TICK) => {}
                Some(server) = rx.recv() => {
                    log::info!("server {server}: its lists changed; gathering them again");
                    changed.insert(server);
                }
            }
            while let Ok(server) = rx.try_recv() {
                changed.insert(server);
            }
        }
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// One round: gathers the servers that are new, changed or due (every
    /// server with `all`), drops the removed ones.
    pub async fn refresh(&self, all: bool) -> RefreshReport {
        self.refresh_with(all, &HashSet::new()).await
    }

    async fn refresh_with(&self, all: bool, changed: &HashSet<String>) -> RefreshReport {
        let snapshot = self.routing.current();
        let now = Instant::now();
        let mut report = RefreshReport::default();
        let due: Vec<Arc<ServerRuntime>> = {
            let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            let listed: HashSet<&str> = snapshot.servers.iter().map(|s| s.name.as_str()).collect();
            known.retain(|name, _| {
                let keep = listed.contains(name.as_str());
                if !keep {
                    report.removed.push(name.clone());
                }
                keep
            });
            snapshot
                .servers
                .iter()
                .filter(|s| {
                    all || changed.contains(&s.name)
                        || known
                            .get(&s.name)
                            .is_none_or(|k| k.spec != s.spec || k.due <= now)
                })
                .cloned()
                .collect()
        };
        if !report.removed.is_empty() {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            for name in &report.removed {
                held.remove(name);
            }
            self.apply(Vec::new(), &report.removed);
            log::info!("catalog: removed {}", report.removed.join(","));
        }
        if due.is_empty() {
            return report;
        }
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = JoinSet::new();
        for server in due {
            let permits = permits.clone();
            let settings = self.settings;
            let tx = self.changed_tx.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let outcome = gather(&server, settings, tx).await;
                (server, outcome)
            });
        }
        let mut batch = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((server, outcome)) = joined else {
                continue;
            };
            batch.push((server, outcome));
            if batch.len() >= BATCH || tasks.is_empty() {
                self.settle(std::mem::take(&mut batch), &mut report);
            }
        }
        if !batch.is_empty() {
            self.settle(batch, &mut report);
        }
        report
    }

    /// Records a batch of gatherings and swaps the catalog once for it.
    fn settle(&self, batch: Vec<(Arc<ServerRuntime>, Gathered)>, report: &mut RefreshReport) {
        let catalog = self.store.current();
        let wall = SystemTime::now();
        let now = Instant::now();
        let separator = self.store.separator.clone();
        let mut entries = Vec::with_capacity(batch.len());
        {
            let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            for (server, outcome) in batch {
                let name = &server.name;
                let mut next = interval_of(&server.spec, self.settings.interval);
                let entry = match outcome {
                    Ok(g) => {
                        report.gathered.push(name.clone());
                        held.insert(name.clone(), g.session);
                        ServerCatalog::gathered(
                            name,
                            &separator,
                            g.tools,
                            g.prompts,
                            g.resources,
                            wall,
                        )
                        .with_templates(g.templates)
                    }
                    Err(reason) => {
                        report.failed.push(name.clone());
                        held.remove(name);
                        // A server that starts after the gateway (or comes
                        // back) is listed within this, not a whole interval.
                        next = next.min(RETRY_AFTER_FAILURE);
                        let previous = catalog.server(name).map(|s| &**s);
                        if previous.is_none_or(|p| p.is_available()) {
                            log::warn!("server {name}: catalog unavailable: {reason}");
                        }
                        ServerCatalog::failed(name, previous, &separator, reason, wall)
                    }
                };
                known.insert(
                    name.clone(),
                    Known {
                        spec: server.spec.clone(),
                        due: now + next,
                    },
                );
                entries.push(Arc::new(entry));
            }
        }
        self.apply(entries, &[]);
    }

    /// Swaps in the catalog with `entries` replacing their servers' and
    /// `removed` gone; keeps only servers still in the routing snapshot.
    fn apply(&self, entries: Vec<Arc<ServerCatalog>>, removed: &[String]) {
        let snapshot = self.routing.current();
        let current = self.store.current();
        let fresh: HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let mut servers: Vec<Arc<ServerCatalog>> = current
            .servers
            .iter()
            .filter(|s| {
                !fresh.contains(s.name.as_str())
                    && !removed.contains(&s.name)
                    && snapshot.server(&s.name).is_some()
            })
            .cloned()
            .collect();
        servers.extend(entries);
        let collisions = self.store.replace(servers);
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        let now: HashSet<String> = collisions.iter().map(|c| c.qualified.clone()).collect();
        for c in &collisions {
            if !reported.contains(&c.qualified) {
                log::warn!("catalog: {}", c.describe());
            }
        }
        *reported = now;
    }
}

/// A server's own `refresh_interval`, else the global one.
pub fn interval_of(spec: &ServerSpec, global: Duration) -> Duration {
    spec.refresh_interval.unwrap_or(global)
}

struct Lists {
    session: UpstreamSession,
    tools: Vec<rmcp::model::Tool>,
    prompts: Vec<rmcp::model::Prompt>,
    resources: Vec<rmcp::model::Resource>,
    templates: Vec<rmcp::model::ResourceTemplate>,
}

type Gathered = Result<Lists, String>;

/// The credential the gateway presents to `server`, as session headers.
fn gateway_headers(server: &ServerRuntime) -> HashMap<HeaderName, HeaderValue> {
    let credential = &server.headers.credential;
    let mut headers: HashMap<HeaderName, HeaderValue> = credential.others.iter().cloned().collect();
    if let Some(v) = &credential.authorization {
        headers.insert(http::header::AUTHORIZATION, v.clone());
    }
    headers
}

/// Initialises a session as the gateway and lists everything (all pages).
async fn gather(
    server: &ServerRuntime,
    settings: RefreshSettings,
    changed: mpsc::UnboundedSender<String>,
) -> Gathered {
    let target = session::target(server, settings.connect_timeout)?;
    let handler = UpstreamHandler::gathering(server.name.clone(), changed);
    let session = session::open(
        target,
        gateway_headers(server),
        handler,
        settings.request_timeout,
    )
    .await?;
    let limit = settings.request_timeout;
    let capabilities = session
        .peer()
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let timed = |what: &'static str| {
        move |_| format!("{what} did not complete within {} s", limit.as_secs_f64())
    };
    let tools = tokio::time::timeout(limit, session.peer().list_all_tools())
        .await
        .map_err(timed("tools/list"))?
        .map_err(|e| format!("tools/list failed: {e}"))?;
    let prompts = if capabilities.prompts.is_some() {
        tokio::time::timeout(limit, session.peer().list_all_prompts())
            .await
            .map_err(timed("prompts/list"))?
            .map_err(|e| format!("prompts/list failed: {e}"))?
    } else {
        Vec::new()
    };
    let resources = if capabilities.resources.is_some() {
        tokio::time::timeout(limit, session.peer().list_all_resources())
            .await
            .map_err(timed("resources/list"))?
            .map_err(|e| format!("resources/list failed: {e}"))?
    } else {
        Vec::new()
    };
    let templates = if capabilities.resources.is_some() {
        let listed = tokio::time::timeout(limit, session.peer().list_all_resource_templates())
            .await
            .map_err(timed("resources/templates/list"))?;
        match listed {
            Ok(templates) => templates,
            // Templates are optional: a server with plain resources only may
            // not know the method, and is no less available for it.
            Err(rmcp::service::ServiceError::McpError(e))
                if e.code == rmcp::model::ErrorCode::METHOD_NOT_FOUND =>
            {
                Vec::new()
            }
            Err(e) => return Err(format!("resources/templates/list failed: {e}")),
        }
    } else {
        Vec::new()
    };
    Ok(Lists {
        session,
        tools,
        prompts,
        resources,
        templates,
    })
}
