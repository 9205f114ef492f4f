//! Calls on a caller's behalf: the owning server's header policy applied
//! to the caller's headers exactly as on its proxied route, over an MCP
//! session pooled per (server, principal, upstream headers), so a call
//! costs one round trip and one caller's session never serves another.
//! A front client that can answer server requests (sampling, elicitation,
//! roots) gets sessions of its own, closed with its front session, whose
//! server requests go to it (`federation::relay`).

use super::session::{self, fingerprint, session_headers, UpstreamHandler, UpstreamSession};
use super::wire_pool::{self, WireCall, WirePool};
use crate::federation::relay::FrontClient;
use crate::federation::{CallContext, CallError, Caller};
use crate::headers::RequestFacts;
use crate::identity::{Identity, Peer};
use crate::state::ServerRuntime;
use crate::upstream::ServerUpstream;
use http::HeaderValue;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam,
    ClientRequest, ErrorCode, GetPromptRequest, GetPromptRequestParams, GetPromptResult,
    JsonObject, ReadResourceRequest, ReadResourceRequestParams, ReadResourceResult, ServerResult,
};
use rmcp::service::{PeerRequestOptions, ServiceError};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Who a pooled session belongs to. Every part must match for reuse.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub server: String,
    pub principal: String,
    /// [`session::fingerprint`] of the headers the session sends.
    pub headers: [u8; 32],
    /// The server's replica set (kept alive by the session, so the address
    /// is not reused while the key exists): new URLs or TLS, new sessions.
    pub upstream: usize,
    /// The front session ([`FrontClient::id`]) whose server requests the
    /// session relays; `None`: shared, it relays none.
    pub front: Option<u64>,
}

impl PoolKey {
    pub fn new(
        server: &ServerRuntime,
        identity: &Identity,
        headers: &HashMap<http::HeaderName, HeaderValue>,
        front: Option<&FrontClient>,
    ) -> Self {
        PoolKey {
            server: server.name.clone(),
            principal: identity.principal().to_string(),
            headers: fingerprint(headers),
            upstream: Arc::as_ptr(&server.upstream) as usize,
            front: front.map(|f| f.id),
        }
    }
}

struct Pooled {
    session: UpstreamSession,
    handler: UpstreamHandler,
    _upstream: Arc<ServerUpstream>,
}

struct Slot {
    session: OnceCell<Arc<Pooled>>,
    /// Milliseconds since the pool's epoch.
    last_used: AtomicU64,
}

/// Why a request failed, and whether the session broke with it.
struct Failure {
    error: CallError,
    transport: bool,
}

impl Failure {
    fn transport(message: String) -> Self {
        Failure {
            error: CallError::Upstream(message),
            transport: true,
        }
    }

    fn reply(error: CallError) -> Self {
        Failure {
            error,
            transport: false,
        }
    }
}

/// Timeouts of upstream sessions.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// `initialize`.
    pub initialize: Duration,
    /// Upstream silence during a call (progress restarts it).
    pub read: Duration,
    /// A session unused this long is closed.
    pub idle: Duration,
}

type Slots = Mutex<HashMap<PoolKey, Arc<Slot>>>;

pub struct SessionPool {
    /// Shared with the tasks that close a front client's sessions when its
    /// front session ends.
    slots: Arc<Slots>,
    /// The gateway's own sessions for plain calls (`wire`).
    wire: WirePool,
    epoch: Instant,
    timeouts: Timeouts,
}

/// Only the `Host` the session's transport sets itself: a placeholder for
/// the header policy, whose `Host` is never sent (see `session_headers`).
static PLANNING_HOST: HeaderValue = HeaderValue::from_static("upstream");

