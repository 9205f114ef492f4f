//! A small MCP server to put behind the gateway in the quick start and the
//! integration tests. It speaks Streamable HTTP (2025-03-26 / 2025-06-18) at
//! `/mcp` and the legacy HTTP+SSE transport (2024-11-05) at `/sse` + `/message`.
//! Its tools make the gateway observable: `whoami` reports the replica name,
//! the upstream session id and every request header it received, so a test can
//! tell which replica answered and what the gateway forwarded. The unlisted
//! tool `slow` answers over an event stream that goes quiet (see [`slow_call`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
#[cfg(unix)]
use tokio::signal::unix::SignalKind;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

// A directory beside this file, not `src/bin/`, where every file is a binary.
#[path = "mcp-demo-server/behaviour.rs"]
mod behaviour;
#[path = "mcp-demo-server/filler.rs"]
mod filler;
use behaviour::{Behaviour, SseEndpoint};

const SESSION_HEADER: &str = "mcp-session-id";
const SUPPORTED_VERSIONS: [&str; 3] = ["2024-11-05", "2025-03-26", "2025-06-18"];
const LATEST_VERSION: &str = "2025-06-18";
const TICK: Duration = Duration::from_millis(200);

// JSON-RPC error codes. The two session codes follow the official TypeScript
// SDK, so clients written against it react the way they would in production.
// SESSION_NOT_FOUND is also the gateway's code for an unknown session
// (`refusal::code::UNKNOWN_SESSION`, the README's table): a client sees the
// same code whether the gateway or the server refused. Not imported, so the
// demo stays independent of the gateway; a test holds them equal.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
const SESSION_REQUIRED: i64 = -32000;
const SESSION_NOT_FOUND: i64 = -32001;

/// Demo MCP server (Streamable HTTP at /mcp, legacy HTTP+SSE at /sse).
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Address to listen on; port 0 picks a free one [env: DEMO_LISTEN] [default: 127.0.0.1:3001]
    // The env fallback is done by hand: clap's `env` feature is not enabled in
    // Cargo.toml and this binary must not change the crate's dependencies.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Replica name reported in replies [env: DEMO_NAME] [default: demo]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Send Mcp-Session-Id on every Streamable HTTP response, as the Python
    /// SDK does, not only on initialize [env: DEMO_ECHO_SESSION_ID=1]
    #[arg(long)]
    echo_session_id: bool,
    /// The legacy `endpoint` event: `path` (a valid one), or a misbehaviour
    /// for tests: `invalid` (an unparsable URL), `huge` (a path too long to
    /// wrap), `missing` (9 KiB of other events, no endpoint) [env: DEMO_SSE_ENDPOINT]
    #[arg(long, value_name = "MODE")]
    sse_endpoint: Option<String>,
    /// List the tool `countdown` ({"steps": N, "interval_ms": M}): N progress
    /// notifications M ms apart, then the result [env: DEMO_PROGRESS_TOOL=1]
    #[arg(long)]
    progress_tool: bool,
    /// Offer the prompt `greet` ({"who"}) and the resource `demo://readme`
    #[arg(long)]
    prompts_and_resources: bool,
    /// Also list N filler tools `tool_0` … (a catalog of realistic size for
    /// the federation benchmark) [env: DEMO_EXTRA_TOOLS] [default: 0]
    #[arg(long, value_name = "N")]
    extra_tools: Option<usize>,
    /// GET streams carry only `list_changed`, no tick every 200 ms: a
    /// gateway holding a session to each of 1,000 servers served by this
    /// one process is not kept busy by their ticks [env: DEMO_QUIET_STREAMS=1]
    #[arg(long)]
    quiet_streams: bool,
}

enum Session {
    /// Streamable HTTP: lives until the client DELETEs it.
    Streamable,
    /// Legacy HTTP+SSE: replies to POST /message travel over the open stream.
    Legacy(mpsc::UnboundedSender<String>),
}

