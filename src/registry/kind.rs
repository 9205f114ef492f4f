//! The kinds of record the store holds (servers, virtual servers) seen the
//! same way by its one write path (`writes`): a table whose rows are a
//! name, the kind's own columns, then `origin_file, version, created_at,
//! updated_at`; a validation; and how the audit log shows a record.

use super::crypto::CredentialCipher;
use super::model::{Origin, Record, RegistryError};
use super::rows::db_error;
use serde_json::Value;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Row};

pub type Query<'q> = sqlx::query::Query<'q, Any, AnyArguments<'q>>;

/// What the write path needs to know of a kind of record.
pub trait Kind: Clone + Send + Sync + Sized + 'static {
    /// The other kind: the two share one name space.
    type Rival: Kind;
    const TABLE: &'static str;
    /// The audit log's `kind`.
    const AUDIT_KIND: &'static str;
    /// How errors and logs name this kind.
    const NOUN: &'static str;
    /// The columns between `name` and `origin_file`, in the order
    /// [`Kind::bind_own`] binds and [`Kind::read_own`] reads them.
    const OWN_COLUMNS: &'static [&'static str];

    fn name(&self) -> &str;
    fn validate(&self) -> Result<(), RegistryError>;
    fn bind_own<'q>(&'q self, query: Query<'q>, cipher: &CredentialCipher) -> Query<'q>;
    /// The own columns, from index 1 of a row of [`columns`].
    fn read_own(
        row: &AnyRow,
        name: String,
        cipher: &CredentialCipher,
    ) -> Result<Self, RegistryError>;
    /// The record as the audit log keeps it: no secret.
    fn audit_json(record: &Record<Self>) -> Value;
    /// Field by field, secrets compared as values: an unchanged YAML entry
    /// is not rewritten.
    fn same(&self, other: &Self) -> bool;
}

/// Every column of `K`'s table, in [`read_record`]'s order.
pub fn columns<K: Kind>() -> String {
    let mut all = vec!["name"];
    all.extend(K::OWN_COLUMNS);
    all.extend(["origin_file", "version", "created_at", "updated_at"]);
    all.join(", ")
}

/// `$1`..: name, the own columns, origin_file, version, created_at,
/// updated_at.
pub fn insert_sql<K: Kind>() -> String {
    let n = K::OWN_COLUMNS.len() + 5;
    let placeholders: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (name) DO NOTHING",
        K::TABLE,
        columns::<K>(),
        placeholders.join(", ")
    )
}

/// Binds as [`bind_record`], then updated_at and the expected version.
pub fn update_sql<K: Kind>() -> String {
    let own = K::OWN_COLUMNS.len();
    let mut set: Vec<String> = K::OWN_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 2))
        .collect();
    set.push(format!("origin_file = ${}", own + 2));
    set.push(format!("version = ${}", own + 3));
    set.push(format!("updated_at = ${}", own + 4));
    format!(
        "UPDATE {} SET {} WHERE name = $1 AND version = ${}",
        K::TABLE,
        set.join(", "),
        own + 5
    )
}

/// Binds the columns an insert and an update share: name, the own
/// columns, origin_file, version.
pub fn bind_record<'q, K: Kind>(
    query: Query<'q>,
    record: &'q Record<K>,
    cipher: &CredentialCipher,
) -> Query<'q> {
    let origin_file = match &record.origin {
        Origin::Config { file } => Some(file.as_str()),
        Origin::Api => None,
    };
    record
        .draft
        .bind_own(query.bind(record.draft.name()), cipher)
        .bind(origin_file)
        .bind(record.version)
}

/// A row of `SELECT {columns::<K>()}` as a record.
pub fn read_record<K: Kind>(
    row: &AnyRow,
    cipher: &CredentialCipher,
) -> Result<Record<K>, RegistryError> {
    let name: String = row.try_get(0).map_err(db_error)?;
    let draft = K::read_own(row, name, cipher)?;
    let at = K::OWN_COLUMNS.len() + 1;
    let origin_file: Option<String> = row.try_get(at).map_err(db_error)?;
    Ok(Record {
        draft,
        origin: match origin_file {
            Some(file) => Origin::Config { file },
            None => Origin::Api,
        },
        version: row.try_get(at + 1).map_err(db_error)?,
        created_at: row.try_get(at + 2).map_err(db_error)?,
        updated_at: row.try_get(at + 3).map_err(db_error)?,
    })
}
