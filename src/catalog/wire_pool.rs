//! The gateway's own sessions for calls over plain HTTP/1.1 (`wire`),
//! pooled by the same key as rmcp's shared sessions (server, principal,
//! headers, replica set): one caller's session never serves another.

use super::upstream::{remove_if_same, PoolKey};
use super::wire::{Endpoint, Failure, WireSession};
use crate::federation::CallError;
use crate::state::ServerRuntime;
use crate::upstream::ServerUpstream;
use http::header::{HeaderName, HeaderValue};
use rmcp::model::ErrorCode;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

struct Slot {
    session: OnceCell<Arc<WireSession>>,
    /// Kept alive with the key, whose `upstream` is its address.
    _upstream: Arc<ServerUpstream>,
    /// Milliseconds since the pool's epoch.
    last_used: AtomicU64,
}

pub struct WirePool {
    slots: Mutex<HashMap<PoolKey, Arc<Slot>>>,
    epoch: Instant,
}

/// What a call needs besides the tool.
pub struct WireCall<'a> {
    pub server: &'a ServerRuntime,
    pub key: PoolKey,
    pub headers: &'a HashMap<HeaderName, HeaderValue>,
    pub cancel: &'a CancellationToken,
    pub initialize: Duration,
    pub read: Duration,
}

impl Default for WirePool {
    fn default() -> Self {
        WirePool {
            slots: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }
}

/// Whether `server`'s calls can go over the wire: its replicas speak
/// plain HTTP (TLS ones go through rmcp's client and its TLS settings).
pub fn serves(server: &ServerRuntime) -> bool {
    !server.spec.urls.iter().any(|u| u.tls)
}

impl WirePool {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn len(&self) -> usize {
        self.slots().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops sessions unused for `idle`, telling their servers (DELETE).
    pub fn sweep(&self, idle: Duration) {
        let now = self.now_ms();
        let idle = idle.as_millis() as u64;
        let mut closed = Vec::new();
        self.slots().retain(|_, slot| {
            let keep = now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) < idle;
            if !keep {
                closed.extend(slot.session.get().cloned());
            }
            keep
        });
        for session in closed {
            tokio::spawn(async move { session.close(Duration::from_secs(5)).await });
        }
    }

    fn forget(&self, key: &PoolKey, slot: &Arc<Slot>) {
        remove_if_same(&mut self.slots(), key, slot);
    }

    /// `tools/call` of `tool` over the caller's session, opened on first
    /// use; a session the server no longer knows is opened again once.
    pub async fn call(
        &self,
        call: WireCall<'_>,
        tool: &str,
        arguments: Option<&str>,
    ) -> Result<Box<RawValue>, CallError> {
        let name = &call.server.name;
        for attempt in 0..2 {
            let slot = self.slot(&call.key, call.server);
            let opened = match slot.session.get() {
                Some(session) => Ok(session.clone()),
                // Boxed: the opening future is large, and a call on an
                // open session should not carry (and move) it.
                None => Box::pin(opened(&slot, &call)).await,
            };
            let session = match opened {
                Ok(session) => session,
                Err(None) => return Err(CallError::Cancelled),
                Err(Some(e)) => {
                    self.forget(&call.key, &slot);
                    return Err(CallError::Upstream(format!("server {name}: {e}")));
                }
            };
            let id = session.next_id();
            // One deadline for the whole call, as rmcp's request timeout
            // (no progress to restart it: a call here forwards none).
            let within =
                tokio::time::timeout(call.read, session.call(id, tool, arguments, call.read));
            let outcome = tokio::select! {
                outcome = within => outcome,
                _ = call.cancel.cancelled() => {
                    let read = call.read;
                    tokio::spawn(async move { session.cancel(id, read).await });
                    return Err(CallError::Cancelled);
                }
            };
            slot.last_used.store(self.now_ms(), Ordering::Relaxed);
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(_) => {
                    // The session is fine; the server is told to stop.
                    let read = call.read;
                    tokio::spawn(async move { session.cancel(id, read).await });
                    return Err(CallError::Upstream(format!(
                        "server {name}: no answer within {} s",
                        call.read.as_secs_f64()
                    )));
                }
            };
            return match outcome {
                Ok(result) => Ok(result),
                Err(Failure::Rpc(e)) if e.code == i64::from(ErrorCode::INVALID_PARAMS.0) => {
                    Err(CallError::InvalidArguments(e.message))
                }
                Err(Failure::Rpc(e)) => Err(CallError::Upstream(format!(
                    "server {name}: error {}: {}",
                    e.code, e.message
                ))),
                Err(Failure::SessionGone) if attempt == 0 => {
                    self.forget(&call.key, &slot);
                    continue;
                }
                Err(Failure::SessionGone) => {
                    self.forget(&call.key, &slot);
                    Err(CallError::Upstream(format!(
                        "server {name}: session not found"
                    )))
                }
                Err(Failure::Transport(why)) => {
                    // Broken for this call; the server may still hold it.
                    self.forget(&call.key, &slot);
                    tokio::spawn(async move { session.close(Duration::from_secs(5)).await });
                    Err(CallError::Upstream(format!("server {name}: {why}")))
                }
            };
        }
        Err(CallError::Upstream(format!(
            "server {name}: session not found"
        )))
    }

    fn slot(&self, key: &PoolKey, server: &ServerRuntime) -> Arc<Slot> {
        let now = self.now_ms();
        let mut slots = self.slots();
        let slot = slots.entry(key.clone()).or_insert_with(|| {
            Arc::new(Slot {
                session: OnceCell::new(),
                _upstream: server.upstream.clone(),
                last_used: AtomicU64::new(now),
            })
        });
        slot.last_used.store(now, Ordering::Relaxed);
        slot.clone()
    }
}

/// The slot's session, opened by this caller or another one meanwhile;
/// `Err(None)`: the caller cancelled.
async fn opened(slot: &Slot, call: &WireCall<'_>) -> Result<Arc<WireSession>, Option<String>> {
    let opening = || async {
        tokio::time::timeout(call.initialize, open(call))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "initialize did not complete within {} s",
                    call.initialize.as_secs_f64()
                ))
            })
    };
    tokio::select! {
        opened = slot.session.get_or_try_init(opening) => opened.cloned().map_err(Some),
        _ = call.cancel.cancelled() => Err(None),
    }
}

/// A new session on the replica the server's health-aware selection picks.
async fn open(call: &WireCall<'_>) -> Result<Arc<WireSession>, String> {
    let upstream = &call.server.upstream;
    let selected = upstream
        .select(&[])
        .ok_or_else(|| "no healthy backend".to_string())?;
    let replica = upstream
        .replica(selected.replica)
        .ok_or_else(|| "the backend left the configuration".to_string())?;
    let path = replica.mcp_uri.path_and_query().map_or("/", |p| p.as_str());
    let endpoint = Endpoint {
        addr: selected.addr,
        path,
        host: &replica.host_header,
        headers: call.headers,
    };
    WireSession::open(endpoint, call.initialize)
        .await
        .map(Arc::new)
}
