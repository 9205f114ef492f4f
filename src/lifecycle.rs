//! Readiness and graceful shutdown. On SIGTERM the gateway first reports
//! `/ready` 503 for `SHUTDOWN_DRAIN_SECONDS` while still serving, so load
//! balancers stop sending new traffic; then it waits for in-flight requests
//! (at most `SHUTDOWN_GRACE_SECONDS`) and only then lets Pingora close the
//! listeners. Pingora's own SIGTERM path closes listeners first, which would
//! turn a rolling deploy into refused connections.

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl Lifecycle {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
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
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => return ShutdownSignal::FastShutdown,
            _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
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
