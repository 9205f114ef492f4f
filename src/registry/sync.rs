//! The registry sync: opens the registry (retrying while the database is
//! unreachable), seeds it from the YAML file, hands the enabled servers and
//! virtual servers to the data plane, then follows every change: PostgreSQL notifies each
//! write, SQLite is polled; both also re-check on a slower timer in case a
//! notification was lost. While the database is away the data plane keeps
//! the servers it has; the sync retries until it is back.
//!
//! Wiring, from a Pingora `BackgroundService` (as `app.rs`'s `Rediscovery`):
//!
//! ```text
//! async fn start(&self, shutdown: ShutdownWatch) {
//!     let mut options = SyncOptions::new(settings.admin.database_url.clone(),
//!                                        settings.admin.encryption_secret.clone());
//!     options.config = config_file.map(|file| ConfigFile {
//!         servers: settings.servers.clone(),
//!         virtual_servers: settings.virtual_servers.clone(),
//!         file,
//!     });
//!     if let Err(e) = sync::run(options, apply, on_ready, shutdown).await {
//!         eprintln!("mcp-gateway: {e}");   // schema too new, failed migration,
//!         std::process::exit(1);           // another AUTH_ENCRYPTION_SECRET
//!     }
//! }
//! ```

use super::database_url::DatabaseUrl;
use super::store::{Dialect, Enabled, OpenError, SqlRegistry, NOTIFY_CHANNEL};
use super::Registry;
use crate::config::{Secret, ServerSpec, VirtualServerSpec};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Receives the enabled servers and virtual servers every time they
/// change, with the registry generation they were read at (so a late, older
/// read can be told from a newer one). Never called with what a failed read
/// returned.
pub type ApplySpecs = Arc<dyn Fn(Enabled) + Send + Sync>;

/// The YAML file's records, and the file's name.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub servers: Vec<ServerSpec>,
    pub virtual_servers: Vec<VirtualServerSpec>,
    pub file: String,
}
/// Called once, after the first servers were applied, with the open
/// registry (for the admin API and `/ready`).
pub type OnReady = Box<dyn FnOnce(Arc<SqlRegistry>) + Send>;

pub struct SyncOptions {
    pub database_url: DatabaseUrl,
    pub encryption_secret: Secret,
    /// The YAML file's records. `None` (no `--config`) leaves
    /// configuration-owned records as they are: a replica started without
    /// the file must not remove what the file declared.
    pub config: Option<ConfigFile>,
    /// First wait after a failure; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// SQLite: how often the generation is read.
    pub poll_interval: Duration,
    /// PostgreSQL: how often the generation is read besides notifications.
    pub recheck_interval: Duration,
    /// Told of every write this process made (the admin API's), so SQLite
    /// polling reads it at once instead of at the next tick.
    pub written: Arc<tokio::sync::Notify>,
}

impl SyncOptions {
    pub fn new(database_url: DatabaseUrl, encryption_secret: Secret) -> Self {
        SyncOptions {
            database_url,
            encryption_secret,
            config: None,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            // A change must reach every process within 2 s.
            poll_interval: Duration::from_secs(1),
            recheck_interval: Duration::from_secs(30),
            written: Arc::default(),
        }
    }
}

/// Exponential back-off: `initial`, doubling, at most `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    pub failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
            failures: 0,
        }
    }

    /// The wait before the next attempt after one more failure.
    pub fn fail(&mut self) -> Duration {
        let wait = self.next;
        self.failures += 1;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
        self.failures = 0;
    }
}

/// Sleeps `d` unless told to stop first; true when stopping.
async fn stopped_during(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
        _ = tokio::time::sleep(d) => false,
    }
}

/// Runs until `shutdown` says stop (then `Ok`), or fails at start-up for a
/// reason retrying cannot fix (then `Err`: the process should exit with it).
/// Meant for a Pingora `BackgroundService`'s `start`.
pub async fn run(
    options: SyncOptions,
    apply: ApplySpecs,
    on_ready: OnReady,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), OpenError> {
    let Some((registry, generation)) = open_and_load(&options, &apply, &mut shutdown).await? else {
        return Ok(());
    };
    let registry = Arc::new(registry);
    on_ready(registry.clone());
    let follower = Follower {
        registry,
        apply,
        applied: generation,
        backoff: Backoff::new(options.retry_initial, options.retry_max),
    };
    match follower.registry.dialect() {
        Dialect::Sqlite => {
            follower
                .poll(options.poll_interval, &options.written, shutdown)
                .await
        }
        Dialect::Postgres => {
            let retry = Backoff::new(options.retry_initial, options.retry_max);
            follower
                .listen(
                    &options.database_url,
                    options.recheck_interval,
                    retry,
                    shutdown,
                )
                .await
        }
    }
    Ok(())
}

