//! The API's wire shapes and their conversion to and from the registry's
//! model. Credentials go in; only "set" ever comes out.

use super::error::ApiError;
use crate::config::{AuthMode, Secret, UpstreamCredential};
use crate::registry::{
    AuditEntry, BackendHealth, ListQuery, Origin, ServerDraft, ServerPatch, ServerRecord, Transport,
};
use http::HeaderName;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TransportWire {
    #[default]
    StreamableHttp,
    Sse,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthModeWire {
    #[default]
    Inherit,
    Proxy,
    Jwt,
}

/// The credential as a client writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum UpstreamAuthIn {
    /// A struct variant: serde ignores unknown fields beside the tag of a
    /// unit variant, whatever `deny_unknown_fields` says.
    None {},
    Bearer {
        token: String,
    },
    Basic {
        username: String,
        password: String,
    },
    Headers {
        headers: BTreeMap<String, String>,
    },
}

/// A whole server, for create (POST) and replace (PUT). `origin`,
/// `created_at` and `updated_at` are read-only: accepted so that a record
/// read with GET can be sent back, and ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerIn {
    pub name: String,
    pub urls: Vec<String>,
    #[serde(default)]
    pub transport: TransportWire,
    #[serde(default)]
    pub auth_mode: AuthModeWire,
    #[serde(default)]
    pub proxy_header: Option<String>,
    #[serde(default)]
    pub jwt_audience: Option<String>,
    #[serde(default)]
    pub passthrough_headers: Option<Vec<String>>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Absent on PUT keeps the stored credential (it cannot be read back
    /// to be resent); `{"type": "none"}` removes it.
    #[serde(default)]
    pub upstream_auth: Option<UpstreamAuthIn>,
    #[serde(default)]
    pub refresh_interval: Option<i64>,
    #[serde(default)]
    pub version: Option<i64>,
    #[serde(default)]
    pub origin: Option<Value>,
    #[serde(default)]
    pub created_at: Option<Value>,
    #[serde(default)]
    pub updated_at: Option<Value>,
}

fn enabled_by_default() -> bool {
    true
}

/// A partial change: absent fields stay; `null` clears the optional ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerPatchIn {
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    #[serde(default)]
    pub transport: Option<TransportWire>,
    #[serde(default)]
    pub auth_mode: Option<AuthModeWire>,
    #[serde(default, deserialize_with = "present")]
    pub proxy_header: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub jwt_audience: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub passthrough_headers: Option<Option<Vec<String>>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub upstream_auth: Option<UpstreamAuthIn>,
    #[serde(default, deserialize_with = "present")]
    pub refresh_interval: Option<Option<i64>>,
    #[serde(default)]
    pub version: Option<i64>,
}

/// Tells `"field": null` (clear) from an absent field (keep).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl From<TransportWire> for Transport {
    fn from(t: TransportWire) -> Self {
        match t {
            TransportWire::StreamableHttp => Transport::StreamableHttp,
            TransportWire::Sse => Transport::Sse,
        }
    }
}

impl From<Transport> for TransportWire {
    fn from(t: Transport) -> Self {
        match t {
            Transport::StreamableHttp => TransportWire::StreamableHttp,
            Transport::Sse => TransportWire::Sse,
        }
    }
}

impl From<AuthModeWire> for AuthMode {
    fn from(m: AuthModeWire) -> Self {
        match m {
            AuthModeWire::Inherit => AuthMode::Inherit,
            AuthModeWire::Proxy => AuthMode::Proxy,
            AuthModeWire::Jwt => AuthMode::Jwt,
        }
    }
}

impl From<AuthMode> for AuthModeWire {
    fn from(m: AuthMode) -> Self {
        match m {
            AuthMode::Inherit => AuthModeWire::Inherit,
            AuthMode::Proxy => AuthModeWire::Proxy,
            AuthMode::Jwt => AuthModeWire::Jwt,
        }
    }
}

