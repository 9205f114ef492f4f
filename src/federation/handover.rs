//! The hand-over from the data plane to the federation service: headers
//! only the data plane sets (a client's own copies are removed before the
//! request is forwarded), checked by the service with a per-process secret
//! compared in constant time, as defence in depth behind the socket's
//! file permissions.

use crate::identity::{Identity, IdentitySource};
use http::{HeaderMap, HeaderName};
use std::net::IpAddr;

/// Every hand-over header starts with this; the data plane removes any
/// header with this prefix that a client sent.
pub const PREFIX: &str = "x-mcp-gateway-";

/// The per-process secret (hex); proves the request came through the data plane.
pub const SECRET: HeaderName = HeaderName::from_static("x-mcp-gateway-handover");
/// The authenticated user (percent-encoded UTF-8).
pub const USER: HeaderName = HeaderName::from_static("x-mcp-gateway-user");
/// `jwt`, `proxy_header` or `anonymous` ([`IdentitySource::as_str`]).
pub const SOURCE: HeaderName = HeaderName::from_static("x-mcp-gateway-source");
/// The client's address as the data plane saw it.
pub const PEER: HeaderName = HeaderName::from_static("x-mcp-gateway-peer");
/// The verified client certificate's names (comma-separated), on mTLS.
pub const CERT_NAMES: HeaderName = HeaderName::from_static("x-mcp-gateway-cert-names");
/// The virtual server a `/servers/{name}/mcp` request is for.
pub const SCOPE: HeaderName = HeaderName::from_static("x-mcp-gateway-scope");

/// Who is calling, as the data plane resolved it, plus the client's own
/// headers (hand-over headers removed): the header policy of each owning
/// server is applied to these, exactly as on its proxied route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    pub peer: Option<IpAddr>,
    pub cert_names: Option<Vec<String>>,
    pub headers: HeaderMap,
}

impl Caller {
    pub fn source(&self) -> IdentitySource {
        self.identity.source
    }
}