struct AppState {
    name: String,
    behaviour: Behaviour,
    sessions: Mutex<HashMap<String, Session>>,
    /// Requests to the MCP endpoints, so a test can tell that a refused
    /// request never reached this server.
    mcp_requests: AtomicU64,
    /// Those of them that carried `X-Authenticated-User`: a gateway's own
    /// traffic (its catalog gathering) carries none, so a test can count
    /// the requests it made through the gateway alone.
    user_requests: AtomicU64,
    /// `notifications/cancelled` received, so a test can tell a
    /// cancellation reached this server.
    cancellations: AtomicU64,
    /// `POST /tools-changed` sends `notifications/tools/list_changed` on
    /// every open server-to-client stream.
    list_changed: tokio::sync::broadcast::Sender<()>,
}

impl AppState {
    #[cfg(test)]
    fn new(name: &str) -> Self {
        Self::with_behaviour(name, Behaviour::default())
    }

    fn with_behaviour(name: &str, behaviour: Behaviour) -> Self {
        AppState {
            name: name.to_owned(),
            behaviour,
            sessions: Mutex::new(HashMap::new()),
            mcp_requests: AtomicU64::new(0),
            user_requests: AtomicU64::new(0),
            cancellations: AtomicU64::new(0),
            list_changed: tokio::sync::broadcast::channel(16).0,
        }
    }

