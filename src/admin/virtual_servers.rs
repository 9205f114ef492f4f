//! `/api/virtual-servers`: the virtual servers of the registry, shaped as
//! `/api/servers` is (the same paging, version checks, errors and
//! configuration-owned records), through [`VirtualRegistry`].
//!
//! An `include` naming a server that is not routed is accepted, since
//! servers come and go and a virtual server may be declared before them;
//! every response lists such entries under `unresolved`. Tools are not
//! checked: a server's tool list is its own and changes without a write
//! here.

use super::conflicts::refuse_virtual_identity_clash;
use super::error::{registry_error, ApiError, ApiPath, ApiQuery, JsonBody};
use super::json::{list_query, AuthModeWire};
use super::AdminState;
use crate::config::IncludePattern;
use crate::registry::{
    apply_virtual_patch, Actor, Origin, RegistryError, VirtualServerDraft, VirtualServerPatch,
    VirtualServerRecord,
};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::collections::HashMap;

use super::auth::Principal;

const NOUN: &str = "virtual server";

fn refused(e: RegistryError) -> ApiError {
    registry_error(e, NOUN)
}

/// A whole virtual server, for create (POST) and replace (PUT). The
/// read-only fields a GET returns are accepted and ignored, so a record
/// read can be sent back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerIn {
    pub name: String,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub auth_mode: AuthModeWire,
    #[serde(default)]
    pub proxy_header: Option<String>,
    #[serde(default)]
    pub jwt_audience: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default)]
    pub version: Option<i64>,
    /// The read-only fields below are accepted only to be ignored.
    #[serde(default)]
    #[allow(dead_code)]
    pub origin: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    pub config_file: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    pub created_at: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    pub updated_at: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    pub unresolved: Option<Value>,
}

fn enabled_by_default() -> bool {
    true
}

/// A partial change: absent fields stay; `null` clears `proxy_header` and
/// `jwt_audience`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerPatchIn {
    #[serde(default)]
    pub include: Option<Vec<String>>,
    #[serde(default)]
    pub auth_mode: Option<AuthModeWire>,
    #[serde(default, deserialize_with = "present")]
    pub proxy_header: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub jwt_audience: Option<Option<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub version: Option<i64>,
}

/// Tells `"field": null` (clear) from an absent field (keep).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl VirtualServerIn {
    pub fn into_draft(self) -> VirtualServerDraft {
        VirtualServerDraft {
            name: self.name,
            include: self.include,
            auth_mode: self.auth_mode.into(),
            proxy_header: self.proxy_header,
            jwt_audience: self.jwt_audience,
            description: self.description,
            enabled: self.enabled,
        }
    }
}

impl VirtualServerPatchIn {
    pub fn into_patch(self) -> (VirtualServerPatch, Option<i64>) {
        let patch = VirtualServerPatch {
            include: self.include,
            auth_mode: self.auth_mode.map(Into::into),
            proxy_header: self.proxy_header,
            jwt_audience: self.jwt_audience,
            description: self.description,
            enabled: self.enabled,
        };
        (patch, self.version)
    }
}

/// The `include` entries whose server `routed` does not know. An entry
/// that does not parse (only a record written by an older gateway could
/// hold one) is unresolved too.
pub fn unresolved(include: &[String], routed: impl Fn(&str) -> bool) -> Vec<String> {
    include
        .iter()
        .filter(|entry| !IncludePattern::parse(entry).is_ok_and(|p| routed(&p.server)))
        .cloned()
        .collect()
}

/// A stored virtual server as the API shows it.
pub fn virtual_server_json(record: &VirtualServerRecord, unresolved: Vec<String>) -> Value {
    let d = &record.draft;
    let mut out = json!({
        "name": d.name,
        "include": d.include,
        "auth_mode": AuthModeWire::from(d.auth_mode),
        "proxy_header": d.proxy_header,
        "jwt_audience": d.jwt_audience,
        "description": d.description,
        "enabled": d.enabled,
        "version": record.version,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "unresolved": unresolved,
    });
    match &record.origin {
        Origin::Api => out["origin"] = json!("api"),
        Origin::Config { file } => {
            out["origin"] = json!("config");
            out["config_file"] = json!(file);
        }
    }
    out
}

fn shown(state: &AdminState, record: &VirtualServerRecord) -> Value {
    let missing = unresolved(&record.draft.include, |server| {
        state.health.server_health(server).is_some()
    });
    virtual_server_json(record, missing)
}

pub async fn list(
    State(state): State<AdminState>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let query = list_query(&params, false)?;
    let page = state.virtuals.list_virtual(&query).await.map_err(refused)?;
    Ok(Json(json!({
        "items": page.items.iter().map(|r| shown(&state, r)).collect::<Vec<_>>(),
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
    })))
}

