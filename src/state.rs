//! The two kinds of state the data plane reads, never mixed: the process
//! [`Runtime`], built once from [`Settings`], and the per-server runtime
//! form ([`ServerRuntime`]) that the routing snapshot (`crate::snapshot`)
//! is made of. The request path never touches configuration text.

use crate::catalog::clients::ClientCache;
use crate::config::{AuthSettings, ServerSpec, Settings, VirtualServerSpec};
use crate::federation::VirtualScope;
use crate::headers::{HeaderPolicy, UpstreamCredentialHeaders};
use crate::identity::AuthPolicy;
use crate::lifecycle::Lifecycle;
use crate::local::MetricsToken;
use crate::metrics::{Metrics, ServerMetrics};
use crate::session::{KeyError, SessionKeys};
use crate::upstream::{HealthLog, ServerUpstream};
use http::HeaderName;
use pingora::lb::HealthRegistry;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Everything a server spec needs from the settings to become a
/// [`ServerRuntime`]; taken from [`Settings`] once, so a spec from a
/// database row is built exactly as one from the YAML file.
#[derive(Clone)]
pub struct ServerDefaults {
    /// The JWT and proxy-header settings a server's `auth_mode` refines.
    pub auth: AuthSettings,
    pub global_auth: AuthPolicy,
    /// `ENABLE_HEADER_PASSTHROUGH`.
    pub passthrough_enabled: bool,
    pub default_passthrough: Vec<HeaderName>,
    pub overwrite_base: bool,
    /// `PROXY_USER_HEADER`.
    pub proxy_user_header: HeaderName,
    /// The CORS settings the snapshot's policy is built from (the allowed
    /// request headers depend on the server set).
    pub cors_enabled: bool,
    pub allowed_origins: Vec<String>,
}

impl ServerDefaults {
    pub fn from_settings(settings: &Settings) -> Self {
        ServerDefaults {
            auth: settings.auth.clone(),
            global_auth: AuthPolicy::global(settings),
            passthrough_enabled: settings.headers.enable_header_passthrough,
            default_passthrough: settings.headers.default_passthrough_headers.clone(),
            overwrite_base: settings.headers.enable_overwrite_base_headers,
            proxy_user_header: settings.auth.proxy_user_header.clone(),
            cors_enabled: settings.cors.enabled,
            allowed_origins: settings.cors.allowed_origins.clone(),
        }
    }
}

pub struct ServerRuntime {
    pub name: String,
    /// What it was built from: an unchanged spec keeps this runtime.
    pub spec: ServerSpec,
    pub auth: AuthPolicy,
    pub headers: HeaderPolicy,
    /// Shared with the next snapshot while the replica URLs stay the same,
    /// so a swap keeps health state and the round-robin position.
    pub upstream: Arc<ServerUpstream>,
    pub metrics: ServerMetrics,
    /// The HTTP clients of its MCP sessions; a changed spec, a new runtime,
    /// builds them anew (new TLS settings, new replicas).
    pub clients: ClientCache,
}

/// A spec the data plane cannot serve as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub server: String,
    pub field: &'static str,
    pub problem: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server {}: {}: {}",
            self.server, self.field, self.problem
        )
    }
}

impl std::error::Error for SpecError {}

impl ServerRuntime {
    /// The runtime form of one server. `identity_headers` is every identity
    /// header name of the server set this server is part of; `upstream` is
    /// its replicas (new, or the previous snapshot's for the same URLs).
    pub fn build(
        spec: &ServerSpec,
        defaults: &ServerDefaults,
        identity_headers: &[HeaderName],
        upstream: Arc<ServerUpstream>,
        metrics: &Metrics,
    ) -> Result<Self, SpecError> {
        let auth = AuthPolicy::for_server(&defaults.auth, &defaults.global_auth, spec);
        let passthrough = if defaults.passthrough_enabled {
            spec.passthrough_headers
                .clone()
                .unwrap_or_else(|| defaults.default_passthrough.clone())
        } else {
            Vec::new()
        };
        let credential = UpstreamCredentialHeaders::prepare(&spec.upstream_auth, identity_headers)
            .map_err(|problem| SpecError {
                server: spec.name.clone(),
                field: "upstream_auth",
                problem,
            })?;
        Ok(ServerRuntime {
            name: spec.name.clone(),
            spec: spec.clone(),
            headers: HeaderPolicy {
                passthrough,
                overwrite_base: defaults.overwrite_base,
                identity_headers: identity_headers.to_vec(),
                identity_out: auth
                    .proxy_header
                    .clone()
                    .unwrap_or_else(|| defaults.proxy_user_header.clone()),
                credential,
            },
            auth,
            upstream,
            // The same series as before a change: a server's counters stay
            // monotonic across reloads, and a removed server's stay too (a
            // bounded set of names; dropping them would read as a reset).
            metrics: metrics.server(&spec.name),
            clients: ClientCache::default(),
        })
    }
}

/// A virtual server as the data plane and the federation read it: who may
/// call it, and what it takes from the catalog.
pub struct VirtualServer {
    pub spec: VirtualServerSpec,
    pub auth: AuthPolicy,
    pub scope: Arc<VirtualScope>,
    /// Its requests, under its name: never a server's at the same time.
    pub metrics: ServerMetrics,
}

