//! The HTTP clients of a server's MCP sessions (the catalog's gathering
//! and the pooled calls), kept in the server's runtime state so a config
//! change (a new runtime) starts afresh.
//!
//! Why: a `reqwest::Client` built the ordinary way builds its own OpenSSL
//! connector, which loads the whole system CA bundle (~0.85 MiB of parsed
//! certificates; heaptrack: `SslConnector::builder`). One per session made
//! that a per-server cost at 1,000 servers. Now every client whose TLS is
//! the default shares one process-wide connector, a server with its own
//! `tls:` block builds one connector once, and a client is built once per
//! (replica, backend address, connect timeout) and reused by every session
//! to it (it is a handle onto one connection pool).

use super::session::client_identity;
use crate::config::{UpstreamTls, UpstreamUrl};
use crate::upstream::SelectedBackend;
use native_tls::TlsConnector;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Clients kept per server: backends come and go (DNS), and an address
/// that left must not pin its client forever.
const MAX_CLIENTS: usize = 32;

/// What a client is bound to: `.resolve(host, addr)` pins the backend the
/// health checks vouched for, so another address is another client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub replica: u64,
    pub addr: SocketAddr,
    pub connect_timeout: Duration,
}

impl ClientKey {
    pub fn of(selected: SelectedBackend, connect_timeout: Duration) -> Self {
        ClientKey {
            replica: selected.replica,
            addr: selected.addr,
            connect_timeout,
        }
    }
}

/// Which TLS connector a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    /// The process-wide one: the system trust store, verifying, no client
    /// certificate; also for `http://`, where TLS is never used.
    Shared,
    /// The server's own, from its `tls:` block.
    Own,
}

/// The connector a replica needs: the server's own only where its `tls:`
/// block changes what an `https://` connection does.
pub fn connector_for(tls: &UpstreamTls, https: bool) -> Connector {
    if https && (tls.ca.is_some() || tls.client_cert.is_some() || !tls.verify) {
        Connector::Own
    } else {
        Connector::Shared
    }
}

/// One server's clients and its own TLS connector.
#[derive(Default)]
pub struct ClientCache {
    clients: Mutex<HashMap<ClientKey, reqwest::Client>>,
    own: OnceLock<Result<TlsConnector, String>>,
}

impl ClientCache {
    /// The client for the replica at `url` at `selected`, built on first use.
    pub fn client(
        &self,
        tls: &UpstreamTls,
        url: &UpstreamUrl,
        selected: SelectedBackend,
        connect_timeout: Duration,
    ) -> Result<reqwest::Client, String> {
        let key = ClientKey::of(selected, connect_timeout);
        if let Some(client) = self.lock().get(&key) {
            return Ok(client.clone());
        }
        let connector = match connector_for(tls, url.tls) {
            Connector::Shared => shared()?,
            Connector::Own => self
                .own
                .get_or_init(|| own_connector(tls))
                .as_ref()
                .map_err(Clone::clone)?
                .clone(),
        };
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            // The backend the health checks vouch for, not whatever the
            // name resolves to now.
            .resolve(&url.host, selected.addr)
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(connector)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut clients = self.lock();
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        Ok(clients.entry(key).or_insert(client).clone())
    }

    /// How many clients are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, reqwest::Client>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The process-wide default connector, built once.
fn shared() -> Result<TlsConnector, String> {
    static SHARED: OnceLock<Result<TlsConnector, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            TlsConnector::builder()
                .build()
                .map_err(|e| format!("cannot build the TLS connector: {e}"))
        })
        .clone()
}

/// A connector from a server's `tls:` block.
fn own_connector(tls: &UpstreamTls) -> Result<TlsConnector, String> {
    let mut builder = TlsConnector::builder();
    if let Some(ca) = &tls.ca {
        builder.disable_built_in_roots(true);
        for cert in ca.iter() {
            let der = cert
                .to_der()
                .map_err(|e| format!("tls.ca_file: cannot encode a certificate: {e}"))?;
            let cert = native_tls::Certificate::from_der(&der)
                .map_err(|e| format!("tls.ca_file: unusable certificate: {e}"))?;
            builder.add_root_certificate(cert);
        }
    }
    if let Some(cert_key) = &tls.client_cert {
        builder.identity(client_identity(cert_key)?);
    }
    if !tls.verify {
        builder
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the TLS connector: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(tls: bool) -> UpstreamUrl {
        UpstreamUrl {
            original: format!("{}://mcp.internal/mcp", if tls { "https" } else { "http" }),
            tls,
            host: "mcp.internal".into(),
            port: if tls { 443 } else { 80 },
            authority: "mcp.internal".into(),
            path: "/mcp".into(),
        }
    }

    fn unverified() -> UpstreamTls {
        let mut tls = UpstreamTls::default();
        tls.verify = false;
        tls
    }

    fn selected(addr: &str, replica: u64) -> SelectedBackend {
        SelectedBackend {
            addr: addr.parse().expect("test address"),
            replica,
        }
    }

    #[test]
    fn only_an_https_replica_with_its_own_tls_settings_gets_its_own_connector() {
        let default = UpstreamTls::default();
        assert_eq!(connector_for(&default, true), Connector::Shared);
        assert_eq!(connector_for(&default, false), Connector::Shared);
        assert_eq!(connector_for(&unverified(), true), Connector::Own);
        // Plain HTTP never speaks TLS: no connector of its own to build.
        assert_eq!(connector_for(&unverified(), false), Connector::Shared);
    }

    #[test]
    fn another_backend_address_replica_or_timeout_is_another_client() {
        let t = Duration::from_secs(5);
        let a = ClientKey::of(selected("10.0.0.1:80", 1), t);
        assert_eq!(a, ClientKey::of(selected("10.0.0.1:80", 1), t));
        assert_ne!(a, ClientKey::of(selected("10.0.0.2:80", 1), t));
        assert_ne!(a, ClientKey::of(selected("10.0.0.1:80", 2), t));
        assert_ne!(a, ClientKey::of(selected("10.0.0.1:80", 1), t * 2));
    }

    #[test]
    fn a_client_is_built_once_per_key_and_the_cache_is_bounded() {
        let plain = url(false);
        let cache = ClientCache::default();
        let tls = UpstreamTls::default();
        let t = Duration::from_secs(5);
        for _ in 0..3 {
            cache
                .client(&tls, &plain, selected("10.0.0.1:8080", 0), t)
                .expect("client");
        }
        assert_eq!(cache.len(), 1);
        for i in 0..MAX_CLIENTS as u16 + 1 {
            let addr = format!("10.0.1.1:{}", 9000 + i);
            cache
                .client(&tls, &plain, selected(&addr, 0), t)
                .expect("client");
        }
        assert!(cache.len() <= MAX_CLIENTS);
    }

    #[test]
    fn a_server_with_its_own_tls_settings_builds_a_client() {
        // The preconfigured connector must be the native-tls reqwest uses:
        // another version would be refused at build time.
        ClientCache::default()
            .client(
                &unverified(),
                &url(true),
                selected("10.0.0.1:443", 0),
                Duration::from_secs(1),
            )
            .expect("client");
    }
}
