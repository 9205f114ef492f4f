//! Opening an MCP client session (rmcp, Streamable HTTP over reqwest) to
//! one replica of a server: the replica the server's own health-aware
//! selection picks, its `tls:` block, and the headers the caller (or the
//! gateway) sends. Shared by the catalog's gathering and the calls.

// MCP 2026-07-28 (SEP-2577) deprecates sampling and roots in rmcp's model;
// the revisions clients and servers speak today have them, and the gateway
// relays what they speak.
#![allow(deprecated)]

use super::relay::{typed, SessionRelay};
use crate::federation::relay::FrontClient;
use crate::federation::ProgressSink;
use crate::state::ServerRuntime;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientResult, CreateMessageRequest,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequest, ElicitRequestParams,
    ElicitResult, ElicitationCapability, ErrorData, Implementation, JsonRpcMessage,
    ListRootsResult, ProgressToken, RootsCapabilities, SamplingCapability, ServerNotification,
    ServerRequest,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, Transport};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

/// A live client session to one replica.
pub type UpstreamSession = RunningService<RoleClient, UpstreamHandler>;

/// Headers the MCP transport owns (framing, content negotiation, the
/// session) or that name the connection: never taken from the caller's map.
const TRANSPORT_OWNED: [HeaderName; 13] = [
    header::HOST,
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::CONNECTION,
    header::UPGRADE,
    header::TRANSFER_ENCODING,
    header::TE,
    HeaderName::from_static("mcp-session-id"),
    HeaderName::from_static("mcp-protocol-version"),
    HeaderName::from_static("last-event-id"),
];

/// Headers that name one request, not the caller: a session lives for many
/// requests, and keying the pool on them gave every call a new session.
const PER_REQUEST: [HeaderName; 3] = [
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

/// What a session sends on every request besides the transport's own
/// headers: the header policy's result with the transport-owned and
/// per-request names removed (the first value of a repeated header; rmcp
/// takes one each).
pub fn session_headers(planned: &HeaderMap) -> HashMap<HeaderName, HeaderValue> {
    planned
        .iter()
        .filter(|(name, _)| {
            !TRANSPORT_OWNED.contains(name)
                && !PER_REQUEST.contains(name)
                && !name.as_str().starts_with("sec-websocket-")
                && !name
                    .as_str()
                    .starts_with(crate::federation::handover::PREFIX)
        })
        .fold(HashMap::new(), |mut out, (name, value)| {
            out.entry(name.clone()).or_insert_with(|| value.clone());
            out
        })
}

/// A digest of a session's headers, in name order: two callers whose
/// requests would carry different headers upstream (identity, credential,
/// passthrough) never share a session.
pub fn fingerprint(headers: &HashMap<HeaderName, HeaderValue>) -> [u8; 32] {
    let mut names: Vec<&HeaderName> = headers.keys().collect();
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut digest = Sha256::new();
    for name in names {
        digest.update(name.as_str().as_bytes());
        digest.update([0]);
        digest.update(headers[name].as_bytes());
        digest.update([0]);
    }
    digest.finalize().into()
}

/// The client side of one session: progress goes to the call that asked
/// for it, a list change to the catalog's refresher, a server's request to
/// the front client the session serves (see `federation::relay`).
#[derive(Clone, Default)]
pub struct UpstreamHandler {
    pub progress: Arc<Mutex<HashMap<ProgressToken, ProgressSink>>>,
    /// The server's name on `notifications/*/list_changed`.
    pub list_changed: Option<(String, mpsc::UnboundedSender<String>)>,
    /// What the session declares at `initialize`.
    pub capabilities: ClientCapabilities,
    /// The front client that answers the server's requests; `None`: the
    /// gateway answers them itself (no roots, nobody to ask).
    pub relay: Option<Arc<SessionRelay>>,
}

impl UpstreamHandler {
    /// A session whose server requests go to `client`, declaring what it
    /// declared; each request waits at most `limit` for the client.
    pub fn relaying(client: FrontClient, limit: Duration) -> Self {
        UpstreamHandler {
            capabilities: client.capabilities.clone(),
            relay: Some(Arc::new(SessionRelay::new(client, limit))),
            ..UpstreamHandler::default()
        }
    }

    /// The catalog's session: it declares every capability the gateway
    /// relays, because servers list some tools only to clients that have
    /// them (server-everything's `trigger-sampling-request`), and a caller
    /// who has them must find those tools. It answers `roots/list` with no
    /// roots and refuses the rest: nobody is there to ask.
    pub fn gathering(server: String, changed: mpsc::UnboundedSender<String>) -> Self {
        let mut capabilities = ClientCapabilities::default();
        capabilities.sampling = Some(SamplingCapability::default());
        capabilities.elicitation = Some(ElicitationCapability::default());
        capabilities.roots = Some(RootsCapabilities::default());
        UpstreamHandler {
            list_changed: Some((server, changed)),
            capabilities,
            ..UpstreamHandler::default()
        }
    }

    /// Forwards the progress of the call with `token` to `sink` until the
    /// returned guard is dropped.
    pub fn watch_progress(&self, token: ProgressToken, sink: ProgressSink) -> ProgressWatch {
        self.progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), sink);
        ProgressWatch {
            map: self.progress.clone(),
            token,
        }
    }

    fn changed(&self) {
        if let Some((server, tx)) = &self.list_changed {
            let _ = tx.send(server.clone());
        }
    }

    async fn relay(
        &self,
        request: ServerRequest,
        context: &RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        match &self.relay {
            Some(relay) => relay.forward(request, context).await,
            None => Err(ErrorData::new(
                rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                "no client to ask: this is the gateway's own session",
                None,
            )),
        }
    }
}

