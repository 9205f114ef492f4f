//! The internal federation service: an axum app on a Unix socket in a
//! private directory, reached only by the data plane. Its middleware turns
//! the hand-over headers into the [`Caller`] and [`Scope`] request
//! extensions every handler reads; a request without a valid hand-over
//! never reaches a handler.

use super::handover::{self, Caller, HandoverError};
use super::{rpc, tools, Scope, SharedFederation};
use crate::responses::{self, ErrorShape};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the data plane needs to reach the service: the socket, and the
/// secret that proves a request came through it.
#[derive(Clone)]
pub struct ServiceAddress {
    pub socket: PathBuf,
    pub secret: http::HeaderValue,
}

/// The private directory and the socket bound in it; the directory (and
/// the socket) are removed when this is dropped or [`close`](Self::close)d.
pub struct BoundSocket {
    dir: PathBuf,
    pub address: ServiceAddress,
    listener: Option<std::os::unix::net::UnixListener>,
}

impl BoundSocket {
    /// A fresh 0700 directory under `$RUNTIME_DIRECTORY` (systemd's, when
    /// set) or the temp dir, a socket in it, and a new random secret.
    pub fn bind() -> std::io::Result<Self> {
        let base = std::env::var_os("RUNTIME_DIRECTORY")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        Self::bind_in(&base)
    }

    pub fn bind_in(base: &Path) -> std::io::Result<Self> {
        let dir = base.join(format!("mcp-gateway-federation-{}", random_hex(8)?));
        // `create`, not `create_all`: a directory someone else made there
        // first is an error, never reused.
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        // The umask may have narrowed the mode, never widened it; set it
        // exactly so the check below holds whatever the umask.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let socket = dir.join("federation.sock");
        let listener = match std::os::unix::net::UnixListener::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        listener.set_nonblocking(true)?;
        let secret = http::HeaderValue::from_str(&random_hex(32)?)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(BoundSocket {
            dir,
            address: ServiceAddress { socket, secret },
            listener: Some(listener),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The listener, once (the service takes it onto its runtime).
    pub fn take_listener(&mut self) -> Option<std::os::unix::net::UnixListener> {
        self.listener.take()
    }

    pub fn close(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("federation: cannot remove {}: {e}", self.dir.display());
            }
        }
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        self.close();
    }
}

fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[derive(Clone)]
struct HandoverState {
    fed: SharedFederation,
    secret: Arc<http::HeaderValue>,
}

/// The app: the JSON endpoints, the front's MCP routes, and the hand-over
/// check in front of all of them.
pub fn app(fed: SharedFederation, secret: http::HeaderValue) -> Router {
    app_with(fed.clone(), secret, super::front::router(fed))
}

/// [`app`] with the MCP front's routes (`/mcp`, `/servers/{name}/mcp`,
/// `/ws`) merged behind the same hand-over check.
pub fn app_with(fed: SharedFederation, secret: http::HeaderValue, front: Router) -> Router {
    let state = HandoverState {
        fed: fed.clone(),
        secret: Arc::new(secret),
    };
    Router::new()
        .route("/tools", get(tools::list))
        .route("/tools/", get(tools::list))
        .route("/tools/invoke/{name}", post(tools::invoke))
        .route("/rpc", post(rpc::handle))
        .with_state(fed)
        .merge(front)
        // After the merge, so that they cover the front's routes too.
        .fallback(|| async { error(404, "not found") })
        .method_not_allowed_fallback(|| async { error(405, "method not allowed") })
        .layer(middleware::from_fn_with_state(state, check_handover))
}

/// Refuses a request without the data plane's secret (401, logged once per
/// request), then resolves the caller and the scope.
async fn check_handover(
    State(state): State<HandoverState>,
    mut request: Request,
    next: Next,
) -> Response {
    let (caller, scope_name) = match handover::read(request.headers(), &state.secret) {
        Ok(found) => found,
        Err(HandoverError::Secret) => {
            log::warn!(
                "federation: {} {} refused: no valid hand-over secret",
                request.method(),
                request.uri().path()
            );
            return error(401, "not reached through the gateway");
        }
        Err(HandoverError::Malformed(why)) => {
            // The data plane wrote these: a bug, not a client's doing.
            log::error!("federation: malformed hand-over: {why}");
            return error(500, "internal error");
        }
    };
    let Some(scope) = state.fed.scope(scope_name.as_deref()) else {
        log::info!(
            "federation: 404 virtual server {:?} no longer exists",
            scope_name.as_deref().unwrap_or_default()
        );
        return error(404, "unknown server");
    };
    request.extensions_mut().insert(caller);
    request.extensions_mut().insert(scope);
    next.run(request).await
}

/// A JSON error body of the gateway's plain shape (`{"error", "status"}`).
pub fn error(status: u16, message: &str) -> Response {
    local(responses::error(ErrorShape::Plain, status, 0, message))
}

/// A JSON-RPC error body with `id: null`.
pub fn rpc_error(status: u16, code: i64, message: &str) -> Response {
    local(responses::error(ErrorShape::JsonRpc, status, code, message))
}

pub fn local(response: responses::LocalResponse) -> Response {
    let status = http::StatusCode::from_u16(response.status)
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = (status, response.body).into_response();
    out.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(response.content_type),
    );
    for (name, value) in response.extra_headers {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            out.headers_mut().append(name, value);
        }
    }
    out
}

