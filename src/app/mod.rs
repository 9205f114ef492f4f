//! Assembles the Pingora server from validated settings: the proxy service,
//! the health checks, periodic re-discovery, SIGHUP reload, the registry
//! sync with the admin API, and the draining shutdown.

mod readiness;
pub(crate) mod registry;

use crate::admin::AdminService;
use crate::catalog::{CatalogFederation, CatalogOptions};
use crate::config::{ConfigError, Settings, Source};
use crate::federation::direct::Direct;
use crate::federation::mcp::FrontConfig;
use crate::federation::service::{self, BoundSocket};
use crate::federation::SharedFederation;
use crate::lifecycle::{self, DrainThenStop, Lifecycle};
use crate::listener_certs::ListenerCerts;
use crate::proxy::{FederationRoute, Gateway, KeepAlive, FEDERATION_METRICS_LABEL};
use crate::registry::handle::RegistryHandle;
use crate::registry::sync::{ConfigFile, SyncOptions};
use crate::reload::ReloadOnHangup;
use crate::snapshot::Routing;
use crate::state::Runtime;
use crate::upstream;
use async_trait::async_trait;
use pingora::lb::HealthCheckService;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use registry::{RegistryService, RoutingApplier};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    routing: Arc<Routing>,
}

#[async_trait]
impl BackgroundService for Rediscovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(DISCOVERY_INTERVAL) => {}
            }
            for server in &self.routing.current().servers {
                if let Err(e) = server.upstream.discover().await {
                    log::warn!("server {}: discovery failed: {e}", server.name);
                }
            }
        }
    }
}

