//! Server→client requests through the federation: an upstream server's
//! `sampling/createMessage`, `elicitation/create` and `roots/list`, sent on
//! an upstream session the gateway opened for one front client, go to that
//! client and its answer goes back.
//!
//! Routing is by session, not by guess: a front client that declared any of
//! these capabilities gets upstream sessions of its own (the pool keys them
//! by [`FrontClient::id`]), initialised with exactly the capabilities it
//! declared, so every server request on them is that client's. Clients that
//! declared none share the pooled sessions, which declare none either.

// MCP 2026-07-28 (SEP-2577) deprecates sampling and roots in rmcp's model;
// the revisions clients and servers speak today have them, and the gateway
// relays what they speak.
#![allow(deprecated)]

use rmcp::model::GetExtensions;
use rmcp::model::{
    CancelledNotificationParam, ClientCapabilities, ClientResult, ErrorCode, ErrorData, RequestId,
    ServerRequest,
};
use rmcp::service::{OriginatingRequestId, Peer, PeerRequestOptions, ServiceError};
use rmcp::RoleServer;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The JSON-RPC code for a request the front client did not answer in time
/// (the same the rmcp client reports for its own timeouts).
pub const REQUEST_TIMEOUT: i32 = -32001;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A front MCP session that can answer server requests.
#[derive(Clone)]
pub struct FrontClient {
    /// Unique in the process: the pool's key for this client's sessions.
    pub id: u64,
    pub peer: Peer<RoleServer>,
    /// What the client declared, of what the gateway relays ([`relayable`]).
    pub capabilities: ClientCapabilities,
    /// Fires when the front session ends: its upstream sessions close.
    pub ended: CancellationToken,
}

impl FrontClient {
    /// The front session behind `peer`, when its `initialize` declared
    /// something the gateway relays; `None` for the others.
    pub fn of(peer: &Peer<RoleServer>, ended: &CancellationToken) -> Option<Self> {
        let info = peer.peer_info()?;
        let capabilities = relayable(&info.capabilities)?;
        Some(FrontClient {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            peer: peer.clone(),
            capabilities,
            ended: ended.clone(),
        })
    }

    /// Sends `request` to the client and waits for its answer, at most
    /// `limit`, until `stop` completes (the upstream cancelled it, or the
    /// call it belongs to ended; the client is told) and no longer than the
    /// front session lives.
    /// `origin` is the client's own request this one serves (its
    /// `tools/call`): on Streamable HTTP the request then travels on that
    /// call's event stream rather than the session's GET stream.
    pub async fn forward(
        &self,
        mut request: ServerRequest,
        origin: Option<RequestId>,
        limit: Duration,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<ClientResult, ErrorData> {
        if !permits(&self.capabilities, &request) {
            return Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!(
                    "the client did not declare the capability for {}",
                    method(&request)
                ),
                None,
            ));
        }
        if let Some(origin) = origin {
            request
                .extensions_mut()
                .insert(OriginatingRequestId(origin));
        }
        let peer = self.peer.clone();
        let ended = self.ended.clone();
        // A task of its own: rmcp marks a request sent while it handles
        // another one (here the upstream's) with that request's id, which
        // means nothing on the front session and would replace `origin`.
        let sent = tokio::spawn(async move {
            let options = PeerRequestOptions::with_timeout(limit);
            let handle = peer
                .send_request_with_option(request, options)
                .await
                .map_err(|e| service_error(&e))?;
            let (peer, id) = (handle.peer.clone(), handle.id.clone());
            tokio::select! {
                answer = handle.await_response() => answer.map_err(|e| service_error(&e)),
                _ = stop => {
                    let why = "the server's request was cancelled";
                    let note = CancelledNotificationParam::new(Some(id), Some(why.into()));
                    let _ = peer.notify_cancelled(note).await;
                    Err(ErrorData::new(ErrorCode(REQUEST_CANCELLED), why, None))
                }
                _ = ended.cancelled() => {
                    Err(ErrorData::internal_error("the client's session ended", None))
                }
            }
        });
        sent.await.unwrap_or_else(|e| {
            log::error!("federation: relaying a server request failed: {e}");
            Err(ErrorData::internal_error(
                "relaying the request failed",
                None,
            ))
        })
    }
}

/// The code most MCP SDKs use for a cancelled request.
const REQUEST_CANCELLED: i32 = -32800;

/// The client's declared capabilities the gateway can relay, and only
/// those (an upstream session never claims more than its client can do);
/// `None` when there are none.
pub fn relayable(declared: &ClientCapabilities) -> Option<ClientCapabilities> {
    let mut out = ClientCapabilities::default();
    out.sampling = declared.sampling.clone();
    out.elicitation = declared.elicitation.clone();
    out.roots = declared.roots.clone();
    (out != ClientCapabilities::default()).then_some(out)
}