/// Phase one: connect, migrate, seed, load, apply. `None` if told to stop.
async fn open_and_load(
    options: &SyncOptions,
    apply: &ApplySpecs,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<(SqlRegistry, i64)>, OpenError> {
    let url = &options.database_url;
    let mut backoff = Backoff::new(options.retry_initial, options.retry_max);
    loop {
        let attempt = async {
            let registry = SqlRegistry::connect(url, &options.encryption_secret).await?;
            if let Some(ConfigFile {
                servers,
                virtual_servers,
                file,
            }) = &options.config
            {
                match registry.upsert_config(servers, virtual_servers, file).await {
                    Ok(summary) if !summary.is_empty() => log::info!(
                        "registry: {file}: {} created, {} updated, {} removed",
                        summary.created.len(),
                        summary.updated.len(),
                        summary.removed.len()
                    ),
                    Ok(_) => {}
                    Err(super::RegistryError::Unavailable(why)) => {
                        return Err(OpenError::Unreachable(why))
                    }
                    Err(e) => return Err(OpenError::Fatal(format!("{file}: {e}"))),
                }
            }
            let enabled = registry
                .load_enabled()
                .await
                .map_err(|e| OpenError::Unreachable(e.to_string()))?;
            Ok::<_, OpenError>((registry, enabled))
        };
        match attempt.await {
            Ok((registry, enabled)) => {
                log::info!(
                    "registry: {} servers and {} virtual servers loaded from {}",
                    enabled.servers.len(),
                    enabled.virtual_servers.len(),
                    url.redacted()
                );
                let generation = enabled.generation;
                apply(enabled);
                return Ok(Some((registry, generation)));
            }
            Err(OpenError::Unreachable(why)) => {
                let wait = backoff.fail();
                log::warn!(
                    "registry: attempt {} failed: {why}; retrying in {:.1}s",
                    backoff.failures,
                    wait.as_secs_f64()
                );
                if stopped_during(wait, shutdown).await {
                    return Ok(None);
                }
            }
            Err(fatal) => return Err(fatal),
        }
    }
}

/// Phase two: applies every change after the first load.
struct Follower {
    registry: Arc<SqlRegistry>,
    apply: ApplySpecs,
    /// The generation whose servers the data plane runs.
    applied: i64,
    backoff: Backoff,
}

impl Follower {
    /// Reads the generation and, if it moved, reloads and applies. On
    /// failure the data plane keeps what it has; returns the wait before
    /// the next try.
    async fn check(&mut self) -> Option<Duration> {
        let result = async {
            let generation = self.registry.generation().await?;
            if generation == self.applied {
                return Ok(None);
            }
            self.registry.load_enabled().await.map(Some)
        }
        .await;
        match result {
            Ok(loaded) => {
                if self.backoff.failures > 0 {
                    log::info!("registry: database reachable again");
                    self.backoff.reset();
                }
                if let Some(enabled) = loaded {
                    log::info!(
                        "registry: generation {}, {} servers, {} virtual servers",
                        enabled.generation,
                        enabled.servers.len(),
                        enabled.virtual_servers.len()
                    );
                    self.applied = enabled.generation;
                    (self.apply)(enabled);
                }
                None
            }
            Err(e) => {
                let wait = self.backoff.fail();
                log::warn!(
                    "registry: reload attempt {} failed, routing stays as it was: {e}",
                    self.backoff.failures
                );
                Some(wait)
            }
        }
    }

    async fn poll(
        mut self,
        interval: Duration,
        written: &tokio::sync::Notify,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut wait = interval;
        loop {
            tokio::select! {
                stop = stopped_during(wait, &mut shutdown) => if stop { return },
                _ = written.notified() => {}
            }
            wait = self.check().await.unwrap_or(interval);
        }
    }

    async fn listen(
        mut self,
        url: &DatabaseUrl,
        recheck: Duration,
        retry: Backoff,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let DatabaseUrl::Postgres(raw) = url else {
            return;
        };
        // The listener lives in its own task so that no `select!` ever
        // cancels a read half-way; it only says "look".
        let (look_tx, mut look_rx) = tokio::sync::mpsc::channel::<()>(1);
        let listener = tokio::spawn(forward_notifications(raw.clone(), retry, look_tx));
        let mut ticker = tokio::time::interval(recheck);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
                _ = ticker.tick() => {}
                _ = look_rx.recv() => {}
            }
            if let Some(wait) = self.check().await {
                if stopped_during(wait, &mut shutdown).await {
                    break;
                }
            }
        }
        listener.abort();
    }
}

/// Listens on [`NOTIFY_CHANNEL`] and sends one "look" per notification, per
/// lost connection and per (re)connection (whatever was written while
/// nobody listened). Reconnects with back-off until aborted.
async fn forward_notifications(
    url: Secret,
    mut retry: Backoff,
    look: tokio::sync::mpsc::Sender<()>,
) {
    loop {
        let mut listener = match connect_listener(&url).await {
            Ok(l) => {
                retry.reset();
                l
            }
            Err(e) => {
                let wait = retry.fail();
                log::warn!(
                    "registry: attempt {} to listen for changes failed: {e}; retrying in {:.1}s",
                    retry.failures,
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        loop {
            // A full channel already holds a "look": one is enough.
            let _ = look.try_send(());
            match listener.try_recv().await {
                Ok(_) => {}
                Err(e) => {
                    log::warn!("registry: change notifications interrupted: {e}");
                    break;
                }
            }
        }
    }
}

async fn connect_listener(url: &Secret) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect(url.expose()).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(3));
        let waits: Vec<_> = (0..5).map(|_| b.fail().as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 3000, 3000]);
        assert_eq!(b.failures, 5);
        b.reset();
        assert_eq!(b.fail(), Duration::from_millis(500));
    }

    #[test]
    fn a_change_reaches_other_processes_within_two_seconds_by_design() {
        let o = SyncOptions::new(DatabaseUrl::SqliteMemory, Secret::new("k"));
        // SQLite: one poll interval plus a read; PostgreSQL: a notification.
        assert!(o.poll_interval <= Duration::from_secs(1));
        assert!(o.retry_initial <= Duration::from_secs(1));
    }
}
