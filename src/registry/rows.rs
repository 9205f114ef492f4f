//! How a record is laid out in a row, and how it reads in the audit log:
//! lists as JSON text, enums as their API names, the credential sealed, and
//! in the audit only "set" / "not set" for a secret.

use super::crypto::CredentialCipher;
use super::model::{Origin, RegistryError, ServerDraft, ServerRecord, Transport};
use crate::config::{AuthMode, UpstreamCredential};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

/// The columns every server query selects, in [`record_from_row`]'s order.
pub const SERVER_COLUMNS: &str = "name, urls, transport, auth_mode, proxy_header, jwt_audience, \
     passthrough_headers, enabled, description, tags, credential, origin_file, version, \
     created_at, updated_at, refresh_interval";

pub fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::StreamableHttp => "streamable-http",
        Transport::Sse => "sse",
    }
}

fn transport_from(name: &str) -> Option<Transport> {
    match name {
        "streamable-http" => Some(Transport::StreamableHttp),
        "sse" => Some(Transport::Sse),
        _ => None,
    }
}

pub fn auth_mode_name(m: AuthMode) -> &'static str {
    match m {
        AuthMode::Inherit => "inherit",
        AuthMode::Proxy => "proxy",
        AuthMode::Jwt => "jwt",
    }
}

fn auth_mode_from(name: &str) -> Option<AuthMode> {
    match name {
        "inherit" => Some(AuthMode::Inherit),
        "proxy" => Some(AuthMode::Proxy),
        "jwt" => Some(AuthMode::Jwt),
        _ => None,
    }
}

fn unreadable(name: &str, what: impl std::fmt::Display) -> RegistryError {
    RegistryError::Unavailable(format!("stored server {name:?} is unreadable: {what}"))
}

pub fn db_error(e: sqlx::Error) -> RegistryError {
    RegistryError::Unavailable(e.to_string())
}

/// A row of `SELECT {SERVER_COLUMNS}` as a record, its credential opened.
pub fn record_from_row(
    row: &AnyRow,
    cipher: &CredentialCipher,
) -> Result<ServerRecord, RegistryError> {
    let name: String = row.try_get(0).map_err(db_error)?;
    let json_list = |i: usize| -> Result<Option<Vec<String>>, RegistryError> {
        let text: Option<String> = row.try_get(i).map_err(db_error)?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| unreadable(&name, e)))
            .transpose()
    };
    let text = |i: usize| -> Result<String, RegistryError> { row.try_get(i).map_err(db_error) };
    let opt_text =
        |i: usize| -> Result<Option<String>, RegistryError> { row.try_get(i).map_err(db_error) };
    let int = |i: usize| -> Result<i64, RegistryError> { row.try_get(i).map_err(db_error) };
    let transport = transport_from(&text(2)?).ok_or_else(|| unreadable(&name, "transport"))?;
    let auth_mode = auth_mode_from(&text(3)?).ok_or_else(|| unreadable(&name, "auth_mode"))?;
    let sealed: Option<Vec<u8>> = row.try_get(10).map_err(db_error)?;
    let upstream_auth = cipher
        .open(&name, sealed.as_deref())
        .map_err(RegistryError::Unavailable)?;
    let origin = match opt_text(11)? {
        Some(file) => Origin::Config { file },
        None => Origin::Api,
    };
    Ok(ServerRecord {
        draft: ServerDraft {
            urls: json_list(1)?.unwrap_or_default(),
            transport,
            auth_mode,
            proxy_header: opt_text(4)?,
            jwt_audience: opt_text(5)?,
            passthrough_headers: json_list(6)?,
            enabled: int(7)? != 0,
            description: text(8)?,
            tags: json_list(9)?.unwrap_or_default(),
            upstream_auth,
            refresh_interval: row.try_get(15).map_err(db_error)?,
            name: name.clone(),
        },
        origin,
        version: int(12)?,
        created_at: int(13)?,
        updated_at: int(14)?,
    })
}

pub fn list_json(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings serialises")
}

/// The credential as the API and the audit show it: its kind and non-secret
/// parts, every secret as "set" or "not set".
pub fn redacted_credential(cred: &UpstreamCredential) -> Value {
    let shown = |s: &str| if s.is_empty() { "not set" } else { "set" };
    match cred {
        UpstreamCredential::None => json!({"type": "none"}),
        UpstreamCredential::Bearer(t) => json!({"type": "bearer", "token": shown(t.expose())}),
        UpstreamCredential::Basic { username, password } => json!({
            "type": "basic",
            "username": username,
            "password": shown(password.expose()),
        }),
        UpstreamCredential::Headers(headers) => {
            let map: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), Value::from(shown(v.expose()))))
                .collect();
            json!({"type": "headers", "headers": map})
        }
    }
}

/// A record as the audit log keeps it (and as the API may show it): no
/// secret, only whether one is set.
pub fn redacted_json(record: &ServerRecord) -> Value {
    let d = &record.draft;
    let (origin, file) = match &record.origin {
        Origin::Api => ("api", None),
        Origin::Config { file } => ("config", Some(file.as_str())),
    };
    json!({
        "name": d.name,
        "urls": d.urls,
        "transport": transport_name(d.transport),
        "auth_mode": auth_mode_name(d.auth_mode),
        "proxy_header": d.proxy_header,
        "jwt_audience": d.jwt_audience,
        "passthrough_headers": d.passthrough_headers,
        "enabled": d.enabled,
        "description": d.description,
        "tags": d.tags,
        "upstream_auth": redacted_credential(&d.upstream_auth),
        "refresh_interval": d.refresh_interval,
        "origin": origin,
        "config_file": file,
        "version": record.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn secrets_show_only_as_set() {
        let record = ServerRecord {
            draft: ServerDraft {
                name: "a".into(),
                upstream_auth: UpstreamCredential::Basic {
                    username: "bob".into(),
                    password: Secret::new("hunter2"),
                },
                ..ServerDraft::default()
            },
            origin: Origin::Config {
                file: "g.yaml".into(),
            },
            version: 3,
            created_at: 0,
            updated_at: 0,
        };
        let v = redacted_json(&record);
        assert!(!v.to_string().contains("hunter2"));
        assert_eq!(v["upstream_auth"]["password"], "set");
        assert_eq!(v["upstream_auth"]["username"], "bob");
        assert_eq!(v["config_file"], "g.yaml");
        assert_eq!(
            redacted_credential(&UpstreamCredential::Bearer(Secret::new(""))),
            json!({"type": "bearer", "token": "not set"})
        );
        let h = UpstreamCredential::Headers(vec![(
            http::HeaderName::from_static("x-key"),
            Secret::new("k"),
        )]);
        assert_eq!(redacted_credential(&h)["headers"]["x-key"], "set");
    }

    #[test]
    fn names_round_trip() {
        for t in [Transport::StreamableHttp, Transport::Sse] {
            assert_eq!(transport_from(transport_name(t)), Some(t));
        }
        for m in [AuthMode::Inherit, AuthMode::Proxy, AuthMode::Jwt] {
            assert_eq!(auth_mode_from(auth_mode_name(m)), Some(m));
        }
    }
}
