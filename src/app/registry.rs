//! The registry's side of the process: the sync that keeps the routing
//! snapshot equal to the database's enabled servers and virtual servers
//! (the federation reads the latter from the same snapshot), and the admin
//! API over
//! the same registry. Both run on one runtime because sqlx connections
//! belong to the runtime that opened them.

use crate::admin::AdminService;
use crate::config::{ServerSpec, UpstreamTls};
use crate::registry::handle::RegistryHandle;
use crate::registry::sync::{self, ApplySpecs, OnReady, SyncOptions};
use crate::registry::Enabled;
use crate::snapshot::{ApplyReport, Routing};
use crate::state::Runtime;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Applies registry reads to the routing snapshot in generation order: a
/// read that reaches it after a newer one (the sync and a SIGHUP both
/// load) is dropped instead of rolling the routes back.
pub struct RoutingApplier {
    routing: Arc<Routing>,
    runtime: Arc<Runtime>,
    applied: tokio::sync::Mutex<i64>,
    /// Each YAML server's `tls:` block. The registry does not store TLS
    /// files, so the file's blocks are laid over the records of the same
    /// name (the configuration-owned ones).
    file_tls: Mutex<HashMap<String, UpstreamTls>>,
}

impl RoutingApplier {
    pub fn new(routing: Arc<Routing>, runtime: Arc<Runtime>) -> Self {
        RoutingApplier {
            routing,
            runtime,
            applied: tokio::sync::Mutex::new(i64::MIN),
            file_tls: Mutex::new(HashMap::new()),
        }
    }

    /// The YAML file's servers, at start-up and on every reload.
    pub fn set_file_servers(&self, specs: &[ServerSpec]) {
        let blocks = specs
            .iter()
            .filter(|s| s.tls != UpstreamTls::default())
            .map(|s| (s.name.clone(), s.tls.clone()))
            .collect();
        if let Ok(mut tls) = self.file_tls.lock() {
            *tls = blocks;
        }
    }

    /// `None` if `enabled.generation` is not newer than what runs. A
    /// server the data plane refuses (a credential header that is another
    /// server's identity header, which the registry cannot see when it
    /// validates one record) is left out with an error logged, so one bad
    /// record does not hold back every later change.
    /// `true` beside the report when the virtual servers changed.
    pub async fn apply(&self, enabled: Enabled) -> Option<(ApplyReport, bool)> {
        self.apply_if(enabled, |g, applied| g > applied).await
    }

    /// As [`apply`](Self::apply), also for the generation that runs: a
    /// reload whose file changed only in its TLS files leaves the registry
    /// as it was, and the new certificates must still take effect.
    pub async fn reapply(&self, enabled: Enabled) -> Option<(ApplyReport, bool)> {
        self.apply_if(enabled, |g, applied| g >= applied).await
    }

    async fn apply_if(
        &self,
        enabled: Enabled,
        newer: impl Fn(i64, i64) -> bool,
    ) -> Option<(ApplyReport, bool)> {
        let Enabled {
            generation,
            servers: mut specs,
            virtual_servers,
        } = enabled;
        let mut applied = self.applied.lock().await;
        if !newer(generation, *applied) {
            return None;
        }
        if let Ok(tls) = self.file_tls.lock() {
            for spec in &mut specs {
                if let Some(block) = tls.get(&spec.name) {
                    spec.tls = block.clone();
                }
            }
        }
        let (report, virtuals_changed) = loop {
            let attempt = self
                .routing
                .apply_with_virtual_servers(specs.clone(), virtual_servers.clone())
                .await;
            match attempt {
                Ok(done) => break done,
                Err(refused) => {
                    log::error!(
                        "registry generation {generation}: {refused}; this server is left out of the routes"
                    );
                    let before = specs.len();
                    specs.retain(|s| s.name != refused.server);
                    if specs.len() == before {
                        // Not one server's fault: keep the routes in effect.
                        return None;
                    }
                }
            }
        };
        *applied = generation;
        if !report.is_empty() {
            log::info!(
                "registry generation {generation} applied: {}",
                report.summary()
            );
        }
        if virtuals_changed {
            let names: Vec<&str> = virtual_servers.iter().map(|v| v.name.as_str()).collect();
            log::info!(
                "registry generation {generation}: virtual servers now {}",
                if names.is_empty() {
                    "-".to_string()
                } else {
                    names.join(",")
                }
            );
        }
        self.runtime.set_routing_loaded(true);
        Some((report, virtuals_changed))
    }
}

/// The sync (and the admin API when `ADMIN_ENABLED`) as one background
/// service.
pub struct RegistryService {
    pub options: Mutex<Option<SyncOptions>>,
    pub applier: Arc<RoutingApplier>,
    pub registry: Arc<RegistryHandle>,
    pub admin: Option<AdminService>,
}

#[async_trait]
impl BackgroundService for RegistryService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(options) = self.options.lock().ok().and_then(|mut o| o.take()) else {
            return;
        };
        let applier = self.applier.clone();
        let apply: ApplySpecs = Arc::new(move |enabled| {
            let applier = applier.clone();
            tokio::spawn(async move { applier.apply(enabled).await });
        });
        let handle = self.registry.clone();
        let on_ready: OnReady = Box::new(move |opened| handle.set(opened));
        let admin = async {
            if let Some(admin) = &self.admin {
                admin.run(shutdown.clone()).await;
            }
        };
        let follow = async {
            if let Err(e) = sync::run(options, apply, on_ready, shutdown.clone()).await {
                // A newer schema, a failed migration, another
                // AUTH_ENCRYPTION_SECRET: retrying cannot help.
                log::error!("registry: {e}");
                eprintln!("mcp-gateway: registry: {e}");
                crate::log_writer::exit(1);
            }
        };
        tokio::join!(admin, follow);
    }
}
