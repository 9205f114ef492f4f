//! Writing the responses the gateway answers itself, and turning a failed
//! proxy attempt into one.

use super::federation::{FederationCtx, Target};
use super::{peer_ip, Gateway, RequestCtx, RouteCtx};
use crate::cors::Check;
use crate::local;
use crate::refusal::{self, Refusal};
use crate::responses::{ErrorShape, LocalResponse, SECURITY_HEADERS};
use crate::routing::{self, Endpoint, Route};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// What `triage` lets through: a proxied server's route, or a federation one.
pub(super) enum Admitted {
    Server(RouteCtx),
    Federation(FederationCtx),
}

pub(super) async fn write_local(session: &mut Session, response: LocalResponse) -> Result<()> {
    let mut header = ResponseHeader::build(
        response.status,
        Some(3 + SECURITY_HEADERS.len() + response.extra_headers.len()),
    )?;
    // A 204 (a CORS preflight) has no body, so neither length nor type.
    let no_content = response.status == 204;
    if !no_content {
        header.insert_header("content-type", response.content_type)?;
        header.insert_header("content-length", response.body.len().to_string())?;
    }
    header.insert_header("cache-control", "no-store")?;
    for (name, value) in SECURITY_HEADERS {
        header.insert_header(name, value)?;
    }
    for (name, value) in response.extra_headers {
        header.append_header(name, value)?;
    }
    session
        .write_response_header(Box::new(header), no_content)
        .await?;
    if no_content {
        return Ok(());
    }
    session.write_response_body(Some(response.body), true).await
}

impl Gateway {
    /// `request_filter`'s decision: the origin check and CORS preflight,
    /// then a local endpoint, a refusal, or the route to proxy. A response
    /// comes with the CORS headers the request's origin gets.
    pub(super) fn triage(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<Admitted, LocalResponse> {
        let req = session.req_header();
        let route = routing::classify(req.uri.path());
        let shape = match route {
            Route::Server { .. } => ErrorShape::JsonRpc,
            Route::Federation(p) if p.speaks_json_rpc() => ErrorShape::JsonRpc,
            _ => ErrorShape::Plain,
        };
        let snapshot = &ctx.snapshot;
        let outcome = match snapshot.cors.check(&req.method, &req.headers) {
            Check::Refuse => {
                let origin = req.headers.get(http::header::ORIGIN);
                log::info!("403 {}: origin {origin:?} not allowed", req.uri.path());
                Err(self.refuse(&Refusal::OriginNotAllowed, shape))
            }
            Check::Preflight(origin) => Err(snapshot.cors.preflight(&origin)),
            Check::Pass(origin) => {
                ctx.origin = origin;
                match route {
                    Route::Local(endpoint) => Err(local::respond(
                        endpoint,
                        &self.runtime,
                        snapshot,
                        &req.headers,
                        peer_ip(session),
                    )
                    .unwrap_or_else(|r| self.refuse(&r, shape))),
                    Route::NotFound => Err(self.refuse(&Refusal::NotFound, shape)),
                    Route::Federation(path) => self
                        .admit_federation(session, Target::Path(path))
                        .map(Admitted::Federation)
                        .map_err(|(r, shape)| self.refuse(&r, shape)),
                    Route::Server { name, endpoint } => {
                        match self.route(session, snapshot, name, endpoint) {
                            Ok(route) => Ok(Admitted::Server(route)),
                            // Only a name no server has can be a virtual
                            // server's: the proxied routes pay nothing.
                            Err(Refusal::UnknownServer) if endpoint == Endpoint::Mcp => {
                                match snapshot.virtual_server(name) {
                                    Some(v) => self
                                        .admit_federation(session, Target::Virtual(v.clone()))
                                        .map(Admitted::Federation)
                                        .map_err(|(r, shape)| self.refuse(&r, shape)),
                                    None => Err(self.refuse(&Refusal::UnknownServer, shape)),
                                }
                            }
                            Err(r) => Err(self.refuse(&r, shape)),
                        }
                    }
                }
            }
        };
        outcome.map_err(|mut response| {
            let cors = ctx.snapshot.cors.response_headers(ctx.origin.as_deref());
            response.extra_headers.extend(cors);
            response
        })
    }

    /// The response for a refusal, counted under its reason.
    pub(super) fn refuse(&self, refusal: &Refusal, shape: ErrorShape) -> LocalResponse {
        self.runtime.metrics.refused(refusal.reason());
        refusal.response(shape)
    }

    /// Writes the refusal a failed proxy attempt maps to; returns the
    /// status to report (499 when the client has gone and nothing is sent).
    pub(super) async fn answer_failure(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &RequestCtx,
    ) -> u16 {
        let Some(refusal) = refusal::for_proxy_error(e.etype(), e.esource()) else {
            return refusal::CLIENT_CLOSED;
        };
        if session
            .response_written()
            .is_some_and(|r| !r.status.is_informational())
        {
            // Mid-response (a stream that broke or went silent too long): an
            // error body would be spliced into it and the chunked body ended
            // cleanly. Writing nothing makes Pingora drop the connection
            // without the last chunk, so the client sees the response cut.
            return 0;
        }
        let shape = match (&ctx.route, &ctx.federation) {
            (Some(_), _) => ErrorShape::JsonRpc,
            (None, Some(fed)) => fed.shape(),
            (None, None) => ErrorShape::Plain,
        };
        let mut response = self.refuse(&refusal, shape);
        let cors = ctx.snapshot.cors.response_headers(ctx.origin.as_deref());
        response.extra_headers.extend(cors);
        if let Err(write_error) = write_local(session, response).await {
            log::debug!("could not send error response: {write_error}");
        }
        refusal.status()
    }
}
