//! The lean path for MCP POSTs (issue 10).
//!
//! A Streamable HTTP POST may be answered as an event stream that lasts as
//! long as the tool works: through Pingora's proxy it holds ~100 KiB while
//! it waits for the next event (see `relay` for why). Which POST streams
//! is only known from the response head, so every MCP POST that may be
//! answered as a stream (`streams::may_stream`) and fits the path takes it:
//!
//! - `request_filter` has resolved route and identity as for any request;
//!   this module reads the (small, sized) request body, applies the same
//!   request edits, sends head and body on an idle upstream connection
//!   (`upstream_pool`) or a new one, reads the response head and runs the
//!   same response phases on it. Failures up to there are Pingora's to
//!   answer, as for any proxied request.
//! - Then the client's connection leaves the proxy's session, and the rest
//!   of the response is deferred to `KeepAlive` (`keepalive::defer`): the
//!   proxy's request state is freed, and the connection's own task copies
//!   the body as it comes, reading only when the upstream is readable.
//! - The body passes in the upstream's framing, which the relay follows
//!   (`body_end`) to know where the response ends: both connections then
//!   serve the next request (the upstream one from the pool).

use super::body_end::{self, BodyEnd, Framing};
use super::relay::{self, End, Finish, Head};
use super::stream_head::{self, Candidate};
use super::upstream_pool;
use super::{keepalive, Gateway, RequestCtx};
use crate::access_log;
use crate::upstream::SelectedBackend;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{Method, Version};
use pingora::apps::HttpPersistentSettings;
use pingora::prelude::*;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The largest request body read in whole before it is sent; a larger one
/// stays on Pingora's path, which streams it. A JSON-RPC message is a few
/// hundred bytes to a few KiB; 64 KiB is the body buffer Pingora itself
/// takes for each request, so a client cannot make this path hold more.
pub const MAX_BODY: u64 = 64 * 1024;

/// The transient buffer one read of the response goes into.
const READ: usize = 8 * 1024;

/// A POST over HTTP/1.1 with a `Content-Length` body of at most
/// [`MAX_BODY`], without upgrade or `Expect`: its body can be read before
/// anything is sent, so nothing of the general proxy path is needed.
pub fn takes_lean_path(c: &Candidate) -> bool {
    c.http1
        && c.method == Method::POST
        && c.version == Version::HTTP_11
        && c.endpoint == crate::routing::Endpoint::Mcp
        && !c.headers.contains_key(TRANSFER_ENCODING)
        && !c.headers.contains_key(UPGRADE)
        && !c.headers.contains_key(EXPECT)
        && content_length(c.headers).is_some_and(|n| n <= MAX_BODY)
}

/// The one `Content-Length` of a request (Pingora refuses conflicting ones).
pub(super) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    std::str::from_utf8(value.as_bytes()).ok()?.parse().ok()
}

