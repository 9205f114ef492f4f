//! Every Prometheus metric the gateway exposes, registered in one place.
//! Per-server handles are resolved once at start-up so the request path
//! never hashes a label set.

use crate::identity::AuthError;
use arc_swap::ArcSwap;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The `user` label value once `METRICS_MAX_USERS` distinct users are seen.
pub const OTHER_USERS: &str = "__other__";

/// The one metric with a `user` label: only a scrape bearing
/// `METRICS_TOKEN` sees it.
pub const PER_USER_METRIC: &str = "mcp_authenticated_requests_total";

pub struct Metrics {
    registry: Registry,
    pub auth_attempts: IntCounter,
    pub auth_success: IntCounter,
    auth_failures: IntCounterVec,
    pub proxy_header_missing: IntCounter,
    pub auth_latency: Histogram,
    authenticated_requests: IntCounterVec,
    /// Per-user counters, read without a lock on the request path; written
    /// (copy, insert, swap) only when a new user appears, at most `max_users` times.
    user_counters: ArcSwap<HashMap<Box<str>, IntCounter>>,
    user_counters_write: Mutex<()>,
    /// The `__other__` counter, set when the cap is first reached; the map
    /// never shrinks, so from then on an unknown user is counted here
    /// without the writer lock.
    other_users: OnceLock<IntCounter>,
    max_users: usize,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    backend_up: IntGaugeVec,
    /// The (server, backend) label pairs `backend_up` holds, so a backend
    /// that discovery dropped loses its series instead of reporting its
    /// last state forever. The lock also keeps two scrapes from
    /// interleaving their updates.
    backend_series: Mutex<HashSet<(String, String)>>,
    /// The catalog's MCP-level check per server (see `catalog::health`).
    mcp_up: IntGaugeVec,
    mcp_series: Mutex<HashSet<String>>,
    refusals: IntCounterVec,
}

/// One server's request counters (by status class) and latency histogram.
#[derive(Clone)]
pub struct ServerMetrics {
    by_class: [IntCounter; 5],
    /// Clients that went away before the response ended: not a failure of
    /// the gateway or the server, so not folded into `4xx` or `5xx`.
    client_closed: IntCounter,
    duration: Histogram,
}