/// A handler ran without the hand-over's extensions, which the
/// middleware always inserts: a wiring bug, answered 500 rather than
/// served as anonymous.
#[derive(Debug)]
pub struct MissingHandover;

impl IntoResponse for MissingHandover {
    fn into_response(self) -> Response {
        log::error!("federation: a handler ran without the hand-over's caller and scope");
        error(500, "internal error")
    }
}

pub fn caller_and_scope(
    caller: Option<axum::Extension<Caller>>,
    scope: Option<axum::Extension<Scope>>,
) -> Result<(Caller, Scope), MissingHandover> {
    match (caller, scope) {
        (Some(axum::Extension(c)), Some(axum::Extension(s))) => Ok((c, s)),
        _ => Err(MissingHandover),
    }
}

/// Serves `app` on the bound socket until `shutdown` completes, then
/// removes the socket's directory.
pub async fn serve(
    mut socket: BoundSocket,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let Some(std_listener) = socket.take_listener() else {
        log::error!("federation: the socket was already served");
        return;
    };
    let listener = match tokio::net::UnixListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!(
                "federation: cannot listen on {}: {e}",
                socket.address.socket.display()
            );
            return;
        }
    };
    log::info!("federation service on {}", socket.address.socket.display());
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        log::error!("federation service stopped: {e}");
    }
    socket.close();
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::federation::{CallContext, CallError, Federation, VirtualScope};
    use crate::identity::IdentitySource;
    use async_trait::async_trait;
    use axum::body::Body;
    use rmcp::model::{
        CallToolResult, ContentBlock as Content, JsonObject, Prompt, Resource, Tool,
    };
    use std::sync::Mutex;
    use tower::ServiceExt;

    /// A federation with fixed tools: `a-echo` (echoes its `text`),
    /// `a-fail` (a tool error), `b-down` (its server is down), and, for
    /// anonymous callers, nothing. Records the caller of each list.
    pub struct FakeFederation {
        pub seen: Mutex<Vec<String>>,
        pub tools: usize,
    }

    impl FakeFederation {
        pub fn shared(tools: usize) -> SharedFederation {
            Arc::new(FakeFederation {
                seen: Mutex::new(Vec::new()),
                tools,
            })
        }
    }

    fn schema() -> Arc<JsonObject> {
        let v = serde_json::json!({
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"]
        });
        match v {
            serde_json::Value::Object(map) => Arc::new(map),
            _ => unreachable!(),
        }
    }

    #[async_trait]
    impl Federation for FakeFederation {
        fn scope(&self, name: Option<&str>) -> Option<Scope> {
            match name {
                None => Some(Scope::Everything),
                Some("dev") => Some(Scope::Virtual(Arc::new(VirtualScope {
                    name: "dev".into(),
                    include: vec!["a/*".into()],
                }))),
                Some(_) => None,
            }
        }
        fn list_tools(&self, caller: &Caller, scope: &Scope) -> Vec<Tool> {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(caller.identity.user.to_string());
            }
            if !caller.identity.is_authenticated() {
                return Vec::new();
            }
            let mut out = vec![
                Tool::new("a-echo", "echoes", schema()),
                Tool::new("a-fail", "fails", schema()),
            ];
            if *scope == Scope::Everything {
                out.push(Tool::new("b-down", "unreachable", schema()));
            }
            for i in 0..self.tools {
                out.push(Tool::new(format!("c-t{i:04}"), "filler", schema()));
            }
            out
        }
        fn list_prompts(&self, _: &Caller, _: &Scope) -> Vec<Prompt> {
            Vec::new()
        }
        fn list_resources(&self, _: &Caller, _: &Scope) -> Vec<Resource> {
            Vec::new()
        }
        async fn call_tool(
            &self,
            caller: &Caller,
            scope: &Scope,
            name: &str,
            arguments: Option<JsonObject>,
            _context: CallContext,
        ) -> Result<CallToolResult, CallError> {
            if name == "z-private" {
                return Err(CallError::Forbidden("server z refuses this caller".into()));
            }
            if !self
                .list_tools(caller, scope)
                .iter()
                .any(|t| t.name == name)
            {
                return Err(CallError::UnknownTool(name.into()));
            }
            let text = arguments
                .as_ref()
                .and_then(|a| a.get("text"))
                .and_then(|t| t.as_str());
            let Some(text) = text else {
                return Err(CallError::InvalidArguments("text: is required".into()));
            };
            match name {
                "a-echo" => Ok(CallToolResult::success(vec![Content::text(format!(
                    "{}: {text}",
                    caller.identity.user
                ))])),
                "b-down" => Err(CallError::Upstream("b: connection refused".into())),
                _ => Ok(CallToolResult::error(vec![Content::text("it failed")])),
            }
        }
        fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
            tokio::sync::watch::channel(0).1
        }
    }

    pub const SECRET: &str = "0123456789abcdef";

    /// A request as the data plane hands it over, for `user` (None: anonymous).
    pub fn handed_over(method: &str, uri: &str, user: Option<&str>, body: &str) -> Request {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(handover::SECRET, SECRET)
            .header(handover::PEER, "127.0.0.1");
        builder = match user {
            Some(u) => builder
                .header(handover::USER, handover::encode_user(u))
                .header(handover::SOURCE, IdentitySource::ProxyHeader.as_str()),
            None => builder.header(handover::SOURCE, IdentitySource::Anonymous.as_str()),
        };
        builder.body(Body::from(body.to_string())).unwrap()
    }

    pub async fn send(
        fed: SharedFederation,
        request: Request,
    ) -> (u16, http::HeaderMap, serde_json::Value) {
        let response = app(fed, http::HeaderValue::from_static(SECRET))
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, headers, json)
    }

    #[tokio::test]
    async fn a_request_without_the_secret_is_refused() {
        let fed = FakeFederation::shared(0);
        let mut request = handed_over("GET", "/tools", Some("alice"), "");
        request.headers_mut().remove(handover::SECRET);
        let (status, _, body) = send(fed.clone(), request).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"], "not reached through the gateway");
        let mut request = handed_over("GET", "/tools", Some("alice"), "");
        request.headers_mut().insert(
            handover::SECRET,
            http::HeaderValue::from_static("0123456789abcdeF"),
        );
        assert_eq!(send(fed, request).await.0, 401);
    }

    #[tokio::test]
    async fn an_unknown_virtual_server_is_404_json() {
        let fed = FakeFederation::shared(0);
        let mut request = handed_over("GET", "/tools", Some("alice"), "");
        request
            .headers_mut()
            .insert(handover::SCOPE, http::HeaderValue::from_static("gone"));
        let (status, _, body) = send(fed, request).await;
        assert_eq!((status, body["status"].as_u64()), (404, Some(404)));
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_answer_json() {
        let fed = FakeFederation::shared(0);
        let (status, _, body) = send(fed.clone(), handed_over("GET", "/nope", Some("a"), "")).await;
        assert_eq!((status, body["error"].as_str()), (404, Some("not found")));
        let (status, _, body) = send(fed, handed_over("DELETE", "/tools", Some("a"), "")).await;
        assert_eq!((status, body["status"].as_u64()), (405, Some(405)));
    }

    #[tokio::test]
    async fn merged_front_routes_get_the_caller_and_scope() {
        async fn whoami(
            caller: Option<axum::Extension<Caller>>,
            scope: Option<axum::Extension<Scope>>,
        ) -> Response {
            match caller_and_scope(caller, scope) {
                Ok((c, s)) => axum::Json(serde_json::json!({
                    "user": c.identity.user.as_str(),
                    "virtual": matches!(s, Scope::Virtual(_)),
                }))
                .into_response(),
                Err(missing) => missing.into_response(),
            }
        }
        let front = Router::new().route("/servers/{name}/mcp", post(whoami));
        let fed = FakeFederation::shared(0);
        let mut request = handed_over("POST", "/servers/dev/mcp", Some("bob"), "");
        request
            .headers_mut()
            .insert(handover::SCOPE, http::HeaderValue::from_static("dev"));
        let app = app_with(
            fed.clone(),
            http::HeaderValue::from_static(SECRET),
            front.clone(),
        );
        let response = app.oneshot(request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!({"user": "bob", "virtual": true}));
        // The front's routes are behind the same secret check.
        let mut request = handed_over("POST", "/servers/dev/mcp", Some("bob"), "");
        request.headers_mut().remove(handover::SECRET);
        let app = app_with(fed, http::HeaderValue::from_static(SECRET), front.clone());
        assert_eq!(app.oneshot(request).await.unwrap().status(), 401);
        // A handler reached without the middleware answers 500, never anonymous.
        let bare = front.oneshot(handed_over("POST", "/servers/dev/mcp", Some("bob"), ""));
        assert_eq!(bare.await.unwrap().status(), 500);
    }

    #[test]
    fn the_socket_directory_is_private_and_removed() {
        let base = std::env::temp_dir();
        let socket = BoundSocket::bind_in(&base).unwrap();
        let dir = socket.dir().to_path_buf();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(socket.address.socket.exists());
        assert_eq!(socket.address.secret.len(), 64);
        let other = BoundSocket::bind_in(&base).unwrap();
        assert_ne!(other.address.secret, socket.address.secret);
        drop(socket);
        assert!(!dir.exists());
    }
}
