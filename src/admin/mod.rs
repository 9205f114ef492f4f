//! The admin service: a small axum app beside the data plane, on
//! `ADMIN_HOST:ADMIN_PORT`, serving the registry's JSON API, login, the
//! OpenAPI document and the admin page. It reads and writes servers only
//! through [`Registry`], virtual servers only through [`VirtualRegistry`],
//! and backend health only through [`HealthView`].

mod api;
pub mod auth;
mod conflicts;
mod effective;
mod error;
mod guard;
pub mod json;
mod openapi;
mod page;
mod throttle;
mod virtual_servers;

#[cfg(test)]
mod test_registry;
#[cfg(test)]
mod tests;

pub use auth::{AuthConfig, Authenticator};
pub use effective::effective_config;
pub use error::ApiError;

use crate::registry::{HealthView, Registry, VirtualRegistry};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the admin service works with; cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    pub registry: Arc<dyn Registry>,
    pub virtuals: Arc<dyn VirtualRegistry>,
    pub health: Arc<dyn HealthView>,
    /// The effective configuration with secrets redacted, as the caller
    /// built it; served by `GET /api/config`.
    pub effective_config: Arc<serde_json::Value>,
    pub auth: Arc<Authenticator>,
}

impl AdminState {
    pub fn new(
        registry: Arc<dyn Registry>,
        virtuals: Arc<dyn VirtualRegistry>,
        health: Arc<dyn HealthView>,
        effective_config: serde_json::Value,
        auth: AuthConfig,
    ) -> Result<Self, String> {
        if !auth.required {
            log::warn!(
                "AUTH_REQUIRED=false: THE ADMIN API IS OPEN. Anyone who can reach the admin \
                 service can register, change and delete MCP servers without logging in"
            );
        } else if auth.admin_password.is_none() {
            log::warn!(
                "PLATFORM_ADMIN_PASSWORD is not set: nobody can log in to the admin service \
                 (admin JWTs still work when JWT_SECRET_KEY is set)"
            );
        }
        Ok(AdminState {
            registry,
            virtuals,
            health,
            effective_config: Arc::new(effective_config),
            auth: Arc::new(Authenticator::new(auth)?),
        })
    }
}

/// Every route the service serves, as (method, path): what the OpenAPI
/// document must describe, no more and no less (tested).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/app.js"),
    ("GET", "/style.css"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/openapi.json"),
    ("POST", "/auth/login"),
    ("POST", "/auth/logout"),
    ("GET", "/api/servers"),
    ("POST", "/api/servers"),
    ("GET", "/api/servers/{name}"),
    ("PUT", "/api/servers/{name}"),
    ("PATCH", "/api/servers/{name}"),
    ("DELETE", "/api/servers/{name}"),
    ("GET", "/api/servers/{name}/health"),
    ("GET", "/api/virtual-servers"),
    ("POST", "/api/virtual-servers"),
    ("GET", "/api/virtual-servers/{name}"),
    ("PUT", "/api/virtual-servers/{name}"),
    ("PATCH", "/api/virtual-servers/{name}"),
    ("DELETE", "/api/virtual-servers/{name}"),
    ("GET", "/api/audit"),
    ("GET", "/api/config"),
];

fn method_not_allowed() -> MethodRouter<AdminState> {
    MethodRouter::new().fallback(|| async {
        ApiError::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this route",
        )
    })
}

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route(
            "/api/servers",
            get(api::list_servers)
                .post(api::create_server)
                .merge(method_not_allowed()),
        )
        .route(
            "/api/servers/{name}",
            get(api::get_server)
                .put(api::replace_server)
                .patch(api::patch_server)
                .delete(api::delete_server)
                .merge(method_not_allowed()),
        )
        .route(
            "/api/servers/{name}/health",
            get(api::server_health).merge(method_not_allowed()),
        )
        .route(
            "/api/virtual-servers",
            get(virtual_servers::list)
                .post(virtual_servers::create)
                .merge(method_not_allowed()),
        )
        .route(
            "/api/virtual-servers/{name}",
            get(virtual_servers::get)
                .put(virtual_servers::replace)
                .patch(virtual_servers::patch)
                .delete(virtual_servers::delete)
                .merge(method_not_allowed()),
        )
        .route("/api/audit", get(api::audit).merge(method_not_allowed()))
        .route("/api/config", get(api::config).merge(method_not_allowed()))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::require_admin,
        ));
    Router::new()
        .route("/", get(page::index).merge(method_not_allowed()))
        .route("/app.js", get(page::script).merge(method_not_allowed()))
        .route("/style.css", get(page::style).merge(method_not_allowed()))
        .route("/health", get(api::health).merge(method_not_allowed()))
        .route("/ready", get(api::ready).merge(method_not_allowed()))
        .route(
            "/openapi.json",
            get(api::openapi).merge(method_not_allowed()),
        )
        .route("/auth/login", post(api::login).merge(method_not_allowed()))
        .route(
            "/auth/logout",
            post(api::logout).merge(method_not_allowed()),
        )
        .merge(api)
        .fallback(|| async { ApiError::no_route() })
        .layer(DefaultBodyLimit::max(error::BODY_LIMIT))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Same for every response: nothing of the page may come from elsewhere,