impl ServerMetrics {
    pub fn observe(&self, status: u16, elapsed: Duration) {
        if status == crate::refusal::CLIENT_CLOSED {
            self.client_closed.inc();
        } else {
            let class = (status / 100).clamp(1, 5) as usize - 1;
            self.by_class[class].inc();
        }
        self.duration.observe(elapsed.as_secs_f64());
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

impl Metrics {
    pub fn new(max_users: usize) -> Self {
        let registry = Registry::new();
        let auth_latency = Histogram::with_opts(
            HistogramOpts::new("mcp_auth_latency_seconds", "Authentication processing time")
                .buckets(vec![
                    1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2, 0.1, 1.0,
                ]),
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(auth_latency.clone()))
            .expect("metric registered once");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "mcp_request_duration_seconds",
                "Time from request to the end of the response, per server",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0,
            ]),
            &["server"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(request_duration.clone()))
            .expect("metric registered once");
        let backend_up = IntGaugeVec::new(
            Opts::new(
                "mcp_backend_up",
                "1 when the backend passes its health check",
            ),
            &["server", "backend"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(backend_up.clone()))
            .expect("metric registered once");
        let mcp_up = IntGaugeVec::new(
            Opts::new(
                "mcp_server_mcp_up",
                "1 when the server's last catalog gathering (initialize and its lists) succeeded",
            ),
            &["server"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(mcp_up.clone()))
            .expect("metric registered once");
        // The log writer is one per process and counts into this one
        // counter; each registry exports it.
        registry
            .register(Box::new(crate::log_writer::DROPPED.clone()))
            .expect("metric registered once");
        Metrics {
            mcp_up,
            mcp_series: Mutex::new(HashSet::new()),
            auth_attempts: counter(
                &registry,
                "mcp_auth_attempts_total",
                "Authentication attempts",
            ),
            auth_success: counter(
                &registry,
                "mcp_auth_success_total",
                "Successful authentications",
            ),
            auth_failures: counter_vec(
                &registry,
                "mcp_auth_failures_total",
                "Failed authentication attempts",
                &["reason"],
            ),
            proxy_header_missing: counter(
                &registry,
                "mcp_proxy_header_missing",
                "Requests without the proxy identity header where one was expected",
            ),
            authenticated_requests: counter_vec(
                &registry,
                PER_USER_METRIC,
                "Authenticated requests per user (capped by METRICS_MAX_USERS)",
                &["user"],
            ),
            requests: counter_vec(
                &registry,
                "mcp_requests_total",
                "Proxied requests per server and status class",
                &["server", "status"],
            ),
            refusals: counter_vec(
                &registry,
                "mcp_refusals_total",
                "Responses the gateway wrote itself instead of proxying, by reason",
                &["reason"],
            ),
            user_counters: ArcSwap::from_pointee(HashMap::new()),
            user_counters_write: Mutex::new(()),
            other_users: OnceLock::new(),
            max_users,
            auth_latency,
            request_duration,
            backend_up,
            backend_series: Mutex::new(HashSet::new()),
            registry,
        }
    }

    pub fn server(&self, name: &str) -> ServerMetrics {
        let class = |c: &str| self.requests.with_label_values(&[name, c]);
        ServerMetrics {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            client_closed: class("499"),
            duration: self.request_duration.with_label_values(&[name]),
        }
    }

    /// Replaces the health series with exactly the backends discovery
    /// knows now: (server, backend address, up).
    pub fn set_backends(&self, current: impl IntoIterator<Item = (String, String, bool)>) {
        let mut series = self
            .backend_series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = HashSet::new();
        for (server, backend, up) in current {
            self.backend_up
                .with_label_values(&[&server, &backend])
                .set(i64::from(up));
            next.insert((server, backend));
        }
        for (server, backend) in series.difference(&next) {
            // Err only if the series is already gone, which is the goal.
            let _ = self.backend_up.remove_label_values(&[server, backend]);
        }
        *series = next;
    }

    /// Replaces the MCP-level series with exactly these (server, up): a
    /// server that left loses its series.
    pub fn set_mcp_servers(&self, current: impl IntoIterator<Item = (String, bool)>) {
        let mut series = self
            .mcp_series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = HashSet::new();
        for (server, up) in current {
            self.mcp_up.with_label_values(&[&server]).set(i64::from(up));
            next.insert(server);
        }
        for server in series.difference(&next) {
            let _ = self.mcp_up.remove_label_values(&[server]);
        }
        *series = next;
    }

    /// Counts a refusal under its `Refusal::reason`.
    pub fn refused(&self, reason: &str) {
        self.refusals.with_label_values(&[reason]).inc();
    }

    pub fn auth_failed(&self, error: &AuthError) {
        self.auth_failures
            .with_label_values(&[error.reason()])
            .inc();
        if let AuthError::MissingCredential {
            proxy_expected: true,
        } = error
        {
            self.proxy_header_missing.inc();
        }
    }

    /// Counts a request for `user`, folding users beyond the cap into one
    /// label so an attacker cycling identities cannot exhaust memory.
    pub fn authenticated_request(&self, user: &str) {
        if let Some(counter) = self.user_counters.load().get(user) {
            counter.inc();
            return;
        }
        if let Some(other) = self.other_users.get() {
            other.inc();
            return;
        }
        self.user_counter_slow(user).inc();
    }

    fn user_counter_slow(&self, user: &str) -> IntCounter {
        let _writer = self
            .user_counters_write
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.user_counters.load_full();
        if let Some(counter) = current.get(user) {
            return counter.clone();
        }
        if current.len() >= self.max_users {
            return self
                .other_users
                .get_or_init(|| {
                    self.authenticated_requests
                        .with_label_values(&[OTHER_USERS])
                })
                .clone();
        }
        let counter = self.authenticated_requests.with_label_values(&[user]);
        let mut next: HashMap<Box<str>, IntCounter> = (*current).clone();
        next.insert(user.into(), counter.clone());
        self.user_counters.store(Arc::new(next));
        counter
    }

    /// The Prometheus text; `with_users` adds the per-user series, which
    /// name every caller (see `METRICS_TOKEN`).
    pub fn render(&self, with_users: bool) -> String {
        let mut families = self.registry.gather();
        if !with_users {
            families.retain(|f| f.name() != PER_USER_METRIC);
        }
        let mut buf = Vec::with_capacity(8192);
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            log::error!("encoding metrics failed: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_label_is_capped() {
        let m = Metrics::new(2);
        for u in ["a", "b", "c", "d", "a"] {
            m.authenticated_request(u);
        }
        let text = m.render(true);
        assert!(text.contains("mcp_authenticated_requests_total{user=\"a\"} 2"));
        assert!(text.contains("mcp_authenticated_requests_total{user=\"__other__\"} 2"));
        assert!(!text.contains("user=\"c\""));
        let text = m.render(false);
        assert!(
            !text.contains("user="),
            "per-user series without the token:\n{text}"
        );
        assert!(text.contains("mcp_auth_attempts_total"));
    }

    #[test]
    fn backends_dropped_by_discovery_lose_their_series() {
        let m = Metrics::new(10);
        let b = |addr: &str, up| ("demo".to_string(), addr.to_string(), up);
        m.set_backends([b("10.0.0.1:80", true), b("10.0.0.2:80", false)]);
        let text = m.render(true);
        assert!(text.contains("mcp_backend_up{backend=\"10.0.0.2:80\",server=\"demo\"} 0"));
        m.set_backends([b("10.0.0.1:80", true), b("10.0.0.3:80", true)]);
        let text = m.render(true);
        assert!(!text.contains("10.0.0.2"), "stale series kept:\n{text}");
        assert!(text.contains("mcp_backend_up{backend=\"10.0.0.3:80\",server=\"demo\"} 1"));
        assert!(text.contains("mcp_backend_up{backend=\"10.0.0.1:80\",server=\"demo\"} 1"));
    }

    #[test]
    fn users_past_the_cap_take_no_lock() {
        let m = Arc::new(Metrics::new(1));
        m.authenticated_request("a");
        m.authenticated_request("b");
        let writer = m.user_counters_write.lock().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let counting = {
            let m = m.clone();
            std::thread::spawn(move || {
                m.authenticated_request("c");
                let _ = done.send(());
            })
        };
        let took_no_lock = finished.recv_timeout(Duration::from_secs(5)).is_ok();
        drop(writer);
        counting.join().unwrap();
        assert!(
            took_no_lock,
            "a user past the cap waited for the writer lock"
        );
        assert!(m
            .render(true)
            .contains("mcp_authenticated_requests_total{user=\"__other__\"} 2"));
    }

    #[test]
    fn mcp_level_series_follow_the_catalog() {
        let m = Metrics::new(10);
        m.set_mcp_servers([("a".to_string(), true), ("b".to_string(), false)]);
        let text = m.render(false);
        assert!(text.contains("mcp_server_mcp_up{server=\"a\"} 1"), "{text}");
        assert!(text.contains("mcp_server_mcp_up{server=\"b\"} 0"), "{text}");
        m.set_mcp_servers([("b".to_string(), true)]);
        let text = m.render(false);
        assert!(!text.contains("server=\"a\""), "{text}");
        assert!(text.contains("mcp_server_mcp_up{server=\"b\"} 1"), "{text}");
    }

    #[test]
    fn reference_names_are_exposed() {
        let m = Metrics::new(10);
        m.auth_attempts.inc();
        m.auth_failed(&AuthError::MissingCredential {
            proxy_expected: true,
        });
        m.server("demo").observe(200, Duration::from_millis(3));
        m.server("demo").observe(499, Duration::from_millis(3));
        m.refused("unknown_server");
        let text = m.render(true);
        for name in [
            "mcp_auth_attempts_total 1",
            "mcp_auth_failures_total{reason=\"missing_credential\"} 1",
            "mcp_proxy_header_missing 1",
            "mcp_requests_total{server=\"demo\",status=\"2xx\"} 1",
            "mcp_requests_total{server=\"demo\",status=\"499\"} 1",
            "mcp_requests_total{server=\"demo\",status=\"4xx\"} 0",
            "mcp_request_duration_seconds_count{server=\"demo\"} 2",
            "mcp_refusals_total{reason=\"unknown_server\"} 1",
            "mcp_access_log_dropped_total 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
