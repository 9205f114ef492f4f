//! The Pingora adapter: each phase gathers plain inputs, calls one of the
//! decision modules, and applies the result.

mod access;
mod admission;
mod body_end;
mod chunked;
mod direct_call;
mod federation;
mod framing;
mod keepalive;
mod post_relay;
mod relay;
mod reply;
mod request_id;
mod session_reply;
mod sse_relay;
mod stream_head;
mod streams;
mod upstream_pool;
pub(crate) mod wire;

pub use federation::{FederationRoute, METRICS_LABEL as FEDERATION_METRICS_LABEL};
pub use keepalive::KeepAlive;

use crate::access_log;
use crate::cors::UPSTREAM_CORS_HEADERS;
use crate::headers::RequestFacts;
use crate::identity::{AuthPolicy, Identity, Peer};
use crate::legacy_sse::{self, EndpointScanner};
use crate::lifecycle::InFlight;
use crate::refusal::{self, Refusal};
use crate::responses::ErrorShape;
use crate::routing::Endpoint;
use crate::session::{PinnedSession, SessionError};
use crate::snapshot::{Routing, Snapshot};
use crate::state::{Runtime, ServerRuntime};
use crate::upstream::{Replica, SelectedBackend};
use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use reply::write_local;
use request_id::RequestId;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct Gateway {
    pub runtime: Arc<Runtime>,
    pub routing: Arc<Routing>,
    /// The federation service's socket and secret; `None`: its routes 404.
    pub federation: Option<FederationRoute>,
}

/// What one request carries from phase to phase.
pub struct RequestCtx {
    /// Moves to the lean stream path's task when it takes the request over.
    in_flight: Option<InFlight>,
    /// The lean stream path took the request over: its task logs it.
    handed_off: bool,
    /// The routing snapshot this request started with, kept to its end.
    snapshot: Arc<Snapshot>,
    started: Instant,
    route: Option<RouteCtx>,
    /// Set instead of `route` on a federation route.
    federation: Option<federation::FederationCtx>,
    /// A browser origin allowed to read the response (CORS).
    origin: Option<String>,
    /// `X-Request-Id`: a trusted proxy's, or made up; sent up and back.
    request_id: Option<RequestId>,
    /// The client closed the connection before its answer was written.
    client_left: bool,
}

struct RouteCtx {
    server: Arc<ServerRuntime>,
    endpoint: Endpoint,
    identity: Identity,
    /// From the client's session token: the backend and the upstream's id.
    pinned: Option<PinnedSession>,
    selected: Option<SelectedBackend>,
    tried: Vec<SocketAddr>,
    sse_scanner: Option<EndpointScanner>,
}

impl RouteCtx {
    /// The session's pinned backend, else the next healthy one round robin
    /// (skipping those this request already failed on), with its replica;
    /// Pingora's path and the lean stream path both connect to this.
    fn choose_backend(&mut self) -> Result<(SelectedBackend, &Replica)> {
        if self.pinned.is_none() {
            self.selected = self.server.upstream.select(&self.tried);
        }
        let Some(selected) = self.selected else {
            return Error::e_explain(ErrorType::HTTPStatus(503), "no healthy backend");
        };
        match self.server.upstream.replica(selected.replica) {
            Some(replica) => Ok((selected, replica)),
            None => Error::e_explain(ErrorType::HTTPStatus(503), "backend left the configuration"),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The peer as `auth` sees it: address, and the names of a verified client
/// certificate (read once per connection at the handshake), looked up only
/// when `auth` has names to match them against.
fn peer<'s>(session: &'s Session, auth: &AuthPolicy) -> Peer<'s> {
    Peer {
        ip: peer_ip(session),
        cert_names: auth
            .checks_cert_names()
            .then(|| crate::tls::client_cert_names(session.digest()))
            .flatten(),
    }
}

/// Longest wait for the rest of an HTTP/2 request body before a local answer.
const H2_BODY_SETTLE: Duration = Duration::from_secs(1);

/// HTTP/2: a local answer completed while the client's body is still
/// arriving resets the stream (the h2 library drops the unread body), and
/// clients such as curl then report the reset, not the answer. The body,
/// usually already here, is read first, for at most [`H2_BODY_SETTLE`].
async fn settle_h2_body(session: &mut Session) {
    if matches!(session.as_downstream(), ServerSession::H2(_)) {
        let drain = session.as_downstream_mut().drain_request_body();
        let _ = tokio::time::timeout(H2_BODY_SETTLE, drain).await;
    }
}

/// Framing the gateway refuses (see `framing`); HTTP/1 only.
fn framing_refusal(session: &Session) -> Option<&'static str> {
    let ServerSession::H1(h1) = session.as_downstream() else {
        return None;
    };
    let req = session.req_header();
    framing::refusal(req.version, &req.headers, &h1.get_headers_raw_bytes())
}