/// be framed, or be cached.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Serves the admin app on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(admin).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The admin service, its socket bound at start-up so a taken
/// `ADMIN_PORT` stops the gateway at once instead of leaving it without
/// its admin API. The process runs it beside the registry sync (`app`).
pub struct AdminService {
    pub addr: SocketAddr,
    pub state: AdminState,
    /// Taken by the first [`AdminService::run`].
    listener: std::sync::Mutex<Option<Listener>>,
}

enum Listener {
    Bound(std::net::TcpListener),
    /// `--upgrade` and the old process still holds the port.
    AfterUpgrade,
}

/// How long a process started with `--upgrade` keeps trying to bind
/// `ADMIN_PORT` while the old process still holds it: the old one closes
/// its admin listener when it stops accepting, 5 s after SIGQUIT; the rest
/// is room for a slow operator.
const UPGRADE_BIND_DEADLINE: Duration = Duration::from_secs(60);
const UPGRADE_BIND_RETRY: Duration = Duration::from_millis(50);

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl AdminService {
    /// Everything from the settings (`ADMIN_HOST:ADMIN_PORT`, the accounts,
    /// the effective configuration); binds the socket and hashes the admin
    /// password, the one slow step of start-up. With `upgrade`, a port the
    /// old process still holds is bound later, in [`AdminService::run`]:
    /// the admin listener is not among the sockets Pingora hands over.
    pub fn from_settings(
        settings: &crate::config::Settings,
        registry: Arc<dyn Registry>,
        virtuals: Arc<dyn VirtualRegistry>,
        health: Arc<dyn HealthView>,
        upgrade: bool,
    ) -> Result<Self, String> {
        let admin = &settings.admin.service;
        let wanted = SocketAddr::new(admin.host, admin.port);
        let listener = match bind(wanted) {
            Ok(listener) => Listener::Bound(listener),
            Err(e) if upgrade && e.kind() == std::io::ErrorKind::AddrInUse => {
                Listener::AfterUpgrade
            }
            Err(e) => {
                return Err(format!(
                    "ADMIN_HOST/ADMIN_PORT: cannot listen on {wanted}: {e}"
                ))
            }
        };
        Ok(AdminService {
            addr: match &listener {
                Listener::Bound(l) => l.local_addr().unwrap_or(wanted),
                Listener::AfterUpgrade => wanted,
            },
            state: AdminState::new(
                registry,
                virtuals,
                health,
                effective_config(settings),
                AuthConfig::from_settings(settings),
            )?,
            listener: std::sync::Mutex::new(Some(listener)),
        })
    }

    /// Binds `ADMIN_PORT` once the old process lets go of it, or gives up
    /// at the deadline (or at shutdown) with an error logged: the data
    /// plane has already taken over, so failing the process here would
    /// turn a missing admin API into an outage.
    async fn bind_after_upgrade(
        &self,
        shutdown: &mut ShutdownWatch,
    ) -> Option<std::net::TcpListener> {
        log::info!(
            "admin service: {} is still the old process's; binding it once that one lets go",
            self.addr
        );
        let started = std::time::Instant::now();
        loop {
            match bind(self.addr) {
                Ok(listener) => {
                    log::info!(
                        "admin service: bound {} after {:?}",
                        self.addr,
                        started.elapsed()
                    );
                    return Some(listener);
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && started.elapsed() < UPGRADE_BIND_DEADLINE => {}
                Err(e) => {
                    log::error!(
                        "admin service: cannot listen on {} ({e}); the admin API is off until a restart",
                        self.addr
                    );
                    return None;
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return None,
                _ = tokio::time::sleep(UPGRADE_BIND_RETRY) => {}
            }
        }
    }

    /// Serves until `shutdown` changes; a second call returns at once.
    pub async fn run(&self, mut shutdown: ShutdownWatch) {
        let taken = self.listener.lock().ok().and_then(|mut l| l.take());
        let listener = match taken {
            None => return,
            Some(Listener::Bound(listener)) => listener,
            Some(Listener::AfterUpgrade) => match self.bind_after_upgrade(&mut shutdown).await {
                Some(listener) => listener,
                None => return,
            },
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                log::error!("admin service: cannot listen on {}: {e}", self.addr);
                return;
            }
        };
        log::info!("admin service listening on http://{}", self.addr);
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = serve(listener, self.state.clone(), stop).await {
            log::error!("admin service stopped: {e}");
        }
    }
}
