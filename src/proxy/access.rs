//! The request id and the access line of a request (see `access_log`).

use super::request_id::{RequestId, X_REQUEST_ID};
use super::{peer, Gateway, RequestCtx};
use crate::access_log;
use crate::headers::MCP_SESSION_ID;
use crate::identity::IdentitySource;
use pingora::proxy::Session;
use std::time::{Duration, SystemTime};

impl Gateway {
    /// A trusted proxy's sane `X-Request-Id`, else a new one. Trusted means
    /// TRUSTED_PROXIES or TRUSTED_PROXY_CERT_NAMES is set and the peer
    /// passes it: without either rule every client would be "trusted".
    pub(super) fn request_id(&self, session: &Session) -> RequestId {
        let auth = &self.runtime.global_auth;
        let mut sent = session.req_header().headers.get_all(X_REQUEST_ID).iter();
        match (sent.next(), sent.next()) {
            (None, _) => RequestId::new(false),
            (Some(id), None)
                if access_log::is_sane_request_id(id.as_bytes())
                    && auth.restricts_peers()
                    && auth.peer_is_trusted(peer(session, auth)) =>
            {
                RequestId::forwarded(id.clone())
            }
            _ => RequestId::new(true),
        }
    }

    /// The access line of a finished request.
    pub(super) fn access_line(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        status: u16,
        elapsed: Duration,
        format: crate::config::LogFormat,
    ) -> String {
        let req = session.req_header();
        let routed = Self::server(ctx);
        let route = routed.map(|(_, r)| r);
        let fed = ctx.federation.as_ref();
        let identity = route.map(|r| &r.identity).or(fed.map(|f| &f.identity));
        access_log::format(
            &access_log::AccessRecord {
                time: SystemTime::now(),
                method: req.method.as_str(),
                path: req.uri.path(),
                server: routed
                    .map(|(s, _)| s.name.as_str())
                    .or(fed.and_then(|f| f.virtual_name())),
                backend: route.and_then(|r| r.selected.as_ref()).map(|s| s.addr),
                status,
                duration: elapsed,
                bytes: session.body_bytes_sent(),
                user: identity.map(|i| i.user.as_str()),
                identity_source: identity_source(identity),
                session: req.headers.get(&MCP_SESSION_ID).map(|v| v.as_bytes()),
                request_id: ctx.request_id.as_ref().map_or("-", RequestId::as_str),
            },
            format,
        )
    }
}

/// What the access line of a request handed to the lean stream path needs,
/// taken before the session goes (see `relay`).
pub(super) struct OwnedRecord {
    method: http::Method,
    path: String,
    server: Option<String>,
    backend: Option<std::net::SocketAddr>,
    user: Option<String>,
    identity_source: &'static str,
    session: Option<http::HeaderValue>,
    request_id: Option<RequestId>,
}

impl OwnedRecord {
    pub(super) fn line(
        &self,
        status: u16,
        elapsed: Duration,
        bytes: usize,
        format: crate::config::LogFormat,
    ) -> String {
        access_log::format(
            &access_log::AccessRecord {
                time: SystemTime::now(),
                method: self.method.as_str(),
                path: &self.path,
                server: self.server.as_deref(),
                backend: self.backend,
                status,
                duration: elapsed,
                bytes,
                user: self.user.as_deref(),
                identity_source: self.identity_source,
                session: self.session.as_ref().map(|v| v.as_bytes()),
                request_id: self.request_id.as_ref().map_or("-", RequestId::as_str),
            },
            format,
        )
    }
}

fn identity_source(identity: Option<&crate::identity::Identity>) -> &'static str {
    match identity.map(|i| i.source) {
        Some(IdentitySource::Jwt) => "jwt",
        Some(IdentitySource::ProxyHeader) => "proxy",
        Some(IdentitySource::Anonymous) => "anonymous",
        None => "none",
    }
}

impl Gateway {
    pub(super) fn owned_record(&self, session: &Session, ctx: &RequestCtx) -> OwnedRecord {
        let req = session.req_header();
        let routed = Self::server(ctx);
        let route = routed.map(|(_, r)| r);
        OwnedRecord {
            method: req.method.clone(),
            path: req.uri.path().to_string(),
            server: routed.map(|(s, _)| s.name.clone()),
            backend: route.and_then(|r| r.selected.as_ref()).map(|s| s.addr),
            user: route.map(|r| r.identity.user.as_str().to_string()),
            identity_source: identity_source(route.map(|r| &r.identity)),
            session: req.headers.get(&MCP_SESSION_ID).cloned(),
            request_id: ctx.request_id.clone(),
        }
    }
}