    fn count_request(&self, headers: &HeaderMap) {
        self.mcp_requests.fetch_add(1, Ordering::Relaxed);
        if headers.contains_key("x-authenticated-user") {
            self.user_requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // No code path can leave the map half-updated, so a panic elsewhere
        // while holding the lock must not take every later request down too.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a legacy session when its SSE body is dropped, which is how hyper
/// tells us the client went away.
struct SessionGuard {
    state: Arc<AppState>,
    id: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.state.sessions().remove(&self.id);
        log::info!("legacy session {} closed", self.id);
    }
}

/// 16 bytes from the OS random source as hex. Session ids must not be
/// guessable, so there is no fallback: without the OS source, no session.
fn new_session_id() -> Result<String, getrandom::Error> {
    session_id_from(getrandom::fill)
}

fn session_id_from(
    random: impl FnOnce(&mut [u8]) -> Result<(), getrandom::Error>,
) -> Result<String, getrandom::Error> {
    let mut buf = [0u8; 16];
    random(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn no_session_id(e: getrandom::Error) -> Reject {
    log::error!("cannot make a session id: the OS random source failed: {e}");
    let why = "Internal error: no session id";
    reject(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_ERROR, why)
}

fn rpc_result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// A request refused before dispatch (bad body, missing or unknown session):
/// a JSON-RPC error as the whole reply, its HTTP status telling the client
/// what to do (404 for an unknown session makes a client initialise again).
/// The id is null, as JSON-RPC asks when the request could not be processed.
type Reject = (StatusCode, Json<Value>);

fn reject(status: StatusCode, code: i64, message: &str) -> Reject {
    (status, Json(rpc_error(&Value::Null, code, message)))
}

fn unknown_session() -> Reject {
    let why = "Session not found";
    reject(StatusCode::NOT_FOUND, SESSION_NOT_FOUND, why)
}

/// Checks the JSON-RPC 2.0 envelope, so that dispatch only ever sees a
/// request, a notification or a response.
fn check_envelope(msg: &Value) -> Result<(), &'static str> {
    let obj = msg.as_object().ok_or("message must be a JSON object")?;
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err("jsonrpc must be \"2.0\"");
    }
    let is_response =
        !obj.contains_key("method") && (obj.contains_key("result") || obj.contains_key("error"));
    match obj.get("id") {
        Some(Value::String(_) | Value::Number(_)) | None => {}
        // An error response may carry a null id when its request was unreadable.
        Some(Value::Null) if is_response => {}
        Some(_) => return Err("id must be a string or a number"),
    }
    match obj.get("method") {
        Some(Value::String(_)) => Ok(()),
        Some(_) => Err("method must be a string"),
        None if is_response && obj.contains_key("id") => Ok(()),
        None => Err("not a request, notification or response"),
    }
}

/// Parses a POST body into exactly one well-formed JSON-RPC message.
fn parse_body(body: &[u8]) -> Result<Value, Reject> {
    let bad = |code, why: &str| reject(StatusCode::BAD_REQUEST, code, why);
    let msg: Value =
        serde_json::from_slice(body).map_err(|e| bad(PARSE_ERROR, &format!("Parse error: {e}")))?;
    if msg.is_array() {
        // Batches were dropped from the spec in 2025-06-18; not worth supporting here.
        return Err(bad(INVALID_REQUEST, "Batch requests are not supported"));
    }
    check_envelope(&msg).map_err(|e| bad(INVALID_REQUEST, &format!("Invalid Request: {e}")))?;
    Ok(msg)
}

/// Dispatches one (envelope-checked) JSON-RPC message. Returns `None` for
/// notifications and responses, which get no reply. Transport-agnostic so both
/// transports share it and it can be unit-tested without a socket.
fn handle_rpc(
    state: &AppState,
    session: Option<&str>,
    headers: &HeaderMap,
    msg: &Value,
) -> Option<Value> {
    let id = msg.get("id")?;
    let method = msg.get("method")?.as_str()?;
    let params = msg.get("params").unwrap_or(&Value::Null);
    let outcome = match method {
        "initialize" => Ok(initialize_result(
            params,
            state.behaviour.prompts_and_resources,
        )),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(tools_list(&state.behaviour)),
        "tools/call" => call_tool(state, session, headers, params),
        "prompts/list" | "prompts/get" | "resources/list" | "resources/read"
            if state.behaviour.prompts_and_resources =>
        {
            prompts_and_resources(method, params)
        }
        _ => Err((METHOD_NOT_FOUND, format!("Method not found: {method}"))),
    };
    Some(match outcome {
        Ok(result) => rpc_result(id, result),
        Err((code, message)) => rpc_error(id, code, &message),
    })
}

/// The prompt `greet` and the resource `demo://readme` (`--prompts-and-resources`).
fn prompts_and_resources(method: &str, params: &Value) -> Result<Value, (i64, String)> {
    let invalid = |m: &str| (INVALID_PARAMS, m.to_owned());
    match method {
        "prompts/list" => Ok(
            json!({"prompts": [{"name": "greet", "description": "Greets someone.",
            "arguments": [{"name": "who", "required": true}]}]}),
        ),
        "prompts/get" => {
            if params.get("name").and_then(Value::as_str) != Some("greet") {
                return Err(invalid("unknown prompt"));
            }
            let who = params
                .pointer("/arguments/who")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("greet needs the argument `who`"))?;
            Ok(json!({"messages": [{"role": "user",
                "content": {"type": "text", "text": format!("Hello, {who}!")}}]}))
        }
        "resources/list" => Ok(
            json!({"resources": [{"uri": "demo://readme", "name": "readme",
            "mimeType": "text/plain"}]}),
        ),
        _ => match params.get("uri").and_then(Value::as_str) {
            Some("demo://readme") => Ok(json!({"contents": [{"uri": "demo://readme",
                "mimeType": "text/plain", "text": "This is the demo server."}]})),
            _ => Err(invalid("unknown resource")),
        },
    }
}

fn initialize_result(params: &Value, prompts_and_resources: bool) -> Value {
    let version = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .filter(|v| SUPPORTED_VERSIONS.contains(v))
        .unwrap_or(LATEST_VERSION);
    let capabilities = if prompts_and_resources {
        json!({"tools": {}, "prompts": {}, "resources": {}})
    } else {
        json!({"tools": {}})
    };
    json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": {"name": "mcp-demo-server", "version": env!("CARGO_PKG_VERSION")},
    })
}

