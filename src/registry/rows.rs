//! How a record is laid out in a row, and how it reads in the audit log:
//! lists as JSON text, enums as their API names, the credential sealed, and
//! in the audit only "set" / "not set" for a secret.

use super::crypto::CredentialCipher;
use super::kind::{Kind, Query};
use super::model::{
    Origin, RegistryError, ServerDraft, ServerRecord, Transport, VirtualServerDraft,
};
use crate::config::{AuthMode, UpstreamCredential};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

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

pub fn auth_mode_from(name: &str) -> Option<AuthMode> {
    match name {
        "inherit" => Some(AuthMode::Inherit),
        "proxy" => Some(AuthMode::Proxy),
        "jwt" => Some(AuthMode::Jwt),
        _ => None,
    }
}

pub fn unreadable(name: &str, what: impl std::fmt::Display) -> RegistryError {
    RegistryError::Unavailable(format!("stored record {name:?} is unreadable: {what}"))
}

pub fn db_error(e: sqlx::Error) -> RegistryError {
    RegistryError::Unavailable(e.to_string())
}

impl Kind for ServerDraft {
    type Rival = VirtualServerDraft;
    const TABLE: &'static str = "gw_servers";
    const AUDIT_KIND: &'static str = "server";
    const NOUN: &'static str = "server";
    const OWN_COLUMNS: &'static [&'static str] = &[
        "urls",
        "transport",
        "auth_mode",
        "proxy_header",
        "jwt_audience",
        "passthrough_headers",
        "enabled",
        "description",
        "tags",
        "credential",
        "refresh_interval",
    ];

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self) -> Result<(), RegistryError> {
        super::validate::validate_draft(self).map(drop)
    }

    fn bind_own<'q>(&'q self, query: Query<'q>, cipher: &CredentialCipher) -> Query<'q> {
        query
            .bind(list_json(&self.urls))
            .bind(transport_name(self.transport))
            .bind(auth_mode_name(self.auth_mode))
            .bind(self.proxy_header.as_deref())
            .bind(self.jwt_audience.as_deref())
            .bind(self.passthrough_headers.as_deref().map(list_json))
            .bind(i64::from(self.enabled))
            .bind(self.description.as_str())
            .bind(list_json(&self.tags))
            .bind(cipher.seal(&self.name, &self.upstream_auth))
            .bind(self.refresh_interval)
    }

    /// The credential is opened here: a record read is a usable one.
    fn read_own(
        row: &AnyRow,
        name: String,
        cipher: &CredentialCipher,
    ) -> Result<Self, RegistryError> {
        let json_list = |i: usize| -> Result<Option<Vec<String>>, RegistryError> {
            let text: Option<String> = row.try_get(i).map_err(db_error)?;
            text.map(|t| serde_json::from_str(&t).map_err(|e| unreadable(&name, e)))
                .transpose()
        };
        let text = |i: usize| -> Result<String, RegistryError> { row.try_get(i).map_err(db_error) };
        let opt_text = |i: usize| -> Result<Option<String>, RegistryError> {
            row.try_get(i).map_err(db_error)
        };
        let int = |i: usize| -> Result<i64, RegistryError> { row.try_get(i).map_err(db_error) };
        let transport = transport_from(&text(2)?).ok_or_else(|| unreadable(&name, "transport"))?;
        let auth_mode = auth_mode_from(&text(3)?).ok_or_else(|| unreadable(&name, "auth_mode"))?;
        let sealed: Option<Vec<u8>> = row.try_get(10).map_err(db_error)?;
        let upstream_auth = cipher
            .open(&name, sealed.as_deref())
            .map_err(RegistryError::Unavailable)?;
        Ok(ServerDraft {
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
            refresh_interval: row.try_get(11).map_err(db_error)?,
            name,
        })
    }

    fn audit_json(record: &ServerRecord) -> Value {
        redacted_json(record)
    }

    fn same(&self, b: &Self) -> bool {
        let a = self;
        a.name == b.name
            && a.urls == b.urls
            && a.transport == b.transport
            && a.auth_mode == b.auth_mode
            && a.proxy_header == b.proxy_header
            && a.jwt_audience == b.jwt_audience
            && a.passthrough_headers == b.passthrough_headers
            && a.enabled == b.enabled
            && a.description == b.description
            && a.tags == b.tags
            && a.upstream_auth == b.upstream_auth
            && a.refresh_interval == b.refresh_interval
    }
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
