//! What the registry cannot see when it validates one record: a server's
//! upstream credential header that is another server's identity header
//! (`proxy_header`). The data plane refuses such a pair and leaves the
//! server with the credential out of the routes, so a write to one server
//! could silently take a different, unchanged server offline. A virtual
//! server's `proxy_header` is an identity header too. The admin API
//! refuses the write instead. Two concurrent writes can still race past
//! this check; the routing applier's refusal remains the backstop.

use super::error::ApiError;
use crate::config::UpstreamCredential;
use crate::registry::{ListQuery, Registry, ServerDraft, VirtualRegistry, VirtualServerDraft};
use axum::http::StatusCode;

/// Header names (lowercase) the server's credential sets upstream.
fn credential_headers(draft: &ServerDraft) -> Vec<String> {
    match &draft.upstream_auth {
        UpstreamCredential::None => Vec::new(),
        UpstreamCredential::Bearer(_) | UpstreamCredential::Basic { .. } => {
            vec!["authorization".into()]
        }
        UpstreamCredential::Headers(headers) => headers
            .iter()
            .map(|(name, _)| name.as_str().to_string())
            .collect(),
    }
}

fn identity_header(draft: &ServerDraft) -> Option<String> {
    draft.proxy_header.as_ref().map(|h| h.to_ascii_lowercase())
}

/// 409 if `draft`, once enabled, and another enabled server would make the
/// data plane refuse one of them.
pub async fn refuse_identity_clash(
    registry: &dyn Registry,
    draft: &ServerDraft,
) -> Result<(), ApiError> {
    if !draft.enabled {
        return Ok(());
    }
    let mine = credential_headers(draft);
    let my_identity = identity_header(draft);
    let mut query = enabled_records();
    loop {
        let page = registry.list(&query).await?;
        for other in page.items.iter().map(|r| &r.draft) {
            if other.name == draft.name {
                continue;
            }
            if let Some(id) = identity_header(other).filter(|id| mine.contains(id)) {
                return Err(clash(
                    "upstream_auth",
                    format!(
                        "upstream_auth: the header {id:?} is the identity header (proxy_header) of \
                         server {:?}; the gateway would not route this server",
                        other.name
                    ),
                ));
            }
            if let Some(id) = my_identity
                .as_ref()
                .filter(|id| credential_headers(other).contains(id))
            {
                return Err(clash(
                    "proxy_header",
                    format!(
                        "proxy_header: {id:?} is a header of server {:?}'s upstream credential; \
                         the gateway would stop routing that server",
                        other.name
                    ),
                ));
            }
        }
        if !next_page(&mut query, page.items.len(), page.total) {
            return Ok(());
        }
    }
}

/// 409 if the enabled virtual server's `proxy_header` is a header of an
/// enabled server's upstream credential.
pub async fn refuse_virtual_identity_clash(
    registry: &dyn Registry,
    draft: &VirtualServerDraft,
) -> Result<(), ApiError> {
    let Some(id) = draft
        .proxy_header
        .as_ref()
        .filter(|_| draft.enabled)
        .map(|h| h.to_ascii_lowercase())
    else {
        return Ok(());
    };
    let mut query = enabled_records();
    loop {
        let page = registry.list(&query).await?;
        if let Some(other) = page
            .items
            .iter()
            .find(|r| credential_headers(&r.draft).contains(&id))
        {
            return Err(clash(
                "proxy_header",
                format!(
                    "proxy_header: {id:?} is a header of server {:?}'s upstream credential; \
                     the gateway would stop routing that server",
                    other.draft.name
                ),
            ));
        }
        if !next_page(&mut query, page.items.len(), page.total) {
            return Ok(());
        }
    }
}

/// 409 if the enabled server's upstream credential sets a header that is
/// an enabled virtual server's `proxy_header`.
pub async fn refuse_credential_of_a_virtual_identity(
    virtuals: &dyn VirtualRegistry,
    draft: &ServerDraft,
) -> Result<(), ApiError> {
    let mine = credential_headers(draft);
    if !draft.enabled || mine.is_empty() {
        return Ok(());
    }
    let mut query = enabled_records();
    loop {
        let page = virtuals.list_virtual(&query).await?;
        for other in page.items.iter().map(|r| &r.draft) {
            if let Some(id) = other
                .proxy_header
                .as_ref()
                .map(|h| h.to_ascii_lowercase())
                .filter(|id| mine.contains(id))
            {
                return Err(clash(
                    "upstream_auth",
                    format!(
                        "upstream_auth: the header {id:?} is the identity header (proxy_header) \
                         of virtual server {:?}; the gateway would not route this server",
                        other.name
                    ),
                ));
            }
        }
        if !next_page(&mut query, page.items.len(), page.total) {
            return Ok(());
        }
    }
}

/// The first page of every enabled record, in pages the size of the API's
/// largest.
fn enabled_records() -> ListQuery {
    ListQuery {
        enabled: Some(true),
        limit: 500,
        ..ListQuery::default()
    }
}

/// Moves `query` past a page of `shown` records; false once none are left.
fn next_page(query: &mut ListQuery, shown: usize, total: u64) -> bool {
    let seen = u64::from(query.offset) + shown as u64;
    if shown == 0 || seen >= total {
        return false;
    }
    query.offset = u32::try_from(seen).unwrap_or(u32::MAX);
    true
}

fn clash(field: &str, message: String) -> ApiError {
    ApiError {
        field: Some(field.into()),
        ..ApiError::new(StatusCode::CONFLICT, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_until_every_record_was_seen() {
        let mut query = enabled_records();
        assert!(next_page(&mut query, 500, 1200));
        assert_eq!(query.offset, 500);
        assert!(next_page(&mut query, 500, 1200));
        assert_eq!(query.offset, 1000);
        assert!(!next_page(&mut query, 200, 1200));
        // A registry that shrank under the loop ends it rather than spinning.
        let mut query = enabled_records();
        assert!(!next_page(&mut query, 0, 1200));
    }
}
