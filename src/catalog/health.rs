//! The MCP-level check beside the TCP one: whether each server's last
//! catalog gathering (`initialize` and its lists, as the gateway itself)
//! succeeded, with the reason and when, for `/metrics`
//! (`mcp_server_mcp_up`) and the admin API's server health.
//!
//! Only reported, never routed on: the data plane keeps choosing replicas
//! by the TCP check. An MCP-level failure of the gateway's own session
//! can be the gateway's credential (`upstream_auth`) alone, which says
//! nothing about the users' calls that carry their own, and taking a
//! server out for it would turn a catalog problem into an outage.

use super::model::{CatalogStore, ServerCatalog, ServerStatus};
use crate::registry::McpCheck;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Set once the catalog exists (the process-wide runtime is built first).
#[derive(Default)]
pub struct McpHealth {
    store: OnceLock<Arc<CatalogStore>>,
}

impl McpHealth {
    pub fn attach(&self, store: Arc<CatalogStore>) {
        let _ = self.store.set(store);
    }

    /// The last check of `name`; `None` before its first gathering.
    pub fn server(&self, name: &str) -> Option<McpCheck> {
        let catalog = self.store.get()?.current();
        catalog.server(name).map(|s| check_of(s))
    }

    /// (server, up) for every server gathered at least once.
    pub fn all(&self) -> Vec<(String, bool)> {
        self.store.get().map_or_else(Vec::new, |store| {
            store
                .current()
                .servers
                .iter()
                .map(|s| (s.name.clone(), s.is_available()))
                .collect()
        })
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One server's catalog entry as the admin API shows it.
pub fn check_of(server: &ServerCatalog) -> McpCheck {
    let (up, reason, down_since) = match &server.status {
        ServerStatus::Available => (true, None, None),
        ServerStatus::Unavailable { reason, since } => {
            (false, Some(reason.clone()), Some(unix(*since)))
        }
    };
    McpCheck {
        up,
        reason,
        last_check: unix(server.checked_at),
        down_since,
        last_success: server.refreshed_at.map(unix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_failed_gathering_reports_the_reason_and_since_when() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        let t1 = t0 + Duration::from_secs(60);
        let ok = ServerCatalog::gathered("demo", "-", vec![], vec![], vec![], t0);
        assert_eq!(
            check_of(&ok),
            McpCheck {
                up: true,
                reason: None,
                last_check: 1_000,
                down_since: None,
                last_success: Some(1_000),
            }
        );
        let down = ServerCatalog::failed("demo", Some(&ok), "-", "initialize failed".into(), t1);
        let check = check_of(&down);
        assert!(!check.up);
        assert_eq!(check.reason.as_deref(), Some("initialize failed"));
        assert_eq!(
            (check.last_check, check.down_since, check.last_success),
            (1_060, Some(1_060), Some(1_000))
        );
    }

    #[test]
    fn nothing_is_reported_before_the_catalog_exists() {
        let health = McpHealth::default();
        assert!(health.server("demo").is_none());
        assert!(health.all().is_empty());
        let store = Arc::new(CatalogStore::new("-"));
        store.replace(vec![Arc::new(ServerCatalog::gathered(
            "demo",
            "-",
            vec![],
            vec![],
            vec![],
            SystemTime::now(),
        ))]);
        health.attach(store);
        assert_eq!(health.all(), vec![("demo".to_string(), true)]);
        assert!(health.server("demo").is_some_and(|c| c.up));
    }
}
