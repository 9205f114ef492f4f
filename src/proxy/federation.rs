//! The federation routes (`/tools`, `/tools/invoke/…`, `/rpc`, `/mcp`,
//! `/ws`, a virtual server's `/servers/{name}/mcp`): the caller is
//! authenticated here with the route's policy, then the request goes to the
//! federation service's Unix socket with the hand-over headers, which only
//! this module sets.

use super::{peer_ip, Gateway, RequestCtx};
use crate::federation::direct::Direct;
use crate::federation::handover;
use crate::federation::service::ServiceAddress;
use crate::identity::{AuthPolicy, Identity};
use crate::metrics::ServerMetrics;
use crate::refusal::Refusal;
use crate::responses::ErrorShape;
use crate::routing::FederationPath;
use crate::state::VirtualServer;
use http::{HeaderMap, Method};
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use std::sync::Arc;
use std::time::Duration;

/// Where the data plane sends the federation routes, and the series their
/// requests are counted in (virtual servers have their own).
pub struct FederationRoute {
    pub address: ServiceAddress,
    /// The calls the data plane serves itself (`federation::direct`);
    /// `None`: every request goes to the service.
    pub direct: Option<Direct>,
    pub metrics: ServerMetrics,
}

/// The `server` label of the global federation routes' series: not a
/// valid server name, so never a server's.
pub const METRICS_LABEL: &str = "_federation";

/// Which federation endpoint a request is for, once admitted.
pub(super) enum Target {
    Path(FederationPath),
    Virtual(Arc<VirtualServer>),
}

pub(super) struct FederationCtx {
    pub target: Target,
    pub identity: Identity,
}

impl FederationCtx {
    /// The virtual server's name, for the access line and the hand-over.
    pub fn virtual_name(&self) -> Option<&str> {
        match &self.target {
            Target::Virtual(v) => Some(&v.spec.name),
            Target::Path(_) => None,
        }
    }

    pub fn shape(&self) -> ErrorShape {
        shape_of(&self.target)
    }
}

fn shape_of(target: &Target) -> ErrorShape {
    match target {
        Target::Virtual(_) => ErrorShape::JsonRpc,
        Target::Path(p) if p.speaks_json_rpc() => ErrorShape::JsonRpc,
        Target::Path(_) => ErrorShape::Plain,
    }
}

/// The methods each endpoint serves, and the `Allow` header saying so.
pub fn allowed_methods(path: Option<FederationPath>) -> (&'static [Method], &'static str) {
    match path {
        Some(FederationPath::Tools) | Some(FederationPath::Ws) => (&[Method::GET], "GET"),
        Some(FederationPath::Invoke) | Some(FederationPath::Rpc) => (&[Method::POST], "POST"),
        // `/mcp` and virtual servers: Streamable HTTP.
        Some(FederationPath::Mcp) | None => (
            &[Method::POST, Method::GET, Method::DELETE],
            "POST, GET, DELETE",
        ),
    }
}

/// The client's own hand-over look-alikes, removed before the data
/// plane's are set: the service must never read a client's.
pub fn forged(headers: &HeaderMap) -> Vec<http::HeaderName> {
    headers
        .keys()
        .filter(|n| handover::is_handover_header(n))
        .cloned()
        .collect()
}

impl Gateway {
    /// Counts a finished federation request in its series.
    pub(super) fn observe_federation(&self, fed: &FederationCtx, status: u16, elapsed: Duration) {
        match (&fed.target, &self.federation) {
            (Target::Virtual(v), _) => v.metrics.observe(status, elapsed),
            (Target::Path(_), Some(route)) => route.metrics.observe(status, elapsed),
            (Target::Path(_), None) => {}
        }
    }

    /// Admission to a federation route: method, then identity under
    /// `policy` (the global one, or the virtual server's).
    pub(super) fn admit_federation(
        &self,
        session: &Session,
        target: Target,
    ) -> std::result::Result<FederationCtx, (Refusal, ErrorShape)> {
        let shape = shape_of(&target);
        if self.federation.is_none() {
            return Err((Refusal::NotFound, shape));
        }
        let path = match &target {
            Target::Path(p) => Some(*p),
            Target::Virtual(_) => None,
        };
        let (allowed, allow) = allowed_methods(path);
        if !allowed.contains(&session.req_header().method) {
            return Err((Refusal::MethodNotAllowed { allow }, shape));
        }
        let (policy, label): (&AuthPolicy, &str) = match &target {
            Target::Virtual(v) => (&v.auth, &v.spec.name),
            Target::Path(_) => (&self.runtime.global_auth, "federation"),
        };
        let identity = self
            .authenticate_with(policy, label, session)
            .map_err(|r| (r, shape))?;
        Ok(FederationCtx { target, identity })
    }

