//! The replicas of each server: discovery (DNS, re-resolved periodically),
//! round-robin selection among healthy backends, and the metadata that turns
//! a selected backend into an upstream peer.

mod health;

pub use health::HealthLog;

use crate::config::{UpstreamTls, UpstreamUrl};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{HeaderValue, Uri};
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::health_check::TcpHealthCheck;
use pingora::lb::{Backend, Backends, HealthRegistry};
use pingora::protocols::l4::socket::SocketAddr;
use pingora::upstreams::peer::HttpPeer;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr as StdSocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Stable id of a replica URL, carried in session tokens. Derived from the
/// URL itself so every gateway replica (and a restart) agrees on it.
pub fn replica_id(url: &str) -> u64 {
    let digest = Sha256::digest(url.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id)
}

/// One configured replica URL, with what every request to it needs
/// prepared once.
#[derive(Debug, Clone)]
pub struct Replica {
    pub id: u64,
    pub url: UpstreamUrl,
    pub host_header: HeaderValue,
    /// The Streamable HTTP endpoint, e.g. `/mcp`.
    pub mcp_uri: Uri,
    /// The legacy SSE endpoint beside it, e.g. `/sse`.
    pub sse_uri: Uri,
}

impl Replica {
    fn new(url: &UpstreamUrl) -> Self {
        let uri = |path: &str| path.parse().unwrap_or_else(|_| Uri::from_static("/"));
        Replica {
            id: replica_id(&url.original),
            host_header: HeaderValue::from_str(&url.authority)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            mcp_uri: uri(&url.path),
            sse_uri: uri(&crate::legacy_sse::sse_path_for(&url.path)),
            url: url.clone(),
        }
    }
}

/// Marks a discovered [`Backend`] with the replica URL it came from.
#[derive(Debug, Clone, Copy)]
struct ReplicaTag(u64);

/// Resolves every replica URL's host on each discovery round, so a DNS
/// change (a Kubernetes Service, a failover record) is picked up without a
/// restart. A name that fails to resolve is left out of that round.
struct UrlDiscovery {
    server: String,
    replicas: Vec<Replica>,
}

#[async_trait]
impl ServiceDiscovery for UrlDiscovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut backends = BTreeSet::new();
        for replica in &self.replicas {
            match tokio::net::lookup_host((replica.url.host.as_str(), replica.url.port)).await {
                Ok(addrs) => {
                    for addr in addrs {
                        let mut backend = Backend {
                            addr: SocketAddr::Inet(addr),
                            weight: 1,
                            ext: Default::default(),
                        };
                        backend.ext.insert(ReplicaTag(replica.id));
                        backends.insert(backend);
                    }
                }
                Err(e) => log::warn!(
                    "server {}: cannot resolve {}: {e}",
                    self.server,
                    replica.url.original
                ),
            }
        }
        Ok((backends, HashMap::new()))
    }
}

/// A backend selected for one request.
#[derive(Debug, Clone, Copy)]
pub struct SelectedBackend {
    pub addr: StdSocketAddr,
    pub replica: u64,
}

/// A discovered backend with what a request needs from it, copied out once
/// per discovery round instead of per request.
struct Candidate {
    backend: Backend,
    selected: SelectedBackend,
}

/// The replicas of one server: Pingora's `Backends` for discovery and the
/// shared health registry, and our own round robin over a prepared list.
/// (`LoadBalancer::select` clones the selected `Backend`, its extensions map
/// included, and builds a `HashSet` on every request; this path allocates
/// nothing.)
pub struct ServerUpstream {
    backends: Backends,
    candidates: ArcSwap<Vec<Candidate>>,
    next: AtomicUsize,
    replicas: Vec<Replica>,
    tls: UpstreamTls,
}

impl ServerUpstream {
    pub fn new(server: &str, urls: &[UpstreamUrl], health: &Arc<HealthRegistry>) -> Self {
        let replicas: Vec<Replica> = urls.iter().map(Replica::new).collect();
        let discovery = UrlDiscovery {
            server: server.to_string(),
            replicas: replicas.clone(),
        };
        ServerUpstream {
            backends: Backends::new_with_health_registry(Box::new(discovery), health.clone()),
            candidates: ArcSwap::from_pointee(Vec::new()),
            next: AtomicUsize::new(0),
            replicas,
            tls: UpstreamTls::default(),
        }
    }

    /// The server's `tls:` block, applied to its `https://` peers.
    pub fn with_tls(mut self, tls: UpstreamTls) -> Self {
        self.tls = tls;
        self
    }

    /// Fills an `https://` peer's TLS options from the server's `tls:` block.
    pub fn apply_tls(&self, peer: &mut HttpPeer) {
        apply_tls(&self.tls, peer);
    }

