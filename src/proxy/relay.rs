//! The lean path for open event streams (issue 10).
//!
//! Through Pingora's proxy an open stream holds ~115 KiB while it waits for
//! its next event: a 64 KiB upstream body buffer reserved before every read
//! (`BODY_BUFFER_SIZE`, a private constant), the proxy's request future and
//! its two channels, header buffers kept after parsing. None of it has a
//! knob, and `ProxyHttp` never sees the upstream session.
//!
//! So the Streamable HTTP GET stream (see `stream_head::takes_lean_path`)
//! leaves Pingora once everything is decided: `request_filter` resolves the
//! route and identity as for any request, this module picks the backend,
//! applies the same request edits (`edit_upstream_request`), connects,
//! sends the head, reads the response head and runs the same response
//! phases on it. Failures up to there are returned to Pingora, which answers
//! them as for any proxied request. Then the client's connection is taken
//! out of the session and a small task copies the body byte for byte,
//! reading only when the upstream socket is readable, into a buffer freed
//! after each event: a waiting stream holds its two sockets, the client
//! connection's buffers, and this task.
//!
//! The legacy `/sse` stream takes the same path: the task rewrites its
//! `endpoint` event on the way (`sse_relay`), then copies as for the other.
//!
//! Both connections close with the response (see `stream_head`). The task
//! holds the request's in-flight guard (drain waits for it), counts the
//! request in the metrics and writes the access line when the stream ends.

use super::body_end::{self, BodyEnd, Framing};
use super::sse_relay::{EndpointRelay, Step};
use super::stream_head::{self, Candidate};
use super::{session_reply, Gateway, RequestCtx};
use crate::access_log;
use crate::lifecycle::InFlight;
use crate::refusal;
use crate::state::{Runtime, ServerRuntime};
use crate::upstream::SelectedBackend;
use pingora::prelude::*;
use pingora::protocols::http::v1::server::HttpSession as H1Session;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The transient buffer one read of events goes into; freed once written.
const EVENT_READ: usize = 8 * 1024;

/// How a relayed stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The upstream closed its side: the response is complete.
    Complete,
    ClientGone,
    /// Nothing from the upstream for the stream idle timeout.
    UpstreamSilent,
    UpstreamBroke,
}

/// The status a relayed stream is counted and logged with, as Pingora's
/// path counts the same ends (see `refusal::for_proxy_error`).
fn end_status(end: End, response: u16) -> u16 {
    match end {
        End::Complete => response,
        End::ClientGone => refusal::CLIENT_CLOSED,
        End::UpstreamSilent => 504,
        End::UpstreamBroke => 502,
    }
}

/// What the task needs once the stream ends.
pub(super) struct Finish {
    pub server: Arc<ServerRuntime>,
    pub started: Instant,
    pub status: u16,
    /// Body bytes that came with the response head.
    pub first_body: usize,
    /// Made only when the access log is on.
    pub record: Option<super::access::OwnedRecord>,
    pub _in_flight: Option<InFlight>,
}

impl Finish {
    /// Counts the request and writes its access line: `bytes` of body
    /// came from the upstream.
    pub fn done(self, end: End, bytes: usize) {
        let status = end_status(end, self.status);
        let elapsed = self.started.elapsed();
        self.server.metrics.observe(status, elapsed);
        if let (Some(format), Some(record)) = (access_log::enabled(), self.record) {
            access_log::emit(record.line(status, elapsed, bytes, format));
        }
        if end != End::Complete {
            log::debug!("server {}: stream ended: {end:?}", self.server.name);
        }
    }
}

/// The legacy `/sse` stream's endpoint rewrite, while it lasts: what sealing
/// the gateway's endpoint needs, owned by the task.
struct SseRewrite {
    relay: EndpointRelay,
    runtime: Arc<Runtime>,
    server: Arc<ServerRuntime>,
    selected: Option<SelectedBackend>,
    principal: String,
}

impl SseRewrite {
    /// What goes to the client for one read (`None`: the upstream closed),
    /// and whether the rewrite is over; `Err` ends the stream, as Pingora's
    /// body filter ends it (one warning, counted as 502).
    fn feed(&mut self, read: Option<&[u8]>) -> Result<Step, End> {
        let SseRewrite {
            relay,
            runtime,
            server,
            selected,
            principal,
        } = self;
        relay
            .feed(read, |endpoint| {
                session_reply::endpoint_event(
                    runtime,
                    server,
                    selected.as_ref(),
                    principal,
                    endpoint,
                )
            })
            .map_err(|why| {
                log::warn!(
                    "server {}: legacy SSE endpoint event not rewritten ({why}); ending the stream",
                    server.name
                );
                End::UpstreamBroke
            })
    }
}