/// Stops forwarding a call's progress when the call ends.
pub struct ProgressWatch {
    map: Arc<Mutex<HashMap<ProgressToken, ProgressSink>>>,
    token: ProgressToken,
}

impl Drop for ProgressWatch {
    fn drop(&mut self) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.token);
    }
}

impl ClientHandler for UpstreamHandler {
    // Progress is not handled here: rmcp runs notification callbacks as
    // spawned tasks, which may run after the call's result is delivered
    // (and out of order); [`ProgressTap`] forwards it as it is received.

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed();
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed();
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        typed(self.relay(request, &context).await?)
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        typed(self.relay(request, &context).await?)
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        if self.relay.is_none() {
            return Ok(ListRootsResult::default());
        }
        let request = ServerRequest::ListRootsRequest(Default::default());
        typed(self.relay(request, &context).await?)
    }

    fn get_info(&self) -> ClientConfig {
        let mut config = ClientConfig::default();
        config.capabilities = self.capabilities.clone();
        config.client_info = Implementation::new("mcp-gateway", env!("CARGO_PKG_VERSION"));
        config
    }
}

/// The session's transport with progress notifications forwarded as they
/// are received, in order and before the result that follows them.
struct ProgressTap<T> {
    inner: T,
    progress: Arc<Mutex<HashMap<ProgressToken, ProgressSink>>>,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for ProgressTap<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await?;
        if let JsonRpcMessage::Notification(note) = &message {
            if let ServerNotification::ProgressNotification(p) = &note.notification {
                let sink = self
                    .progress
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&p.params.progress_token)
                    .cloned();
                if let Some(sink) = sink {
                    sink(p.params.clone());
                }
            }
        }
        Some(message)
    }

    fn close(&mut self) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Where a session goes: a replica's URL and an HTTP client that connects
/// to the backend the server's selection picked, with the server's TLS.
pub struct Target {
    pub url: String,
    pub client: reqwest::Client,
    /// The replica's `Host`, for the header policy.
    pub host: HeaderValue,
}

/// Picks a healthy backend of `server` and its client (see `clients`).
pub fn target(server: &ServerRuntime, connect_timeout: Duration) -> Result<Target, String> {
    let selected = server
        .upstream
        .select(&[])
        .ok_or_else(|| "no healthy backend".to_string())?;
    let replica = server
        .upstream
        .replica(selected.replica)
        .ok_or_else(|| "the backend left the configuration".to_string())?;
    let tls = &server.spec.tls;
    if replica.url.tls && tls.sni.is_some() {
        log::debug!(
            "server {}: tls.sni is not applied to federation sessions; the URL's host is sent",
            server.name
        );
    }
    let client = server
        .clients
        .client(tls, &replica.url, selected, connect_timeout)?;
    Ok(Target {
        url: replica.url.original.clone(),
        client,
        host: replica.host_header.clone(),
    })
}

