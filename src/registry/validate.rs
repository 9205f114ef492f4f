//! A draft is checked with the YAML file's rules (one function,
//! [`config::validate_server`]) plus the registry's own fields; the
//! conversions between drafts, records and the data plane's
//! [`ServerSpec`] live here.

use super::model::{RegistryError, ServerDraft, ServerPatch, ServerRecord, Transport};
use crate::config::{self, ServerFields, ServerSpec};

pub use crate::config::MAX_DESCRIPTION_CHARS;
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_CHARS: usize = 64;
pub const MAX_URLS: usize = 32;

/// The spec the data plane would run for this draft, or the first field
/// that is wrong.
pub fn validate_draft(draft: &ServerDraft) -> Result<ServerSpec, RegistryError> {
    if draft.urls.len() > MAX_URLS {
        return Err(invalid("urls", format!("at most {MAX_URLS} URLs")));
    }
    let spec = config::validate_server(
        ServerFields {
            name: &draft.name,
            urls: &draft.urls,
            auth_mode: draft.auth_mode,
            proxy_header: draft.proxy_header.as_deref(),
            jwt_audience: draft.jwt_audience.as_deref(),
            passthrough_headers: draft.passthrough_headers.as_deref(),
            upstream_auth: &draft.upstream_auth,
            refresh_interval: draft.refresh_interval,
        },
        &|f| f.to_string(),
    )
    .map_err(|e| RegistryError::Invalid {
        field: e.field,
        problem: e.problem,
    })?;
    config::check_description(&draft.description, &|f| f.to_string()).map_err(|e| {
        RegistryError::Invalid {
            field: e.field,
            problem: e.problem,
        }
    })?;
    if draft.tags.len() > MAX_TAGS {
        return Err(invalid("tags", format!("at most {MAX_TAGS} tags")));
    }
    for (i, tag) in draft.tags.iter().enumerate() {
        let n = tag.chars().count();
        if n == 0 || n > MAX_TAG_CHARS || tag.chars().any(char::is_control) || tag.trim() != tag {
            return Err(invalid(
                &format!("tags[{i}]"),
                format!(
                    "must be 1 to {MAX_TAG_CHARS} characters, without control characters or \
                     surrounding spaces"
                ),
            ));
        }
        if draft.tags[..i].contains(tag) {
            return Err(invalid(
                &format!("tags[{i}]"),
                format!("{tag:?} appears twice"),
            ));
        }
    }
    Ok(spec)
}

