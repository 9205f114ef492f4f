//! The routing snapshot: everything the data plane reads about the server
//! set, immutable, swapped whole by [`Routing::apply`]. A request loads the
//! snapshot once and keeps it, so a swap never changes what a request in
//! flight (or an open event stream) is using.

use crate::config::{ServerSpec, VirtualServerSpec};
use crate::cors::CorsPolicy;
use crate::registry::{BackendHealth, HealthView};
use crate::routing::RouteTable;
use crate::state::{identity_header_names_with, Runtime, ServerRuntime, SpecError, VirtualServer};
use crate::upstream::ServerUpstream;
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub struct Snapshot {
    pub servers: Vec<Arc<ServerRuntime>>,
    pub routes: RouteTable,
    /// Browsers may send every header some server of the set may receive.
    pub cors: CorsPolicy,
    /// Served by the federation; never the name of one of `servers`.
    pub virtual_servers: HashMap<Box<str>, Arc<VirtualServer>>,
}

impl Snapshot {
    pub fn server(&self, name: &str) -> Option<&Arc<ServerRuntime>> {
        self.servers.get(self.routes.lookup(name)?)
    }

    pub fn virtual_server(&self, name: &str) -> Option<&Arc<VirtualServer>> {
        self.virtual_servers.get(name)
    }

    /// A virtual server whose name a server has is left out (the registry
    /// refuses such a pair; this is the backstop for a file applied before
    /// the registry is read): the real server keeps its route.
    fn with_virtual_servers(mut self, specs: &[VirtualServerSpec], runtime: &Runtime) -> Self {
        self.virtual_servers = specs
            .iter()
            .filter(|spec| {
                let taken = self.routes.lookup(&spec.name).is_some();
                if taken {
                    log::error!(
                        "virtual server {}: a server has the same name; the virtual server is not served",
                        spec.name
                    );
                }
                !taken
            })
            .map(|spec| {
                let built = VirtualServer::build(spec, &runtime.defaults, &runtime.metrics);
                (Box::from(spec.name.as_str()), Arc::new(built))
            })
            .collect();
        self
    }

    fn new(servers: Vec<Arc<ServerRuntime>>, runtime: &Runtime) -> Self {
        let passthrough: Vec<_> = servers
            .iter()
            .flat_map(|s| s.headers.passthrough.iter().cloned())
            .collect();
        let defaults = &runtime.defaults;
        Snapshot {
            cors: CorsPolicy::new(
                defaults.cors_enabled,
                &defaults.allowed_origins,
                &passthrough,
            ),
            routes: RouteTable::new(servers.iter().map(|s| s.name.as_str())),
            servers,
            virtual_servers: HashMap::new(),
        }
    }
}

/// What one [`Routing::apply`] changed, by server name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl ApplyReport {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    /// One log line.
    pub fn summary(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(",")
            }
        };
        format!(
            "added {} changed {} removed {}",
            list(&self.added),
            list(&self.changed),
            list(&self.removed)
        )
    }
}

/// The difference between the specs a snapshot was built from and a new
/// set. Order alone is no change: routes are looked up by name.
pub fn diff(old: &[&ServerSpec], new: &[ServerSpec]) -> ApplyReport {
    let before: HashMap<&str, &ServerSpec> = old.iter().map(|s| (s.name.as_str(), *s)).collect();
    let after: HashSet<&str> = new.iter().map(|s| s.name.as_str()).collect();
    let mut report = ApplyReport::default();
    for spec in new {
        match before.get(spec.name.as_str()) {
            None => report.added.push(spec.name.clone()),
            Some(prior) if **prior != *spec => report.changed.push(spec.name.clone()),
            Some(_) => {}
        }
    }
    report.removed = old
        .iter()
        .filter(|s| !after.contains(s.name.as_str()))
        .map(|s| s.name.clone())
        .collect();
    report
}

/// Holds the current snapshot and replaces it.
pub struct Routing {
    pub runtime: Arc<Runtime>,
    current: ArcSwap<Snapshot>,
    /// One apply at a time (SIGHUP and the registry sync may both call);
    /// holds the virtual servers in effect, which every apply builds in.
    applying: tokio::sync::Mutex<Vec<VirtualServerSpec>>,
}

