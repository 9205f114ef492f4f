//! Readiness and graceful shutdown. On SIGTERM the gateway first reports
//! `/ready` 503 for `SHUTDOWN_DRAIN_SECONDS` while still serving, so load
//! balancers stop sending new traffic; then it waits for in-flight requests
//! (at most `SHUTDOWN_GRACE_SECONDS`) and only then lets Pingora close the
//! listeners. Pingora's own SIGTERM path closes listeners first, which would
//! turn a rolling deploy into refused connections.

use crate::sd_notify;
use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    upgrading: AtomicBool,
    in_flight: AtomicUsize,
    /// HTTP/1 requests from their first byte (see `proxy::keepalive`).
    arriving: AtomicUsize,
}

impl Lifecycle {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// SIGQUIT came: the listeners go to a new process, and what is in
    /// flight here finishes within the grace period (see [`exit_when_idle`]).
    pub fn is_upgrading(&self) -> bool {
        self.upgrading.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request until the guard drops, whichever way the request ends.
    pub fn track(&'static self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// Counts an HTTP/1 request from its first byte, before the proxy has
    /// parsed its header and [`track`](Self::track)s it: the exit after a
    /// stop must not cut a request a lingering keep-alive connection has
    /// begun to receive. Not reported as in flight (it would count twice).
    pub fn track_arrival(&'static self) -> InFlight {
        self.arriving.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.arriving)
    }

    /// Nothing in flight and no request arriving.
    pub fn is_idle(&self) -> bool {
        self.in_flight() == 0 && self.arriving.load(Ordering::Relaxed) == 0
    }
}

/// Lives as long as the process, so a request's guard is a plain reference.
pub struct InFlight(&'static AtomicUsize);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Replaces Pingora's signal handling to drain before closing listeners.
pub struct DrainThenStop {
    pub lifecycle: &'static Lifecycle,
    pub drain: Duration,
    pub grace: Duration,
    /// Where a process started with `--upgrade` waits for the sockets.
    pub upgrade_sock: PathBuf,
}

/// How long SIGQUIT waits for a new process to wait on `UPGRADE_SOCK`
/// (the order "SIGQUIT, then start the new binary" works too).
const UPGRADE_PEER_WAIT: Duration = Duration::from_secs(5);

impl DrainThenStop {
    /// Whether a socket file is at `upgrade_sock`, waiting up to
    /// [`UPGRADE_PEER_WAIT`]. Pingora's own SIGQUIT path shuts down even
    /// when nobody takes the sockets, so a stray SIGQUIT would be an
    /// outage. The file is only looked at: connecting to it would be taken
    /// by the new process as the transfer itself.
    async fn new_process_waits(&self) -> bool {
        let deadline = Instant::now() + UPGRADE_PEER_WAIT;
        loop {
            let is_socket =
                std::fs::metadata(&self.upgrade_sock).is_ok_and(|m| m.file_type().is_socket());
            if is_socket || Instant::now() >= deadline {
                return is_socket;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for DrainThenStop {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            log::error!("cannot install signal handlers; SIGTERM will not drain");
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => {
                    sd_notify::notify(&sd_notify::stopping("SIGINT: stopping now"));
                    return ShutdownSignal::FastShutdown;
                }
                _ = quit.recv() => {}
            }
            if !self.new_process_waits().await {
                log::error!(
                    "SIGQUIT ignored: no `mcp-gateway --upgrade` waits on {}; still serving",
                    self.upgrade_sock.display()
                );
                continue;
            }
            // Pingora sends the listeners to the new process now and keeps
            // accepting beside it for 5 s; then it stops accepting and
            // `exit_when_idle` waits for what is in flight.
            self.lifecycle.upgrading.store(true, Ordering::Relaxed);
            // Not STOPPING=1: were the new process in this unit (it says
            // MAINPID=, which NotifyAccess=all would accept), this one's
            // STOPPING=1 would stop the unit under it. In a unit of its own
            // this process ends like any main process, by exiting. Nothing
            // else is sent from here on but the watchdog's pings.
            sd_notify::notify(&sd_notify::status(&format!(
                "SIGQUIT: handing the listening sockets to the new process; then up to {:?} \
                 for requests in flight",
                self.grace
            )));
            log::info!(
                "SIGQUIT: handing the listening sockets to the new process; in-flight \
                 requests and streams get up to {:?} once this one stops accepting (in 5 s)",
                self.grace
            );
            // Pingora no longer listens for signals from here on; SIGINT
            // must still end the process at once.
            tokio::spawn(async move {
                if int.recv().await.is_some() {
                    log::warn!("SIGINT during the upgrade: exiting now");
                    crate::log_writer::exit(0);
                }
            });
            return ShutdownSignal::GracefulUpgrade;
        }
        self.lifecycle.start_draining();
        sd_notify::notify(&sd_notify::stopping(&format!(
            "draining: /ready answers 503 for {:?}, then up to {:?} for requests in flight",
            self.drain, self.grace
        )));
        log::info!(
            "SIGTERM: /ready now answers 503; draining for {:?} before closing listeners",
            self.drain
        );
        tokio::select! {
            _ = tokio::time::sleep(self.drain) => {}
            _ = int.recv() => {
                sd_notify::notify(&sd_notify::stopping("SIGINT: stopping now"));
                return ShutdownSignal::FastShutdown;
            }
        }
        sd_notify::notify(&sd_notify::status(&format!(
            "drain over; up to {:?} for {} requests in flight, then the listeners close",
            self.grace,
            self.lifecycle.in_flight()
        )));
        let deadline = Instant::now() + self.grace;
        while !self.lifecycle.is_idle() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !self.lifecycle.is_idle() {
            let left = self.lifecycle.in_flight();
            log::warn!("grace period over with {left} requests in flight; closing them");
        }
        ShutdownSignal::GracefulTerminate
    }
}

/// Pingora's grace period is one fixed sleep for every shutdown; the
/// gateway wants "until nothing is in flight, at most the grace". So the
/// grace period is set longer than that, and this thread ends the process
/// once Pingora's shutdown has started and, after an upgrade, the last
/// request or stream has finished or `grace` has passed since the old
/// process stopped accepting. After SIGTERM `DrainThenStop` has already
/// waited for in-flight requests, so the process exits after the short
/// pause Pingora's own grace period used to be.
pub fn exit_when_idle(
    lifecycle: &'static Lifecycle,
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    grace: Duration,
) {
    use tokio::sync::broadcast::error::RecvError;
    let watcher = move || {
        loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                // Pingora is gone: its own exit path runs.
                Err(RecvError::Closed) => return,
            }
        }
        let started = Instant::now();
        let deadline = started
            + if lifecycle.is_upgrading() {
                grace
            } else {
                Duration::ZERO
            };
        // A connection accepted just before the stop has not sent its
        // first byte yet, so nothing counts it.
        std::thread::sleep(SETTLE);
        while !lifecycle.is_idle() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Idle keep-alive connections close here, with the process (see
        // `proxy::keepalive`).
        if !lifecycle.is_idle() {
            let left = lifecycle.in_flight();
            log::warn!("grace period over with {left} requests in flight; closing them");
        } else {
            log::info!(
                "nothing in flight after {:?} of the grace period",
                started.elapsed()
            );
        }
        log::info!("mcp-gateway stopped");
        crate::log_writer::exit(0)
    };
    // Detached: it ends the process itself.
    if let Err(e) = std::thread::Builder::new()
        .name("exit-when-idle".into())
        .spawn(watcher)
    {
        log::warn!("cannot start the exit thread ({e}); Pingora's whole grace period applies");
    }
}

/// What Pingora's grace period was before [`exit_when_idle`]: time for the
/// first byte of a connection accepted at the stop to arrive and be counted.
const SETTLE: Duration = Duration::from_secs(1);