impl UpstreamAuthIn {
    pub fn into_credential(self) -> Result<UpstreamCredential, ApiError> {
        let nonempty = |field: &str, value: &str| {
            if value.is_empty() {
                Err(ApiError::bad_field(
                    format!("upstream_auth.{field}"),
                    format!("upstream_auth.{field} must not be empty"),
                ))
            } else {
                Ok(())
            }
        };
        Ok(match self {
            UpstreamAuthIn::None {} => UpstreamCredential::None,
            UpstreamAuthIn::Bearer { token } => {
                nonempty("token", &token)?;
                UpstreamCredential::Bearer(Secret::new(token))
            }
            UpstreamAuthIn::Basic { username, password } => {
                nonempty("username", &username)?;
                nonempty("password", &password)?;
                if username.contains(':') {
                    return Err(ApiError::bad_field(
                        "upstream_auth.username",
                        "upstream_auth.username must not contain ':' (Basic auth)",
                    ));
                }
                UpstreamCredential::Basic {
                    username,
                    password: Secret::new(password),
                }
            }
            UpstreamAuthIn::Headers { headers } => {
                if headers.is_empty() {
                    return Err(ApiError::bad_field(
                        "upstream_auth.headers",
                        "upstream_auth.headers must name at least one header",
                    ));
                }
                let mut out = Vec::with_capacity(headers.len());
                for (name, value) in headers {
                    let field = format!("upstream_auth.headers.{name}");
                    let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        ApiError::bad_field(&field, format!("{name:?} is not a header name"))
                    })?;
                    if http::HeaderValue::from_str(&value).is_err() {
                        return Err(ApiError::bad_field(
                            &field,
                            "the value is not a valid header value",
                        ));
                    }
                    out.push((parsed, Secret::new(value)));
                }
                UpstreamCredential::Headers(out)
            }
        })
    }
}

impl ServerIn {
    /// The draft, with `kept` as the credential when none was given.
    pub fn into_draft(self, kept: UpstreamCredential) -> Result<ServerDraft, ApiError> {
        let upstream_auth = match self.upstream_auth {
            Some(auth) => auth.into_credential()?,
            None => kept,
        };
        Ok(ServerDraft {
            name: self.name,
            urls: self.urls,
            transport: self.transport.into(),
            auth_mode: self.auth_mode.into(),
            proxy_header: self.proxy_header,
            jwt_audience: self.jwt_audience,
            passthrough_headers: self.passthrough_headers,
            enabled: self.enabled,
            description: self.description,
            tags: self.tags,
            upstream_auth,
            refresh_interval: self.refresh_interval,
        })
    }
}

impl ServerPatchIn {
    pub fn into_patch(self) -> Result<(ServerPatch, Option<i64>), ApiError> {
        let upstream_auth = match self.upstream_auth {
            Some(auth) => Some(auth.into_credential()?),
            None => None,
        };
        let patch = ServerPatch {
            urls: self.urls,
            transport: self.transport.map(Into::into),
            auth_mode: self.auth_mode.map(Into::into),
            proxy_header: self.proxy_header,
            jwt_audience: self.jwt_audience,
            passthrough_headers: self.passthrough_headers,
            enabled: self.enabled,
            description: self.description,
            tags: self.tags,
            upstream_auth,
            refresh_interval: self.refresh_interval,
        };
        Ok((patch, self.version))
    }
}

/// The credential as the API shows it: its kind and which parts are set.
pub fn credential_json(credential: &UpstreamCredential) -> Value {
    match credential {
        UpstreamCredential::None => json!({"type": "none"}),
        UpstreamCredential::Bearer(_) => json!({"type": "bearer", "token": "set"}),
        UpstreamCredential::Basic { username, .. } => {
            json!({"type": "basic", "username": username, "password": "set"})
        }
        UpstreamCredential::Headers(headers) => {
            let names: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(name, _)| (name.as_str().to_string(), json!("set")))
                .collect();
            json!({"type": "headers", "headers": names})
        }
    }
}

