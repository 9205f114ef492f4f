//! The request's `Connection` header, read once per request for the
//! header policy and the identity check.

use http::header::{self, HeaderName};
use http::HeaderMap;
use smallvec::SmallVec;

/// The names the client's `Connection` header marks hop-by-hop (RFC 9110
/// §7.6.1): meant for the gateway alone. Pingora strips them from the
/// upstream request before the policy runs, so anything the gateway would
/// forward or derive from one (`X-Upstream-Authorization` renamed to
/// `Authorization`, the identity header kept as sent, a passthrough value
/// replacing a base header) must go with them.
pub(super) struct Nominated<'a> {
    names: SmallVec<[&'a str; 4]>,
    /// A `Connection` value that is not visible ASCII cannot be read, so it
    /// is taken to nominate everything.
    unreadable: bool,
}

impl<'a> Nominated<'a> {
    pub(super) fn of(headers: &'a HeaderMap) -> Self {
        let mut nominated = Nominated {
            names: SmallVec::new(),
            unreadable: false,
        };
        for value in headers.get_all(header::CONNECTION) {
            match value.to_str() {
                Ok(text) => nominated
                    .names
                    .extend(text.split(',').map(str::trim).filter(|t| !t.is_empty())),
                Err(_) => nominated.unreadable = true,
            }
        }
        nominated
    }

    pub(super) fn contains(&self, name: &HeaderName) -> bool {
        self.unreadable
            || self
                .names
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name.as_str()))
    }
}

/// Whether the request's `Connection` header nominates `name`: the same
/// rule as [`Nominated`], without collecting (it runs on every proxy-header
/// authentication).
pub fn connection_nominates(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().map_or(true, |s| {
            s.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nominations_are_comma_separated_case_insensitive_tokens() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "close".parse().unwrap());
        h.append(
            header::CONNECTION,
            " keep-alive ,X-Tenant-Id,, ".parse().unwrap(),
        );
        for (name, nominated) in [("x-tenant-id", true), ("close", true), ("x-tenant", false)] {
            let name = HeaderName::from_static(name);
            assert_eq!(connection_nominates(&h, &name), nominated, "{name}");
        }
        assert!(!Nominated::of(&HeaderMap::new()).contains(&header::UPGRADE));
        h.append(
            header::CONNECTION,
            http::HeaderValue::from_bytes(b"x-\xff").unwrap(),
        );
        assert!(connection_nominates(&h, &header::AUTHORIZATION));
    }
}
