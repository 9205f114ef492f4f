//! Calls the data plane serves itself, without the hand-over to the
//! internal service: `POST /tools/invoke/{name}`, and a plain `tools/call`
//! on an MCP front session (`/mcp`, `/servers/{virtual}/mcp`).
//!
//! A call is one catalog lookup and one upstream round trip; through the
//! Unix socket, axum and rmcp's session worker it cost three times that
//! (issue 9's figures). Everything else (`initialize`, lists, prompts,
//! progress, sessions whose client answers server requests) still goes to
//! the service, so rmcp stays the one owner of the MCP sessions:
//! - a session is served here only once its `initialize` went through
//!   rmcp and bound it ([`DirectSessions::open`]), for the same principal
//!   and scope, while rmcp keeps it (its handler alive);
//! - rmcp closes a session nobody uses for `session_idle`, and the calls
//!   served here do not reach it: a session rmcp has not seen for half
//!   that time sends its next call through the service, which keeps it
//!   open;
//! - `notifications/cancelled` goes to rmcp's session, whose handler
//!   cancels a call served here through [`DirectSessions::cancel`].

use super::mcp::{call_error, tool_name, Binding};
use super::tools::{invoke_arguments, message_of, status_of};
use super::{CallContext, CallError, Caller, Scope, SharedFederation};
use crate::responses::{self, ErrorShape, LocalResponse};
use bytes::Bytes;
use rmcp::model::{JsonObject, NumberOrString, RequestId};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What the data plane needs to serve calls itself.
#[derive(Clone)]
pub struct Direct {
    pub fed: SharedFederation,
    pub sessions: Arc<DirectSessions>,
}

/// The MCP front's sessions the data plane may serve `tools/call` on.
pub struct DirectSessions {
    /// rmcp's idle limit: a session must have reached rmcp within half of it.
    session_idle: Duration,
    /// Numbers the tracked calls, so a guard forgets only its own.
    serial: std::sync::atomic::AtomicU64,
    inner: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    by_id: HashMap<String, Entry>,
    swept_at: usize,
}

struct Entry {
    binding: Binding,
    /// Fires when rmcp drops the session's handler.
    ended: CancellationToken,
    /// The last request of the session rmcp saw.
    seen: Instant,
    /// Calls served here, by the JSON text of their request id, with the
    /// serial of the guard that registered each.
    calls: HashMap<String, (u64, CancellationToken)>,
}

/// The key of a request id, the same for rmcp's `RequestId` and the body's
/// JSON value: its JSON text.
fn id_key(id: &RequestId) -> String {
    match id {
        NumberOrString::Number(n) => n.to_string(),
        NumberOrString::String(s) => Value::from(s.as_ref()).to_string(),
    }
}

