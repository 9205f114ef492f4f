//! The federation's MCP front as one axum router, for the internal service
//! to merge after its hand-over middleware (which puts `Caller` and `Scope`
//! into every request's extensions).

use super::binding::{bind_sessions, Bindings};
use super::mcp::{FrontConfig, HandlerFactory};
use super::{ws, SharedFederation};
use axum::routing::get;
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;

/// `/mcp`, `/servers/{name}/mcp` and `/ws`, with the production defaults.
pub fn router(fed: SharedFederation) -> Router {
    router_with(fed, FrontConfig::default())
}

pub fn router_with(fed: SharedFederation, config: FrontConfig) -> Router {
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(config.session_idle);
    let sessions = Arc::new(sessions);
    let shutdown = config.shutdown.clone();
    let max_sessions = config.max_sessions;
    let direct = config.direct.clone();
    let factory = HandlerFactory {
        fed,
        config: Arc::new(config),
    };
    let per_session = factory.clone();
    // The socket only hears the data plane, which has checked Host and
    // Origin against the gateway's own rules (CORS, ALLOWED_ORIGINS);
    // rmcp's loopback-only default would refuse every public host name.
    let http = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_cancellation_token(shutdown);
    let service =
        StreamableHttpService::new(move || Ok(per_session.http()), sessions.clone(), http);
    let bindings = Arc::new(Bindings::new(sessions, max_sessions, direct));
    let mcp = Router::new()
        .route_service("/mcp", service.clone())
        .route_service("/servers/{name}/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            bindings,
            bind_sessions,
        ));
    let socket = Router::new()
        .route("/ws", get(ws::upgrade))
        .with_state(factory);
    mcp.merge(socket)
}