impl VirtualServer {
    pub fn build(spec: &VirtualServerSpec, defaults: &ServerDefaults, metrics: &Metrics) -> Self {
        VirtualServer {
            metrics: metrics.server(&spec.name),
            auth: AuthPolicy::for_mode(
                &defaults.auth,
                &defaults.global_auth,
                spec.auth_mode,
                spec.proxy_header.as_ref(),
                spec.jwt_audience.as_deref(),
            ),
            scope: Arc::new(VirtualScope {
                name: spec.name.clone(),
                include: spec.include.iter().map(|p| p.to_string()).collect(),
            }),
            spec: spec.clone(),
        }
    }
}

/// Process-wide state, built once: what does not depend on the server set.
pub struct Runtime {
    pub global_auth: AuthPolicy,
    pub sessions: SessionKeys,
    pub session_ttl: Duration,
    pub metrics: Metrics,
    pub lifecycle: &'static Lifecycle,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub metrics_token: Option<MetricsToken>,
    pub stream_idle_timeout: Option<Duration>,
    /// The non-secret part of the configuration, shown by `/version`.
    pub public_config: serde_json::Value,
    pub health: Arc<HealthRegistry>,
    /// What the health checks saw of each backend, for the admin API.
    pub health_log: Arc<HealthLog>,
    pub defaults: ServerDefaults,
    /// The catalog's MCP-level check of each server (set once it runs).
    pub mcp_health: crate::catalog::health::McpHealth,
    /// False until the first routing snapshot from the registry is in:
    /// `/ready` answers 503 meanwhile.
    routing_loaded: AtomicBool,
}

impl Runtime {
    /// Fails only if the session key must be random and the OS random
    /// source fails.
    pub fn build(
        settings: &Settings,
        health: Arc<HealthRegistry>,
        health_log: Arc<HealthLog>,
        lifecycle: &'static Lifecycle,
    ) -> Result<Self, KeyError> {
        let sessions = SessionKeys::from_secrets(
            settings.sessions.secret.as_ref().map(|s| s.expose()),
            settings.auth.jwt.secret.as_ref().map(|s| s.expose()),
        )?;
        let public_config = json!({
            "mcp_client_auth_enabled": settings.auth.mcp_client_auth_enabled,
            "trust_proxy_auth": settings.auth.trust_proxy_auth,
            "proxy_user_header": settings.auth.proxy_user_header.as_str(),
            "proxy_user_claim": settings.auth.proxy_user_claim,
            "auth_required": settings.auth.auth_required,
            "trusted_proxies": settings.auth.trusted_proxies.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "enable_header_passthrough": settings.headers.enable_header_passthrough,
        });
        let defaults = ServerDefaults::from_settings(settings);
        Ok(Runtime {
            global_auth: defaults.global_auth.clone(),
            sessions,
            session_ttl: settings.sessions.ttl,
            metrics: Metrics::new(settings.observability.metrics_max_users),
            lifecycle,
            connect_timeout: settings.upstream.connect_timeout,
            read_timeout: settings.upstream.read_timeout,
            metrics_token: settings
                .observability
                .metrics_token
                .as_ref()
                .map(|t| MetricsToken::new(t.expose())),
            stream_idle_timeout: settings.upstream.stream_idle_timeout,
            public_config,
            health,
            health_log,
            defaults,
            mcp_health: Default::default(),
            routing_loaded: AtomicBool::new(true),
        })
    }

    pub fn routing_loaded(&self) -> bool {
        self.routing_loaded.load(Ordering::Acquire)
    }

    /// The registry sync sets it false before its first load and true once
    /// that load is applied; a YAML-only gateway never touches it.
    pub fn set_routing_loaded(&self, loaded: bool) {
        self.routing_loaded.store(loaded, Ordering::Release);
    }
}

/// Every header name that carries identity anywhere in a server set:
/// `PROXY_USER_HEADER` and each server's `proxy_header`. None is ever taken
/// from a client, for any server: a server that trusts `X-Employee-Id`
/// cannot tell the gateway's value from a client's that another server's
/// passthrough list let through.
///
/// A virtual server's `proxy_header` counts too: a header that
/// authenticates a virtual server's callers is identity as well.
pub fn identity_header_names_with(
    proxy_user_header: &HeaderName,
    specs: &[ServerSpec],
    virtuals: &[VirtualServerSpec],
) -> Vec<HeaderName> {
    let mut names = vec![proxy_user_header.clone()];
    let declared = specs
        .iter()
        .filter_map(|s| s.proxy_header.as_ref())
        .chain(virtuals.iter().filter_map(|v| v.proxy_header.as_ref()));
    for name in declared {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    #[test]
    fn identity_headers_span_every_server() {
        let yaml = "servers:\n  - {name: a, urls: [http://h/mcp], auth_mode: proxy, proxy_header: X-Employee-Id}\n  - {name: b, urls: [http://h/mcp], passthrough_headers: [X-Employee-Id]}\n  - {name: c, urls: [http://h/mcp], auth_mode: proxy, proxy_header: X-Employee-Id}\n";
        let s = Settings::load(
            &Source::from_pairs([
                ("MCP_CLIENT_AUTH_ENABLED", "false"),
                ("TRUST_PROXY_AUTH", "true"),
                ("PROXY_USER_HEADER", "Remote-User"),
            ]),
            Some(("f", yaml)),
        )
        .unwrap();
        let names: Vec<String> =
            identity_header_names_with(&s.auth.proxy_user_header, &s.servers, &[])
                .iter()
                .map(|n| n.as_str().to_string())
                .collect();
        assert_eq!(names, ["remote-user", "x-employee-id"]);
    }
}