pub async fn create(
    State(state): State<AdminState>,
    Extension(who): Extension<Principal>,
    JsonBody(body): JsonBody<VirtualServerIn>,
) -> Result<Response, ApiError> {
    if body.version.is_some() {
        return Err(ApiError::bad_field(
            "version",
            "version: a new virtual server has none (it starts at 1)",
        ));
    }
    let draft = body.into_draft();
    refuse_virtual_identity_clash(state.registry.as_ref(), &draft).await?;
    let record = state
        .virtuals
        .create_virtual(draft, &Actor(who.actor))
        .await
        .map_err(refused)?;
    let location = format!("/api/virtual-servers/{}", record.draft.name);
    let mut response = (StatusCode::CREATED, Json(shown(&state, &record))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

pub async fn get(
    State(state): State<AdminState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state.virtuals.get_virtual(&name).await.map_err(refused)?;
    Ok(Json(shown(&state, &record)))
}

pub async fn replace(
    State(state): State<AdminState>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    JsonBody(body): JsonBody<VirtualServerIn>,
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
                "name: {:?} differs from the path's {name:?}; a virtual server cannot be renamed",
                body.name
            ),
        ));
    }
    let draft = body.into_draft();
    refuse_virtual_identity_clash(state.registry.as_ref(), &draft).await?;
    let record = state
        .virtuals
        .update_virtual(&name, draft, version, &Actor(who.actor))
        .await
        .map_err(refused)?;
    Ok(Json(shown(&state, &record)))
}

pub async fn patch(
    State(state): State<AdminState>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    JsonBody(body): JsonBody<VirtualServerPatchIn>,
) -> Result<Json<Value>, ApiError> {
    let (patch, version) = body.into_patch();
    // Checked on the record as read; the store applies the patch to the row
    // it locks (as for servers, the routing applier is the backstop).
    let current = state.virtuals.get_virtual(&name).await.map_err(refused)?;
    refuse_virtual_identity_clash(
        state.registry.as_ref(),
        &apply_virtual_patch(current.draft, patch.clone()),
    )
    .await?;
    let record = state
        .virtuals
        .patch_virtual(&name, patch, version, &Actor(who.actor))
        .await
        .map_err(refused)?;
    Ok(Json(shown(&state, &record)))
}

pub async fn delete(
    State(state): State<AdminState>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let version = super::api::delete_version(&params)?;
    state
        .virtuals
        .delete_virtual(&name, version, &Actor(who.actor))
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::error::parse_json;

    #[test]
    fn unresolved_names_the_entries_of_servers_not_routed() {
        let include = ["github/*", "jira/create_issue", "wiki/*", "nonsense"].map(String::from);
        let routed = |s: &str| s == "github" || s == "wiki";
        assert_eq!(
            unresolved(&include, routed),
            ["jira/create_issue", "nonsense"]
        );
        assert!(unresolved(&[], routed).is_empty());
    }

    #[test]
    fn a_record_read_can_be_sent_back() {
        let record = VirtualServerRecord {
            draft: VirtualServerDraft {
                name: "dev".into(),
                include: vec!["a/*".into()],
                enabled: true,
                ..VirtualServerDraft::default()
            },
            origin: Origin::Config {
                file: "g.yaml".into(),
            },
            version: 3,
            created_at: 1,
            updated_at: 2,
        };
        let shown = virtual_server_json(&record, vec!["a/*".into()]);
        assert_eq!(shown["config_file"], "g.yaml");
        assert_eq!(shown["unresolved"][0], "a/*");
        let back: VirtualServerIn = parse_json(shown.to_string().as_bytes()).unwrap();
        assert_eq!(back.version, Some(3));
        assert_eq!(back.into_draft(), record.draft);
    }

    #[test]
    fn a_patch_tells_null_from_absent_and_refuses_a_rename() {
        let p: VirtualServerPatchIn =
            parse_json(br#"{"include":["b/*"],"proxy_header":null,"version":2}"#).unwrap();
        let (patch, version) = p.into_patch();
        assert_eq!(patch.include.as_deref(), Some(&["b/*".to_string()][..]));
        assert_eq!(patch.proxy_header, Some(None));
        assert_eq!(patch.jwt_audience, None);
        assert_eq!(version, Some(2));
        let e = parse_json::<VirtualServerPatchIn>(br#"{"name":"x"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
    }

    #[test]
    fn the_listing_takes_no_tag() {
        let params = HashMap::from([("tag".to_string(), "x".to_string())]);
        assert_eq!(
            list_query(&params, false).unwrap_err().field.as_deref(),
            Some("tag")
        );
    }
}
