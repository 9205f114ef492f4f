//! Idle keep-alive connections held in a small future.
//!
//! Pingora's HTTP/1 loop hands a connection straight back to the proxy after
//! each response, and the proxy's request future (~9 KiB, sized for the whole
//! proxying state machine) plus a 4 KiB header buffer are allocated while it
//! waits for the next request. With 10,000 idle connections that was 13 KiB of
//! the 33 KiB each one cost. This adapter waits for the first byte of the next
//! request itself and only then builds the session, so an idle connection costs
//! its socket buffers and a small task.
//!
//! It also bounds how long a request header may take as a whole: Pingora
//! bounds only each read, so a client sending a byte every few seconds would
//! hold the connection and its request state forever (slowloris).
//!
//! When the process stops (SIGQUIT's hand-over, SIGTERM after its drain), an
//! idle connection is *not* closed at once. Closing an idle HTTP/1.1
//! connection always races with a client that is sending on it (RFC 9112
//! §9.3.1), and "idle" at the stop mostly means "between two requests of a
//! busy client": closing then failed one such request at every upgrade. So
//! the connection waits on, bounded by its idle timeout and by the process's
//! exit (`lifecycle::exit_when_idle`, at most the grace period); a request
//! that arrives meanwhile is served with `Connection: close` (every request
//! begun after the stop is), and the client's next one goes to a new
//! connection, which the new process accepts. Lingering connections are not
//! in flight and do not delay the exit; a request that has begun to arrive
//! on one is ([`Lifecycle::track_arrival`]), so the exit does not cut it.
//! What is left is the instant of the exit itself, against a client that
//! stayed idle from the stop until then: a later close only shrinks the set
//! of such clients, whereas an earlier one would not remove the race.
//!
//! HTTP/2 connections are not ours: Pingora's h2 loop sends a graceful
//! GOAWAY at the stop (first with the highest stream id, then, a ping later,
//! the last one it accepted), keeps serving the streams the client opened
//! before it, and closes once they are done; those streams are in flight
//! like any request.

use crate::lifecycle::Lifecycle;
use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// A [`ServerApp`] that runs HTTP/1 keep-alive itself and delegates each
/// request to `inner`; HTTP/2 (ALPN `h2`, h2c) and custom protocols go to
/// `inner` unchanged. It relies on HTTP/1 pipelining staying off (Pingora's
/// default): a pipelined prefix carried to the next request would not wake
/// the peek.
pub struct KeepAlive<A> {
    inner: Arc<A>,
    /// Whole seconds, at least one, as Pingora's sessions count them.
    idle_secs: u64,
    header_timeout: Duration,
    /// Counts a request from its first byte, before the proxy sees it.
    lifecycle: Option<&'static Lifecycle>,
}

/// What finishes a request after the proxy let go of it, and gives the
/// connection back for the next request with the settings it carries
/// (`None`: close it).
pub type After = Pin<Box<dyn Future<Output = Option<(Stream, HttpPersistentSettings)>> + Send>>;

/// What `KeepAlive` knows of the request it is running.
#[derive(Default)]
struct Running {
    /// The request's header is in, in whole.
    header_complete: Cell<bool>,
    after: RefCell<Option<After>>,
}

tokio::task_local! {
    static RUNNING: Running;
}

/// Tells `KeepAlive` that the current request's header has been read; the
/// proxy's first phase calls it. Outside `KeepAlive` (h2) it does nothing.
pub fn header_complete() {
    let _ = RUNNING.try_with(|r| r.header_complete.set(true));
}

/// Whether the current request runs under `KeepAlive` (HTTP/1), so that
/// [`defer`] can hand its connection back.
pub fn can_defer() -> bool {
    RUNNING.try_with(|_| ()).is_ok()
}

/// Hands the rest of the current request to `KeepAlive`: once the proxy
/// has finished with it (having been given an empty session), `KeepAlive`
/// runs `after` in the connection's own task and serves the next request
/// on the connection it returns. The proxy's request state is gone by
/// then, which is the point: a response that streams for minutes holds
/// only what `after` holds. `Err` gives `after` back outside `KeepAlive`.
pub fn defer(after: After) -> Result<(), After> {
    let mut after = Some(after);
    let _ = RUNNING.try_with(|r| *r.after.borrow_mut() = after.take());
    match after {
        Some(after) => Err(after),
        None => Ok(()),
    }
}

