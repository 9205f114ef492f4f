//! The server registry: MCP servers and virtual servers registered at run
//! time, persisted with `sqlx` (SQLite by default, PostgreSQL in
//! production), read by the data plane as routing snapshots and written by
//! the admin service.
//!
//! [`Registry`] (servers) and [`VirtualRegistry`] (virtual servers) are the
//! interfaces between the store and its users (the admin API, the registry
//! sync, start-up's YAML upsert); the model types below are what crosses
//! them. Both kinds share one write path (`writes`, over `kind::Kind`).

pub mod crypto;
pub mod database_url;
pub mod handle;
mod kind;
pub mod migrate;
pub mod model;
mod rows;
mod store;
pub mod sync;
mod validate;
mod virtual_servers;
mod virtual_store;
mod writes;

pub use model::{
    Actor, AuditEntry, AuditQuery, BackendHealth, ListQuery, McpCheck, Origin, Page, Record,
    RegistryError, ServerDraft, ServerPatch, ServerRecord, Transport, VirtualServerDraft,
    VirtualServerPatch, VirtualServerRecord,
};
pub use virtual_servers::{
    apply_virtual_patch, validate_virtual_draft, virtual_draft_from_spec, virtual_redacted_json,
};

pub use database_url::DatabaseUrl;
pub use rows::{redacted_credential, redacted_json};
pub use store::{Dialect, Enabled, OpenError, SqlRegistry, NOTIFY_CHANNEL};
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

/// The store of virtual servers: the same contract as [`Registry`]
/// (versions, configuration-owned records, one audit entry per write),
/// and one name space with the servers: a write that would give a virtual
/// server a server's name is `NameTaken`, and the reverse too.
#[async_trait]
pub trait VirtualRegistry: Send + Sync {
    /// Ordered by name; `tag` is not used.
    async fn list_virtual(
        &self,
        query: &ListQuery,
    ) -> Result<Page<VirtualServerRecord>, RegistryError>;
    async fn get_virtual(&self, name: &str) -> Result<VirtualServerRecord, RegistryError>;
    async fn create_virtual(
        &self,
        draft: VirtualServerDraft,
        actor: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError>;
    async fn update_virtual(
        &self,
        name: &str,
        draft: VirtualServerDraft,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError>;
    async fn patch_virtual(
        &self,
        name: &str,
        patch: VirtualServerPatch,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError>;
    async fn delete_virtual(
        &self,
        name: &str,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<(), RegistryError>;
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
