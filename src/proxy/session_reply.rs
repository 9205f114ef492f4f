//! What the client gets instead of the upstream's session ids: a sealed
//! token in `Mcp-Session-Id`, and the legacy SSE transport's `endpoint`
//! event pointing at the gateway.

use super::{now_secs, Gateway, RouteCtx};
use crate::headers::MCP_SESSION_ID;
use crate::legacy_sse;
use crate::routing::Endpoint;
use crate::session::{self, PinnedSession, Reply, SessionKind};
use crate::state::{Runtime, ServerRuntime};
use crate::upstream::SelectedBackend;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// The replacement `endpoint` event for the legacy SSE transport, or why
/// there can be none: the upstream's message URL, sealed with the stream's
/// backend and principal. Pingora's body filter and the lean relay call it.
pub(super) fn endpoint_event(
    runtime: &Runtime,
    server: &ServerRuntime,
    selected: Option<&SelectedBackend>,
    principal: &str,
    upstream: &str,
) -> std::result::Result<Bytes, String> {
    let found = selected.and_then(|c| Some((c.replica, server.upstream.replica(c.replica)?)));
    let Some((replica_id, replica)) = found else {
        return Err("its backend left the configuration".into());
    };
    let Some(path) =
        legacy_sse::upstream_message_path(upstream, &legacy_sse::sse_path_for(&replica.url.path))
    else {
        return Err(format!("unparsable endpoint ({} bytes)", upstream.len()));
    };
    let token = runtime
        .sessions
        .seal(
            SessionKind::LegacySse,
            &server.name,
            principal,
            &PinnedSession {
                replica: replica_id,
                upstream_id: path,
            },
            now_secs() + runtime.session_ttl.as_secs(),
        )
        .map_err(|e| e.to_string())?;
    Ok(Bytes::from(format!(
        "event: endpoint\ndata: /servers/{}/message?sessionId={token}\n\n",
        server.name
    )))
}

impl Gateway {
    /// The client never sees the upstream's session id: a new one is sealed
    /// into a token once, and an id the client's token already names gets
    /// that token back, byte for byte (no crypto on the common path).
    pub(super) fn reply_session_id(
        &self,
        session: &Session,
        route: &RouteCtx,
        upstream_response: &mut ResponseHeader,
    ) -> Result<()> {
        let carried = route
            .pinned
            .as_ref()
            .filter(|_| route.endpoint == Endpoint::Mcp);
        let issue = match upstream_response.headers.get(&MCP_SESSION_ID) {
            None => return Ok(()),
            Some(v) => match v.to_str() {
                Ok(id) if session::reply_for(carried, id) == Reply::Keep => None,
                Ok(id) => Some(Ok(id.to_string())),
                Err(_) => Some(Err(())),
            },
        };
        let server = &route.server;
        let token = match (issue, route.selected.as_ref()) {
            (None, _) => session.req_header().headers.get(&MCP_SESSION_ID).cloned(),
            (Some(Ok(upstream_id)), Some(selected)) => {
                let pinned = PinnedSession {
                    replica: selected.replica,
                    upstream_id,
                };
                let expires = now_secs() + self.runtime.session_ttl.as_secs();
                let sealed = self.runtime.sessions.seal(
                    SessionKind::Streamable,
                    &server.name,
                    route.identity.principal(),
                    &pinned,
                    expires,
                );
                match sealed {
                    Ok(token) => http::HeaderValue::from_str(&token).ok(),
                    Err(e) => {
                        log::error!("server {}: session id not issued: {e}", server.name);
                        None
                    }
                }
            }
            (Some(_), _) => {
                log::error!("server {}: unusable upstream session id", server.name);
                None
            }
        };
        match token {
            Some(token) => {
                upstream_response.insert_header(MCP_SESSION_ID.clone(), token)?;
            }
            // An id the client could not use must not reach it either.
            None => {
                upstream_response.remove_header(&MCP_SESSION_ID);
            }
        }
        Ok(())
    }
}
