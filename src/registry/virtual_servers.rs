//! Virtual servers as registry records: their row, their validation (the
//! YAML file's, one function: [`config::validate_virtual_server`]), and
//! the conversions between drafts, records and the data plane's
//! [`VirtualServerSpec`].

use super::crypto::CredentialCipher;
use super::kind::{Kind, Query};
use super::model::ServerDraft;
use super::model::{RegistryError, VirtualServerDraft, VirtualServerPatch, VirtualServerRecord};
use super::rows::{auth_mode_from, auth_mode_name, db_error, list_json, unreadable};
use crate::config::{self, VirtualServerFields, VirtualServerSpec};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

/// The spec the data plane would serve for this draft, or the first field
/// that is wrong.
pub fn validate_virtual_draft(
    draft: &VirtualServerDraft,
) -> Result<VirtualServerSpec, RegistryError> {
    config::validate_virtual_server(
        VirtualServerFields {
            name: &draft.name,
            include: &draft.include,
            auth_mode: draft.auth_mode,
            proxy_header: draft.proxy_header.as_deref(),
            jwt_audience: draft.jwt_audience.as_deref(),
            description: &draft.description,
        },
        &|f| f.to_string(),
    )
    .map_err(|e| RegistryError::Invalid {
        field: e.field,
        problem: e.problem,
    })
}

/// A YAML virtual server as a draft: enabled.
pub fn virtual_draft_from_spec(spec: &VirtualServerSpec) -> VirtualServerDraft {
    VirtualServerDraft {
        name: spec.name.clone(),
        include: spec.include.iter().map(|p| p.to_string()).collect(),
        auth_mode: spec.auth_mode,
        proxy_header: spec.proxy_header.as_ref().map(|h| h.as_str().to_string()),
        jwt_audience: spec.jwt_audience.clone(),
        description: spec.description.clone().unwrap_or_default(),
        enabled: true,
    }
}

/// The draft with the patch's fields applied.
pub fn apply_virtual_patch(
    mut draft: VirtualServerDraft,
    patch: VirtualServerPatch,
) -> VirtualServerDraft {
    if let Some(v) = patch.include {
        draft.include = v;
    }
    if let Some(v) = patch.auth_mode {
        draft.auth_mode = v;
    }
    if let Some(v) = patch.proxy_header {
        draft.proxy_header = v;
    }
    if let Some(v) = patch.jwt_audience {
        draft.jwt_audience = v;
    }
    if let Some(v) = patch.description {
        draft.description = v;
    }
    if let Some(v) = patch.enabled {
        draft.enabled = v;
    }
    draft
}

impl Kind for VirtualServerDraft {
    type Rival = ServerDraft;
    const TABLE: &'static str = "gw_virtual_servers";
    const AUDIT_KIND: &'static str = "virtual_server";
    const NOUN: &'static str = "virtual server";
    const OWN_COLUMNS: &'static [&'static str] = &[
        "include_patterns",
        "auth_mode",
        "proxy_header",
        "jwt_audience",
        "description",
        "enabled",
    ];

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self) -> Result<(), RegistryError> {
        validate_virtual_draft(self).map(drop)
    }

    fn bind_own<'q>(&'q self, query: Query<'q>, _: &CredentialCipher) -> Query<'q> {
        query
            .bind(list_json(&self.include))
            .bind(auth_mode_name(self.auth_mode))
            .bind(self.proxy_header.as_deref())
            .bind(self.jwt_audience.as_deref())
            .bind(self.description.as_str())
            .bind(i64::from(self.enabled))
    }

    fn read_own(row: &AnyRow, name: String, _: &CredentialCipher) -> Result<Self, RegistryError> {
        let include: String = row.try_get(1).map_err(db_error)?;
        let include: Vec<String> =
            serde_json::from_str(&include).map_err(|e| unreadable(&name, e))?;
        let mode: String = row.try_get(2).map_err(db_error)?;
        let auth_mode = auth_mode_from(&mode).ok_or_else(|| unreadable(&name, "auth_mode"))?;
        let enabled: i64 = row.try_get(6).map_err(db_error)?;
        Ok(VirtualServerDraft {
            include,
            auth_mode,
            proxy_header: row.try_get(3).map_err(db_error)?,
            jwt_audience: row.try_get(4).map_err(db_error)?,
            description: row.try_get(5).map_err(db_error)?,
            enabled: enabled != 0,
            name,
        })
    }

    fn audit_json(record: &VirtualServerRecord) -> Value {
        virtual_redacted_json(record)
    }

    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