/// The body's way through the relay: the `/sse` rewrite while it lasts,
/// then the upstream's framing, followed to the body's end so that a body
/// cut short is not counted as complete.
struct Framed {
    sse: Option<Box<SseRewrite>>,
    end: BodyEnd,
}

impl Framed {
    /// The bytes to write for one read; `Err` ends the stream.
    fn through(&mut self, read: Vec<u8>) -> Result<Vec<u8>, End> {
        if let Some(rewrite) = self.sse.as_mut() {
            return match rewrite.feed(Some(&read))? {
                Step::More(out) => Ok(out),
                Step::Passing(out) => {
                    if let Some(rewrite) = self.sse.take() {
                        self.end = rewrite.relay.into_end();
                    }
                    Ok(out)
                }
            };
        }
        let mut read = read;
        let used = self.end.feed(&read).map_err(|why| {
            log::warn!("stream relay: {why}; ending the stream");
            End::UpstreamBroke
        })?;
        read.truncate(used);
        Ok(read)
    }

    /// The whole body has passed.
    fn done(&self) -> bool {
        self.sse.is_none() && self.end.is_done()
    }

    /// How the stream ended, the upstream having closed.
    fn at_close(&mut self) -> End {
        if let Some(mut rewrite) = self.sse.take() {
            return match rewrite.feed(None) {
                Err(end) => end,
                Ok(_) => End::Complete,
            };
        }
        if self.end.is_done() || self.end.until_close() {
            End::Complete
        } else {
            End::UpstreamBroke
        }
    }
}

pub(super) fn upstream_error(etype: ErrorType, why: String) -> Box<Error> {
    Error::explain(etype, why).into_up()
}

impl Gateway {
    /// Takes the request over when it is a plain GET stream: `Ok(true)`
    /// when the stream was handed to its task (Pingora has nothing left to
    /// do), `Ok(false)` to leave it to Pingora's path.
    pub(super) async fn lean_stream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let Some(route) = ctx.route.as_ref() else {
            return Ok(false);
        };
        if !stream_head::takes_lean_path(&Candidate::of(session, route.endpoint)) {
            return Ok(false);
        }
        let Some(upstream) = self.connect_stream(ctx).await? else {
            return Ok(false);
        };
        let mut upstream_request = session.req_header().clone();
        for name in stream_head::hop_by_hop_names(&upstream_request.headers, true) {
            upstream_request.remove_header(&name);
        }
        self.edit_upstream_request(session, &mut upstream_request, ctx)?;
        upstream_request.insert_header(http::header::CONNECTION, "close")?;
        let target = upstream_request
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str());
        let head = stream_head::request_head(&upstream_request, target);
        drop(upstream_request);

        let timeout = self.runtime.stream_idle_timeout;
        let (upstream, head) = send_and_read_head(upstream, &head, timeout, false).await?;
        let Head {
            mut response,
            body: body_start,
            ..
        } = head;
        self.upstream_response_filter(session, &mut response, ctx)
            .await?;
        self.response_filter(session, &mut response, ctx).await?;
        for name in stream_head::hop_by_hop_names(&response.headers, false) {
            response.remove_header(&name);
        }
        if response
            .headers
            .contains_key(http::header::TRANSFER_ENCODING)
        {
            // RFC 9112 §6.3: framed by `Transfer-Encoding` alone.
            response.remove_header(&http::header::CONTENT_LENGTH);
        }
        response.insert_header(http::header::CONNECTION, "close")?;
        let mut out = stream_head::response_head(&response);
        let Some(route) = ctx.route.as_mut() else {
            return Error::e_explain(ErrorType::InternalError, "no route");
        };
        // Set by `upstream_response_filter` on a 200 to `/sse`.
        let sse = route.sse_scanner.take().map(|_| {
            Box::new(SseRewrite {
                relay: EndpointRelay::new(stream_head::is_chunked(&response.headers)),
                runtime: self.runtime.clone(),
                server: route.server.clone(),
                selected: route.selected,
                principal: route.identity.principal().to_string(),
            })
        });
        let first_body = body_start.len();
        let mut framed = Framed {
            end: match sse {
                // Replaced by the rewrite's own once it is over.
                Some(_) => BodyEnd::new(Framing::UntilClose),
                None => body_end::response_framing(response.status, &response.headers)
                    .map(BodyEnd::new)
                    .map_err(|why| upstream_error(ErrorType::InvalidHTTPHeader, why.into()))?,
            },
            sse,
        };
        let body_start = if framed.sse.is_some() {
            body_start
        } else {
            let mut body = framed.through(body_start).map_err(|_| {
                upstream_error(ErrorType::InvalidHTTPHeader, "malformed body".into())
            })?;
            out.append(&mut body);
            Vec::new()
        };
        let status = response.status.as_u16();
        drop(response);

        let finish = Finish {
            server: route.server.clone(),
            started: ctx.started,
            status,
            first_body,
            record: access_log::enabled().map(|_| self.owned_record(session, ctx)),
            _in_flight: ctx.in_flight.take(),
        };
        let downstream = take_downstream(session)?;
        ctx.handed_off = true;
        upstream.set_nodelay(true).ok();
        let sent = Sent {
            head: out,
            body: body_start,
        };
        tokio::spawn(relay(downstream, upstream, sent, framed, timeout, finish));
        Ok(true)
    }

    /// Connects to the session's backend or the next one round robin, as
    /// `upstream_peer` and `fail_to_connect` do for Pingora's path; `None`
    /// when the backend speaks TLS (left to Pingora's connector).
    async fn connect_stream(&self, ctx: &mut RequestCtx) -> Result<Option<TcpStream>> {
        let connect_timeout = self.runtime.connect_timeout;
        loop {
            let Some(route) = ctx.route.as_mut() else {
                return Error::e_explain(ErrorType::InternalError, "no route");
            };
            let (selected, replica) = route.choose_backend()?;
            if replica.url.tls {
                return Ok(None);
            }
            let e = match pingora::time::timeout(connect_timeout, TcpStream::connect(selected.addr))
                .await
            {
                Ok(Ok(stream)) => return Ok(Some(stream)),
                Ok(Err(e)) => upstream_error(ErrorType::ConnectError, e.to_string()),
                Err(_) => upstream_error(ErrorType::ConnectTimedout, "connect timed out".into()),
            };
            let e = self.connect_failed(ctx, &selected.addr, e);
            if !e.retry() {
                return Err(e);
            }
        }
    }
}