impl Gateway {
    /// Takes an MCP POST over when it fits (see the module's comment):
    /// `Ok(true)` when the response went or goes out on the lean path.
    pub(super) async fn lean_post(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let Some(route) = ctx.route.as_mut() else {
            return Ok(false);
        };
        let req = session.req_header();
        if !takes_lean_path(&Candidate::of(session, route.endpoint))
            || !super::streams::may_stream(route.endpoint, &req.method, &req.headers)
            || !keepalive::can_defer()
            || over_tls(session)
        {
            return Ok(false);
        }
        let (first, replica) = route.choose_backend()?;
        if replica.url.tls {
            return Ok(false);
        }

        // `takes_lean_path` checked the length: at most `MAX_BODY`.
        let mut message = Vec::with_capacity(content_length(&req.headers).unwrap_or(0) as usize);
        while let Some(chunk) = session.read_request_body().await? {
            if message.len() + chunk.len() > MAX_BODY as usize {
                return Err(
                    Error::explain(ErrorType::InvalidHTTPHeader, "request body too long")
                        .into_down(),
                );
            }
            message.extend_from_slice(&chunk);
        }
        let idle = self.runtime.stream_idle_timeout;
        let (upstream, addr, head) = self.exchange(session, ctx, first, &message, idle).await?;
        drop(message);
        let Head {
            mut response,
            http10,
            body: body_start,
        } = head;
        let upstream_close = http10 || stream_head::connection_has(&response.headers, "close");
        self.upstream_response_filter(session, &mut response, ctx)
            .await?;
        self.response_filter(session, &mut response, ctx).await?;
        for name in stream_head::hop_by_hop_names(&response.headers, false) {
            response.remove_header(&name);
        }
        if response.headers.contains_key(TRANSFER_ENCODING) {
            // RFC 9112 §6.3: it is framed by `Transfer-Encoding` alone, and
            // a length beside it would let the client read another end.
            response.remove_header(&CONTENT_LENGTH);
        }
        let framing = body_end::response_framing(response.status, &response.headers)
            .map_err(|why| relay::upstream_error(ErrorType::InvalidHTTPHeader, why.into()))?;
        let mut end = BodyEnd::new(framing);
        let used = end
            .feed(&body_start)
            .map_err(|why| relay::upstream_error(ErrorType::InvalidHTTPHeader, why))?;
        // Pingora's session knows whether the client's connection may
        // serve another request: the client's `Connection`, the reuse
        // limit, a stop (`KeepAlive`) or a drain (`request_filter`).
        let downstream = session.as_downstream();
        let keep_client = downstream.get_keepalive().is_some()
            && downstream.get_keepalive_reuses_remaining() != Some(0)
            && framing != Framing::UntilClose
            && !self.runtime.lifecycle.is_draining();
        let persistent = HttpPersistentSettings::for_session(downstream);
        let Some(route) = ctx.route.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "no route");
        };
        let finish = Finish {
            server: route.server.clone(),
            started: ctx.started,
            status: response.status.as_u16(),
            first_body: used,
            record: access_log::enabled().map(|_| self.owned_record(session, ctx)),
            _in_flight: ctx.in_flight.take(),
        };
        let (downstream, keep_client) = take_client(session, keep_client).await?;
        ctx.handed_off = true;
        response.insert_header(CONNECTION, if keep_client { "keep-alive" } else { "close" })?;
        let mut out = stream_head::response_head(&response);
        out.extend_from_slice(&body_start[..used]);
        drop(response);
        let body = Body {
            upstream,
            addr,
            end,
            keep_upstream: !upstream_close && used == body_start.len(),
            keep_client: keep_client.then_some(persistent),
            idle,
        };
        let after = Box::pin(body.relay(downstream, out, finish));
        if let Err(after) = keepalive::defer(after) {
            // `can_defer` said otherwise: finish it in a task of its own.
            tokio::spawn(after);
        }
        Ok(true)
    }

    /// The request head for the backend `ctx` has chosen, with the same
    /// edits as on Pingora's path, and the body after it.
    fn request_wire(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        message: &[u8],
    ) -> Result<Vec<u8>> {
        let mut upstream_request = session.req_header().clone();
        for name in stream_head::hop_by_hop_names(&upstream_request.headers, true) {
            upstream_request.remove_header(&name);
        }
        self.edit_upstream_request(session, &mut upstream_request, ctx)?;
        upstream_request.insert_header(CONTENT_LENGTH, message.len())?;
        let target = upstream_request
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str());
        let mut wire = stream_head::request_head(&upstream_request, target);
        wire.reserve_exact(message.len());
        wire.extend_from_slice(message);
        Ok(wire)
    }

    /// Sends the request and reads the response head: on an idle pooled
    /// connection first, else on a new connection to this or, when
    /// connecting fails, the next backend (the head made again for it).
    /// A pooled connection that fails while the request is written goes
    /// again on a new one; once written it is not sent again (a tool call
    /// may have run), as Pingora does not retry a POST.
    async fn exchange(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        first: SelectedBackend,
        message: &[u8],
        idle: Option<Duration>,
    ) -> Result<(TcpStream, SocketAddr, Head)> {
        let pool = upstream_pool::shared();
        let mut selected = first;
        loop {
            let addr = selected.addr;
            let wire = self.request_wire(session, ctx, message)?;
            if let Some(kept) = pool.take(addr) {
                match relay::send_and_read_head(kept, &wire, idle, true).await {
                    Ok((stream, head)) => return Ok((stream, addr, head)),
                    Err(e) if e.etype() == &ErrorType::WriteError => {}
                    Err(e) => return Err(e),
                }
            }
            match connect(addr, self.runtime.connect_timeout).await {
                Ok(stream) => {
                    let (stream, head) =
                        relay::send_and_read_head(stream, &wire, idle, true).await?;
                    return Ok((stream, addr, head));
                }
                Err(e) => {
                    let e = self.connect_failed(ctx, &addr, e);
                    if !e.retry() {
                        return Err(e);
                    }
                }
            }
            let Some(route) = ctx.route.as_mut() else {
                return Error::e_explain(ErrorType::InternalError, "no route");
            };
            let (next, replica) = route.choose_backend()?;
            if replica.url.tls {
                return Error::e_explain(ErrorType::ConnectError, "TLS replica on the POST path");
            }
            selected = next;
        }
    }
}