fn invalid(field: &str, problem: impl Into<String>) -> RegistryError {
    RegistryError::Invalid {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// A YAML server as a draft: enabled, no description or tags.
pub fn draft_from_spec(spec: &ServerSpec) -> ServerDraft {
    ServerDraft {
        name: spec.name.clone(),
        urls: spec.urls.iter().map(|u| u.original.clone()).collect(),
        transport: Transport::StreamableHttp,
        auth_mode: spec.auth_mode,
        proxy_header: spec.proxy_header.as_ref().map(|h| h.as_str().to_string()),
        jwt_audience: spec.jwt_audience.clone(),
        passthrough_headers: spec
            .passthrough_headers
            .as_ref()
            .map(|l| l.iter().map(|h| h.as_str().to_string()).collect()),
        enabled: true,
        description: String::new(),
        tags: Vec::new(),
        upstream_auth: spec.upstream_auth.clone(),
        refresh_interval: spec.refresh_interval.map(|d| d.as_secs() as i64),
    }
}

/// What the data plane runs for a stored record.
pub fn spec_from_record(record: &ServerRecord) -> Result<ServerSpec, RegistryError> {
    validate_draft(&record.draft)
}

/// The draft with the patch's fields applied.
pub fn apply_patch(mut draft: ServerDraft, patch: ServerPatch) -> ServerDraft {
    if let Some(v) = patch.urls {
        draft.urls = v;
    }
    if let Some(v) = patch.transport {
        draft.transport = v;
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
    if let Some(v) = patch.passthrough_headers {
        draft.passthrough_headers = v;
    }
    if let Some(v) = patch.enabled {
        draft.enabled = v;
    }
    if let Some(v) = patch.description {
        draft.description = v;
    }
    if let Some(v) = patch.tags {
        draft.tags = v;
    }
    if let Some(v) = patch.upstream_auth {
        draft.upstream_auth = v;
    }
    if let Some(v) = patch.refresh_interval {
        draft.refresh_interval = v;
    }
    draft
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthMode, Secret, UpstreamCredential};

    fn draft() -> ServerDraft {
        ServerDraft {
            name: "github".into(),
            urls: vec!["http://127.0.0.1:9000/mcp".into()],
            enabled: true,
            ..ServerDraft::default()
        }
    }

    fn field_of(d: &ServerDraft) -> String {
        match validate_draft(d) {
            Err(RegistryError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_draft_becomes_the_spec_the_yaml_would_give() {
        let mut d = draft();
        d.auth_mode = AuthMode::Proxy;
        d.proxy_header = Some("X-Employee-Id".into());
        d.upstream_auth = UpstreamCredential::Bearer(Secret::new("tok"));
        let spec = validate_draft(&d).unwrap();
        assert_eq!(spec.urls[0].port, 9000);
        assert_eq!(
            spec.proxy_header.as_ref().unwrap().as_str(),
            "x-employee-id"
        );
        let back = draft_from_spec(&spec);
        assert_eq!(back.urls, d.urls);
        assert_eq!(back.upstream_auth, d.upstream_auth);
    }

    #[test]
    fn every_bad_field_is_named() {
        type Edit = Box<dyn Fn(&mut ServerDraft)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("name", Box::new(|d| d.name = "GitHub".into())),
            ("name", Box::new(|d| d.name = "a".repeat(64))),
            ("urls", Box::new(|d| d.urls.clear())),
            ("urls[0]", Box::new(|d| d.urls = vec!["ftp://h/mcp".into()])),
            (
                "urls",
                Box::new(|d| d.urls = vec!["http://h/mcp".into(); 33]),
            ),
            (
                "proxy_header",
                Box::new(|d| d.proxy_header = Some("X-Request-Id".into())),
            ),
            (
                "jwt_audience",
                Box::new(|d| {
                    d.auth_mode = AuthMode::Proxy;
                    d.jwt_audience = Some("a".into());
                }),
            ),
            (
                "passthrough_headers",
                Box::new(|d| d.passthrough_headers = Some(vec!["X_A".into()])),
            ),
            (
                "description",
                Box::new(|d| d.description = "x".repeat(1025)),
            ),
            (
                "description",
                Box::new(|d| d.description = "bell\u{7}".into()),
            ),
            ("tags", Box::new(|d| d.tags = vec!["t".into(); 33])),
            (
                "tags[1]",
                Box::new(|d| d.tags = vec!["a".into(), "".into()]),
            ),
            (
                "tags[1]",
                Box::new(|d| d.tags = vec!["a".into(), "a".into()]),
            ),
            ("tags[0]", Box::new(|d| d.tags = vec!["x".repeat(65)])),
            (
                "upstream_auth.token",
                Box::new(|d| {
                    d.upstream_auth = UpstreamCredential::Bearer(Secret::new("two words"))
                }),
            ),
            (
                "upstream_auth.username",
                Box::new(|d| {
                    d.upstream_auth = UpstreamCredential::Basic {
                        username: "a:b".into(),
                        password: Secret::new("p"),
                    }
                }),
            ),
            (
                "upstream_auth.headers.host",
                Box::new(|d| {
                    d.upstream_auth =
                        UpstreamCredential::Headers(vec![(http::header::HOST, Secret::new("evil"))])
                }),
            ),
            (
                "upstream_auth.headers.x-key",
                Box::new(|d| {
                    d.upstream_auth = UpstreamCredential::Headers(vec![(
                        http::HeaderName::from_static("x-key"),
                        Secret::new("line\r\nbreak"),
                    )])
                }),
            ),
        ];
        for (want, edit) in cases {
            let mut d = draft();
            edit(&mut d);
            assert_eq!(field_of(&d), want);
        }
    }

    #[test]
    fn a_patch_changes_only_what_it_sets() {
        let patched = apply_patch(
            draft(),
            ServerPatch {
                enabled: Some(false),
                jwt_audience: Some(Some("aud".into())),
                ..ServerPatch::default()
            },
        );
        assert!(!patched.enabled);
        assert_eq!(patched.jwt_audience.as_deref(), Some("aud"));
        assert_eq!(patched.urls, draft().urls);
        let cleared = apply_patch(
            patched,
            ServerPatch {
                jwt_audience: Some(None),
                ..ServerPatch::default()
            },
        );
        assert_eq!(cleared.jwt_audience, None);
    }
}
