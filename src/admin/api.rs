//! The handlers: login and logout, the server registry, health, audit,
//! configuration, and the service's own liveness and readiness.

use super::auth::{LoginError, Principal, SESSION_COOKIE};
use super::conflicts::{refuse_credential_of_a_virtual_identity, refuse_identity_clash};
use super::error::{ApiError, ApiPath, ApiQuery, JsonBody};
use super::guard::{bearer_token, session_cookie, ClientAddr};
use super::json::{
    audit_json, backend_json, health_status, list_query, mcp_json, paging, server_json, ServerIn,
    ServerPatchIn,
};
use super::AdminState;
use crate::registry::{apply_patch, Actor, AuditQuery, RegistryError};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Instant;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    email: String,
    password: String,
}

pub async fn login(
    State(state): State<AdminState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginIn>,
) -> Result<Response, ApiError> {
    let auth = state.auth.clone();
    // argon2 is deliberately slow: off the reactor.
    let outcome = tokio::task::spawn_blocking(move || {
        auth.login(&body.email, &body.password, client, Instant::now())
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "login failed"))?;
    match outcome {
        Ok(token) => {
            let cookie = session_cookie_header(
                &token,
                state.auth.config().session_ttl.as_secs(),
                state.auth.config().cookie_secure || came_over_tls(&headers),
            );
            let mut response = Json(json!({
                "token": token,
                "token_type": "Bearer",
                "expires_in": state.auth.config().session_ttl.as_secs(),
            }))
            .into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            Ok(response)
        }
        Err(LoginError::Invalid) => Err(ApiError::unauthorized("invalid email or password")),
        Err(LoginError::Disabled) => Err(ApiError::unauthorized(
            "login is disabled: PLATFORM_ADMIN_PASSWORD is not set",
        )),
        Err(LoginError::NoRandomness) => {
            log::error!("admin: the operating system's random source failed; no session opened");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no session could be opened",
            ))
        }
        Err(LoginError::Throttled(wait)) => {
            let secs = wait.as_secs().max(1);
            Err(ApiError {
                retry_after: Some(secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many failed logins: retry in {secs} s"),
                )
            })
        }
    }
}

/// The browser reached us over TLS (directly or through a proxy that keeps
/// the scheme in `Origin`), so the cookie may insist on it.
fn came_over_tls(headers: &HeaderMap) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.starts_with("https://"))
}

