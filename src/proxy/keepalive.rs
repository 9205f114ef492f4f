//! Idle keep-alive connections held in a small future.
//!
//! Pingora's HTTP/1 loop hands a connection straight back to the proxy after
//! each response, and the proxy's request future (~9 KiB, sized for the whole
//! proxying state machine) plus a 4 KiB header buffer are allocated while it
//! waits for the next request. With 10,000 idle connections that was 13 KiB of
//! the 33 KiB each one cost. This adapter waits for the first byte of the next
//! request itself and only then builds the session, so an idle connection costs
//! its socket buffers and a small task.

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// A [`ServerApp`] that runs HTTP/1 keep-alive itself and delegates each
/// request to `inner`; HTTP/2 (ALPN `h2`) goes to `inner` unchanged.
pub struct KeepAlive<A> {
    inner: Arc<A>,
    idle_timeout: Duration,
}

impl<A> KeepAlive<A> {
    /// `idle_timeout`: how long a connection may wait for its next request.
    pub fn new(inner: A, idle_timeout: Duration) -> Self {
        KeepAlive {
            inner: Arc::new(inner),
            idle_timeout,
        }
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
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let keepalive_secs = self.idle_timeout.as_secs().max(1);
        let reuse_limit = self
            .inner
            .server_options()
            .and_then(|o| o.keepalive_request_limit);
        let mut settings = None;
        let mut stopping = shutdown.clone();
        loop {
            if !next_request_arrives(&mut stream, self.idle_timeout, &mut stopping).await {
                return None;
            }
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(previous) => HttpPersistentSettings::apply_to_session(previous, &mut session),
                None => {
                    session.set_keepalive(Some(keepalive_secs));
                    session.set_keepalive_reuses_remaining(reuse_limit);
                }
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let reused = self.inner.process_new_http(session, shutdown).await?;
            let (next, persistent) = reused.consume();
            stream = next;
            settings = persistent;
        }
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.inner).await;
    }
}

/// Waits until the client sends the first byte of its next request (put back
/// for the parser), and says whether to go on: false when the client closed,
/// the connection stayed idle for `idle_timeout`, or the server is stopping.
async fn next_request_arrives(
    stream: &mut Stream,
    idle_timeout: Duration,
    stopping: &mut ShutdownWatch,
) -> bool {
    if *stopping.borrow() {
        return false;
    }
    let mut first = [0u8; 1];
    let mut peek = stream.try_peek(&mut first);
    // A busy client's next request is often already here: then no timer and
    // no shutdown subscription are set up (each cost a wake-up per request).
    if let Poll::Ready(peeked) = poll_fn(|cx| Poll::Ready(peek.as_mut().poll(cx))).await {
        return peeked.is_ok();
    }
    tokio::select! {
        biased;
        // Pingora's timer wheel: no tokio timer registration per request.
        peeked = pingora::time::timeout(idle_timeout, peek) => {
            // Ok(false): this stream cannot peek; let the parser wait instead.
            matches!(peeked, Ok(Ok(_)))
        }
        _ = stopping.changed() => false,
    }
}