impl<A> KeepAlive<A> {
    /// `idle_timeout`: how long a connection may wait for its next request,
    /// and for each read of a request's header; `header_timeout`: how long a
    /// request header may take from its first byte to its end.
    pub fn new(inner: A, idle_timeout: Duration, header_timeout: Duration) -> Self {
        KeepAlive {
            inner: Arc::new(inner),
            idle_secs: idle_timeout.as_secs_f64().ceil().max(1.0) as u64,
            header_timeout,
            lifecycle: None,
        }
    }

    /// Counts each HTTP/1 request with `lifecycle` from its first byte to
    /// its answer, so that the exit after a stop waits for it.
    pub fn counting_arrivals(mut self, lifecycle: &'static Lifecycle) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }
}

#[async_trait]
impl<A> ServerApp for KeepAlive<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let options = self.inner.server_options();
        if options.is_some_and(|o| o.h2c || o.force_custom)
            || matches!(
                stream.selected_alpn_proto(),
                Some(ALPN::H2) | Some(ALPN::Custom(_))
            )
        {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let reuse_limit = options.and_then(|o| o.keepalive_request_limit);
        let idle = Duration::from_secs(self.idle_secs);
        let mut first = true;
        let mut settings = None;
        loop {
            if !next_request_arrives(&mut stream, idle).await {
                return None;
            }
            let arriving = self.lifecycle.map(|l| l.track_arrival());
            let mut session = ServerSession::new_http1(stream);
            if first {
                session.set_keepalive(Some(self.idle_secs));
                session.set_keepalive_reuses_remaining(reuse_limit);
                first = false;
            } else if let Some(previous) = settings.take() {
                HttpPersistentSettings::apply_to_session(previous, &mut session);
                // Pingora carries "no timeout" (0) or the client's own
                // `Keep-Alive: timeout=` over from the last request: a
                // client could then trickle a header forever.
                if matches!(session.get_keepalive(), Some(s) if s == 0 || s > self.idle_secs) {
                    session.set_keepalive(Some(self.idle_secs));
                }
            }
            // After the stop every answer closes its connection: the
            // client's next request goes to a new one (the new process).
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let request = self.inner.process_new_http(session, shutdown);
            let (done, after) = within_header_deadline(request, self.header_timeout).await;
            drop(arriving);
            if let Some(after) = after {
                // The request's own future is done; what it deferred holds
                // the connection from here. It is counted in flight itself.
                let (next, persistent) = after.await?;
                stream = next;
                settings = Some(persistent);
                continue;
            }
            let (next, persistent) = done??.consume();
            stream = next;
            settings = persistent;
        }
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.inner).await;
    }
}

/// Runs one request, giving up (`None`, which drops the connection) if its
/// header is not complete within `deadline`; with what the request
/// deferred ([`defer`]). The header is usually complete on the first poll,
/// and then no timer is armed at all.
async fn within_header_deadline<F: Future>(
    request: F,
    deadline: Duration,
) -> (Option<F::Output>, Option<After>) {
    RUNNING
        .scope(Running::default(), async move {
            let done = run_request(request, deadline).await;
            (done, RUNNING.with(|r| r.after.take()))
        })
        .await
}

async fn run_request<F: Future>(request: F, deadline: Duration) -> Option<F::Output> {
    let header_complete = || RUNNING.with(|r| r.header_complete.get());
    let mut request = std::pin::pin!(request);
    if let Poll::Ready(done) = poll_fn(|cx| Poll::Ready(request.as_mut().poll(cx))).await {
        return Some(done);
    }
    if !header_complete() {
        // Pingora's timer wheel, as for the idle wait.
        match pingora::time::timeout(deadline, request.as_mut()).await {
            Ok(done) => return Some(done),
            Err(_) if !header_complete() => return None,
            Err(_) => {}
        }
    }
    Some(request.await)
}

/// Waits until the client sends the first byte of its next request (put back
/// for the parser), and says whether to go on: false when the client closed
/// or the connection stayed idle for `idle_timeout`. A stop does not end the
/// wait (see the module's comment): the process's exit does.
async fn next_request_arrives(stream: &mut Stream, idle_timeout: Duration) -> bool {
    let mut first = [0u8; 1];
    let mut peek = stream.try_peek(&mut first);
    // A busy client's next request is often already here: then no timer is
    // set up at all.
    if let Poll::Ready(peeked) = poll_fn(|cx| Poll::Ready(peek.as_mut().poll(cx))).await {
        return peeked.is_ok();
    }
    // Pingora's timer wheel: no tokio timer registration per request.
    // Ok(false): this stream cannot peek; let the parser wait instead.
    matches!(pingora::time::timeout(idle_timeout, peek).await, Ok(Ok(_)))
}