/// A stored server as the API (and the audit log's before/after) shows it.
pub fn server_json(record: &ServerRecord) -> Value {
    let d = &record.draft;
    let mut out = json!({
        "name": d.name,
        "urls": d.urls,
        "transport": TransportWire::from(d.transport),
        "auth_mode": AuthModeWire::from(d.auth_mode),
        "proxy_header": d.proxy_header,
        "jwt_audience": d.jwt_audience,
        "passthrough_headers": d.passthrough_headers,
        "enabled": d.enabled,
        "description": d.description,
        "tags": d.tags,
        "upstream_auth": credential_json(&d.upstream_auth),
        "refresh_interval": d.refresh_interval,
        "version": record.version,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
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

pub fn audit_json(entry: &AuditEntry) -> Value {
    json!({
        "id": entry.id,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "kind": entry.kind,
        "server": entry.server,
        "before": entry.before,
        "after": entry.after,
    })
}

pub fn backend_json(b: &BackendHealth) -> Value {
    json!({
        "replica": b.replica,
        "backend": b.backend,
        "healthy": b.healthy,
        "last_check": b.last_check,
        "consecutive_failures": b.consecutive_failures,
        "last_error": b.last_error,
    })
}

/// The catalog's MCP-level check, beside the TCP checks of `backends`.
pub fn mcp_json(c: &crate::registry::McpCheck) -> Value {
    json!({
        "up": c.up,
        "reason": c.reason,
        "last_check": c.last_check,
        "down_since": c.down_since,
        "last_success": c.last_success,
    })
}

/// One word for a server's backends: `up` (all healthy), `degraded`
/// (some), `down` (none), `unknown` (no backend known yet).
pub fn health_status(backends: &[BackendHealth]) -> &'static str {
    let healthy = backends.iter().filter(|b| b.healthy).count();
    match (healthy, backends.len()) {
        (_, 0) => "unknown",
        (h, n) if h == n => "up",
        (0, _) => "down",
        _ => "degraded",
    }
}

/// Largest page the API serves.
pub const MAX_LIMIT: u32 = 500;

/// `?enabled=&tag=&q=&offset=&limit=` (`tag` only where records have
/// tags); an unknown parameter or a bad value is a 400 naming it.
pub fn list_query(params: &HashMap<String, String>, tags: bool) -> Result<ListQuery, ApiError> {
    let known = if tags {
        "enabled, tag, q, offset, limit"
    } else {
        "enabled, q, offset, limit"
    };
    let mut query = ListQuery::default();
    for (key, value) in params {
        match key.as_str() {
            "enabled" => {
                query.enabled = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::bad_field("enabled", "enabled: true or false")),
                })
            }
            "tag" if tags => query.tag = Some(value.clone()).filter(|t| !t.is_empty()),
            "q" => query.search = Some(value.clone()).filter(|q| !q.is_empty()),
            "offset" | "limit" => {}
            other => {
                return Err(ApiError::bad_field(
                    other,
                    format!("unknown query parameter {other:?} ({known})"),
                ))
            }
        }
    }
    (query.offset, query.limit) = paging(params)?;
    Ok(query)
}

