//! SIGHUP: read the `--config` file again and apply its servers through
//! the same [`Routing::apply`] the registry sync uses. A file that does not
//! load is refused, its reason logged once, and the routes in effect stay.

use crate::app::load_settings;
use crate::snapshot::Routing;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

pub struct ReloadOnHangup {
    pub routing: Arc<Routing>,
    pub config: Option<PathBuf>,
}

impl ReloadOnHangup {
    async fn reload(&self) {
        let Some(path) = &self.config else {
            log::warn!("SIGHUP: no --config file to reload; nothing changed");
            return;
        };
        let settings = match load_settings(Some(path)) {
            Ok(settings) => settings,
            Err(e) => {
                log::error!("SIGHUP: reload refused, the current routes stay: {e}");
                return;
            }
        };
        match self.routing.apply(settings.servers).await {
            Ok(report) if report.is_empty() => {
                log::info!("SIGHUP: {} reloaded, no change", path.display())
            }
            Ok(report) => log::info!("SIGHUP: {} reloaded: {}", path.display(), report.summary()),
            Err(e) => log::error!("SIGHUP: reload refused, the current routes stay: {e}"),
        }
    }
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