/// A virtual server as the audit log keeps it (it holds no secret).
pub fn virtual_redacted_json(record: &VirtualServerRecord) -> Value {
    let d = &record.draft;
    let (origin, file) = match &record.origin {
        super::Origin::Api => ("api", None),
        super::Origin::Config { file } => ("config", Some(file.as_str())),
    };
    json!({
        "name": d.name,
        "include": d.include,
        "auth_mode": auth_mode_name(d.auth_mode),
        "proxy_header": d.proxy_header,
        "jwt_audience": d.jwt_audience,
        "description": d.description,
        "enabled": d.enabled,
        "origin": origin,
        "config_file": file,
        "version": record.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthMode;

    fn draft() -> VirtualServerDraft {
        VirtualServerDraft {
            name: "dev".into(),
            include: vec!["github/*".into(), "jira/create_issue".into()],
            enabled: true,
            ..VirtualServerDraft::default()
        }
    }

    #[test]
    fn a_draft_is_checked_with_the_yaml_rules_and_round_trips() {
        let mut d = draft();
        d.auth_mode = AuthMode::Proxy;
        d.proxy_header = Some("X-Employee-Id".into());
        d.description = "Dev tools".into();
        let spec = validate_virtual_draft(&d).unwrap();
        assert_eq!(spec.include[1].to_string(), "jira/create_issue");
        let mut back = virtual_draft_from_spec(&spec);
        // The header comes back in its canonical (lowercase) form.
        assert_eq!(back.proxy_header.as_deref(), Some("x-employee-id"));
        back.proxy_header = d.proxy_header.clone();
        assert_eq!(back, d);
    }

    #[test]
    fn every_bad_field_is_named() {
        type Edit = Box<dyn Fn(&mut VirtualServerDraft)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("name", Box::new(|d| d.name = "Dev".into())),
            ("include[1]", Box::new(|d| d.include[1] = "jira".into())),
            ("include", Box::new(|d| d.include = vec!["a/*".into(); 257])),
            (
                "proxy_header",
                Box::new(|d| {
                    d.auth_mode = AuthMode::Jwt;
                    d.proxy_header = Some("X-U".into());
                }),
            ),
            (
                "jwt_audience",
                Box::new(|d| {
                    d.auth_mode = AuthMode::Proxy;
                    d.jwt_audience = Some("a".into());
                }),
            ),
            ("description", Box::new(|d| d.description = "\u{7}".into())),
        ];
        for (want, edit) in cases {
            let mut d = draft();
            edit(&mut d);
            match validate_virtual_draft(&d) {
                Err(RegistryError::Invalid { field, .. }) => assert_eq!(field, want),
                other => panic!("{want}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_patch_changes_only_what_it_sets() {
        let patched = apply_virtual_patch(
            draft(),
            VirtualServerPatch {
                include: Some(vec!["a/*".into()]),
                jwt_audience: Some(Some("aud".into())),
                ..VirtualServerPatch::default()
            },
        );
        assert_eq!(patched.include, ["a/*"]);
        assert_eq!(patched.jwt_audience.as_deref(), Some("aud"));
        assert!(patched.enabled);
        let cleared = apply_virtual_patch(
            patched,
            VirtualServerPatch {
                jwt_audience: Some(None),
                enabled: Some(false),
                ..VirtualServerPatch::default()
            },
        );
        assert_eq!(cleared.jwt_audience, None);
        assert!(!cleared.enabled);
    }
}