fn tools_list(behaviour: &Behaviour) -> Value {
    let echo_args = json!({"message": {"type": "string"}});
    let mut tools = vec![
        json!({"name": "echo", "description": "Returns the given message unchanged.",
         "inputSchema": {"type": "object", "properties": echo_args, "required": ["message"]}}),
        json!({"name": "whoami",
         "description": "Reports this replica's name, the session id and the request headers.",
         "inputSchema": {"type": "object", "properties": {}}}),
    ];
    if behaviour.progress_tool {
        let args = json!({"steps": {"type": "integer", "minimum": 1},
                          "interval_ms": {"type": "integer", "minimum": 0}});
        tools.push(json!({"name": "countdown",
            "description": "Reports progress `steps` times, `interval_ms` apart, then answers.",
            "inputSchema": {"type": "object", "properties": args, "required": ["steps"]}}));
    }
    tools.extend(filler::tools(behaviour.extra_tools));
    json!({ "tools": tools })
}

fn call_tool(
    state: &AppState,
    session: Option<&str>,
    headers: &HeaderMap,
    params: &Value,
) -> Result<Value, (i64, String)> {
    let invalid = |m: &str| (INVALID_PARAMS, m.to_owned());
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("tools/call needs a string `name`"))?;
    let text = match name {
        "echo" => params
            .pointer("/arguments/message")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("echo needs a string argument `message`"))?
            .to_owned(),
        "whoami" => {
            let headers = headers_json(headers);
            json!({"server": state.name, "session": session, "headers": headers}).to_string()
        }
        other => {
            let (count, args) = (state.behaviour.extra_tools, params.get("arguments"));
            filler::call(other, count, args)
                .ok_or_else(|| (INVALID_PARAMS, format!("Unknown tool: {other}")))?
        }
    };
    Ok(json!({"content": [{"type": "text", "text": text}], "isError": false}))
}

/// Request headers as a JSON object: a repeated header becomes an array so a
/// test can see that the gateway forwarded (or duplicated) every copy.
fn headers_json(headers: &HeaderMap) -> Value {
    let mut out = serde_json::Map::new();
    for name in headers.keys() {
        let text = |v: &HeaderValue| Value::from(String::from_utf8_lossy(v.as_bytes()));
        let mut values: Vec<Value> = headers.get_all(name).iter().map(text).collect();
        let value = match values.len() {
            1 => values.swap_remove(0),
            _ => Value::Array(values),
        };
        // `http` already stores names lowercased.
        out.insert(name.as_str().to_owned(), value);
    }
    Value::Object(out)
}

/// Looks up the Streamable HTTP session named by `Mcp-Session-Id`.
fn streamable_session(state: &AppState, headers: &HeaderMap) -> Result<String, Reject> {
    let Some(sid) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        let why = "Bad Request: Mcp-Session-Id header is required";
        return Err(reject(StatusCode::BAD_REQUEST, SESSION_REQUIRED, why));
    };
    match state.sessions().get(sid) {
        Some(Session::Streamable) => Ok(sid.to_owned()),
        _ => Err(unknown_session()),
    }
}

fn sse_response<S>(events: S) -> Response
where
    S: futures_util::Stream<Item = String> + Send + 'static,
{
    // One body frame per event: hyper writes each as its own chunk, so
    // events reach the client as they happen rather than in batches.
    let body = Body::from_stream(events.map(|e| Ok::<_, Infallible>(Bytes::from(e))));
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, body).into_response()
}

type Shared = State<Arc<AppState>>;

