//! Pingora's health checks keep only healthy / not healthy; the admin API
//! also shows when a backend was last checked, how many checks in a row
//! failed and why. [`RecordingCheck`] delegates to the TCP check and keeps
//! those facts in a [`HealthLog`].

use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck, TcpHealthCheck};
use pingora::lb::Backend;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the checks saw of one backend address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRecord {
    /// Unix seconds.
    pub last_check: i64,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

impl CheckRecord {
    /// The record after one more check.
    pub fn after(&self, at: i64, error: Option<String>) -> CheckRecord {
        match error {
            None => CheckRecord {
                last_check: at,
                consecutive_failures: 0,
                last_error: self.last_error.clone(),
            },
            Some(e) => CheckRecord {
                last_check: at,
                consecutive_failures: self.consecutive_failures.saturating_add(1),
                last_error: Some(e),
            },
        }
    }
}

/// Written by the health checks (a few per interval), read by the admin
/// API; never touched by a request.
#[derive(Debug, Default)]
pub struct HealthLog {
    records: Mutex<HashMap<SocketAddr, CheckRecord>>,
}

impl HealthLog {
    pub fn get(&self, addr: &SocketAddr) -> Option<CheckRecord> {
        self.lock().get(addr).cloned()
    }

    fn record(&self, addr: SocketAddr, error: Option<String>) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut records = self.lock();
        let next = records
            .get(&addr)
            .cloned()
            .unwrap_or_default()
            .after(at, error);
        records.insert(addr, next);
    }

    /// Forgets the addresses no server lists any more.
    pub fn retain(&self, keep: impl Fn(&SocketAddr) -> bool) {
        self.lock().retain(|addr, _| keep(addr));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, CheckRecord>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The TCP check, recording each outcome.
pub struct RecordingCheck {
    pub inner: TcpHealthCheck,
    pub log: std::sync::Arc<HealthLog>,
}

#[async_trait]
impl HealthCheck for RecordingCheck {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        let result = self.inner.check(target).await;
        if let Some(addr) = target.addr.as_inet() {
            self.log
                .record(*addr, result.as_ref().err().map(|e| e.to_string()));
        }
        result
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        self.inner.health_status_change(target, healthy).await
    }

    fn backend_summary(&self, target: &Backend) -> String {
        self.inner.backend_summary(target)
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_until_a_success() {
        let r = CheckRecord::default().after(10, Some("refused".into()));
        let r = r.after(20, Some("timeout".into()));
        assert_eq!(r.consecutive_failures, 2);
        assert_eq!(r.last_error.as_deref(), Some("timeout"));
        let r = r.after(30, None);
        assert_eq!(r.consecutive_failures, 0);
        assert_eq!(r.last_check, 30);
        // The last error stays visible after recovery: it says what happened.
        assert_eq!(r.last_error.as_deref(), Some("timeout"));
    }

    #[test]
    fn the_log_forgets_removed_addresses() {
        let log = HealthLog::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        log.record(a, None);
        log.record(b, Some("x".into()));
        log.retain(|addr| *addr == a);
        assert!(log.get(&a).is_some());
        assert!(log.get(&b).is_none());
    }
}