impl DirectSessions {
    pub fn new(session_idle: Duration) -> Self {
        DirectSessions {
            session_idle,
            serial: std::sync::atomic::AtomicU64::new(0),
            inner: Mutex::new(Sessions::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // Single inserts and removes: a panic elsewhere leaves it consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// rmcp has initialised `session` for `binding`; `ended` fires when it
    /// lets the session go.
    pub fn open(&self, session: &str, binding: Binding, ended: CancellationToken) {
        let mut map = self.lock();
        if map.by_id.len() > 2 * map.swept_at.max(64) {
            map.by_id.retain(|_, e| !e.ended.is_cancelled());
            map.swept_at = map.by_id.len();
        }
        // A second `notifications/initialized` keeps the calls in flight.
        let entry = map
            .by_id
            .entry(session.to_owned())
            .or_insert_with(|| Entry {
                binding: binding.clone(),
                ended: ended.clone(),
                seen: Instant::now(),
                calls: HashMap::new(),
            });
        entry.binding = binding;
        entry.ended = ended;
        entry.seen = Instant::now();
    }

    /// The session ended on rmcp's side (DELETE, or rmcp no longer knows
    /// it): not served here from now on, even before its handler is gone.
    pub fn close(&self, session: &str) {
        self.lock().by_id.remove(session);
    }

    /// A request of `session` reached rmcp (which restarts its idle clock).
    pub fn seen(&self, session: &str) {
        if let Some(entry) = self.lock().by_id.get_mut(session) {
            entry.seen = Instant::now();
        }
    }

    /// Whether a call on `session` by `caller` in `scope` may be served
    /// here: the session is live, theirs, and rmcp saw it recently.
    pub fn admits(&self, session: &str, caller: &Caller, scope: &Scope) -> bool {
        let mut map = self.lock();
        let Some(entry) = map.by_id.get(session) else {
            return false;
        };
        if entry.ended.is_cancelled() {
            map.by_id.remove(session);
            return false;
        }
        entry.binding.holds(caller, scope) && entry.seen.elapsed() < self.session_idle / 2
    }

    /// Registers a call served here, so that the client's
    /// `notifications/cancelled` reaches it; forgotten when the guard drops.
    pub fn track(self: &Arc<Self>, session: &str, id: &RequestId) -> CallGuard {
        let cancel = CancellationToken::new();
        let key = id_key(id);
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(entry) = self.lock().by_id.get_mut(session) {
            // A client reusing an id in flight can cancel only the later call.
            entry.calls.insert(key.clone(), (serial, cancel.clone()));
        }
        CallGuard {
            sessions: self.clone(),
            session: session.to_owned(),
            key,
            serial,
            cancel,
        }
    }

    /// The client cancelled request `id` of `session`: true when it was a
    /// call served here (now cancelled).
    pub fn cancel(&self, session: &str, id: &RequestId) -> bool {
        let map = self.lock();
        let call = map
            .by_id
            .get(session)
            .and_then(|e| e.calls.get(&id_key(id)));
        match call {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for DirectSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSessions")
            .field("sessions", &self.len())
            .finish()
    }
}

/// A call served here, registered for cancellation while it lives.
pub struct CallGuard {
    sessions: Arc<DirectSessions>,
    session: String,
    key: String,
    serial: u64,
    pub cancel: CancellationToken,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(entry) = self.sessions.lock().by_id.get_mut(&self.session) {
            if entry
                .calls
                .get(&self.key)
                .is_some_and(|(s, _)| *s == self.serial)
            {
                entry.calls.remove(&self.key);
            }
        }
    }
}

/// A JSON-RPC `tools/call` request the data plane can serve: one message,
/// an id rmcp would accept, no progress token (progress needs the event
/// stream rmcp writes).
#[derive(Debug, PartialEq)]
pub struct ToolsCall {
    pub id: RequestId,
    pub name: String,
    pub arguments: Option<JsonObject>,
}

#[derive(Deserialize)]
struct RawRequest {
    jsonrpc: String,
    id: Value,
    method: String,
    #[serde(default)]
    params: Option<RawParams>,
}

#[derive(Deserialize)]
struct RawParams {
    name: String,
    #[serde(default)]
    arguments: Option<JsonObject>,
    #[serde(rename = "_meta", default)]
    meta: Option<JsonObject>,
}

/// The call in `body`, or `None` when rmcp should answer it (anything
/// else, malformed bodies included: rmcp's errors are the contract's).
pub fn tools_call(body: &[u8]) -> Option<ToolsCall> {
    let raw: RawRequest = serde_json::from_slice(body).ok()?;
    if raw.jsonrpc != "2.0" || raw.method != "tools/call" {
        return None;
    }
    let id = match raw.id {
        Value::Number(n) => NumberOrString::Number(n.as_i64()?),
        Value::String(s) => NumberOrString::String(s.into()),
        _ => return None,
    };
    let params = raw.params?;
    if params
        .meta
        .as_ref()
        .is_some_and(|m| m.contains_key("progressToken"))
    {
        return None;
    }
    Some(ToolsCall {
        id,
        name: params.name,
        arguments: params.arguments,
    })
}

/// The JSON-RPC response to a call served here, as rmcp would write it;
/// a result passes as the server wrote it.
pub fn call_response(id: &RequestId, outcome: &Result<Box<RawValue>, CallError>) -> Bytes {
    let id = match serde_json::to_string(id) {
        Ok(id) => id,
        Err(_) => "null".to_owned(),
    };
    let text = match outcome {
        Ok(result) => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{}}}"#, result.get()),
        Err(e) => {
            let error = serde_json::to_string(&call_error(e)).unwrap_or_else(|_| "{}".into());
            format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#)
        }
    };
    Bytes::from(text)
}

/// A `tools/call` on a front session, served here. The tool's name is
/// checked against `Mcp-Name` as the handler does.
pub async fn session_call(
    direct: &Direct,
    session: &str,
    caller: &Caller,
    scope: &Scope,
    mcp_name: Option<&http::HeaderValue>,
    call: ToolsCall,
) -> Bytes {
    let name = match tool_name(mcp_name, &call.name) {
        Ok(name) => name,
        Err(why) => {
            let error = rmcp::model::ErrorData::invalid_params(why, None);
            let body = json!({"jsonrpc": "2.0", "id": call.id, "error": error});
            return Bytes::from(body.to_string());
        }
    };
    let guard = direct.sessions.track(session, &call.id);
    let context = CallContext {
        cancel: guard.cancel.clone(),
        origin: Some(call.id.clone()),
        ..CallContext::default()
    };
    // Dropped with this future when the client goes away: the upstream
    // call is cancelled too.
    let _cancel_on_drop = guard.cancel.clone().drop_guard();
    let outcome = direct
        .fed
        .call_tool_json(caller, scope, name, call.arguments, context)
        .await;
    if let Err(e) = &outcome {
        if !matches!(e, CallError::Cancelled) {
            log::info!(
                "federation: tools/call {name:?} by {:?} failed: {e:?}",
                caller.identity.principal()
            );
        }
    }
    call_response(&call.id, &outcome)
}

/// `POST /tools/invoke/{name}`: the response, wherever it is served.
pub async fn invoke(
    fed: &SharedFederation,
    caller: &Caller,
    scope: &Scope,
    name: &str,
    body: &[u8],
) -> LocalResponse {
    let arguments = match invoke_arguments(body) {
        Ok(a) => a,
        Err(why) => return responses::error(ErrorShape::Plain, 400, 0, &why),
    };
    // Dropped with this future when the client goes away: the upstream
    // call is then cancelled too.
    let context = CallContext::default();
    let _cancel_on_drop = context.cancel.clone().drop_guard();
    match fed
        .call_tool_json(caller, scope, name, arguments, context)
        .await
    {
        Ok(result) => LocalResponse {
            status: 200,
            content_type: "application/json",
            body: Bytes::from(String::from(Box::<str>::from(result))),
            extra_headers: Vec::new(),
        },
        Err(e) => {
            let status = status_of(&e, caller);
            let message = message_of(&e);
            log::info!(
                "federation: invoke {name:?} by {}: {status} {message}",
                caller.identity.principal().trim_start_matches('\0')
            );
            let response = responses::error(ErrorShape::Plain, status, 0, &message);
            if status == 401 {
                // As the data plane's own 401s: the client may retry with a credential.
                return response.with_header("www-authenticate", "Bearer realm=\"mcp-gateway\"");
            }
            response
        }
    }
}

/// The tool name of an invoke path, when it needs no decoding (the
/// service decodes the rest).
pub fn invoke_name(path: &str) -> Option<&str> {
    let name = path.strip_prefix("/tools/invoke/")?;
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    plain.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, IdentitySource};