pub fn session_cookie_header(token: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    // The token is base64url: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Revokes the session named by the bearer token or the cookie, and
/// clears the cookie. Idempotent.
pub async fn logout(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    // Both, when both are sent: a page's script may hold the bearer token
    // of the same browser whose cookie must stop working too.
    for token in [bearer_token(&headers), session_cookie(&headers)]
        .into_iter()
        .flatten()
    {
        state.auth.logout(token);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "mcp_admin_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    response
}

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn ready(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    state.registry.ping().await?;
    Ok(Json(json!({"status": "ready"})))
}

pub async fn list_servers(
    State(state): State<AdminState>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let query = list_query(&params, true)?;
    let page = state.registry.list(&query).await?;
    Ok(Json(json!({
        "items": page.items.iter().map(server_json).collect::<Vec<_>>(),
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
    })))
}

pub async fn create_server(
    State(state): State<AdminState>,
    Extension(who): Extension<Principal>,
    JsonBody(body): JsonBody<ServerIn>,
) -> Result<Response, ApiError> {
    if body.version.is_some() {
        return Err(ApiError::bad_field(
            "version",
            "version: a new server has none (it starts at 1)",
        ));
    }
    let draft = body.into_draft(Default::default())?;
    refuse_identity_clash(state.registry.as_ref(), &draft).await?;
    refuse_credential_of_a_virtual_identity(state.virtuals.as_ref(), &draft).await?;
    let record = state.registry.create(draft, &Actor(who.actor)).await?;
    let location = format!("/api/servers/{}", record.draft.name);
    let mut response = (StatusCode::CREATED, Json(server_json(&record))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

pub async fn get_server(
    State(state): State<AdminState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(server_json(&state.registry.get(&name).await?)))
}

pub async fn replace_server(
    State(state): State<AdminState>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    JsonBody(body): JsonBody<ServerIn>,
) -> Result<Json<Value>, ApiError> {
    let Some(version) = body.version else {
        return Err(ApiError::bad_field(
            "version",
            "version: required, the version of the record you read",
        ));
    };
    if body.name != name {
        return Err(ApiError::bad_field(
            "name",
            format!(
                "name: {:?} differs from the path's {name:?}; a server cannot be renamed",
                body.name
            ),
        ));
    }
    // The stored credential cannot be read back and resent, so an absent
    // `upstream_auth` keeps it; the version check below makes that safe.
    let current = state.registry.get(&name).await?;
    if current.version != version {
        return Err(RegistryError::Conflict {
            name,
            current_version: current.version,
        }
        .into());
    }
    let draft = body.into_draft(current.draft.upstream_auth)?;
    refuse_identity_clash(state.registry.as_ref(), &draft).await?;
    refuse_credential_of_a_virtual_identity(state.virtuals.as_ref(), &draft).await?;
    let record = state
        .registry
        .update(&name, draft, version, &Actor(who.actor))
        .await?;
    Ok(Json(server_json(&record)))
}

pub async fn patch_server(
    State(state): State<AdminState>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    JsonBody(body): JsonBody<ServerPatchIn>,
) -> Result<Json<Value>, ApiError> {
    let (patch, version) = body.into_patch()?;
    // The store applies the patch to the row it locks; checked here on the
    // record as read, which the version check (when sent) keeps current.
    let current = state.registry.get(&name).await?;
    let patched = apply_patch(current.draft, patch.clone());
    refuse_identity_clash(state.registry.as_ref(), &patched).await?;
    refuse_credential_of_a_virtual_identity(state.virtuals.as_ref(), &patched).await?;
    let record = state
        .registry
        .patch(&name, patch, version, &Actor(who.actor))
        .await?;
    Ok(Json(server_json(&record)))
}

/// A DELETE's only query parameter: `?version=` (optional) to delete only
/// that version.
pub(super) fn delete_version(params: &HashMap<String, String>) -> Result<Option<i64>, ApiError> {
    let mut version = None;
    for (key, value) in params {
        if key != "version" {
            return Err(ApiError::bad_field(
                key.as_str(),
                format!("unknown query parameter {key:?} (version)"),
            ));
        }
        version = Some(
            value
                .parse::<i64>()
                .map_err(|_| ApiError::bad_field("version", "version: expected an integer"))?,
        );
    }
    Ok(version)
}

pub async fn delete_server(
    State(state): State<AdminState>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let version = delete_version(&params)?;
    state
        .registry
        .delete(&name, version, &Actor(who.actor))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn server_health(
    State(state): State<AdminState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (backends, routed) = match state.health.server_health(&name) {
        Some(backends) => (backends, true),
        None => {
            // Not routed (disabled, or not yet in the snapshot): still a
            // server if the registry has it.
            state.registry.get(&name).await?;
            (Vec::new(), false)
        }
    };
    Ok(Json(json!({
        "name": name,
        "status": health_status(&backends),
        "routed": routed,
        "backends": backends.iter().map(backend_json).collect::<Vec<_>>(),
        "mcp": state.health.mcp_health(&name).as_ref().map(mcp_json),
    })))
}

pub async fn audit(
    State(state): State<AdminState>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let mut query = AuditQuery::default();
    for key in params.keys() {
        if !matches!(key.as_str(), "server" | "offset" | "limit") {
            return Err(ApiError::bad_field(
                key.as_str(),
                format!("unknown query parameter {key:?} (server, offset, limit)"),
            ));
        }
    }
    query.server = params.get("server").filter(|s| !s.is_empty()).cloned();
    (query.offset, query.limit) = paging(&params)?;
    let page = state.registry.audit(&query).await?;
    Ok(Json(json!({
        "items": page.items.iter().map(audit_json).collect::<Vec<_>>(),
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
    })))
}

pub async fn config(State(state): State<AdminState>) -> Json<Value> {
    Json((*state.effective_config).clone())
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::DOCUMENT,
    )
        .into_response()
}