impl SessionPool {
    pub fn new(timeouts: Timeouts) -> Self {
        SessionPool {
            slots: Arc::new(Mutex::new(HashMap::new())),
            wire: WirePool::default(),
            epoch: Instant::now(),
            timeouts,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Arc<Slot>>> {
        lock(&self.slots)
    }

    /// Closes `client`'s sessions when its front session ends.
    fn close_with(&self, client: &FrontClient) {
        let slots = Arc::downgrade(&self.slots);
        let (id, ended) = (client.id, client.ended.clone());
        tokio::spawn(async move {
            ended.cancelled().await;
            if let Some(slots) = slots.upgrade() {
                lock(&slots).retain(|key, _| key.front != Some(id));
            }
        });
    }

    /// Tells the servers `client` has sessions with that its roots changed.
    pub fn roots_changed(&self, client: u64) {
        let sessions: Vec<Arc<Pooled>> = self
            .slots()
            .iter()
            .filter(|(key, _)| key.front == Some(client))
            .filter_map(|(_, slot)| slot.session.get().cloned())
            .collect();
        for pooled in sessions {
            tokio::spawn(async move {
                let _ = pooled.session.peer().notify_roots_list_changed().await;
            });
        }
    }

    /// How many sessions are pooled.
    pub fn len(&self) -> usize {
        self.slots().len() + self.wire.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes sessions idle longer than the idle timeout (dropping a
    /// session ends it and its transport).
    pub fn sweep(&self) {
        let now = self.now_ms();
        let idle = self.timeouts.idle.as_millis() as u64;
        self.slots()
            .retain(|_, slot| now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) < idle);
        self.wire.sweep(self.timeouts.idle);
    }

    fn forget(&self, key: &PoolKey, slot: &Arc<Slot>) {
        remove_if_same(&mut self.slots(), key, slot);
    }

    /// `tools/call` of `tool` (the server's own name for it) on `server`
    /// as `identity`, who `server`'s auth policy accepted from `caller`.
    pub async fn call(
        &self,
        server: &ServerRuntime,
        caller: &Caller,
        identity: &Identity,
        tool: &str,
        arguments: Option<JsonObject>,
        context: CallContext,
    ) -> Result<CallToolResult, CallError> {
        let mut params = CallToolRequestParams::new(tool.to_string());
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        match self
            .request(server, caller, identity, request, context)
            .await?
        {
            ServerResult::CallToolResult(result) => Ok(result),
            _ => Err(CallError::Upstream(format!(
                "server {}: unexpected answer to tools/call",
                server.name
            ))),
        }
    }

    /// [`Self::call`], the result as the server wrote it. A call that
    /// needs nothing of rmcp's client (no front client to relay server
    /// requests to, no progress) to a plain-HTTP server goes over the
    /// gateway's own session (`wire`): one request, nothing parsed twice.
    pub async fn call_json(
        &self,
        server: &ServerRuntime,
        caller: &Caller,
        identity: &Identity,
        tool: &str,
        arguments: Option<JsonObject>,
        context: CallContext,
    ) -> Result<Box<RawValue>, CallError> {
        if context.client.is_some() || context.progress.is_some() || !wire_pool::serves(server) {
            // Boxed: rmcp's call is a large future this one need not carry.
            let result =
                Box::pin(self.call(server, caller, identity, tool, arguments, context)).await?;
            return serde_json::value::to_raw_value(&result)
                .map_err(|e| CallError::Upstream(format!("server {}: {e}", server.name)));
        }
        let headers = self.plan_headers(server, caller, identity);
        let key = PoolKey::new(server, identity, &headers, None);
        let arguments = match arguments {
            Some(a) => Some(
                serde_json::to_string(&a)
                    .map_err(|e| CallError::InvalidArguments(e.to_string()))?,
            ),
            None => None,
        };
        let call = WireCall {
            server,
            key,
            headers: &headers,
            cancel: &context.cancel,
            initialize: self.timeouts.initialize,
            read: self.timeouts.read,
        };
        self.wire.call(call, tool, arguments.as_deref()).await
    }

    /// `prompts/get` of `prompt` (the server's own name) on `server`.
    pub async fn get_prompt(
        &self,
        server: &ServerRuntime,
        caller: &Caller,
        identity: &Identity,
        prompt: &str,
        arguments: Option<JsonObject>,
    ) -> Result<GetPromptResult, CallError> {
        let mut params = GetPromptRequestParams::new(prompt);
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        let request = ClientRequest::GetPromptRequest(GetPromptRequest::new(params));
        let context = CallContext::default();
        match self
            .request(server, caller, identity, request, context)
            .await?
        {
            ServerResult::GetPromptResult(result) => Ok(result),
            _ => Err(CallError::Upstream(format!(
                "server {}: unexpected answer to prompts/get",
                server.name
            ))),
        }
    }

    /// `resources/read` of `uri` on `server`.
    pub async fn read_resource(
        &self,
        server: &ServerRuntime,
        caller: &Caller,
        identity: &Identity,
        uri: &str,
    ) -> Result<ReadResourceResult, CallError> {
        let params = ReadResourceRequestParams::new(uri);
        let request = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(params));
        let context = CallContext::default();
        match self
            .request(server, caller, identity, request, context)
            .await?
        {
            ServerResult::ReadResourceResult(result) => Ok(result),
            _ => Err(CallError::Upstream(format!(
                "server {}: unexpected answer to resources/read",
                server.name
            ))),
        }
    }

    /// One request over the caller's pooled session to `server`.
    async fn request(
        &self,
        server: &ServerRuntime,
        caller: &Caller,
        identity: &Identity,
        request: ClientRequest,
        context: CallContext,
    ) -> Result<ServerResult, CallError> {
        let headers = self.plan_headers(server, caller, identity);
        let client = context.client.as_ref();
        let key = PoolKey::new(server, identity, &headers, client);
        let (slot, new) = {
            let mut slots = self.slots();
            match slots.get(&key) {
                Some(slot) => (slot.clone(), false),
                None => {
                    let slot = Arc::new(Slot {
                        session: OnceCell::new(),
                        last_used: AtomicU64::new(self.now_ms()),
                    });
                    slots.insert(key.clone(), slot.clone());
                    (slot, true)
                }
            }
        };
        if let (true, Some(client)) = (new, client) {
            self.close_with(client);
        }
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        let opened = tokio::select! {
            opened = slot.session.get_or_try_init(|| self.open(server, headers, client)) => opened,
            _ = context.cancel.cancelled() => return Err(CallError::Cancelled),
        };
        let pooled = match opened {
            Ok(p) => p.clone(),
            Err(e) => {
                self.forget(&key, &slot);
                return Err(CallError::Upstream(format!("server {}: {e}", server.name)));
            }
        };
        let result = self.send(&pooled, request, context).await;
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        result.map_err(|failure| {
            // A broken session is not kept for the next call (the server's
            // own JSON-RPC errors leave it usable).
            if failure.transport || pooled.session.is_closed() {
                self.forget(&key, &slot);
            }
            match failure.error {
                CallError::Upstream(m) => {
                    CallError::Upstream(format!("server {}: {m}", server.name))
                }
                other => other,
            }
        })
    }

    /// The caller's headers as `server`'s policy sends them upstream.
    fn plan_headers(
        &self,
        server: &ServerRuntime,
        caller: &Caller,
        identity: &Identity,
    ) -> HashMap<http::HeaderName, HeaderValue> {
        let peer = Peer {
            ip: caller.peer,
            cert_names: caller.cert_names.as_deref(),
        };
        let facts = RequestFacts {
            identity,
            peer: caller.peer,
            peer_trusted: server.auth.peer_is_trusted(peer),
            upstream_host: &PLANNING_HOST,
            upstream_session: None,
        };
        let edits = server.headers.plan(&caller.headers, &facts);
        for dropped in &edits.dropped {
            log::warn!(
                "server {}: dropped header {}: {}",
                server.name,
                dropped.name,
                dropped.why
            );
        }
        let mut planned = caller.headers.clone();
        edits.apply(&mut planned);
        session_headers(&planned)
    }

    async fn open(
        &self,
        server: &ServerRuntime,
        headers: HashMap<http::HeaderName, HeaderValue>,
        client: Option<&FrontClient>,
    ) -> Result<Arc<Pooled>, String> {
        let target = session::target(server, self.timeouts.connect)?;
        // A server request waits for the client as long as a call waits
        // for the server.
        let handler = match client {
            Some(client) => UpstreamHandler::relaying(client.clone(), self.timeouts.read),
            None => UpstreamHandler::default(),
        };
        let session =
            session::open(target, headers, handler.clone(), self.timeouts.initialize).await?;
        Ok(Arc::new(Pooled {
            session,
            handler,
            _upstream: server.upstream.clone(),
        }))
    }

    async fn send(
        &self,
        pooled: &Pooled,
        request: ClientRequest,
        context: CallContext,
    ) -> Result<ServerResult, Failure> {
        let options =
            PeerRequestOptions::with_timeout(self.timeouts.read).reset_timeout_on_progress();
        let handle = pooled
            .session
            .peer()
            .send_cancellable_request(request, options)
            .await
            .map_err(|e| Failure::transport(e.to_string()))?;
        let _watch = context.progress.clone().map(|sink| {
            pooled
                .handler
                .watch_progress(handle.progress_token.clone(), sink)
        });
        let _call = pooled
            .handler
            .relay
            .as_ref()
            .map(|relay| relay.track(handle.id.clone(), context.origin.clone()));
        let peer = handle.peer.clone();
        let id = handle.id.clone();
        let response = tokio::select! {
            response = handle.await_response() => response,
            _ = context.cancel.cancelled() => {
                // The request future is gone; tell the server to stop.
                let note = CancelledNotificationParam::new(
                    Some(id),
                    Some("the caller cancelled".into()),
                );
                let _ = peer.notify_cancelled(note).await;
                return Err(Failure::reply(CallError::Cancelled));
            }
        };
        match response {
            Ok(result) => Ok(result),
            Err(ServiceError::McpError(e)) if e.code == ErrorCode::INVALID_PARAMS => Err(
                Failure::reply(CallError::InvalidArguments(e.message.to_string())),
            ),
            Err(ServiceError::McpError(e)) => Err(Failure::reply(CallError::Upstream(format!(
                "error {}: {}",
                e.code.0, e.message
            )))),
            // A timeout leaves the session usable; anything else is the transport.
            Err(e @ ServiceError::Timeout { .. }) => {
                Err(Failure::reply(CallError::Upstream(e.to_string())))
            }
            Err(e) => Err(Failure::transport(e.to_string())),
        }
    }
}

/// Removes `key`'s slot if it is still `slot`: a caller that failed on a
/// session never drops the new one another caller opened meanwhile.
pub(super) fn remove_if_same<T>(
    slots: &mut HashMap<PoolKey, Arc<T>>,
    key: &PoolKey,
    slot: &Arc<T>,
) {
    if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
        slots.remove(key);
    }
}

fn lock(slots: &Slots) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Arc<Slot>>> {
    slots.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentitySource;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HashMap<http::HeaderName, HeaderValue> {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    http::HeaderName::from_static(n),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    fn key(server: &str, who: &str, h: &HashMap<http::HeaderName, HeaderValue>) -> PoolKey {
        let identity = Identity {
            user: who.into(),
            source: IdentitySource::ProxyHeader,
        };
        PoolKey {
            server: server.into(),
            principal: identity.principal().into(),
            headers: fingerprint(h),
            upstream: 1,
            front: None,
        }
    }

    #[test]
    fn sessions_are_keyed_by_server_principal_and_headers() {
        let alice = headers(&[("x-authenticated-user", "alice")]);
        let bob = headers(&[("x-authenticated-user", "bob")]);
        assert_eq!(key("demo", "alice", &alice), key("demo", "alice", &alice));
        assert_ne!(key("demo", "alice", &alice), key("demo", "bob", &alice));
        assert_ne!(key("demo", "alice", &alice), key("demo", "alice", &bob));
        assert_ne!(key("demo", "alice", &alice), key("other", "alice", &alice));
        let with_token = headers(&[
            ("x-authenticated-user", "alice"),
            ("authorization", "Bearer t1"),
        ]);
        assert_ne!(
            key("demo", "alice", &alice),
            key("demo", "alice", &with_token)
        );
    }

    #[test]
    fn sweeping_drops_only_idle_slots() {
        let pool = SessionPool::new(Timeouts {
            connect: Duration::from_secs(1),
            initialize: Duration::from_secs(1),
            read: Duration::from_secs(1),
            idle: Duration::from_millis(0),
        });
        pool.slots().insert(
            key("demo", "alice", &headers(&[])),
            Arc::new(Slot {
                session: OnceCell::new(),
                last_used: AtomicU64::new(0),
            }),
        );
        assert_eq!(pool.len(), 1);
        pool.sweep();
        assert!(pool.is_empty());
    }
}
