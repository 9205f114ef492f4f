//! Sessions bound to their principal, in front of rmcp's Streamable HTTP
//! service. rmcp knows session ids, not callers: this layer records who
//! opened each session (the `Caller` and `Scope` of its `initialize`) and
//! refuses, with the core's 404 and wording, a request on a session from
//! another principal or for another scope, before rmcp sees it.
//!
//! It also gives each request a token that fires when the client goes away
//! before the response is complete, so a dropped connection cancels the
//! call it was waiting for (rmcp keeps a session's calls running when one
//! HTTP request of it is dropped).

use super::direct::DirectSessions;
use super::mcp::Binding;
use super::{Caller, Scope};
use crate::session::SessionError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::json;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio_util::sync::{CancellationToken, DropGuard};

const SESSION_HEADER: &str = "mcp-session-id";

/// Fires when the client drops the response of its request before the end.
#[derive(Clone)]
pub struct ClientGone(pub CancellationToken);

/// The sessions' owners. Entries of sessions rmcp has closed (idle,
/// DELETE, ended) are swept whenever the map has doubled since the last
/// sweep, so it stays within twice the live sessions.
pub struct Bindings {
    sessions: Arc<LocalSessionManager>,
    /// Told of every request rmcp sees on a session.
    direct: Arc<DirectSessions>,
    max_sessions: usize,
    inner: Mutex<BindingMap>,
}

#[derive(Default)]
struct BindingMap {
    by_session: HashMap<String, Binding>,
    swept_at: usize,
}

/// What the layer does with a request, decided over plain inputs.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// No session yet (`initialize`, or a stateless request): serve, and
    /// bind the session the response names.
    Open,
    /// A session this principal opened for this scope.
    Continue,
    /// Anyone else's session, or one this layer never saw bound.
    UnknownSession,
    /// `Mcp-Session-Id` twice, or not text.
    BadSessionHeader(&'static str),
}

pub fn admit(
    session_headers: &[&http::HeaderValue],
    owner: impl FnOnce(&str) -> Option<Binding>,
    caller: &Binding,
) -> Admission {
    match session_headers {
        [] => Admission::Open,
        [one] => match one.to_str() {
            Ok(id) => match owner(id) {
                Some(bound) if bound == *caller => Admission::Continue,
                _ => Admission::UnknownSession,
            },
            Err(_) => Admission::BadSessionHeader("Mcp-Session-Id is not text"),
        },
        _ => Admission::BadSessionHeader("Mcp-Session-Id appears more than once"),
    }
}

impl Bindings {
    pub fn new(
        sessions: Arc<LocalSessionManager>,
        max_sessions: usize,
        direct: Arc<DirectSessions>,
    ) -> Self {
        Bindings {
            sessions,
            direct,
            max_sessions,
            inner: Mutex::new(BindingMap::default()),
        }
    }

    fn owner(&self, session: &str) -> Option<Binding> {
        self.lock().by_session.get(session).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BindingMap> {
        // A panic while holding the lock leaves a map that is still
        // consistent (single inserts and removes): keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn bind(&self, session: String, binding: Binding) {
        let sweep = {
            let mut map = self.lock();
            map.by_session.insert(session, binding);
            map.by_session.len() > 2 * map.swept_at.max(64)
        };
        if sweep {
            let live = self.sessions.sessions.read().await;
            let mut map = self.lock();
            map.by_session
                .retain(|id, _| live.contains_key(id.as_str()));
            map.swept_at = map.by_session.len();
        }
    }

    /// rmcp holds as many sessions as it may.
    async fn full(&self) -> bool {
        self.sessions.sessions.read().await.len() >= self.max_sessions
    }

    fn forget(&self, session: &str) {
        self.lock().by_session.remove(session);
    }
}

fn json_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// The axum middleware in front of the Streamable HTTP service.
pub async fn bind_sessions(
    State(bindings): State<Arc<Bindings>>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = request.extensions().get::<Caller>();
    let scope = request.extensions().get::<Scope>();
    let (Some(caller), Some(scope)) = (caller, scope) else {
        log::error!("federation: MCP request without the hand-over's Caller/Scope (a routing bug)");
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::refusal::code::INTERNAL_ERROR,
            "internal error",
        );
    };
    let who = Binding::of(caller, scope);
    let headers: Vec<&http::HeaderValue> =
        request.headers().get_all(SESSION_HEADER).iter().collect();
    match admit(&headers, |id| bindings.owner(id), &who) {
        Admission::Open if request.method() == http::Method::POST && bindings.full().await => {
            log::warn!("federation: initialize refused: the MCP session limit is reached");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                crate::refusal::code::INTERNAL_ERROR,
                "too many open MCP sessions; retry later",
            );
        }
        Admission::Open => {}
        Admission::Continue => {
            if let Some(id) = headers.first().and_then(|h| h.to_str().ok()) {
                bindings.direct.seen(id);
            }
        }
        Admission::UnknownSession => {
            log::warn!(
                "federation: session refused to {:?} (scope {:?}): not theirs or unknown",
                who.principal,
                who.scope
            );
            return json_error(
                StatusCode::NOT_FOUND,
                crate::refusal::code::UNKNOWN_SESSION,
                SessionError::DoesNotOpen.message(),
            );
        }
        Admission::BadSessionHeader(why) => {
            log::info!("federation: {why}");
            return json_error(
                StatusCode::BAD_REQUEST,
                crate::refusal::code::INVALID_REQUEST,
                why,
            );
        }
    }
    let session = headers
        .first()
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let deleting = request.method() == http::Method::DELETE;

    let gone = CancellationToken::new();
    request.extensions_mut().insert(ClientGone(gone.clone()));
    let response = next.run(request).await;

    match &session {
        None if response.status().is_success() => {
            if let Some(id) = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                bindings.bind(id.to_owned(), who).await;
            }
        }
        // Closed by the client, or gone on rmcp's side (idle): forget it.
        Some(id)
            if (deleting && response.status().is_success())
                || response.status() == StatusCode::NOT_FOUND =>
        {
            bindings.forget(id);
            bindings.direct.close(id);
        }
        _ => {}
    }
    let mut response = as_json_rpc_error(response).await;
    // rmcp answers a closed session's DELETE with 202; the SDKs' own servers
    // answer 200, and the Python client logs "Session termination failed"
    // for anything but 200 or 204.
    if deleting && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::OK;
    }
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        Body::from_stream(WatchedBody {
            inner: body.into_data_stream(),
            guard: Some(gone.drop_guard()),
        }),
    )
}