async fn mcp_post(
    State(state): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Reject> {
    state.count_request(&headers);
    let msg = parse_body(&body)?;
    let is_initialize =
        msg.get("method").and_then(Value::as_str) == Some("initialize") && msg.get("id").is_some();
    let session = if is_initialize {
        let sid = new_session_id().map_err(no_session_id)?;
        state.sessions().insert(sid.clone(), Session::Streamable);
        log::info!("streamable session {sid} created");
        sid
    } else {
        streamable_session(&state, &headers)?
    };
    if msg.pointer("/params/name").and_then(Value::as_str) == Some("slow") {
        return Ok(slow_call(&msg));
    }
    if state.behaviour.progress_tool
        && msg.get("method").and_then(Value::as_str) == Some("tools/call")
        && msg.pointer("/params/name").and_then(Value::as_str) == Some("countdown")
    {
        return Ok(countdown_call(&msg));
    }
    if msg.get("method").and_then(Value::as_str) == Some("notifications/cancelled") {
        state.cancellations.fetch_add(1, Ordering::Relaxed);
    }
    let Some(reply) = handle_rpc(&state, Some(&session), &headers, &msg) else {
        return Ok(StatusCode::ACCEPTED.into_response());
    };
    let mut resp = Json(reply).into_response();
    let echo = is_initialize || state.behaviour.echo_session_id;
    if let (true, Ok(value)) = (echo, HeaderValue::from_str(&session)) {
        resp.headers_mut().insert(SESSION_HEADER, value);
    }
    Ok(resp)
}

/// `tools/call` of `slow` with `{"silence_ms": N, "then": "answer" | "break"}`:
/// an event stream with one log event at once, then N ms of silence, then the
/// result, or (with "break") the connection dropped without ending the chunked
/// body. A tool working quietly, or waiting on an elicitation, looks like this.
fn slow_call(msg: &Value) -> Response {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let args = msg.pointer("/params/arguments");
    let silence = args
        .and_then(|a| a.get("silence_ms"))
        .and_then(Value::as_u64);
    let breaks = args.and_then(|a| a.get("then")).and_then(Value::as_str) == Some("break");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                      "params": {"level": "info", "data": "working"}});
    let result = rpc_result(&id, json!({"content": [{"type": "text", "text": "done"}]}));
    let events = stream::iter([Ok(format!("event: message\ndata: {note}\n\n"))]).chain(
        stream::once(async move {
            tokio::time::sleep(Duration::from_millis(silence.unwrap_or(0))).await;
            match breaks {
                // An error from the body makes hyper drop the connection.
                true => Err(std::io::Error::other("slow: breaking the stream")),
                false => Ok(format!("event: message\ndata: {result}\n\n")),
            }
        }),
    );
    let body = Body::from_stream(events.map(|e| e.map(Bytes::from)));
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `tools/call` of `countdown`: `steps` progress notifications (with the
/// request's progress token, if any) `interval_ms` apart on the response's
/// event stream, then the result.
fn countdown_call(msg: &Value) -> Response {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let steps = msg
        .pointer("/params/arguments/steps")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let interval = msg
        .pointer("/params/arguments/interval_ms")
        .and_then(Value::as_u64)
        .unwrap_or(100);
    let token = msg.pointer("/params/_meta/progressToken").cloned();
    let result = rpc_result(
        &id,
        json!({"content": [{"type": "text", "text": "liftoff"}]}),
    );
    let events = stream::unfold(1u64, move |n| {
        let token = token.clone();
        async move {
            if n > steps {
                return None;
            }
            if n > 1 {
                tokio::time::sleep(Duration::from_millis(interval)).await;
            }
            let event = token.map(|token| {
                // Its send time, as the GET stream's ticks carry theirs (the
                // streams benchmark's `--kind post`).
                let note = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": n, "total": steps,
                               "_meta": {"sent_us": now_us()}}});
                format!("event: message\ndata: {note}\n\n")
            });
            Some((event, n + 1))
        }
    })
    .filter_map(|e| async move { e })
    .chain(stream::once(async move {
        format!("event: message\ndata: {result}\n\n")
    }));
    sse_response(events)
}

/// Server-to-client stream: a numbered notification now and every TICK,
/// until the client hangs up. Lets tests check that the gateway passes
/// events through one by one.
async fn mcp_get(State(state): Shared, headers: HeaderMap) -> Result<Response, Reject> {
    state.count_request(&headers);
    streamable_session(&state, &headers)?;
    let mut interval = tokio::time::interval(TICK);
    // After a stall, resume the cadence instead of bursting missed ticks,
    // which would look like buffering to a test timing the events.
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let seed = (interval, 0u64, state.name.clone());
    let ticks = stream::unfold(seed, |(mut interval, n, name)| async move {
        interval.tick().await;
        // The send time lets a client measure what a proxy in between adds
        // to each event (the streams benchmark, examples/streams.rs).
        let data = json!({"tick": n, "server": name, "sent_us": now_us()});
        let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                          "params": {"level": "info", "data": data}});
        let event = format!("id: {n}\nevent: message\ndata: {note}\n\n");
        Some((event, (interval, n + 1, name)))
    });
    let changes = stream::unfold(state.list_changed.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(()) => break,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
        let note = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        Some((format!("event: message\ndata: {note}\n\n"), rx))
    });
    // Pending rather than filtered: a quiet stream must not even wake up.
    let ticks = match state.behaviour.quiet_streams {
        true => stream::pending().boxed(),
        false => ticks.boxed(),
    };
    Ok(sse_response(stream::select(ticks, changes)))
}