    /// The federation service's socket, as the upstream peer.
    pub(super) fn federation_peer(
        &self,
        session: &Session,
        fed: &FederationCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(FederationRoute { address, .. }) = &self.federation else {
            return Error::e_explain(ErrorType::InternalError, "no federation service");
        };
        let mut peer = HttpPeer::new_uds(&address.socket.to_string_lossy(), false, String::new())?;
        let req = session.req_header();
        peer.options.read_timeout = match &fed.target {
            // The WebSocket's bytes flow as the two ends please.
            Target::Path(FederationPath::Ws) => None,
            Target::Path(FederationPath::Mcp) | Target::Virtual(_) => {
                super::streams::upstream_read_timeout(
                    crate::routing::Endpoint::Mcp,
                    &req.method,
                    &req.headers,
                    self.runtime.read_timeout,
                    self.runtime.stream_idle_timeout,
                )
            }
            Target::Path(_) => Some(self.runtime.read_timeout),
        };
        peer.options.connection_timeout = Some(self.runtime.connect_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }

    /// Sets the hand-over on the request to the federation service.
    pub(super) fn federation_request(
        &self,
        session: &Session,
        upstream_request: &mut RequestHeader,
        ctx: &RequestCtx,
        fed: &FederationCtx,
    ) -> Result<()> {
        let Some(FederationRoute { address, .. }) = &self.federation else {
            return Error::e_explain(ErrorType::InternalError, "no federation service");
        };
        let handover = handover::headers_for(
            &address.secret,
            &fed.identity,
            peer_ip(session),
            crate::tls::client_cert_names(session.digest()),
            fed.virtual_name(),
        );
        for name in forged(&upstream_request.headers) {
            upstream_request.remove_header(&name);
        }
        for (name, value) in handover {
            upstream_request.insert_header(name, value)?;
        }
        if let Some(id) = &ctx.request_id {
            id.add_to_request(upstream_request)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentitySource;

    /// What `federation_request` does to the header, on a plain map.
    fn apply_handover(
        upstream: &mut HeaderMap,
        handover: Vec<(http::HeaderName, http::HeaderValue)>,
    ) {
        for name in forged(upstream) {
            upstream.remove(name);
        }
        for (name, value) in handover {
            upstream.insert(name, value);
        }
    }

    #[test]
    fn the_handover_replaces_what_a_client_sent() {
        let mut h = HeaderMap::new();
        h.insert("x-mcp-gateway-user", "root".parse().unwrap());
        h.append("x-mcp-gateway-user", "admin".parse().unwrap());
        h.insert("x-mcp-gateway-scope", "other".parse().unwrap());
        h.insert("x-mcp-gateway-anything", "x".parse().unwrap());
        h.insert("x-upstream-authorization", "Bearer u".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        let alice = Identity {
            user: "alice".into(),
            source: IdentitySource::ProxyHeader,
        };
        let secret = http::HeaderValue::from_static("k");
        apply_handover(
            &mut h,
            handover::headers_for(&secret, &alice, None, None, None),
        );
        assert_eq!(h.get_all("x-mcp-gateway-user").iter().count(), 1);
        assert_eq!(h.get("x-mcp-gateway-user").unwrap(), "alice");
        assert!(h.get("x-mcp-gateway-scope").is_none());
        assert!(h.get("x-mcp-gateway-anything").is_none());
        assert_eq!(h.get("x-mcp-gateway-handover").unwrap(), "k");
        // The rest is the client's, for the owning servers' header policies.
        assert_eq!(h.get("x-upstream-authorization").unwrap(), "Bearer u");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        let (caller, scope) = handover::read(&h, &secret).unwrap();
        assert_eq!(caller.identity, alice);
        assert_eq!(scope, None);
    }

    #[test]
    fn each_endpoint_has_its_methods() {
        assert_eq!(allowed_methods(Some(FederationPath::Tools)).1, "GET");
        assert_eq!(allowed_methods(Some(FederationPath::Ws)).1, "GET");
        assert_eq!(allowed_methods(Some(FederationPath::Invoke)).1, "POST");
        assert_eq!(allowed_methods(Some(FederationPath::Rpc)).1, "POST");
        assert_eq!(allowed_methods(None).1, "POST, GET, DELETE");
    }
}