pub(super) fn client_identity(
    cert_key: &pingora::utils::tls::CertKey,
) -> Result<native_tls::Identity, String> {
    let problem = |e: &dyn std::fmt::Display| format!("tls.client_cert: {e}");
    let mut chain = cert_key.leaf().to_pem().map_err(|e| problem(&e))?;
    for cert in cert_key.intermediates() {
        chain.extend(cert.to_pem().map_err(|e| problem(&e))?);
    }
    let key = cert_key
        .key()
        .private_key_to_pem_pkcs8()
        .map_err(|e| problem(&e))?;
    native_tls::Identity::from_pkcs8(&chain, &key).map_err(|e| problem(&e))
}

/// Initialises a session (the MCP-level health check: a server that does
/// not complete `initialize` within `timeout` is not usable).
pub async fn open(
    target: Target,
    headers: HashMap<HeaderName, HeaderValue>,
    handler: UpstreamHandler,
    timeout: Duration,
) -> Result<UpstreamSession, String> {
    let config = StreamableHttpClientTransportConfig::with_uri(target.url)
        .custom_headers(headers)
        .reinit_on_expired_session(true);
    let transport = ProgressTap {
        inner: StreamableHttpClientTransport::with_client(target.client, config),
        progress: handler.progress.clone(),
    };
    match tokio::time::timeout(timeout, handler.serve(transport)).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(format!("initialize failed: {e}")),
        Err(_) => Err(format!(
            "initialize did not complete within {} s",
            timeout.as_secs_f64()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn sessions_declare_what_their_role_can_answer() {
        // Shared sessions: nothing, so no server asks their many callers.
        let shared = UpstreamHandler::default().get_info().capabilities;
        assert_eq!(shared, ClientCapabilities::default());
        // The catalog: all three, so capability-gated tools are listed.
        let (tx, _rx) = mpsc::unbounded_channel();
        let gathering = UpstreamHandler::gathering("s".into(), tx)
            .get_info()
            .capabilities;
        assert!(gathering.sampling.is_some() && gathering.elicitation.is_some());
        assert!(gathering.roots.is_some());
    }

    #[test]
    fn transport_owned_handover_and_per_request_headers_are_left_out() {
        let planned = map(&[
            ("host", "h"),
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
            ("mcp-session-id", "abc"),
            ("x-mcp-gateway-user", "mallory"),
            ("authorization", "Bearer up"),
            ("x-authenticated-user", "alice"),
            ("traceparent", "00-1"),
        ]);
        let out = session_headers(&planned);
        let mut names: Vec<&str> = out.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "x-authenticated-user"]);
    }

    #[test]
    fn fingerprints_differ_by_any_header_and_ignore_order() {
        let a = session_headers(&map(&[("x-authenticated-user", "alice"), ("x-k", "1")]));
        let a2 = session_headers(&map(&[("x-k", "1"), ("x-authenticated-user", "alice")]));
        let b = session_headers(&map(&[("x-authenticated-user", "bob"), ("x-k", "1")]));
        let c = session_headers(&map(&[("x-authenticated-user", "alice")]));
        assert_eq!(fingerprint(&a), fingerprint(&a2));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        // A name/value boundary cannot be shifted to forge equality.
        let d = session_headers(&map(&[("x-ab", "c")]));
        let e = session_headers(&map(&[("x-a", "bc")]));
        assert_ne!(fingerprint(&d), fingerprint(&e));
    }

    #[test]
    fn a_request_id_or_trace_context_does_not_make_another_session() {
        let one = session_headers(&map(&[
            ("x-authenticated-user", "alice"),
            ("x-request-id", "1"),
            ("traceparent", "00-aa-01-01"),
        ]));
        let two = session_headers(&map(&[
            ("x-authenticated-user", "alice"),
            ("x-request-id", "2"),
            ("tracestate", "k=v"),
        ]));
        assert_eq!(fingerprint(&one), fingerprint(&two));
        assert!(!one.contains_key("x-request-id"));
    }
}