/// Tells every open server-to-client stream that the tool list changed;
/// answers how many streams were told.
async fn tools_changed(State(state): Shared) -> Json<Value> {
    let streams = state.list_changed.send(()).unwrap_or(0);
    Json(json!({ "streams": streams }))
}

async fn mcp_delete(State(state): Shared, headers: HeaderMap) -> Result<StatusCode, Reject> {
    state.count_request(&headers);
    let sid = streamable_session(&state, &headers)?;
    state.sessions().remove(&sid);
    log::info!("streamable session {sid} deleted");
    Ok(StatusCode::OK)
}

/// Legacy transport: the stream announces where to POST, then carries the
/// replies to those POSTs. The session lives exactly as long as the stream.
async fn legacy_sse(State(state): Shared, headers: HeaderMap) -> Result<Response, Reject> {
    state.count_request(&headers);
    let sid = new_session_id().map_err(no_session_id)?;
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    state.sessions().insert(sid.clone(), Session::Legacy(tx));
    log::info!("legacy session {sid} opened");
    let endpoint = state.behaviour.sse_endpoint.first_event(&sid);
    let guard = SessionGuard { state, id: sid };
    let replies = stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let reply = rx.recv().await?;
        Some((format!("event: message\ndata: {reply}\n\n"), (rx, guard)))
    });
    Ok(sse_response(
        stream::once(async { endpoint }).chain(replies),
    ))
}

