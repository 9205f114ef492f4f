//! SIGHUP: read the TLS listener's certificate files again (see
//! `listener_certs`); read the `--config` file again and write its servers
//! and virtual servers to the registry as the start-up does
//! (configuration-owned records follow the file), then apply the registry's
//! enabled ones at once, so the routes have changed when the one log line
//! appears. A file that does not load, or a registry that cannot be
//! written, is refused with its reason logged once, and the routes in
//! effect stay.

use crate::app::load_settings;
use crate::app::registry::RoutingApplier;
use crate::listener_certs::ListenerCerts;
use crate::registry::handle::RegistryHandle;
use crate::registry::ConfigSummary;
use crate::sd_notify;
use crate::snapshot::ApplyReport;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

pub struct ReloadOnHangup {
    pub registry: Arc<RegistryHandle>,
    pub applier: Arc<RoutingApplier>,
    pub config: Option<PathBuf>,
    /// The TLS listener's certificate, read again from the same files.
    pub listener_certs: Option<Arc<ListenerCerts>>,
}

impl ReloadOnHangup {
    /// Reloads, tells systemd it is reloading and then ready again (a
    /// refused reload leaves the old routes serving: ready all the same),
    /// with the outcome as its status.
    async fn reload(&self) {
        let what = self
            .config
            .as_ref()
            .map_or("the certificates".to_string(), |p| p.display().to_string());
        // Before the start-up's READY=1, a READY=1 here would end the
        // start early.
        let started = sd_notify::notify_if_started(|| {
            sd_notify::reloading(
                sd_notify::monotonic_usec(),
                &format!("SIGHUP: reloading {what}"),
            )
        });
        let outcome = self.reload_and_log().await;
        if started {
            sd_notify::notify(&sd_notify::ready(&outcome, None));
        }
    }

    /// The outcome, as logged.
    async fn reload_and_log(&self) -> String {
        // First and on its own: a YAML file that does not load must not
        // keep a renewed certificate out.
        if let Some(certs) = &self.listener_certs {
            certs.reload_and_log();
        }
        let Some(path) = &self.config else {
            log::warn!("SIGHUP: no --config file to reload; nothing changed");
            return "serving; SIGHUP: no --config file to reload".into();
        };
        match self.write_and_apply(path).await {
            Ok(summary) if summary.is_empty() => {
                log::info!("SIGHUP: {} reloaded, no change", path.display());
                format!("serving; SIGHUP: {} reloaded, no change", path.display())
            }
            Ok(summary) => {
                log::info!("SIGHUP: {} reloaded: {summary}", path.display());
                format!("serving; SIGHUP: {} reloaded: {summary}", path.display())
            }
            Err(why) => {
                log::error!("SIGHUP: reload refused, the current routes stay: {why}");
                format!("serving the previous routes; SIGHUP: reload refused: {why}")
            }
        }
    }

    async fn write_and_apply(&self, path: &std::path::Path) -> Result<String, String> {
        let settings = load_settings(Some(path)).map_err(|e| e.to_string())?;
        let registry = self.registry.get().map_err(|e| e.to_string())?;
        self.applier.set_file_servers(&settings.servers);
        let written = registry
            .upsert_config(
                &settings.servers,
                &settings.virtual_servers,
                &path.display().to_string(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let enabled = registry.load_enabled().await.map_err(|e| e.to_string())?;
        // `None`: the sync applied a newer generation first (and with it
        // whatever this write changed).
        let applied = self.applier.reapply(enabled).await;
        let virtuals_changed = written.virtual_servers_changed
            || applied.as_ref().is_some_and(|(_, changed)| *changed);
        let servers = if !written.is_empty() {
            summary(written)
        } else {
            // Only the TLS files changed, which the registry does not hold.
            applied
                .map(|(report, _)| report)
                .filter(|report| !report.is_empty())
                .map(|report| report.summary())
                .unwrap_or_default()
        };
        Ok(match (servers.is_empty(), virtuals_changed) {
            (_, false) => servers,
            (true, true) => "virtual servers changed".into(),
            (false, true) => format!("{servers}, virtual servers changed"),
        })
    }
}

/// The file's changes in the words of the routing's own report.
fn summary(written: ConfigSummary) -> String {
    // Servers and virtual servers alike: their names are one name space.
    ApplyReport {
        added: written.created,
        changed: written.updated,
        removed: written.removed,
    }
    .summary()
}

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Pingora takes SIGTERM, SIGQUIT and SIGINT, not SIGHUP.
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot listen for SIGHUP, reload is off: {e}");
                return;
            }
        };
        log::info!("SIGHUP reloads the server list");
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                received = hangup.recv() => {
                    if received.is_none() {
                        return;
                    }
                }
            }
            self.reload().await;
        }
    }
}
