//! Idle upstream connections of the POST relay (see `post_relay`), kept per
//! backend address for the next POST.
//!
//! Pingora's own pool holds its `Stream`s; the relay waits on a plain
//! `TcpStream` (readiness without a buffer), so it keeps its own. A kept
//! connection has no task of its own: a connection the upstream closed
//! while idle is noticed when it is taken (and dropped then), or when its
//! idle time is up (`put` sweeps every backend at most once a second).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long a connection may wait idle in the pool: under the shortest
/// keep-alive of the usual MCP servers (Node's and uvicorn's 5 s), so that
/// the gateway does not send a POST just as the upstream closes the
/// connection (a POST is not sent again once written: a tool may have run).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// At most this many idle connections per backend; more are closed.
pub const PER_BACKEND: usize = 64;

/// The process's pool: the same backend address is the same upstream
/// whichever server or reload names it.
pub fn shared() -> &'static IdlePool {
    static POOL: LazyLock<IdlePool> = LazyLock::new(IdlePool::default);
    &POOL
}

#[derive(Default)]
pub struct IdlePool {
    idle: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_backend: HashMap<SocketAddr, Vec<Idle>>,
    swept: Option<Instant>,
}

struct Idle {
    stream: TcpStream,
    since: Instant,
}

impl IdlePool {
    /// The most recently kept live connection to `addr`, if any.
    pub fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        let now = Instant::now();
        loop {
            let idle = {
                let mut kept = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                kept.by_backend.get_mut(&addr)?.pop()?
            };
            if now.duration_since(idle.since) < IDLE_TIMEOUT && still_open(&idle.stream) {
                return Some(idle.stream);
            }
        }
    }

    /// Keeps `stream` for the next request to `addr`. At most once a
    /// second it first drops every backend's expired connections, so that
    /// the addresses of replicas that went away hold nothing for long.
    pub fn put(&self, addr: SocketAddr, stream: TcpStream) {
        let now = Instant::now();
        let mut kept = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if kept
            .swept
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            kept.swept = Some(now);
            kept.by_backend.retain(|_, idle| {
                idle.retain(|i| now.duration_since(i.since) < IDLE_TIMEOUT);
                !idle.is_empty()
            });
        }
        let idle = kept.by_backend.entry(addr).or_default();
        if idle.len() < PER_BACKEND {
            idle.push(Idle { stream, since: now });
        }
    }
}

/// An idle HTTP/1 connection has nothing to read: a close (0) or stray
/// bytes mean it cannot carry another request.
fn still_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn keeps_live_connections_and_drops_closed_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pool = IdlePool::default();
        assert!(pool.take(addr).is_none());

        let client = TcpStream::connect(addr).await.expect("connect");
        let (server_side, _) = listener.accept().await.expect("accept");
        pool.put(addr, client);
        let again = pool.take(addr).expect("a live connection is kept");
        assert!(pool.take(addr).is_none(), "taken once");

        // Closed by the upstream while idle: not handed out.
        pool.put(addr, again);
        drop(server_side);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.take(addr).is_none());

        // Stray bytes from the upstream: not handed out either.
        let client = TcpStream::connect(addr).await.expect("connect");
        let (mut server_side, _) = listener.accept().await.expect("accept");
        server_side.write_all(b"HTTP/1.1 200").await.expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        pool.put(addr, client);
        assert!(pool.take(addr).is_none());
    }

    #[tokio::test]
    async fn holds_at_most_per_backend() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pool = IdlePool::default();
        let mut servers = Vec::new();
        for _ in 0..PER_BACKEND + 3 {
            let client = TcpStream::connect(addr).await.expect("connect");
            servers.push(listener.accept().await.expect("accept"));
            pool.put(addr, client);
        }
        let mut taken = 0;
        while pool.take(addr).is_some() {
            taken += 1;
        }
        assert_eq!(taken, PER_BACKEND);
    }
}