async fn legacy_message(
    State(state): Shared,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Reject> {
    state.count_request(&headers);
    let query = uri.query().unwrap_or("").split('&');
    let Some(sid) = query.clone().find_map(|kv| kv.strip_prefix("sessionId=")) else {
        let why = "Bad Request: sessionId query parameter is required";
        return Err(reject(StatusCode::BAD_REQUEST, SESSION_REQUIRED, why));
    };
    let tx = match state.sessions().get(sid) {
        Some(Session::Legacy(tx)) => tx.clone(),
        _ => return Err(unknown_session()),
    };
    let msg = parse_body(&body)?;
    if let Some(reply) = handle_rpc(&state, Some(sid), &headers, &msg) {
        // Fails only if the stream closed since the lookup above.
        if tx.send(reply.to_string()).is_err() {
            return Err(unknown_session());
        }
    }
    Ok(StatusCode::ACCEPTED)
}

async fn healthz(State(state): Shared) -> Json<Value> {
    let mcp_requests = state.mcp_requests.load(Ordering::Relaxed);
    let user_requests = state.user_requests.load(Ordering::Relaxed);
    let cancellations = state.cancellations.load(Ordering::Relaxed);
    Json(
        json!({"status": "ok", "server": state.name, "mcp_requests": mcp_requests,
                "user_requests": user_requests, "cancellations": cancellations}),
    )
}

/// Resolves on SIGTERM (how test harnesses and containers stop us) or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(SignalKind::terminate()) {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    // The flag wins over the environment, as clap's `env` would have it.
    let setting = |flag: Option<String>, var, default: &str| {
        let value = flag.or_else(|| std::env::var(var).ok());
        value.unwrap_or_else(|| default.to_owned())
    };
    let listen = setting(cli.listen, "DEMO_LISTEN", "127.0.0.1:3001");
    let name = setting(cli.name, "DEMO_NAME", "demo");
    let mode = setting(cli.sse_endpoint, "DEMO_SSE_ENDPOINT", "path");
    let Some(sse_endpoint) = SseEndpoint::parse(&mode) else {
        log::error!("--sse-endpoint {mode:?}: expected path, invalid, huge or missing");
        return ExitCode::FAILURE;
    };
    let echo_env = std::env::var("DEMO_ECHO_SESSION_ID").is_ok_and(|v| v == "1" || v == "true");
    let progress_env = std::env::var("DEMO_PROGRESS_TOOL").is_ok_and(|v| v == "1" || v == "true");
    let quiet_env = std::env::var("DEMO_QUIET_STREAMS").is_ok_and(|v| v == "1" || v == "true");
    let extra = setting(
        cli.extra_tools.map(|n| n.to_string()),
        "DEMO_EXTRA_TOOLS",
        "0",
    );
    let Ok(extra_tools) = extra.parse::<usize>() else {
        log::error!("DEMO_EXTRA_TOOLS {extra:?}: expected a whole number");
        return ExitCode::FAILURE;
    };
    let behaviour = Behaviour {
        echo_session_id: cli.echo_session_id || echo_env,
        sse_endpoint,
        progress_tool: cli.progress_tool || progress_env,
        prompts_and_resources: cli.prompts_and_resources,
        extra_tools,
        quiet_streams: cli.quiet_streams || quiet_env,
    };
    // Fail at start, not on the first session, if ids cannot be made.
    if let Err(e) = new_session_id() {
        log::error!("the OS random source failed ({e}): cannot make session ids");
        return ExitCode::FAILURE;
    }
    match serve(&listen, name, behaviour).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("cannot serve on {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: &str, name: String, behaviour: Behaviour) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    // Report the bound address, so that `--listen 127.0.0.1:0` tells the
    // caller which port it got.
    let addr = listener.local_addr()?;
    log::info!("mcp-demo-server {name} listening on {addr}");
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;

    let app = Router::new()
        .route("/mcp", post(mcp_post).get(mcp_get).delete(mcp_delete))
        // One process standing for many servers (the federation benchmark
        // registers 1,000): each its own URL, one shared behaviour.
        .route(
            "/s/{server}/mcp",
            post(mcp_post).get(mcp_get).delete(mcp_delete),
        )
        .route("/sse", get(legacy_sse))
        .route("/message", post(legacy_message))
        .route("/healthz", get(healthz))
        .route("/tools-changed", post(tools_changed))
        .with_state(Arc::new(AppState::with_behaviour(&name, behaviour)));

    // Not graceful shutdown: the SSE streams never end on their own, so
    // waiting for connections to drain would never finish.
    tokio::select! {
        served = axum::serve(listener, app) => served,
        () = shutdown_signal() => {
            log::info!("shutting down");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one request to `handle_rpc` as session "s1" and returns the reply.
    fn rpc(state: &AppState, headers: &HeaderMap, method: &str, params: Value) -> Value {
        let msg = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        check_envelope(&msg).expect("well-formed test message");
        handle_rpc(state, Some("s1"), headers, &msg).expect("requests get a reply")
    }

    #[test]
    fn initialize_negotiates_protocol_version() {
        let (state, h) = (AppState::new("a"), HeaderMap::new());
        let cases = [("2024-11-05", "2024-11-05"), ("2025-03-26", "2025-03-26")];
        for (asked, got) in cases.into_iter().chain([("1999-01-01", LATEST_VERSION)]) {
            let reply = rpc(&state, &h, "initialize", json!({"protocolVersion": asked}));
            assert_eq!(reply["id"], 7);
            assert_eq!(reply["result"]["protocolVersion"], got);
            assert_eq!(reply["result"]["capabilities"], json!({"tools": {}}));
            assert_eq!(reply["result"]["serverInfo"]["name"], "mcp-demo-server");
        }
    }

    #[test]
    fn ping_tools_and_errors() {
        let (state, h) = (AppState::new("a"), HeaderMap::new());
        assert_eq!(rpc(&state, &h, "ping", Value::Null)["result"], json!({}));
        let list = rpc(&state, &h, "tools/list", json!({}));
        let names: Vec<&Value> = (0..2)
            .map(|i| &list["result"]["tools"][i]["name"])
            .collect();
        assert_eq!(names, [&json!("echo"), &json!("whoami")]);
        let echo = json!({"name": "echo", "arguments": {"message": "hi"}});
        let reply = rpc(&state, &h, "tools/call", echo);
        assert_eq!(
            reply["result"]["content"],
            json!([{"type": "text", "text": "hi"}])
        );
        let code = |method, params| rpc(&state, &h, method, params)["error"]["code"].clone();
        assert_eq!(code("tools/call", json!({"name": "nope"})), INVALID_PARAMS);
        assert_eq!(code("tools/call", json!({"name": "echo"})), INVALID_PARAMS);
        assert_eq!(code("resources/list", json!({})), METHOD_NOT_FOUND);
    }

    #[test]
    fn extra_tools_are_listed_after_the_real_ones_and_answer() {
        let behaviour = Behaviour {
            extra_tools: 3,
            ..Behaviour::default()
        };
        let (state, h) = (AppState::with_behaviour("a", behaviour), HeaderMap::new());
        let list = rpc(&state, &h, "tools/list", json!({}));
        let tools = list["result"]["tools"].as_array().expect("a list");
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["echo", "whoami", "tool_0", "tool_1", "tool_2"]);
        let call = json!({"name": "tool_2", "arguments": {"query": "q"}});
        let reply = rpc(&state, &h, "tools/call", call);
        assert_eq!(reply["result"]["isError"], false);
        let past = rpc(&state, &h, "tools/call", json!({"name": "tool_3"}));
        assert_eq!(past["error"]["code"], INVALID_PARAMS);
    }

    #[test]
    fn whoami_reports_name_session_and_headers() {
        let state = AppState::new("replica-b");
        let mut h = HeaderMap::new();
        h.insert("x-one", HeaderValue::from_static("1"));
        h.append("x-many", HeaderValue::from_static("a"));
        h.append("x-many", HeaderValue::from_static("b"));
        let reply = rpc(&state, &h, "tools/call", json!({"name": "whoami"}));
        let text = reply["result"]["content"][0]["text"]
            .as_str()
            .expect("text");
        let who: Value = serde_json::from_str(text).expect("whoami text is JSON");
        let headers = json!({"x-one": "1", "x-many": ["a", "b"]});
        assert_eq!(
            who,
            json!({"server": "replica-b", "session": "s1", "headers": headers})
        );
    }

    #[test]
    fn notifications_and_responses_get_no_reply() {
        let notification = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        for body in [notification, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#] {
            let msg = parse_body(body.as_bytes()).expect("accepted");
            assert!(handle_rpc(&AppState::new("a"), None, &HeaderMap::new(), &msg).is_none());
        }
    }

    #[test]
    fn malformed_bodies_are_rejected_with_400() {
        let invalid = [
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            "[]",
        ];
        let cases = invalid.map(|body| (body, INVALID_REQUEST));
        for (body, code) in cases.into_iter().chain([("{not json", PARSE_ERROR)]) {
            let (status, Json(reply)) = parse_body(body.as_bytes()).expect_err(body);
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(reply["error"]["code"], code);
        }
    }

    #[test]
    fn unknown_session_code_is_the_gateways() {
        assert_eq!(
            SESSION_NOT_FOUND,
            mcp_gateway::refusal::code::UNKNOWN_SESSION
        );
        let (status, Json(reply)) = unknown_session();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(reply["error"]["code"], SESSION_NOT_FOUND);
    }

    #[test]
    fn session_ids_are_distinct_hex() {
        let (a, b) = (new_session_id().unwrap(), new_session_id().unwrap());
        assert!(a.len() == 32 && a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn no_os_randomness_means_no_session_id() {
        let failing = |_: &mut [u8]| Err(getrandom::Error::UNSUPPORTED);
        assert!(session_id_from(failing).is_err());
    }
}