/// A TLS client: its connection cannot be watched without consuming what
/// it sends (Pingora peeks only on plain TCP), so it stays on Pingora's path.
fn over_tls(session: &Session) -> bool {
    session
        .as_downstream()
        .digest()
        .is_some_and(|d| d.ssl_digest.is_some())
}

/// Takes the client's connection out of the session. Bytes the client
/// sent past its request (its next one, early) make the connection close
/// after this response, as on Pingora's path (`keep` comes back false).
async fn take_client(session: &mut Session, keep: bool) -> Result<(Stream, bool)> {
    if !keep {
        return Ok((relay::take_downstream(session)?, false));
    }
    let mut h1 = relay::take_h1(session)?;
    // So that `reuse` hands over what was read past the request instead of
    // refusing the connection.
    h1.set_pipelining_enabled(true);
    match h1.reuse().await? {
        Some(reusable) => {
            let (stream, early) = reusable.into_parts();
            Ok((stream, early.is_none_or(|b| b.is_empty())))
        }
        None => Error::e_explain(ErrorType::WriteError, "client connection not reusable"),
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    match pingora::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            stream.set_nodelay(true).ok();
            Ok(stream)
        }
        Ok(Err(e)) => Err(relay::upstream_error(
            ErrorType::ConnectError,
            e.to_string(),
        )),
        Err(_) => Err(relay::upstream_error(
            ErrorType::ConnectTimedout,
            "connect timed out".into(),
        )),
    }
}

/// The rest of a response after its head.
struct Body {
    upstream: TcpStream,
    addr: SocketAddr,
    end: BodyEnd,
    /// Nothing says the upstream connection cannot carry another request.
    keep_upstream: bool,
    /// The client's connection serves another request, with these settings.
    keep_client: Option<HttpPersistentSettings>,
    idle: Option<Duration>,
}

impl Body {
    /// Writes the head, copies the body, counts and logs the request, and
    /// gives back the client's connection when it can serve another one.
    async fn relay(
        mut self,
        mut downstream: Stream,
        head: Vec<u8>,
        finish: Finish,
    ) -> Option<(Stream, HttpPersistentSettings)> {
        let mut bytes = finish.first_body;
        let end = if relay::write_out(&mut downstream, &head).await.is_err() {
            End::ClientGone
        } else {
            drop(head);
            self.copy(&mut downstream, &mut bytes).await
        };
        finish.done(end, bytes);
        if end != End::Complete {
            let _ = AsyncWriteExt::shutdown(&mut downstream).await;
            return None;
        }
        if self.keep_upstream && self.end.is_done() {
            upstream_pool::shared().put(self.addr, self.upstream);
        }
        match self.keep_client.take() {
            Some(settings) => Some((downstream, settings)),
            None => {
                let _ = AsyncWriteExt::shutdown(&mut downstream).await;
                None
            }
        }
    }