/// Sends the request head and reads the response head (each read bounded
/// by the stream's idle timeout, as Pingora bounds them with the peer's
/// read timeout): the upstream connection, the parsed head, and the body
/// bytes that came with it.
/// Interim (`1xx`) heads are skipped with `skip_interim` (a POST's), else
/// refused: a GET is not answered `100`/`103` by an MCP server.
pub(super) async fn send_and_read_head(
    mut upstream: TcpStream,
    head: &[u8],
    timeout: Option<Duration>,
    skip_interim: bool,
) -> Result<(TcpStream, Head)> {
    if let Err(e) = upstream.write_all(head).await {
        return Err(upstream_error(ErrorType::WriteError, e.to_string()));
    }
    let mut buf = Vec::with_capacity(1024);
    loop {
        let parsed = stream_head::parse_response_head(&buf)
            .map_err(|why| upstream_error(ErrorType::InvalidHTTPHeader, why.into()))?;
        if let Some(parsed) = parsed {
            if parsed.status.is_informational() {
                if !skip_interim || parsed.status == http::StatusCode::SWITCHING_PROTOCOLS {
                    return Err(upstream_error(
                        ErrorType::InvalidHTTPHeader,
                        "informational response to a stream request".into(),
                    ));
                }
                buf.drain(..parsed.len);
                continue;
            }
            let mut response = ResponseHeader::build(parsed.status, Some(parsed.headers.len()))?;
            for (name, value) in parsed.headers {
                response.append_header(name, value)?;
            }
            let body = buf.split_off(parsed.len);
            let head = Head {
                response,
                http10: parsed.http10,
                body,
            };
            return Ok((upstream, head));
        }
        let read = upstream.read_buf(&mut buf);
        let n = match timeout {
            Some(t) => match pingora::time::timeout(t, read).await {
                Ok(n) => n,
                Err(_) => {
                    return Err(upstream_error(
                        ErrorType::ReadTimedout,
                        "no response head within the stream idle timeout".into(),
                    ))
                }
            },
            None => read.await,
        };
        match n {
            Ok(0) => {
                return Err(upstream_error(
                    ErrorType::ConnectionClosed,
                    "closed before the response head".into(),
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(upstream_error(ErrorType::ReadError, e.to_string())),
        }
    }
}

/// An upstream's final response head.
pub(super) struct Head {
    pub response: ResponseHeader,
    pub http10: bool,
    /// Body bytes that came with the head.
    pub body: Vec<u8>,
}

/// Takes the client's connection out of the session, leaving an empty one
/// that Pingora finishes without writing anything or keeping it alive.
pub(super) fn take_downstream(session: &mut Session) -> Result<Stream> {
    Ok(take_h1(session)?.into_inner())
}

/// The client's HTTP/1 session, an empty one left in its place (Pingora
/// finishes that one without writing anything or keeping it alive).
pub(super) fn take_h1(session: &mut Session) -> Result<H1Session> {
    let mut placeholder = ServerSession::new_http1(Box::new(std::io::Cursor::new(Vec::new())));
    placeholder.set_keepalive(None);
    match std::mem::replace(&mut *session.downstream_session, placeholder) {
        ServerSession::H1(h1) => Ok(h1),
        other => {
            *session.downstream_session = other;
            Error::e_explain(ErrorType::InternalError, "lean path on HTTP/2")
        }
    }
}

/// What came with the upstream's response head: the head to write, and
/// the body bytes that still go through the `/sse` rewrite (else in `head`).
struct Sent {
    head: Vec<u8>,
    body: Vec<u8>,
}

/// The stream's task: the head, then the body as it comes, until either
/// side ends; then the metrics and the access line.
async fn relay(
    mut downstream: Stream,
    upstream: TcpStream,
    sent: Sent,
    mut framed: Framed,
    idle: Option<Duration>,
    finish: Finish,
) {
    let mut bytes = finish.first_body;
    let end = match start(&mut downstream, sent, &mut framed).await {
        Ok(()) if framed.done() => End::Complete,
        Ok(()) => copy_events(&mut downstream, &upstream, &mut framed, idle, &mut bytes).await,
        Err(end) => end,
    };
    drop(framed);
    drop(upstream);
    // Counted before the client sees the end: a scrape after it has it.
    finish.done(end, bytes);
    let _ = AsyncWriteExt::shutdown(&mut downstream).await;
}

/// Writes the head and the body bytes that came with it.
async fn start(downstream: &mut Stream, sent: Sent, framed: &mut Framed) -> Result<(), End> {
    let gone = |_| End::ClientGone;
    write_out(downstream, &sent.head).await.map_err(gone)?;
    if sent.body.is_empty() {
        return Ok(());
    }
    let out = framed.through(sent.body)?;
    write_out(downstream, &out).await.map_err(gone)
}

pub(super) async fn write_out(downstream: &mut Stream, data: &[u8]) -> std::io::Result<()> {
    downstream.write_all(data).await?;
    downstream.flush().await
}

/// Copies what the upstream sends as it comes. While it waits the task
/// holds no buffer: it waits for readability, then reads into a fresh one.
/// A read on the client's side sees at once when the client leaves.
async fn copy_events(
    downstream: &mut Stream,
    upstream: &TcpStream,
    framed: &mut Framed,
    idle: Option<Duration>,
    bytes: &mut usize,
) -> End {
    let mut probe = [0u8; 1];
    loop {
        let readable = async {
            match idle {
                Some(t) => pingora::time::timeout(t, upstream.readable()).await.ok(),
                None => Some(upstream.readable().await),
            }
        };
        tokio::select! {
            ready = readable => match ready {
                None => return End::UpstreamSilent,
                Some(Err(_)) => return End::UpstreamBroke,
                Some(Ok(())) => {}
            },
            sent = downstream.read(&mut probe) => match sent {
                // A client does not send on its stream's connection; what
                // it sends anyway is dropped.
                Ok(n) if n > 0 => continue,
                _ => return End::ClientGone,
            },
        }
        let mut buf = Vec::with_capacity(EVENT_READ);
        match upstream.try_read_buf(&mut buf) {
            Ok(0) => return framed.at_close(),
            Ok(n) => {
                *bytes += n;
                let out = match framed.through(buf) {
                    Ok(out) => out,
                    Err(end) => return end,
                };
                if !out.is_empty() && write_out(downstream, &out).await.is_err() {
                    return End::ClientGone;
                }
                if framed.done() {
                    return End::Complete;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return End::UpstreamBroke,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_counted_as_pingora_counts_them() {
        assert_eq!(end_status(End::Complete, 200), 200);
        assert_eq!(end_status(End::Complete, 405), 405);
        assert_eq!(end_status(End::ClientGone, 200), refusal::CLIENT_CLOSED);
        assert_eq!(end_status(End::UpstreamSilent, 200), 504);
        assert_eq!(end_status(End::UpstreamBroke, 200), 502);
        // The same statuses Pingora's path gives the same failures.
        let up =
            |t| refusal::for_proxy_error(&t, &pingora::ErrorSource::Upstream).map(|r| r.status());
        assert_eq!(up(ErrorType::ReadTimedout), Some(504));
        assert_eq!(up(ErrorType::ReadError), Some(502));
    }
}