/// Whether `request` is one the client declared it can answer. Upstream
/// sessions advertise no more than that, so a server that asks anyway gets
/// an error from the gateway rather than the client a request it never
/// agreed to.
pub fn permits(capabilities: &ClientCapabilities, request: &ServerRequest) -> bool {
    match request {
        ServerRequest::CreateMessageRequest(_) => capabilities.sampling.is_some(),
        ServerRequest::ElicitRequest(_) => capabilities.elicitation.is_some(),
        ServerRequest::ListRootsRequest(_) => capabilities.roots.is_some(),
        // Ping is the gateway's own to answer; the rest no client declared.
        _ => false,
    }
}

fn method(request: &ServerRequest) -> &'static str {
    match request {
        ServerRequest::CreateMessageRequest(_) => "sampling/createMessage",
        ServerRequest::ElicitRequest(_) => "elicitation/create",
        ServerRequest::ListRootsRequest(_) => "roots/list",
        _ => "this request",
    }
}

/// The client's own JSON-RPC error passes unchanged; the rest says what
/// went wrong on the way.
fn service_error(e: &ServiceError) -> ErrorData {
    match e {
        ServiceError::McpError(e) => e.clone(),
        ServiceError::Timeout { .. } => ErrorData::new(
            ErrorCode(REQUEST_TIMEOUT),
            "the client did not answer in time",
            None,
        ),
        other => ErrorData::internal_error(format!("the client could not be asked: {other}"), None),
    }
}

/// The call in flight a server request serves, so it can ride that call's
/// stream and end with it: the call whose upstream request's stream carried
/// it (`carried_by`, from the upstream transport), else the one call in
/// flight on the session, else none (it goes on the session's GET stream).
pub fn attribute<'a, T>(
    carried_by: Option<&RequestId>,
    in_flight: impl IntoIterator<Item = (&'a RequestId, &'a T)>,
) -> Option<&'a T> {
    let mut only = None;
    let mut count = 0;
    for (upstream, call) in in_flight {
        if Some(upstream) == carried_by {
            return Some(call);
        }
        count += 1;
        only = Some(call);
    }
    match (carried_by, count) {
        (None, 1) => only,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{
        ElicitationCapability, ListRootsRequest, NumberOrString, RootsCapabilities,
        SamplingCapability,
    };

    fn caps(sampling: bool, elicitation: bool, roots: bool) -> ClientCapabilities {
        let mut c = ClientCapabilities::default();
        c.sampling = sampling.then(SamplingCapability::default);
        c.elicitation = elicitation.then(ElicitationCapability::default);
        c.roots = roots.then(RootsCapabilities::default);
        c
    }

    #[test]
    fn only_sampling_elicitation_and_roots_are_relayed() {
        assert_eq!(relayable(&ClientCapabilities::default()), None);
        let mut declared = caps(true, false, true);
        declared.experimental = Some(Default::default());
        let relayed = relayable(&declared).expect("something to relay");
        assert_eq!(relayed, caps(true, false, true));
        // Experimental alone is nothing the gateway relays.
        let mut experimental = ClientCapabilities::default();
        experimental.experimental = Some(Default::default());
        assert_eq!(relayable(&experimental), None);
    }

    #[test]
    fn a_request_the_client_did_not_declare_is_not_forwarded() {
        let roots = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        assert!(permits(&caps(false, false, true), &roots));
        assert!(!permits(&caps(true, true, false), &roots));
        let ping = ServerRequest::PingRequest(Default::default());
        assert!(!permits(&caps(true, true, true), &ping));
    }

    fn id(n: i64) -> RequestId {
        NumberOrString::Number(n)
    }

    #[test]
    fn a_server_request_rides_the_call_whose_stream_carried_it() {
        let calls = [(id(1), "call one"), (id(2), "call two")];
        let pairs = || calls.iter().map(|(u, c)| (u, c));
        assert_eq!(attribute(Some(&id(2)), pairs()), Some(&"call two"));
        // Unattributable among two calls: the session's GET stream.
        assert_eq!(attribute(None, pairs()), None);
        // Carried by a request that is no call (anymore): not guessed.
        assert_eq!(attribute(Some(&id(7)), pairs()), None);
        let one = [(id(1), "the call")];
        assert_eq!(
            attribute(None, one.iter().map(|(u, c)| (u, c))),
            Some(&"the call")
        );
        assert_eq!(attribute::<&str>(None, std::iter::empty()), None);
    }
}