impl Gateway {
    fn server(ctx: &RequestCtx) -> Option<(&ServerRuntime, &RouteCtx)> {
        let route = ctx.route.as_ref()?;
        Some((&route.server, route))
    }

    /// Path and query the upstream sees for this request; without a query
    /// string it is the replica's prepared URI, no parsing.
    fn upstream_uri(replica: &Replica, route: &RouteCtx, query: Option<&str>) -> Result<http::Uri> {
        let parse = |text: &str| {
            text.parse::<http::Uri>()
                .or_err(ErrorType::InternalError, "upstream path is not a valid URI")
        };
        if let (Some(pinned), Endpoint::Message) = (&route.pinned, route.endpoint) {
            return parse(&pinned.upstream_id);
        }
        let base = match route.endpoint {
            Endpoint::Sse => &replica.sse_uri,
            _ => &replica.mcp_uri,
        };
        match query {
            None => Ok(base.clone()),
            Some(q) => parse(&format!("{}?{q}", base.path())),
        }
    }

    /// A connect failure before any byte was sent is safe to retry on
    /// another replica. A pinned session has nowhere else to go: it gets the
    /// 404 that makes an MCP client initialise again, at once rather than
    /// 502s until the health check notices the replica is gone.
    fn connect_failed(
        &self,
        ctx: &mut RequestCtx,
        peer: &dyn std::fmt::Display,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let Some(route) = ctx.route.as_mut() else {
            return e;
        };
        let server = &route.server;
        log::warn!("server {}: cannot connect to {peer}: {e}", server.name);
        if let Some(selected) = &route.selected {
            route.tried.push(selected.addr);
        }
        if route.pinned.is_some() {
            return Error::explain(
                ErrorType::HTTPStatus(404),
                SessionError::BackendGone.message(),
            );
        }
        if route.tried.len() < server.upstream.backend_count() {
            e.set_retry(true);
        }
        e
    }

