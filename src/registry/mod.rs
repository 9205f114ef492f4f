//! The server registry: MCP servers registered at run time, persisted with
//! `sqlx` (SQLite by default, PostgreSQL in production), read by the data
//! plane as routing snapshots and written by the admin service.
//!
//! [`Registry`] is the one interface between the store and its users (the
//! admin API, the registry sync, start-up's YAML upsert); the model types
//! below are what crosses it.

pub mod crypto;
pub mod database_url;
pub mod handle;
pub mod migrate;
pub mod model;
mod rows;
mod store;
pub mod sync;
mod validate;
mod writes;

pub use model::{
    Actor, AuditEntry, AuditQuery, BackendHealth, ListQuery, McpCheck, Origin, Page, RegistryError,
    ServerDraft, ServerPatch, ServerRecord, Transport,
};

pub use database_url::DatabaseUrl;
pub use rows::{redacted_credential, redacted_json};
pub use store::{Dialect, OpenError, SqlRegistry, NOTIFY_CHANNEL};
pub use validate::{
    apply_patch, draft_from_spec, spec_from_record, validate_draft, MAX_DESCRIPTION_CHARS,
    MAX_TAGS, MAX_TAG_CHARS, MAX_URLS,
};
pub use writes::ConfigSummary;

use async_trait::async_trait;

/// A store of server records. Every write is one transaction that bumps the
/// record's `version` and the registry's generation, and appends one audit
/// entry; a write whose expected version is stale changes nothing.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Records matching the query, ordered by name.
    async fn list(&self, query: &ListQuery) -> Result<Page<ServerRecord>, RegistryError>;
    async fn get(&self, name: &str) -> Result<ServerRecord, RegistryError>;
    /// `Exists` if the name is taken.
    async fn create(
        &self,
        draft: ServerDraft,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError>;
    /// Replaces every field; `Conflict` if `expected_version` is stale,
    /// `ConfigOwned` for a server from the YAML file.
    async fn update(
        &self,
        name: &str,
        draft: ServerDraft,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError>;
    /// Changes the fields the patch sets; the version check only when given.
    async fn patch(
        &self,
        name: &str,
        patch: ServerPatch,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError>;
    async fn delete(
        &self,
        name: &str,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<(), RegistryError>;
    /// Newest first.
    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, RegistryError>;
    /// Bumped by every committed write; what replicas poll or are notified of.
    async fn generation(&self) -> Result<i64, RegistryError>;
    /// `Unavailable` when the database cannot be reached.
    async fn ping(&self) -> Result<(), RegistryError>;
}

/// What the data plane knows of each server's backends, for the admin API.
pub trait HealthView: Send + Sync {
    /// `None` if no server of that name is in the current routing snapshot.
    fn server_health(&self, name: &str) -> Option<Vec<BackendHealth>>;
    /// The MCP-level check of the catalog's last gathering; `None` before
    /// the first (or where no catalog runs).
    fn mcp_health(&self, name: &str) -> Option<McpCheck> {
        let _ = name;
        None
    }
}
