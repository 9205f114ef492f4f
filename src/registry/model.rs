//! What crosses the [`Registry`](super::Registry) interface. Credentials
//! are [`UpstreamCredential`]s holding [`Secret`](crate::config::Secret)s:
//! nothing here serialises or prints them.

use crate::config::{AuthMode, UpstreamCredential};
use std::fmt;

/// Where a record came from. Records from the YAML file are upserted at
/// start-up and read-only through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Config { file: String },
    Api,
}

/// The MCP transport of a server's replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    #[default]
    StreamableHttp,
    /// The 2024-11-05 HTTP+SSE transport (`/sse` beside `/mcp`).
    Sse,
}

/// A server as written by a client: every field the API accepts. Not yet
/// validated; the store validates it with the YAML file's rules.
#[derive(Debug, Clone, Default)]
pub struct ServerDraft {
    pub name: String,
    pub urls: Vec<String>,
    pub transport: Transport,
    pub auth_mode: AuthMode,
    pub proxy_header: Option<String>,
    pub jwt_audience: Option<String>,
    pub passthrough_headers: Option<Vec<String>>,
    pub enabled: bool,
    pub description: String,
    pub tags: Vec<String>,
    pub upstream_auth: UpstreamCredential,
    /// Seconds between catalog gatherings; `None`: `CATALOG_REFRESH_INTERVAL`.
    pub refresh_interval: Option<i64>,
}

/// A partial change: `None` leaves a field as it is. For the optional
/// fields, `Some(None)` clears them.
#[derive(Debug, Clone, Default)]
pub struct ServerPatch {
    pub urls: Option<Vec<String>>,
    pub transport: Option<Transport>,
    pub auth_mode: Option<AuthMode>,
    pub proxy_header: Option<Option<String>>,
    pub jwt_audience: Option<Option<String>>,
    pub passthrough_headers: Option<Option<Vec<String>>>,
    pub enabled: Option<bool>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub upstream_auth: Option<UpstreamCredential>,
    pub refresh_interval: Option<Option<i64>>,
}

/// A stored record: a server's or a virtual server's draft, and what the
/// store keeps beside it.
#[derive(Debug, Clone)]
pub struct Record<D> {
    pub draft: D,
    pub origin: Origin,
    /// Starts at 1; bumped by every write of this record.
    pub version: i64,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A stored server.
pub type ServerRecord = Record<ServerDraft>;

/// A virtual server as written by a client: served by the gateway itself
/// at `/servers/{name}/mcp`, made of the tools its `include` patterns
/// (`server/tool`, `server/*`) take. Not yet validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VirtualServerDraft {
    pub name: String,
    pub include: Vec<String>,
    pub auth_mode: AuthMode,
    pub proxy_header: Option<String>,
    pub jwt_audience: Option<String>,
    pub description: String,
    pub enabled: bool,
}

/// A partial change of a virtual server, as [`ServerPatch`].
#[derive(Debug, Clone, Default)]
pub struct VirtualServerPatch {
    pub include: Option<Vec<String>>,
    pub auth_mode: Option<AuthMode>,
    pub proxy_header: Option<Option<String>>,
    pub jwt_audience: Option<Option<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// A stored virtual server.
pub type VirtualServerRecord = Record<VirtualServerDraft>;

/// Who made a change, as the audit log names them: the admin's email, or
/// `config:<file>` for the start-up upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub actor: String,
    /// `create`, `update`, `patch`, `delete` or `config`.
    pub action: String,
    /// `server` or `virtual_server`: what `server` names.
    pub kind: String,
    pub server: String,
    /// The record before and after, as the API shows it: secrets appear
    /// only as "set" / "not set".
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub enabled: Option<bool>,
    pub tag: Option<String>,
    /// Substring of the name or description.
    pub search: Option<String>,
    pub offset: u32,
    /// At most 500; 0 means the default of 100.
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub server: Option<String>,
    pub offset: u32,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub offset: u32,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    NotFound(String),
    Exists(String),
    /// The update carried a stale version.
    Conflict {
        name: String,
        current_version: i64,
    },
    /// The name is a record of the other kind's (a server's for a virtual
    /// server, and the reverse): `/servers/{name}/mcp` must mean one thing.
    NameTaken {
        name: String,
        /// `server` or `virtual server`.
        by: &'static str,
    },
    /// The server comes from the YAML file and changes only there.
    ConfigOwned {
        name: String,
        file: String,
    },
    /// A field of the draft or patch is invalid.
    Invalid {
        field: String,
        problem: String,
    },
    /// The database cannot be reached or failed; nothing was written.
    Unavailable(String),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::NotFound(name) => write!(f, "no server named {name:?}"),
            RegistryError::Exists(name) => write!(f, "a server named {name:?} already exists"),
            RegistryError::Conflict {
                name,
                current_version,
            } => write!(
                f,
                "server {name:?} was changed meanwhile: its version is now {current_version}"
            ),
            RegistryError::NameTaken { name, by } => write!(
                f,
                "{name:?} is the name of a {by}: /servers/{name}/mcp must name one of them"
            ),
            RegistryError::ConfigOwned { name, file } => {
                write!(f, "server {name:?} is declared in {file}: change it there")
            }
            RegistryError::Invalid { field, problem } => write!(f, "{field}: {problem}"),
            RegistryError::Unavailable(why) => {
                write!(f, "the registry database is unavailable: {why}")
            }
        }
    }
}

impl std::error::Error for RegistryError {}

/// One backend of a server as its health checks last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendHealth {
    /// The replica URL the backend was resolved from.
    pub replica: String,
    /// The resolved address, `ip:port`.
    pub backend: String,
    pub healthy: bool,
    /// Unix seconds of the last check; `None` before the first.
    pub last_check: Option<i64>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

/// A server as the catalog's last gathering saw it over MCP (`initialize`
/// and its lists, as the gateway itself), beside the TCP health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpCheck {
    pub up: bool,
    /// Why the last gathering failed.
    pub reason: Option<String>,
    /// Unix seconds of the last gathering.
    pub last_check: i64,
    /// Unix seconds of the first failure in the current run of failures.
    pub down_since: Option<i64>,
    /// Unix seconds of the last successful gathering.
    pub last_success: Option<i64>,
}