/// `offset` and `limit` of any listing; a `limit` of 0 or none is the
/// registry's default.
pub fn paging(params: &HashMap<String, String>) -> Result<(u32, u32), ApiError> {
    let number = |key: &str| -> Result<u32, ApiError> {
        match params.get(key) {
            None => Ok(0),
            Some(raw) => raw.parse::<u32>().map_err(|_| {
                ApiError::bad_field(key, format!("{key}: expected a non-negative integer"))
            }),
        }
    };
    let offset = number("offset")?;
    let limit = number("limit")?;
    if limit > MAX_LIMIT {
        return Err(ApiError::bad_field(
            "limit",
            format!("limit: at most {MAX_LIMIT}"),
        ));
    }
    Ok((offset, limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::error::parse_json;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_query_parses_and_names_bad_parameters() {
        let q = list_query(
            &params(&[
                ("enabled", "false"),
                ("tag", "prod"),
                ("q", "git"),
                ("offset", "10"),
                ("limit", "20"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(q.enabled, Some(false));
        assert_eq!(q.tag.as_deref(), Some("prod"));
        assert_eq!(q.search.as_deref(), Some("git"));
        assert_eq!((q.offset, q.limit), (10, 20));
        for (k, v) in [
            ("enabled", "yes"),
            ("offset", "-1"),
            ("limit", "501"),
            ("limit", "x"),
            ("colour", "red"),
        ] {
            assert_eq!(
                list_query(&params(&[(k, v)]), true)
                    .unwrap_err()
                    .field
                    .as_deref(),
                Some(k)
            );
        }
    }

    #[test]
    fn a_server_body_parses_with_defaults() {
        let s: ServerIn = parse_json(br#"{"name":"a","urls":["http://h:1/mcp"]}"#).unwrap();
        assert!(s.enabled);
        assert_eq!(s.transport, TransportWire::StreamableHttp);
        let d = s.into_draft(UpstreamCredential::None).unwrap();
        assert_eq!(d.auth_mode, AuthMode::Inherit);
        let s: ServerIn = parse_json(
            br#"{"name":"a","urls":[],"transport":"sse","auth_mode":"jwt","upstream_auth":{"type":"bearer","token":"t"}}"#,
        )
        .unwrap();
        let d = s.into_draft(UpstreamCredential::None).unwrap();
        assert_eq!(d.transport, Transport::Sse);
        assert_eq!(
            d.upstream_auth,
            UpstreamCredential::Bearer(Secret::new("t"))
        );
    }

    #[test]
    fn bad_credentials_name_their_field() {
        let field = |body: &str| -> Option<String> {
            match parse_json::<ServerIn>(body.as_bytes()) {
                Err(e) => e.field,
                Ok(s) => s.into_draft(UpstreamCredential::None).unwrap_err().field,
            }
        };
        let with = |auth: &str| format!(r#"{{"name":"a","urls":[],"upstream_auth":{auth}}}"#);
        assert_eq!(
            field(&with(r#"{"type":"bearer","token":""}"#)).as_deref(),
            Some("upstream_auth.token")
        );
        assert_eq!(
            field(&with(r#"{"type":"bearer"}"#)).as_deref(),
            Some("upstream_auth.token")
        );
        assert_eq!(
            field(&with(r#"{"type":"headers","headers":{"bad name":"v"}}"#)).as_deref(),
            Some("upstream_auth.headers.bad name")
        );
        assert!(field(&with(r#"{"type":"none","extra":42}"#))
            .unwrap()
            .starts_with("upstream_auth"));
        assert!(field(&with(r#"{"type":"magic"}"#))
            .unwrap()
            .starts_with("upstream_auth"));
        assert_eq!(
            field(r#"{"name":"a","urls":[],"transport":"websocket"}"#).as_deref(),
            Some("transport")
        );
    }

    #[test]
    fn a_patch_tells_null_from_absent() {
        let p: ServerPatchIn =
            parse_json(br#"{"enabled":false,"proxy_header":null,"version":3}"#).unwrap();
        let (patch, version) = p.into_patch().unwrap();
        assert_eq!(patch.enabled, Some(false));
        assert_eq!(patch.proxy_header, Some(None));
        assert_eq!(patch.jwt_audience, None);
        assert_eq!(version, Some(3));
        assert!(parse_json::<ServerPatchIn>(br#"{"name":"b"}"#).is_err());
    }

    #[test]
    fn credentials_show_only_that_they_are_set() {
        for credential in [
            UpstreamCredential::Bearer(Secret::new("s3cret-token")),
            UpstreamCredential::Basic {
                username: "bot".into(),
                password: Secret::new("s3cret-token"),
            },
            UpstreamCredential::Headers(vec![(
                HeaderName::from_static("x-api-key"),
                Secret::new("s3cret-token"),
            )]),
        ] {
            let text = credential_json(&credential).to_string();
            assert!(!text.contains("s3cret-token"), "{text}");
            assert!(text.contains("\"set\""), "{text}");
        }
    }

    #[test]
    fn health_status_summarises_backends() {
        let b = |healthy| BackendHealth {
            replica: "http://h:1/mcp".into(),
            backend: "127.0.0.1:1".into(),
            healthy,
            last_check: None,
            consecutive_failures: 0,
            last_error: None,
        };
        assert_eq!(health_status(&[]), "unknown");
        assert_eq!(health_status(&[b(true), b(true)]), "up");
        assert_eq!(health_status(&[b(true), b(false)]), "degraded");
        assert_eq!(health_status(&[b(false)]), "down");
    }
}