/// Runs the gateway until it is told to stop; never returns. `config` is
/// the file SIGHUP reads again.
/// With `upgrade` the listening sockets come from the running gateway
/// over `UPGRADE_SOCK` (it sends them on SIGQUIT).
pub fn run(settings: Settings, config: Option<PathBuf>, upgrade: bool) -> ! {
    let lifecycle: &'static Lifecycle = Box::leak(Box::default());
    // From the start: systemd counts the watchdog from READY=1 on, and a
    // start-up that hangs is its TimeoutStartSec's to catch.
    crate::sd_notify::start_watchdog();
    let (health, health_log) = upstream::health_registry();
    let runtime = match Runtime::build(&settings, health.clone(), health_log, lifecycle) {
        Ok(runtime) => Arc::new(runtime),
        Err(e) => {
            eprintln!("mcp-gateway: {e}");
            crate::log_writer::exit(1)
        }
    };
    let routing = Arc::new(Routing::new(runtime.clone()));
    if let Err(e) = apply_once(
        &routing,
        settings.servers.clone(),
        settings.virtual_servers.clone(),
    ) {
        eprintln!("mcp-gateway: {e}");
        crate::log_writer::exit(2)
    }
    // Until the reload service listens, a SIGHUP must not end the process
    // (its default action); tokio's handler replaces this one.
    // SAFETY: setting a signal disposition to "ignore" has no preconditions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    // The YAML servers serve at once; `/ready` waits for the registry.
    runtime.set_routing_loaded(false);
    let registry = Arc::new(RegistryHandle::default());
    let applier = Arc::new(RoutingApplier::new(routing.clone(), runtime.clone()));
    applier.set_file_servers(&settings.servers);
    let admin = if settings.admin.service.enabled {
        match AdminService::from_settings(
            &settings,
            registry.clone(),
            registry.clone(),
            routing.clone(),
            upgrade,
        ) {
            Ok(admin) => Some(admin),
            Err(e) => {
                eprintln!("mcp-gateway: {e}");
                crate::log_writer::exit(2)
            }
        }
    } else {
        None
    };
    let mut sync = SyncOptions::new(
        settings.admin.database_url.clone(),
        settings.admin.encryption_secret.clone(),
    );
    // Without the file, the servers and virtual servers it declared stay
    // as they are: a data-plane replica started without it must not remove
    // them.
    sync.written = registry.written.clone();
    sync.config = config.as_ref().map(|file| ConfigFile {
        servers: settings.servers.clone(),
        virtual_servers: settings.virtual_servers.clone(),
        file: file.display().to_string(),
    });

    let conf = ServerConf {
        threads: settings.listen.worker_threads,
        // After SIGTERM the drain and the wait for in-flight requests
        // happen before Pingora's shutdown starts (see `DrainThenStop`);
        // after SIGQUIT they happen in Pingora's grace period, which
        // `exit_when_idle` ends as soon as nothing is in flight. This is
        // only the ceiling.
        grace_period_seconds: Some(settings.listen.shutdown_grace.as_secs() + 2),
        graceful_shutdown_timeout_seconds: Some(5),
        ca_file: settings.upstream.ca_file.clone(),
        upgrade_sock: settings.listen.upgrade_sock.display().to_string(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    if upgrade {
        log::info!(
            "--upgrade: waiting on {} for the running gateway's listening sockets \
             (send it SIGQUIT now)",
            settings.listen.upgrade_sock.display()
        );
        // Pingora exits on its own if no sockets come.
        crate::log_writer::flush();
    }
    // With --upgrade this blocks until the old process sends its sockets,
    // and exits 1 if none come within Pingora's retries (about 6 s).
    server.bootstrap();
    if upgrade {
        log::info!("--upgrade: listening sockets received");
    }

    let socket = match BoundSocket::bind() {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("mcp-gateway: cannot create the federation service's socket: {e}");
            crate::log_writer::exit(1)
        }
    };
    let federation_address = socket.address.clone();
    let virtuals = routing.clone();
    let catalog = Arc::new(CatalogFederation::new(
        routing.clone(),
        &CatalogOptions::from_settings(&settings),
        Box::new(move |name: &str| {
            virtuals
                .current()
                .virtual_server(name)
                .map(|v| v.scope.clone())
        }),
    ));
    runtime.mcp_health.attach(catalog.store());
    let front = FrontConfig::default();

    let listen = SocketAddr::new(settings.listen.host, settings.listen.port).to_string();
    let gateway = pingora::proxy::http_proxy(
        &server.configuration,
        Gateway {
            runtime: runtime.clone(),
            routing: routing.clone(),
            federation: Some(FederationRoute {
                address: federation_address,
                direct: Some(Direct {
                    fed: catalog.clone(),
                    sessions: front.direct.clone(),
                }),
                metrics: runtime.metrics.server(FEDERATION_METRICS_LABEL),
            }),
        },
    );
    let mut proxy = Service::new(
        "mcp-gateway".to_string(),
        KeepAlive::new(
            gateway,
            settings.listen.keepalive_timeout,
            settings.listen.request_header_timeout,
        )
        .counting_arrivals(lifecycle),
    );
    let mut listener = ListenerConfig::tcp(listen.clone())
        .l4_buffer(L4BufferSettings::default().read(DOWNSTREAM_READ_BUFFER));
    // Read again on SIGHUP: the reload service shares them.
    let listener_certs = match &settings.tls {
        None => None,
        Some(tls) => {
            let certs = ListenerCerts::load(tls.clone())
                .map(Arc::new)
                .and_then(|certs| Ok((crate::tls::listener_settings(certs.clone())?, certs)));
            match certs {
                Ok((tls, certs)) => {
                    listener = listener.tls(tls);
                    Some(certs)
                }
                Err(e) => {
                    eprintln!("mcp-gateway: configuration error: {e}");
                    crate::log_writer::exit(2)
                }
            }
        }
    };
    proxy.add_listener(listener);

    let mut checks = HealthCheckService::new(health);
    checks.health_check_frequency = Some(settings.upstream.health_check_interval);
    checks.parallel_health_check = true;

    server.add_service(proxy);
    server.add_service(background_service("health checks", checks));
    server.add_service(background_service(
        "discovery",
        Rediscovery {
            routing: routing.clone(),
        },
    ));
    server.add_service(background_service(
        "federation",
        FederationService {
            socket: Mutex::new(Some(socket)),
            catalog,
            front,
        },
    ));
    server.add_service(background_service(
        "reload",
        ReloadOnHangup {
            registry: registry.clone(),
            applier: applier.clone(),
            config,
            listener_certs,
        },
    ));
    server.add_service(background_service(
        "registry",
        RegistryService {
            options: Mutex::new(Some(sync)),
            applier,
            registry,
            admin,
        },
    ));
    let scheme = match &settings.tls {
        Some(t) if t.client_ca_file.is_some() => "https (client certificates required)",
        Some(_) => "https",
        None => "http",
    };
    server.add_service(background_service(
        "sd-notify ready",
        readiness::Readiness {
            runtime: runtime.clone(),
            listen: SocketAddr::new(settings.listen.host, settings.listen.port),
            upgrade,
            status: format!("serving on {scheme}://{listen}"),
        },
    ));
    log::info!(
        "mcp-gateway {} listening on {scheme}://{listen} with {} server(s)",
        env!("CARGO_PKG_VERSION"),
        routing.current().servers.len()
    );
    if runtime.metrics_token.is_none() {
        log::info!(
            "METRICS_TOKEN is not set: /metrics leaves out the per-user series {}",
            crate::metrics::PER_USER_METRIC
        );
    }
    lifecycle::exit_when_idle(
        lifecycle,
        server.watch_execution_phase(),
        settings.listen.shutdown_grace,
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainThenStop {
            lifecycle,
            drain: settings.listen.shutdown_drain,
            grace: settings.listen.shutdown_grace,
            upgrade_sock: settings.listen.upgrade_sock.clone(),
        }),
    });
    log::info!("mcp-gateway stopped");
    crate::log_writer::exit(0)
}

/// Builds the first snapshot, resolving every replica before the listener
/// opens so the first request already has backends to choose from.
fn apply_once(
    routing: &Routing,
    specs: Vec<crate::config::ServerSpec>,
    virtuals: Vec<crate::config::VirtualServerSpec>,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the discovery runtime: {e}"))?;
    runtime
        .block_on(async {
            routing.apply_virtual_servers(virtuals).await?;
            routing.apply(specs).await
        })
        .map(|_| ())
        .map_err(|e| format!("configuration error: {e}"))
}

/// The internal federation service on its Unix socket, on this background
/// service's runtime, until the gateway stops; then the socket's directory
/// is removed.
struct FederationService {
    socket: Mutex<Option<BoundSocket>>,
    catalog: Arc<CatalogFederation>,
    /// Shares its `direct` sessions with the data plane.
    front: FrontConfig,
}

#[async_trait]
impl BackgroundService for FederationService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(socket) = self.socket.lock().ok().and_then(|mut s| s.take()) else {
            return;
        };
        let federation: SharedFederation = self.catalog.clone();
        let front = crate::federation::front::router_with(federation.clone(), self.front.clone());
        let app = service::app_with(federation, socket.address.secret.clone(), front);
        let stop = CancellationToken::new();
        let catalog = self.catalog.clone();
        let refresh = tokio::spawn({
            let stop = stop.clone();
            async move { catalog.run(stop).await }
        });
        service::serve(socket, app, async move {
            let _ = shutdown.changed().await;
        })
        .await;
        stop.cancel();
        let _ = refresh.await;
    }
}