impl Routing {
    /// Starts with no servers; [`Routing::apply`] loads the first set.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        let empty = Snapshot::new(Vec::new(), &runtime);
        Routing {
            runtime,
            current: ArcSwap::from_pointee(empty),
            applying: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// The routing of `settings`' servers outside a running gateway (tests,
    /// tools): its own health registry, whose checks nobody runs, so every
    /// discovered backend counts as healthy. Leaks one small lifecycle
    /// record per call.
    pub async fn from_settings(settings: &crate::config::Settings) -> Result<Arc<Self>, String> {
        let (health, health_log) = crate::upstream::health_registry();
        let lifecycle: &'static crate::lifecycle::Lifecycle = Box::leak(Box::default());
        let runtime =
            Runtime::build(settings, health, health_log, lifecycle).map_err(|e| e.to_string())?;
        let routing = Arc::new(Routing::new(Arc::new(runtime)));
        routing
            .apply(settings.servers.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok(routing)
    }

    /// The snapshot a request keeps from start to end.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Builds the snapshot for `specs` and swaps it in, or changes nothing
    /// and says why (every server is built before anything is swapped).
    /// Unchanged servers keep their replicas, health and round-robin
    /// position; a server whose URLs are unchanged keeps them too. New
    /// replicas are resolved before the swap, so the first request after it
    /// already has backends. An unchanged set costs a comparison, no swap.
    pub async fn apply(&self, specs: Vec<ServerSpec>) -> Result<ApplyReport, SpecError> {
        let virtuals = self.applying.lock().await;
        self.apply_locked(specs, &virtuals, false).await
    }

    /// Replaces the servers and the virtual servers in one swap (the
    /// registry's reads); `true` in the second place if the virtual servers
    /// changed. When they did, every server is rebuilt, since a virtual
    /// server's `proxy_header` is one of the identity headers none may
    /// forward.
    pub async fn apply_with_virtual_servers(
        &self,
        specs: Vec<ServerSpec>,
        virtual_servers: Vec<VirtualServerSpec>,
    ) -> Result<(ApplyReport, bool), SpecError> {
        let mut virtuals = self.applying.lock().await;
        let changed = *virtuals != virtual_servers;
        let report = self.apply_locked(specs, &virtual_servers, changed).await?;
        *virtuals = virtual_servers;
        Ok((report, changed))
    }

    /// Replaces the virtual servers (start-up, from the file), keeping the
    /// servers; every server is rebuilt, since a virtual server's
    /// `proxy_header` is one of the identity headers none may forward.
    pub async fn apply_virtual_servers(
        &self,
        specs: Vec<VirtualServerSpec>,
    ) -> Result<bool, SpecError> {
        let mut virtuals = self.applying.lock().await;
        if *virtuals == specs {
            return Ok(false);
        }
        let servers: Vec<ServerSpec> = self
            .current
            .load()
            .servers
            .iter()
            .map(|s| s.spec.clone())
            .collect();
        self.apply_locked(servers, &specs, true).await?;
        *virtuals = specs;
        Ok(true)
    }

    async fn apply_locked(
        &self,
        specs: Vec<ServerSpec>,
        virtuals: &[VirtualServerSpec],
        rebuild: bool,
    ) -> Result<ApplyReport, SpecError> {
        let old = self.current.load_full();
        let old_specs: Vec<&ServerSpec> = old.servers.iter().map(|s| &s.spec).collect();
        let report = diff(&old_specs, &specs);
        if !rebuild && report.is_empty() && old.servers.len() == specs.len() {
            return Ok(report);
        }
        let runtime = &self.runtime;
        let ids = identity_header_names_with(&runtime.defaults.proxy_user_header, &specs, virtuals);
        let mut servers = Vec::with_capacity(specs.len());
        let mut fresh = Vec::new();
        for spec in &specs {
            let upstream = match old.server(&spec.name) {
                Some(prior) if prior.spec.urls == spec.urls && prior.spec.tls == spec.tls => {
                    prior.upstream.clone()
                }
                _ => {
                    let upstream = Arc::new(
                        ServerUpstream::new(&spec.name, &spec.urls, &runtime.health)
                            .with_tls(spec.tls.clone()),
                    );
                    fresh.push((spec.name.clone(), upstream.clone()));
                    upstream
                }
            };
            let server =
                ServerRuntime::build(spec, &runtime.defaults, &ids, upstream, &runtime.metrics)?;
            servers.push(Arc::new(server));
        }
        for (name, upstream) in &fresh {
            if let Err(e) = upstream.discover().await {
                log::warn!("server {name}: discovery failed: {e}");
            }
        }
        self.current.store(Arc::new(
            Snapshot::new(servers, runtime).with_virtual_servers(virtuals, runtime),
        ));
        drop(old);
        let current = self.current.load();
        let listed: HashSet<_> = current
            .servers
            .iter()
            .flat_map(|s| s.upstream.health().into_iter().map(|(addr, _)| addr))
            .collect();
        runtime.health_log.retain(|addr| listed.contains(addr));
        Ok(report)
    }
}

impl HealthView for Routing {
    fn mcp_health(&self, name: &str) -> Option<crate::registry::McpCheck> {
        self.runtime.mcp_health.server(name)
    }

    fn server_health(&self, name: &str) -> Option<Vec<BackendHealth>> {
        let snapshot = self.current.load();
        let server = snapshot.server(name)?;
        let log = &self.runtime.health_log;
        Some(
            server
                .upstream
                .backends()
                .into_iter()
                .map(|(replica, addr, healthy)| {
                    let record = log.get(&addr);
                    BackendHealth {
                        replica: replica.url.original.clone(),
                        backend: addr.to_string(),
                        healthy,
                        last_check: record.as_ref().map(|r| r.last_check),
                        consecutive_failures: record.as_ref().map_or(0, |r| r.consecutive_failures),
                        last_error: record.and_then(|r| r.last_error),
                    }
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Settings, Source};

    fn specs(yaml: &str) -> Vec<ServerSpec> {
        settings(yaml).servers
    }

    fn settings(yaml: &str) -> Settings {
        let env = Source::from_pairs([("MCP_CLIENT_AUTH_ENABLED", "false")]);
        Settings::load(&env, Some(("f", yaml))).unwrap()
    }

    fn routing(yaml: &str) -> Routing {
        let s = settings(yaml);
        let (health, log) = crate::upstream::health_registry();
        let lifecycle = Box::leak(Box::default());
        let runtime = Runtime::build(&s, health, log, lifecycle).unwrap();
        Routing::new(Arc::new(runtime))
    }

    const AB: &str = "servers:\n  - {name: a, urls: [http://127.0.0.1:9/mcp]}\n  - {name: b, urls: [http://127.0.0.1:10/mcp]}\n";

    #[tokio::test]
    async fn an_unchanged_set_is_not_swapped() {
        let r = routing(AB);
        let first = r.apply(specs(AB)).await.unwrap();
        assert_eq!(first.added, ["a", "b"]);
        let before = r.current();
        let again = r.apply(specs(AB)).await.unwrap();
        assert!(again.is_empty());
        assert!(Arc::ptr_eq(&before, &r.current()));
    }

    #[tokio::test]
    async fn unchanged_servers_keep_their_replicas() {
        let r = routing(AB);
        r.apply(specs(AB)).await.unwrap();
        let before = r.current();
        let next = "servers:\n  - {name: a, urls: [http://127.0.0.1:9/mcp], passthrough_headers: [X-Tenant]}\n  - {name: c, urls: [http://127.0.0.1:11/mcp]}\n";
        let report = r.apply(specs(next)).await.unwrap();
        assert_eq!(report.summary(), "added c changed a removed b");
        let after = r.current();
        let a = |s: &Snapshot| s.server("a").unwrap().upstream.clone();
        // Same URLs: the same replicas, health and round robin.
        assert!(Arc::ptr_eq(&a(&before), &a(&after)));
        assert!(after.server("b").is_none());
        assert_eq!(after.server("c").unwrap().upstream.backend_count(), 1);
        // The request that started before the swap still has b.
        assert!(before.server("b").is_some());
        let health = &r.runtime.health;
        assert_eq!(health.target_count(), 3);
        // Once nothing uses it, b's backend leaves the health checks.
        drop(before);
        assert_eq!(health.target_count(), 2);
    }

    #[tokio::test]
    async fn a_set_with_an_unusable_server_changes_nothing() {
        let r = routing(AB);
        r.apply(specs(AB)).await.unwrap();
        let before = r.current();
        let mut bad = specs(AB);
        bad[1].upstream_auth = crate::config::UpstreamCredential::Headers(vec![(
            http::header::CONNECTION,
            crate::config::Secret::new("x"),
        )]);
        let e = r.apply(bad).await.unwrap_err();
        assert_eq!(e.field, "upstream_auth");
        assert!(Arc::ptr_eq(&before, &r.current()));
    }

    #[tokio::test]
    async fn health_view_lists_each_backend() {
        let r = routing(AB);
        r.apply(specs(AB)).await.unwrap();
        let health = r.server_health("a").unwrap();
        assert_eq!(health.len(), 1);
        assert_eq!(health[0].replica, "http://127.0.0.1:9/mcp");
        assert_eq!(health[0].backend, "127.0.0.1:9");
        assert_eq!(health[0].last_check, None);
        assert!(r.server_health("zzz").is_none());
    }

    #[tokio::test]
    async fn virtual_servers_join_the_snapshot_and_yield_to_a_real_name() {
        let r = routing(AB);
        r.apply(specs(AB)).await.unwrap();
        let yaml = format!(
            "{AB}virtual_servers:\n  - {{name: dev, include: [a/*], auth_mode: proxy, proxy_header: X-Employee-Id}}\n"
        );
        let virtuals = settings(&yaml).virtual_servers;
        assert!(r.apply_virtual_servers(virtuals.clone()).await.unwrap());
        assert!(!r.apply_virtual_servers(virtuals).await.unwrap());
        let snap = r.current();
        let dev = snap.virtual_server("dev").unwrap();
        assert_eq!(dev.scope.include, ["a/*"]);
        assert!(snap.server("dev").is_none());
        // Its identity header is never forwarded by any server.
        let ids = &snap.server("a").unwrap().headers.identity_headers;
        assert!(ids.iter().any(|h| h == "x-employee-id"));
        // A later server set keeps the virtual servers.
        r.apply(specs(
            "servers:\n  - {name: a, urls: [http://127.0.0.1:9/mcp]}\n",
        ))
        .await
        .unwrap();
        assert!(r.current().virtual_server("dev").is_some());
        // A registered server that takes the name wins the route.
        r.apply(specs(
            "servers:\n  - {name: dev, urls: [http://127.0.0.1:9/mcp]}\n",
        ))
        .await
        .unwrap();
        let snap = r.current();
        assert!(snap.virtual_server("dev").is_none());
        assert!(snap.server("dev").is_some());
    }

    #[tokio::test]
    async fn one_apply_swaps_servers_and_virtual_servers_together() {
        let r = routing(AB);
        let yaml = format!("{AB}virtual_servers:\n  - {{name: dev, include: [a/*]}}\n");
        let virtuals = settings(&yaml).virtual_servers;
        let (report, changed) = r
            .apply_with_virtual_servers(specs(AB), virtuals.clone())
            .await
            .unwrap();
        assert_eq!(report.added, ["a", "b"]);
        assert!(changed);
        assert_eq!(
            r.current().virtual_server("dev").unwrap().scope.include,
            ["a/*"]
        );
        let before = r.current();
        let (report, changed) = r
            .apply_with_virtual_servers(specs(AB), virtuals)
            .await
            .unwrap();
        assert!(report.is_empty() && !changed);
        assert!(
            Arc::ptr_eq(&before, &r.current()),
            "nothing changed, no swap"
        );
        let narrower = settings(&format!(
            "{AB}virtual_servers:\n  - {{name: dev, include: [b/x]}}\n"
        ));
        let (_, changed) = r
            .apply_with_virtual_servers(specs(AB), narrower.virtual_servers)
            .await
            .unwrap();
        assert!(changed);
        assert_eq!(
            r.current().virtual_server("dev").unwrap().scope.include,
            ["b/x"]
        );
        let (_, changed) = r
            .apply_with_virtual_servers(specs(AB), Vec::new())
            .await
            .unwrap();
        assert!(changed);
        assert!(r.current().virtual_server("dev").is_none());
    }

    #[test]
    fn diff_names_added_changed_and_removed() {
        let old = specs("servers:\n  - {name: a, urls: [http://h/mcp]}\n  - {name: b, urls: [http://h/mcp]}\n  - {name: c, urls: [http://h/mcp]}\n");
        let new = specs("servers:\n  - {name: c, urls: [http://h/mcp]}\n  - {name: a, urls: [http://h/mcp, http://i/mcp]}\n  - {name: d, urls: [http://h/mcp]}\n");
        let old_refs: Vec<&ServerSpec> = old.iter().collect();
        let report = diff(&old_refs, &new);
        assert_eq!(report.added, ["d"]);
        assert_eq!(report.changed, ["a"]);
        assert_eq!(report.removed, ["b"]);
        assert_eq!(report.summary(), "added d changed a removed b");
    }

    #[test]
    fn the_same_set_in_another_order_is_no_change() {
        let old = specs(
            "servers:\n  - {name: a, urls: [http://h/mcp]}\n  - {name: b, urls: [http://h/mcp]}\n",
        );
        let new = specs(
            "servers:\n  - {name: b, urls: [http://h/mcp]}\n  - {name: a, urls: [http://h/mcp]}\n",
        );
        let old_refs: Vec<&ServerSpec> = old.iter().collect();
        assert!(diff(&old_refs, &new).is_empty());
    }
}