    /// Runs discovery; the candidate list changes only when membership does.
    /// Calls must not overlap (start-up, then one background loop).
    pub async fn discover(&self) -> pingora::Result<()> {
        self.backends
            .update(|members| {
                let list = members
                    .iter()
                    .filter_map(|b| {
                        selected(b).map(|selected| Candidate {
                            backend: b.clone(),
                            selected,
                        })
                    })
                    .collect();
                self.candidates.store(Arc::new(list));
            })
            .await
    }

    pub fn replica(&self, id: u64) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.id == id)
    }

    /// How many backends discovery found.
    pub fn backend_count(&self) -> usize {
        self.candidates.load().len()
    }

    /// Round robin over healthy backends, skipping ones this request already tried.
    pub fn select(&self, exclude: &[StdSocketAddr]) -> Option<SelectedBackend> {
        let list = self.candidates.load();
        let n = list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| &list[start.wrapping_add(k) % n])
            .find(|c| !exclude.contains(&c.selected.addr) && self.backends.ready(&c.backend))
            .map(|c| c.selected)
    }

    /// A healthy backend of the given replica URL (a session's pinned replica).
    pub fn select_backend_of(&self, replica: u64) -> Option<SelectedBackend> {
        self.candidates
            .load()
            .iter()
            .find(|c| c.selected.replica == replica && self.backends.ready(&c.backend))
            .map(|c| c.selected)
    }

    /// Health of every discovered backend, for `/metrics`.
    pub fn health(&self) -> Vec<(StdSocketAddr, bool)> {
        self.candidates
            .load()
            .iter()
            .map(|c| (c.selected.addr, self.backends.ready(&c.backend)))
            .collect()
    }

    /// Every discovered backend: its replica, address and health.
    pub fn backends(&self) -> Vec<(&Replica, StdSocketAddr, bool)> {
        self.candidates
            .load()
            .iter()
            .filter_map(|c| {
                let replica = self.replica(c.selected.replica)?;
                Some((replica, c.selected.addr, self.backends.ready(&c.backend)))
            })
            .collect()
    }
}

/// Without a block this leaves the peer as it was: the URL's host as SNI,
/// verified against the system store or `UPSTREAM_CA_FILE`.
pub fn apply_tls(tls: &UpstreamTls, peer: &mut HttpPeer) {
    if !peer.is_tls() {
        return;
    }
    if let Some(sni) = &tls.sni {
        peer.sni.clone_from(sni);
    }
    if let Some(ca) = &tls.ca {
        // Pingora's connection pool does not tell trust stores apart: a
        // connection verified against another server's CA must not be reused.
        peer.group_key = Arc::as_ptr(ca) as usize as u64;
        peer.options.ca = Some(ca.clone());
    }
    peer.client_cert_key.clone_from(&tls.client_cert);
    peer.options.verify_cert = tls.verify;
    peer.options.verify_hostname = tls.verify;
}

fn selected(b: &Backend) -> Option<SelectedBackend> {
    Some(SelectedBackend {
        addr: *b.addr.as_inet()?,
        replica: b.ext.get::<ReplicaTag>()?.0,
    })
}

/// The one health registry shared by every server: a backend listed by two
/// servers is probed once. A server's `Backends` leaves it when dropped (the
/// last snapshot holding it is gone), taking its backends out of the checks.
pub fn health_registry() -> (Arc<HealthRegistry>, Arc<HealthLog>) {
    let registry = Arc::new(HealthRegistry::new());
    let log = Arc::new(HealthLog::default());
    let mut check = TcpHealthCheck::new();
    check.consecutive_failure = 1;
    check.consecutive_success = 1;
    registry.set_health_check(Box::new(health::RecordingCheck {
        inner: *check,
        log: log.clone(),
    }));
    (registry, log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_block_fills_https_peers_only() {
        let mut tls = UpstreamTls::default();
        let mut peer = HttpPeer::new("127.0.0.1:443", true, "mcp.example".into());
        apply_tls(&tls, &mut peer);
        assert!(peer.options.verify_cert && peer.options.verify_hostname);
        assert_eq!(peer.sni, "mcp.example");
        assert!(peer.options.ca.is_none() && peer.client_cert_key.is_none());

        tls.sni = Some("internal.example".into());
        tls.verify = false;
        apply_tls(&tls, &mut peer);
        assert_eq!(peer.sni, "internal.example");
        assert!(!peer.options.verify_cert && !peer.options.verify_hostname);

        let mut plain = HttpPeer::new("127.0.0.1:80", false, String::new());
        apply_tls(&tls, &mut plain);
        assert_eq!(plain.sni, "");
        assert!(plain.options.verify_cert, "left as Pingora made it");
    }
}