    /// Copies what the upstream sends as it comes until the body ends.
    /// While it waits the task holds no buffer. The client's side is
    /// watched without consuming: a close ends the response, a byte (the
    /// client's next request, sent early) stays for the next request.
    async fn copy(&mut self, downstream: &mut Stream, bytes: &mut usize) -> End {
        let mut watch_client = true;
        let mut probe = [0u8; 1];
        while !self.end.is_done() {
            let readable = async {
                match self.idle {
                    Some(t) => pingora::time::timeout(t, self.upstream.readable())
                        .await
                        .ok(),
                    None => Some(self.upstream.readable().await),
                }
            };
            tokio::select! {
                ready = readable => match ready {
                    None => return End::UpstreamSilent,
                    Some(Err(_)) => return End::UpstreamBroke,
                    Some(Ok(())) => {}
                },
                peeked = downstream.try_peek(&mut probe), if watch_client => match peeked {
                    Ok(_) => {
                        watch_client = false;
                        continue;
                    }
                    Err(_) => return End::ClientGone,
                },
            }
            let mut buf = Vec::with_capacity(READ);
            match self.upstream.try_read_buf(&mut buf) {
                Ok(0) if self.end.until_close() => return End::Complete,
                Ok(0) => return End::UpstreamBroke,
                Ok(n) => {
                    *bytes += n;
                    let used = match self.end.feed(&buf) {
                        Ok(used) => used,
                        Err(why) => {
                            log::warn!("upstream {}: {why}; ending the response", self.addr);
                            return End::UpstreamBroke;
                        }
                    };
                    if used < n {
                        self.keep_upstream = false;
                    }
                    if used > 0 && relay::write_out(downstream, &buf[..used]).await.is_err() {
                        return End::ClientGone;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return End::UpstreamBroke,
            }
        }
        End::Complete
    }
}

#[cfg(test)]
mod tests {
    use super::super::stream_head::test_support::{candidate, headers as with};
    use super::*;
    use crate::routing::Endpoint;

    #[test]
    fn a_sized_post_takes_the_path() {
        let post = Method::POST;
        let h = with(&[("content-length", "42")]);
        assert!(takes_lean_path(&candidate(&post, &h)));
        let h = with(&[("content-length", "0")]);
        assert!(takes_lean_path(&candidate(&post, &h)));
    }

    #[test]
    fn what_the_path_cannot_carry_stays_on_pingoras() {
        let post = Method::POST;
        for pairs in [
            &[][..],
            &[("transfer-encoding", "chunked")],
            &[("content-length", "65537")],
            &[("content-length", "1"), ("content-length", "1")],
            &[("content-length", "x")],
            &[("content-length", "4"), ("expect", "100-continue")],
            &[("content-length", "4"), ("upgrade", "websocket")],
        ] {
            let h = with(pairs);
            assert!(!takes_lean_path(&candidate(&post, &h)), "{pairs:?}");
        }
        let h = with(&[("content-length", "4")]);
        let get = Method::GET;
        assert!(!takes_lean_path(&candidate(&get, &h)));
        let mut c = candidate(&post, &h);
        c.http1 = false;
        assert!(!takes_lean_path(&c));
        let mut c = candidate(&post, &h);
        c.version = Version::HTTP_10;
        assert!(!takes_lean_path(&c));
        let mut c = candidate(&post, &h);
        c.endpoint = Endpoint::Message;
        assert!(!takes_lean_path(&c));
    }
}
