//! Admission of a request to an MCP route: the server it names, the
//! method, the caller's identity and the session it resumes. Each refusal
//! is a [`Refusal`]; `request_filter` writes it.

use super::{now_secs, peer, peer_ip, Gateway, RouteCtx};
use crate::headers::MCP_SESSION_ID;
use crate::identity::{AuthError, AuthPolicy, Identity};
use crate::refusal::Refusal;
use crate::routing::{self, Endpoint};
use crate::session::{PinnedSession, SessionError, SessionKind};
use crate::snapshot::Snapshot;
use crate::state::ServerRuntime;
use crate::upstream::SelectedBackend;
use http::Method;
use pingora::proxy::Session;
use std::time::Instant;

impl Gateway {
    /// Authenticates, counts, and turns a failure into the 401 to send.
    fn authenticate(
        &self,
        server: &ServerRuntime,
        session: &Session,
    ) -> std::result::Result<Identity, Refusal> {
        self.authenticate_with(&server.auth, &server.name, session)
    }

    /// As `authenticate`, under any route's policy; `label` names the
    /// route in the log line.
    pub(super) fn authenticate_with(
        &self,
        policy: &AuthPolicy,
        label: &str,
        session: &Session,
    ) -> std::result::Result<Identity, Refusal> {
        let metrics = &self.runtime.metrics;
        metrics.auth_attempts.inc();
        let started = Instant::now();
        let result = policy.authenticate(&session.req_header().headers, peer(session, policy));
        metrics
            .auth_latency
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(identity) => {
                metrics.auth_success.inc();
                if identity.is_authenticated() {
                    metrics.authenticated_request(&identity.user);
                }
                Ok(identity)
            }
            Err(e) => {
                metrics.auth_failed(&e);
                let peer = peer_ip(session).map_or("-".into(), |p| p.to_string());
                match &e {
                    AuthError::MissingCredential { .. } => {
                        log::info!("401 {label} from {peer}: {}", e.message())
                    }
                    _ => log::warn!("401 {label} from {peer}: {}", e.message()),
                }
                Err(Refusal::Unauthenticated {
                    message: e.message(),
                    invalid_token: matches!(e, AuthError::InvalidToken(_)),
                })
            }
        }
    }

    /// Opens the client's session token, if any, and finds its backend.
    fn resume_session(
        &self,
        server: &ServerRuntime,
        endpoint: Endpoint,
        identity: &Identity,
        session: &Session,
    ) -> std::result::Result<Option<(PinnedSession, SelectedBackend)>, Refusal> {
        let req = session.req_header();
        let (kind, token) = match endpoint {
            Endpoint::Mcp => {
                let mut values = req.headers.get_all(&MCP_SESSION_ID).iter();
                match (values.next(), values.next()) {
                    (None, _) => return Ok(None),
                    (Some(v), None) => (SessionKind::Streamable, v.to_str().unwrap_or_default()),
                    (Some(_), Some(_)) => return Err(Refusal::DuplicateSessionHeader),
                }
            }
            Endpoint::Message => match routing::query_param(req.uri.query(), "sessionId") {
                Some(t) => (SessionKind::LegacySse, t),
                None => return Err(Refusal::MissingSessionId),
            },
            Endpoint::Sse => return Ok(None),
        };
        let pinned = self
            .runtime
            .sessions
            .open(kind, &server.name, identity.principal(), token, now_secs())
            .map_err(|e: SessionError| {
                log::info!("404 {}: {} ({e:?})", server.name, e.message());
                Refusal::UnknownSession(e.message())
            })?;
        match server.upstream.select_backend_of(pinned.replica) {
            Some(selected) => Ok(Some((pinned, selected))),
            None => Err(Refusal::SessionBackendGone),
        }
    }

    /// The route phase of `request_filter`: a refusal or a `RouteCtx`.
    pub(super) fn route(
        &self,
        session: &Session,
        snapshot: &Snapshot,
        name: &str,
        endpoint: Endpoint,
    ) -> std::result::Result<RouteCtx, Refusal> {
        let Some(server) = snapshot.server(name) else {
            return Err(Refusal::UnknownServer);
        };
        let method = &session.req_header().method;
        let (allowed, allow): (&[Method], &'static str) = match endpoint {
            Endpoint::Mcp => (
                &[Method::POST, Method::GET, Method::DELETE],
                "POST, GET, DELETE",
            ),
            Endpoint::Sse => (&[Method::GET], "GET"),
            Endpoint::Message => (&[Method::POST], "POST"),
        };
        if !allowed.contains(method) {
            return Err(Refusal::MethodNotAllowed { allow });
        }
        let identity = self.authenticate(server, session)?;
        let resumed = self.resume_session(server, endpoint, &identity, session)?;
        let (pinned, selected) = resumed.map_or((None, None), |(t, c)| (Some(t), Some(c)));
        Ok(RouteCtx {
            server: server.clone(),
            endpoint,
            identity,
            pinned,
            selected,
            tried: Vec::new(),
            sse_scanner: None,
        })
    }
}
