//! Readiness and graceful shutdown. On SIGTERM the gateway first reports
//! `/ready` 503 for `SHUTDOWN_DRAIN_SECONDS` while still serving, so load
//! balancers stop sending new traffic; then it waits for in-flight requests
//! (at most `SHUTDOWN_GRACE_SECONDS`) and only then lets Pingora close the
//! listeners. Pingora's own SIGTERM path closes listeners first, which would
//! turn a rolling deploy into refused connections.

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
        InFlight(self)
    }
}

/// Lives as long as the process, so a request's guard is a plain reference.
pub struct InFlight(&'static Lifecycle);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
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
                _ = int.recv() => return ShutdownSignal::FastShutdown,
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
        log::info!(
            "SIGTERM: /ready now answers 503; draining for {:?} before closing listeners",
            self.drain
        );
        tokio::select! {
            _ = tokio::time::sleep(self.drain) => {}
            _ = int.recv() => return ShutdownSignal::FastShutdown,
        }
        let deadline = Instant::now() + self.grace;
        while self.lifecycle.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.lifecycle.in_flight();
        if left > 0 {
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
        // Requests whose header was still being read are not counted yet.
        std::thread::sleep(SETTLE);
        while lifecycle.in_flight() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let left = lifecycle.in_flight();
        if left > 0 {
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

/// What Pingora's grace period was before [`exit_when_idle`]: time for a
/// request already accepted to reach the proxy and be counted.
const SETTLE: Duration = Duration::from_secs(1);