/// The JSON-RPC code of a refusal rmcp wrote itself, by its status: the
/// codes of the core's refusals (`refusal::code`), so a client sees one
/// table whichever part of the gateway refused.
pub fn rpc_code_for(status: StatusCode) -> i64 {
    use crate::refusal::code;
    match status.as_u16() {
        404 => code::UNKNOWN_SESSION,
        405 => code::METHOD_NOT_ALLOWED,
        403 => code::ORIGIN_NOT_ALLOWED,
        400..=499 => code::INVALID_REQUEST,
        _ => code::INTERNAL_ERROR,
    }
}

/// Longest rmcp refusal text carried into the JSON message.
const MAX_REFUSAL_TEXT: usize = 1024;

/// rmcp answers some refusals (unknown or expired session, wrong `Accept`
/// or `Content-Type`, body too large) in plain text; the gateway's rule is
/// a JSON body for every error, with the same status and rmcp's words.
async fn as_json_rpc_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REFUSAL_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut rewritten = json_error(status, rpc_code_for(status), &message);
    // `Allow` and the like stay: only the body changes.
    for (name, value) in parts.headers.iter() {
        if name != http::header::CONTENT_TYPE && name != http::header::CONTENT_LENGTH {
            rewritten.headers_mut().append(name.clone(), value.clone());
        }
    }
    rewritten
}

/// A response body that fires the request's [`ClientGone`] if it is
/// dropped before its end: the client went away mid-response.
struct WatchedBody {
    inner: axum::body::BodyDataStream,
    guard: Option<DropGuard>,
}

impl futures_util::Stream for WatchedBody {
    type Item = Result<bytes::Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(None) = polled {
            if let Some(guard) = self.guard.take() {
                guard.disarm();
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Binding {
        Binding {
            principal: "alice".into(),
            scope: None,
        }
    }

    #[test]
    fn rmcp_refusals_get_the_core_codes() {
        assert_eq!(rpc_code_for(StatusCode::NOT_FOUND), -32001);
        assert_eq!(rpc_code_for(StatusCode::METHOD_NOT_ALLOWED), -32008);
        assert_eq!(rpc_code_for(StatusCode::NOT_ACCEPTABLE), -32600);
        assert_eq!(rpc_code_for(StatusCode::PAYLOAD_TOO_LARGE), -32600);
        assert_eq!(rpc_code_for(StatusCode::INTERNAL_SERVER_ERROR), -32603);
    }

    #[test]
    fn no_session_header_opens_one() {
        assert_eq!(admit(&[], |_| None, &alice()), Admission::Open);
    }

    #[test]
    fn the_owner_continues_anyone_else_is_refused() {
        let id = http::HeaderValue::from_static("s1");
        assert_eq!(
            admit(&[&id], |_| Some(alice()), &alice()),
            Admission::Continue
        );
        let bob = Binding {
            principal: "bob".into(),
            scope: None,
        };
        assert_eq!(
            admit(&[&id], |_| Some(alice()), &bob),
            Admission::UnknownSession
        );
    }

    #[test]
    fn a_session_of_another_scope_is_refused() {
        let id = http::HeaderValue::from_static("s1");
        let virtual_alice = Binding {
            principal: "alice".into(),
            scope: Some("team".into()),
        };
        assert_eq!(
            admit(&[&id], |_| Some(virtual_alice.clone()), &alice()),
            Admission::UnknownSession
        );
        assert_eq!(
            admit(&[&id], |_| Some(alice()), &virtual_alice),
            Admission::UnknownSession
        );
    }

    #[test]
    fn an_unbound_session_is_refused_not_served() {
        let id = http::HeaderValue::from_static("s1");
        assert_eq!(admit(&[&id], |_| None, &alice()), Admission::UnknownSession);
    }

    #[test]
    fn duplicate_or_binary_session_headers_are_bad_requests() {
        let a = http::HeaderValue::from_static("s1");
        let b = http::HeaderValue::from_static("s2");
        assert!(matches!(
            admit(&[&a, &b], |_| Some(alice()), &alice()),
            Admission::BadSessionHeader(_)
        ));
        let binary = http::HeaderValue::from_bytes(&[0xff]).unwrap();
        assert!(matches!(
            admit(&[&binary], |_| Some(alice()), &alice()),
            Admission::BadSessionHeader(_)
        ));
    }
}