    fn caller(user: &str) -> Caller {
        Caller {
            identity: Identity {
                user: user.into(),
                source: IdentitySource::ProxyHeader,
            },
            peer: None,
            cert_names: None,
            headers: http::HeaderMap::new(),
        }
    }

    #[test]
    fn only_a_plain_tools_call_is_served_here() {
        let call = tools_call(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"demo-echo","arguments":{"m":"x"}}}"#,
        )
        .unwrap();
        assert_eq!(call.id, NumberOrString::Number(7));
        assert_eq!(call.name, "demo-echo");
        assert_eq!(call.arguments.unwrap()["m"], "x");
        let call = tools_call(
            br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"t"}}"#,
        );
        assert_eq!(call.unwrap().id, NumberOrString::String("a".into()));
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#[..],
            br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"t"}}"#,
            br#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"t"}}"#,
            br#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"t"}}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"t"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":1}}}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}]"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":[1]}}"#,
            b"not json",
        ] {
            assert!(tools_call(body).is_none(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn ids_key_alike_from_rmcp_and_from_the_body() {
        let body = |id: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"t"}}}}"#
            )
        };
        for (text, rmcp) in [
            ("12", NumberOrString::Number(12)),
            (r#""x\"y""#, NumberOrString::String("x\"y".into())),
        ] {
            let parsed = tools_call(body(text).as_bytes()).unwrap();
            assert_eq!(id_key(&parsed.id), id_key(&rmcp));
        }
    }

    #[test]
    fn a_session_serves_its_own_principal_and_scope_while_rmcp_keeps_it() {
        let sessions = Arc::new(DirectSessions::new(Duration::from_secs(3600)));
        let alice = caller("alice");
        let ended = CancellationToken::new();
        sessions.open("s1", Binding::of(&alice, &Scope::Everything), ended.clone());
        assert!(sessions.admits("s1", &alice, &Scope::Everything));
        assert!(!sessions.admits("s1", &caller("bob"), &Scope::Everything));
        let v = Scope::Virtual(Arc::new(super::super::VirtualScope {
            name: "v".into(),
            include: vec![],
        }));
        assert!(!sessions.admits("s1", &alice, &v));
        assert!(!sessions.admits("s2", &alice, &Scope::Everything));
        ended.cancel();
        assert!(!sessions.admits("s1", &alice, &Scope::Everything));
        assert!(sessions.is_empty());
    }

    #[test]
    fn a_session_rmcp_has_not_seen_for_half_its_idle_limit_goes_through_rmcp() {
        let sessions = DirectSessions::new(Duration::from_millis(40));
        let alice = caller("alice");
        let binding = Binding::of(&alice, &Scope::Everything);
        sessions.open("s", binding, CancellationToken::new());
        assert!(sessions.admits("s", &alice, &Scope::Everything));
        std::thread::sleep(Duration::from_millis(25));
        assert!(!sessions.admits("s", &alice, &Scope::Everything));
        sessions.seen("s");
        assert!(sessions.admits("s", &alice, &Scope::Everything));
    }

    #[test]
    fn a_cancel_reaches_a_tracked_call_until_it_ends() {
        let sessions = Arc::new(DirectSessions::new(Duration::from_secs(60)));
        let alice = caller("alice");
        sessions.open(
            "s",
            Binding::of(&alice, &Scope::Everything),
            CancellationToken::new(),
        );
        let id = NumberOrString::Number(3);
        let guard = sessions.track("s", &id);
        assert!(!sessions.cancel("s", &NumberOrString::Number(4)));
        assert!(!sessions.cancel("other", &id));
        assert!(sessions.cancel("s", &id));
        assert!(guard.cancel.is_cancelled());
        drop(guard);
        assert!(!sessions.cancel("s", &id));

        // The same id twice: the first call's end leaves the second's entry.
        let first = sessions.track("s", &id);
        let second = sessions.track("s", &id);
        drop(first);
        assert!(sessions.cancel("s", &id));
        assert!(second.cancel.is_cancelled());

        // Closed (DELETE) before rmcp drops the handler: not served here.
        assert!(sessions.admits("s", &alice, &Scope::Everything));
        sessions.close("s");
        assert!(!sessions.admits("s", &alice, &Scope::Everything));
    }

    #[test]
    fn invoke_names_that_need_decoding_go_to_the_service() {
        assert_eq!(invoke_name("/tools/invoke/demo-echo"), Some("demo-echo"));
        assert_eq!(invoke_name("/tools/invoke/a.b_c~d"), Some("a.b_c~d"));
        assert_eq!(invoke_name("/tools/invoke/a%2Fb"), None);
        assert_eq!(invoke_name("/tools/invoke/"), None);
        assert_eq!(invoke_name("/tools/other"), None);
    }

    #[test]
    fn responses_carry_the_request_id_and_the_contract_error() {
        let id = NumberOrString::Number(9);
        let ok = Ok(RawValue::from_string(r#"{"content":[]}"#.into()).unwrap());
        let v: Value = serde_json::from_slice(&call_response(&id, &ok)).unwrap();
        assert_eq!((v["id"].as_i64(), v["result"].is_object()), (Some(9), true));
        let err = Err(CallError::UnknownTool("x".into()));
        let v: Value = serde_json::from_slice(&call_response(&id, &err)).unwrap();
        assert_eq!(v["error"]["code"], -32602);
    }
}
