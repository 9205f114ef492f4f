//! Everything the data plane reads, built once from [`Settings`] into an
//! immutable structure: per-server auth and header policies, upstreams,
//! metric handles. The request path never touches configuration text.

use crate::config::Settings;
use crate::cors::CorsPolicy;
use crate::headers::HeaderPolicy;
use crate::identity::AuthPolicy;
use crate::lifecycle::Lifecycle;
use crate::local::MetricsToken;
use crate::metrics::{Metrics, ServerMetrics};
use crate::routing::RouteTable;
use crate::session::{KeyError, SessionKeys};
use crate::upstream::ServerUpstream;
use http::HeaderName;
use pingora::lb::HealthRegistry;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub struct ServerRuntime {
    pub name: String,
    pub auth: AuthPolicy,
    pub headers: HeaderPolicy,
    pub upstream: ServerUpstream,
    pub metrics: ServerMetrics,
}

pub struct GatewayState {
    pub servers: Vec<ServerRuntime>,
    pub routes: RouteTable,
    pub global_auth: AuthPolicy,
    pub sessions: SessionKeys,
    pub session_ttl: Duration,
    pub metrics: Metrics,
    pub lifecycle: &'static Lifecycle,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub metrics_token: Option<MetricsToken>,
    pub cors: CorsPolicy,
    pub stream_idle_timeout: Option<Duration>,
    /// The non-secret part of the configuration, shown by `/version`.
    pub public_config: serde_json::Value,
}

impl GatewayState {
    /// Fails only if the session key must be random and the OS random
    /// source fails.
    pub fn build(
        settings: &Settings,
        health: &Arc<HealthRegistry>,
        lifecycle: &'static Lifecycle,
    ) -> Result<Self, KeyError> {
        let metrics = Metrics::new(settings.observability.metrics_max_users);
        let global_auth = AuthPolicy::global(settings);
        let identity_headers = identity_header_names(settings);
        let servers: Vec<ServerRuntime> = settings
            .servers
            .iter()
            .map(|spec| {
                let auth = AuthPolicy::for_server(settings, &global_auth, spec);
                let passthrough = if settings.headers.enable_header_passthrough {
                    spec.passthrough_headers
                        .clone()
                        .unwrap_or_else(|| settings.headers.default_passthrough_headers.clone())
                } else {
                    Vec::new()
                };
                ServerRuntime {
                    name: spec.name.clone(),
                    headers: HeaderPolicy {
                        passthrough,
                        overwrite_base: settings.headers.enable_overwrite_base_headers,
                        identity_headers: identity_headers.clone(),
                        identity_out: auth
                            .proxy_header
                            .clone()
                            .unwrap_or_else(|| settings.auth.proxy_user_header.clone()),
                    },
                    auth,
                    upstream: ServerUpstream::new(&spec.name, &spec.urls, health)
                        .with_tls(spec.tls.clone()),
                    metrics: metrics.server(&spec.name),
                }
            })
            .collect();
        // Browsers may send every header some server may receive.
        let passthrough: Vec<_> = servers
            .iter()
            .flat_map(|s| s.headers.passthrough.iter().cloned())
            .collect();
        let cors = CorsPolicy::new(
            settings.cors.enabled,
            &settings.cors.allowed_origins,
            &passthrough,
        );
        let routes = RouteTable::new(servers.iter().map(|s| s.name.as_str()));
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
            "servers": settings.servers.len(),
        });
        Ok(GatewayState {
            servers,
            routes,
            global_auth,
            sessions,
            session_ttl: settings.sessions.ttl,
            metrics,
            lifecycle,
            connect_timeout: settings.upstream.connect_timeout,
            read_timeout: settings.upstream.read_timeout,
            metrics_token: settings
                .observability
                .metrics_token
                .as_ref()
                .map(|t| MetricsToken::new(t.expose())),
            cors,
            stream_idle_timeout: settings.upstream.stream_idle_timeout,
            public_config,
        })
    }
}

/// Every header name that carries identity anywhere in the configuration:
/// `PROXY_USER_HEADER` and each server's `proxy_header`. None is ever taken
/// from a client, for any server: a server that trusts `X-Employee-Id`
/// cannot tell the gateway's value from a client's that another server's
/// passthrough list let through.
pub fn identity_header_names(settings: &Settings) -> Vec<HeaderName> {
    let mut names = vec![settings.auth.proxy_user_header.clone()];
    for name in settings
        .servers
        .iter()
        .filter_map(|s| s.proxy_header.as_ref())
    {
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
        let names: Vec<String> = identity_header_names(&s)
            .iter()
            .map(|n| n.as_str().to_string())
            .collect();
        assert_eq!(names, ["remote-user", "x-employee-id"]);
    }
}