    /// The header policy's edits and the upstream path, on the request
    /// Pingora sends upstream or the lean stream path's.
    fn edit_upstream_request(
        &self,
        session: &Session,
        upstream_request: &mut RequestHeader,
        ctx: &RequestCtx,
    ) -> Result<()> {
        let Some((server, route)) = Self::server(ctx) else {
            return Error::e_explain(ErrorType::InternalError, "no route");
        };
        let Some(replica) = route
            .selected
            .as_ref()
            .and_then(|c| server.upstream.replica(c.replica))
        else {
            return Error::e_explain(ErrorType::InternalError, "no backend selected");
        };
        let facts = RequestFacts {
            identity: &route.identity,
            peer: peer_ip(session),
            peer_trusted: server.auth.peer_is_trusted(peer(session, &server.auth)),
            upstream_host: &replica.host_header,
            upstream_session: route
                .pinned
                .as_ref()
                .filter(|_| route.endpoint == Endpoint::Mcp)
                .map(|p| p.upstream_id.as_str()),
        };
        let edits = server.headers.plan(&session.req_header().headers, &facts);
        for dropped in &edits.dropped {
            log::warn!(
                "server {}: dropped header {}: {}",
                server.name,
                dropped.name,
                dropped.why
            );
        }
        for name in &edits.remove {
            upstream_request.remove_header(name);
        }
        for (name, value) in edits.set {
            match crate::headers::wire_name(&name) {
                Some(titled) => upstream_request.insert_header(titled, value)?,
                None => upstream_request.insert_header(name, value)?,
            }
        }
        let uri = Self::upstream_uri(replica, route, session.req_header().uri.query())?;
        upstream_request.set_uri(uri);
        if let Some(id) = &ctx.request_id {
            id.add_to_request(upstream_request)?;
        }
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            in_flight: Some(self.runtime.lifecycle.track()),
            handed_off: false,
            snapshot: self.routing.current(),
            started: Instant::now(),
            route: None,
            federation: None,
            origin: None,
            request_id: None,
            client_left: false,
        }
    }

    /// No downstream modules: Pingora's default adds a response-compression
    /// module that stays disabled yet runs on every request (~1 % of its
    /// instructions); MCP responses are small JSON or event streams that
    /// the edge proxy may compress.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    /// The first phase: the request header is in, so `KeepAlive` lets the
    /// request run past its header deadline.
    async fn early_request_filter(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        keepalive::header_complete();
        Ok(())
    }

    /// Answers local endpoints and refusals; otherwise resolves server,
    /// identity and session for the later phases.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        ctx.request_id = Some(self.request_id(session));
        // Local answers and refusals carry it too: a refused client can
        // quote it to whoever reads the access log.
        let id_text = |ctx: &RequestCtx| {
            ctx.request_id
                .as_ref()
                .map_or("-", RequestId::as_str)
                .to_string()
        };
        if let Some(why) = framing_refusal(session) {
            session.set_keepalive(None);
            let response = self.refuse(&Refusal::MalformedRequest(why), ErrorShape::Plain);
            write_local(session, response.with_header("x-request-id", id_text(ctx))).await?;
            return Ok(true);
        }
        if self.runtime.lifecycle.is_draining() {
            session.set_keepalive(None);
        }
        match self.triage(session, ctx) {
            Ok(admitted) => {
                match admitted {
                    reply::Admitted::Server(route) => {
                        ctx.route = Some(route);
                        if self.lean_stream(session, ctx).await?
                            || self.lean_post(session, ctx).await?
                        {
                            return Ok(true);
                        }
                    }
                    reply::Admitted::Federation(fed) => {
                        ctx.federation = Some(fed);
                        if self.direct_call(session, ctx).await? {
                            return Ok(true);
                        }
                    }
                }
                let req = session.req_header();
                if framing::expects_continue(req.version, &req.headers) {
                    session.write_continue_response().await?;
                }
                Ok(false)
            }
            Err(response) => {
                settle_h2_body(session).await;
                write_local(session, response.with_header("x-request-id", id_text(ctx))).await?;
                Ok(true)
            }
        }
    }

    /// The pinned backend of a session, else round robin over healthy ones.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let runtime = &self.runtime;
        if let Some(fed) = &ctx.federation {
            return self.federation_peer(session, fed);
        }
        let Some(route) = ctx.route.as_mut() else {
            return Error::e_explain(ErrorType::InternalError, "no route");
        };
        let (selected, replica) = route.choose_backend()?;
        let sni = if replica.url.tls {
            replica.url.host.clone()
        } else {
            String::new()
        };
        let mut peer = HttpPeer::new(selected.addr, replica.url.tls, sni);
        route.server.upstream.apply_tls(&mut peer);
        peer.options.connection_timeout = Some(runtime.connect_timeout);
        peer.options.total_connection_timeout = Some(runtime.connect_timeout * 2);
        let req = session.req_header();
        peer.options.read_timeout = streams::upstream_read_timeout(
            route.endpoint,
            &req.method,
            &req.headers,
            runtime.read_timeout,
            runtime.stream_idle_timeout,
        );
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }

    /// See `connect_failed`.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Self::CTX,
        e: Box<Error>,
    ) -> Box<Error> {
        self.connect_failed(ctx, peer, e)
    }

    /// Applies the header policy's edits and the upstream path.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(fed) = &ctx.federation {
            return self.federation_request(session, upstream_request, ctx, fed);
        }
        self.edit_upstream_request(session, upstream_request, ctx)
    }

    /// Wraps a new upstream session id in a sealed token naming the
    /// backend; an id the client's token already names gets that token back.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let Some(route) = ctx.route.as_mut() else {
            return Ok(());
        };
        if route.endpoint == Endpoint::Sse && upstream_response.status == StatusCode::OK {
            route.sse_scanner = Some(EndpointScanner::default());
            upstream_response.remove_header("content-length");
        }
        self.reply_session_id(_session, route, upstream_response)?;
        if self.runtime.lifecycle.is_draining() {
            _session.set_keepalive(None);
        }
        Ok(())
    }

    /// Legacy SSE only: swap the upstream's endpoint event for the gateway's.
    /// A stream whose endpoint cannot be rewritten is ended as an upstream
    /// failure (a 502 if nothing was sent yet, else the stream stops), so
    /// the client sees it end rather than wait for an endpoint that will
    /// never come.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        let Some(route) = ctx.route.as_mut() else {
            return Ok(None);
        };
        let Some(scanner) = route.sse_scanner.as_mut() else {
            return Ok(None);
        };
        if scanner.is_done() {
            return Ok(None);
        }
        let chunk = body.take();
        let input = match (&chunk, end_of_stream) {
            (Some(b), _) => Some(&b[..]),
            (None, true) => None,
            (None, false) => return Ok(None),
        };
        let server = &route.server;
        let rewritten = legacy_sse::emit(scanner.feed(input), |endpoint| {
            session_reply::endpoint_event(
                &self.runtime,
                server,
                route.selected.as_ref(),
                route.identity.principal(),
                endpoint,
            )
        });
        match rewritten {
            Ok(bytes) => {
                *body = Some(bytes);
                Ok(None)
            }
            Err(why) => {
                // The scanner is done: this happens once per stream.
                log::warn!(
                    "server {}: legacy SSE endpoint event not rewritten ({why}); ending the stream",
                    server.name
                );
                Err(Error::explain(ErrorType::Custom("legacy SSE endpoint"), why).into_up())
            }
        }
    }

    /// CORS on proxied responses is the gateway's: the MCP server's own
    /// `Access-Control-*` headers are replaced by the configured ones.
    /// Without an `Origin` the request is not a browser's cross-origin call
    /// and its answer (a POST's, or an event stream) is not cacheable, so
    /// the usual response costs one scan of its header names, no edits.
    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let upstream_cors = upstream_response
            .headers
            .keys()
            .any(|name| name.as_str().starts_with("access-control-"));
        if upstream_cors {
            for name in UPSTREAM_CORS_HEADERS {
                upstream_response.remove_header(name);
            }
        }
        if ctx.origin.is_some() {
            for (name, value) in ctx.snapshot.cors.response_headers(ctx.origin.as_deref()) {
                upstream_response.append_header(name, value)?;
            }
        }
        if let Some(id) = &ctx.request_id {
            id.add_to_response(upstream_response)?;
        }
        Ok(())
    }

    /// Writes the refusal the error maps to (a JSON-RPC error, not
    /// Pingora's bare HTML page); nothing when the client has gone.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        FailToProxy {
            error_code: self.answer_failure(session, e, ctx).await,
            can_reuse_downstream: false,
        }
    }

    /// A client closing its stream (the GET stream at session end, a
    /// cancelled call) is normal: `logging` notes it at debug level and
    /// counts it as 499 instead of Pingora's "Fail to proxy" error line.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, error: &Error) -> bool {
        refusal::is_client_gone(error.etype(), error.esource())
    }

    /// Request counts and durations per server, and the access line.
    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut Self::CTX) {
        if ctx.handed_off {
            return;
        }
        // A failure decides the status even after a 200 went out: a stream
        // the upstream broke is counted as the 502/504 it is, not a success.
        let status = match error.map(|e| refusal::for_proxy_error(e.etype(), e.esource())) {
            Some(None) => refusal::CLIENT_CLOSED,
            Some(Some(failure)) => failure.status(),
            None if ctx.client_left => refusal::CLIENT_CLOSED,
            None => session.response_written().map_or(0, |r| r.status.as_u16()),
        };
        let elapsed = ctx.started.elapsed();
        let routed = Self::server(ctx);
        if let Some((server, _)) = routed {
            server.metrics.observe(status, elapsed);
        } else if let Some(fed) = &ctx.federation {
            self.observe_federation(fed, status, elapsed);
        }
        if let Some(format) = access_log::enabled() {
            let line = self.access_line(session, ctx, status, elapsed, format);
            access_log::emit(line);
        }
        if let (Some(e), Some((server, _))) = (error, routed) {
            log::debug!(
                "server {}: {} failed: {e}",
                server.name,
                session.req_header().uri.path()
            );
        }
    }
}
