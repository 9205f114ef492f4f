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
        let identity = route.map(|r| &r.identity);
        access_log::format(
            &access_log::AccessRecord {
                time: SystemTime::now(),
                method: req.method.as_str(),
                path: req.uri.path(),
                server: routed.map(|(s, _)| s.name.as_str()),
                backend: route.and_then(|r| r.selected.as_ref()).map(|s| s.addr),
                status,
                duration: elapsed,
                bytes: session.body_bytes_sent(),
                user: identity.map(|i| i.user.as_str()),
                identity_source: match identity.map(|i| i.source) {
                    Some(IdentitySource::Jwt) => "jwt",
                    Some(IdentitySource::ProxyHeader) => "proxy",
                    Some(IdentitySource::Anonymous) => "anonymous",
                    None => "none",
                },
                session: req.headers.get(&MCP_SESSION_ID).map(|v| v.as_bytes()),
                request_id: ctx.request_id.as_ref().map_or("-", RequestId::as_str),
            },
            format,
        )
    }
}
