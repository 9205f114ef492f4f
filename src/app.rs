//! Assembles the Pingora server from validated settings: the proxy service,
//! the health checks, periodic re-discovery, and the draining shutdown.

use crate::config::{ConfigError, Settings, Source};
use crate::lifecycle::{DrainThenStop, Lifecycle};
use crate::proxy::{Gateway, KeepAlive};
use crate::state::GatewayState;
use crate::upstream;
use async_trait::async_trait;
use pingora::lb::HealthCheckService;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Per-connection read buffer. Pingora's default (64 KiB) is resident for
/// every idle keep-alive connection; MCP requests are a few KiB, and a
/// larger body just takes more reads.
const DOWNSTREAM_READ_BUFFER: usize = 4 * 1024;

/// How often replica host names are resolved again.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);

/// Reads `.env`, the environment and the `--config` file into [`Settings`].
pub fn load_settings(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
    let source = Source::from_process(Path::new(".env"))?;
    let yaml = match config_file {
        Some(path) => Some((
            path.display().to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?,
        )),
        None => None,
    };
    Settings::load(
        &source,
        yaml.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
    )
}

/// Re-resolves every server's replica names so DNS changes are followed.
struct Rediscovery {
    state: Arc<GatewayState>,
}

#[async_trait]
impl BackgroundService for Rediscovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(DISCOVERY_INTERVAL) => {}
            }
            for server in &self.state.servers {
                if let Err(e) = server.upstream.discover().await {
                    log::warn!("server {}: discovery failed: {e}", server.name);
                }
            }
        }
    }
}

/// Runs the gateway until it is told to stop; never returns.
pub fn run(settings: Settings) -> ! {
    let lifecycle: &'static Lifecycle = Box::leak(Box::default());
    let health = upstream::health_registry();
    let state = match GatewayState::build(&settings, &health, lifecycle) {
        Ok(state) => Arc::new(state),
        Err(e) => {
            eprintln!("mcp-gateway: {e}");
            std::process::exit(1)
        }
    };
    discover_once(&state);

    let conf = ServerConf {
        threads: settings.listen.worker_threads,
        // Draining and the wait for in-flight requests happen before
        // Pingora's shutdown starts (see `DrainThenStop`).
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        ca_file: settings.upstream.ca_file.clone(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let listen = SocketAddr::new(settings.listen.host, settings.listen.port).to_string();
    let gateway = pingora::proxy::http_proxy(
        &server.configuration,
        Gateway {
            state: state.clone(),
        },
    );
    let mut proxy = Service::new(
        "mcp-gateway".to_string(),
        KeepAlive::new(
            gateway,
            settings.listen.keepalive_timeout,
            settings.listen.request_header_timeout,
        ),
    );
    let mut listener = ListenerConfig::tcp(listen.clone())
        .l4_buffer(L4BufferSettings::default().read(DOWNSTREAM_READ_BUFFER));
    if let Some(tls) = &settings.tls {
        match crate::tls::listener_settings(tls) {
            Ok(tls) => listener = listener.tls(tls),
            Err(e) => {
                eprintln!("mcp-gateway: configuration error: {e}");
                std::process::exit(2)
            }
        }
    }
    proxy.add_listener(listener);

    let mut checks = HealthCheckService::new(health);
    checks.health_check_frequency = Some(settings.upstream.health_check_interval);
    checks.parallel_health_check = true;

    server.add_service(proxy);
    server.add_service(background_service("health checks", checks));
    server.add_service(background_service(
        "discovery",
        Rediscovery {
            state: state.clone(),
        },
    ));
    log::info!(
        "mcp-gateway {} listening on {}://{listen} with {} server(s)",
        env!("CARGO_PKG_VERSION"),
        match &settings.tls {
            Some(t) if t.client_ca_file.is_some() => "https (client certificates required)",
            Some(_) => "https",
            None => "http",
        },
        state.servers.len()
    );
    if state.metrics_token.is_none() {
        log::info!(
            "METRICS_TOKEN is not set: /metrics leaves out the per-user series {}",
            crate::metrics::PER_USER_METRIC
        );
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainThenStop {
            lifecycle,
            drain: settings.listen.shutdown_drain,
            grace: settings.listen.shutdown_grace,
        }),
    });
    log::info!("mcp-gateway stopped");
    std::process::exit(0)
}

/// Resolves every replica before the listener opens, so the first request
/// already has backends to choose from.
fn discover_once(state: &GatewayState) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the discovery runtime: {e}");
            return;
        }
    };
    runtime.block_on(async {
        for server in &state.servers {
            if let Err(e) = server.upstream.discover().await {
                log::warn!("server {}: discovery failed: {e}", server.name);
            }
        }
    });
}
