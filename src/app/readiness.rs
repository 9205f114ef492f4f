//! When to tell systemd `READY=1`: once this process has a socket listening
//! on the gateway's port. The first routing snapshot (the file's servers,
//! replicas resolved) is applied before the listener opens (`apply_once`);
//! the registry's servers may come later, and only `STATUS=` waits for them:
//! a registry out of reach leaves the file's servers serving (`/ready` says
//! 503 to load balancers meanwhile), and holding READY=1 back would have
//! systemd kill and restart a serving gateway every `TimeoutStartSec=`.
//!
//! Pingora binds the listener inside its service runtime after `run` and
//! has no hook for it, so the socket is looked up in `/proc/self`: one of
//! this process's descriptors must be a listening TCP socket on the port.
//! That holds for a socket handed over by a binary upgrade too, and not for
//! another process's socket on the same port (whose presence would make
//! Pingora's bind fail). Nothing connects to the listener: a probe
//! connection would be logged as a failed handshake on a TLS listener.

use crate::sd_notify;
use crate::state::Runtime;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often `/proc` is looked at until the listener is there.
const POLL: Duration = Duration::from_millis(20);

/// How often the registry's first load is looked for after READY=1.
const REGISTRY_POLL: Duration = Duration::from_millis(250);

pub(super) struct Readiness {
    pub runtime: Arc<Runtime>,
    /// Where the listener listens (a wildcard host is fine: only the port
    /// is compared).
    pub listen: SocketAddr,
    /// Started with `--upgrade`: this process becomes the unit's main one.
    pub upgrade: bool,
    /// What `STATUS=` says once ready.
    pub status: String,
}

#[async_trait]
impl BackgroundService for Readiness {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !listens_on(self.listen) {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        let main_pid = self.upgrade.then(std::process::id);
        if self.runtime.routing_loaded() {
            sd_notify::notify_started(&sd_notify::ready(&self.status, main_pid));
            return;
        }
        sd_notify::notify_started(&sd_notify::ready(
            &format!(
                "{} with the configuration file's servers; waiting for the registry's (DATABASE_URL)",
                self.status
            ),
            main_pid,
        ));
        while !self.runtime.routing_loaded() {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(REGISTRY_POLL) => {}
            }
        }
        sd_notify::notify(&sd_notify::status(&self.status));
    }
}

/// Whether one of this process's descriptors is a TCP socket listening on
/// `listen`'s port. Where `/proc` cannot be read, whether a connection to
/// it is accepted by anyone.
fn listens_on(listen: SocketAddr) -> bool {
    let tables = ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .collect::<Vec<_>>();
    let Some(own) = own_socket_inodes() else {
        return connects(listen);
    };
    if tables.is_empty() {
        return connects(listen);
    }
    tables
        .iter()
        .flat_map(|table| listening_inodes(table, listen.port()))
        .any(|inode| own.contains(&inode))
}

fn connects(listen: SocketAddr) -> bool {
    let target = crate::healthcheck::target(listen.ip(), listen.port());
    std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
}

/// The inodes of this process's sockets (`/proc/self/fd/N` → `socket:[inode]`).
fn own_socket_inodes() -> Option<HashSet<u64>> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(
        entries
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter_map(|target| socket_inode(&target.to_string_lossy()))
            .collect(),
    )
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inodes of the sockets in a `/proc/net/tcp` or `tcp6` table that
/// listen (state `0A`) on `port`.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit_once(':')?.1;
            let listens =
                u16::from_str_radix(local_port, 16).ok()? == port && *fields.get(3)? == LISTEN;
            listens.then(|| fields.get(9)?.parse().ok()).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:115C 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4711 1 0000000000000000 100 0 0 10 0
   1: 0100007F:115C 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 4712 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4713 1 0000000000000000 100 0 0 10 0
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:115C 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5000 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn only_listening_sockets_on_the_port() {
        // 0x115C = 4444: the listener, not its accepted connection.
        assert_eq!(listening_inodes(TCP, 4444), vec![4711]);
        assert_eq!(listening_inodes(TCP, 8080), vec![4713]);
        assert_eq!(listening_inodes(TCP, 9999), Vec::<u64>::new());
        assert_eq!(listening_inodes(TCP6, 4444), vec![5000]);
        assert_eq!(
            listening_inodes("garbage\nmore garbage", 4444),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[4711]"), Some(4711));
        assert_eq!(socket_inode("pipe:[4711]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn sees_its_own_listener_and_not_before_it_listens() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        assert!(listens_on(address));
        drop(socket);
        assert!(!listens_on(address));
    }
}
