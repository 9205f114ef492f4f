//! Federation calls served in the data plane (`federation::direct`): an
//! invoke, or a plain `tools/call` on a front session rmcp has handed over.
//! Anything else, found before or after the body is read, goes on to the
//! federation service as before: the body read here stays in Pingora's
//! retry buffer, which the proxy path sends first.

use super::federation::Target;
use super::post_relay::{content_length, MAX_BODY};
use super::reply::write_local;
use super::{peer_ip, Gateway, RequestCtx};
use crate::federation::direct::{self, Direct};
use crate::federation::{Caller, Scope};
use crate::identity::Identity;
use crate::responses::LocalResponse;
use crate::routing::FederationPath;
use bytes::{Bytes, BytesMut};
use http::header::{EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::Method;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::future::Future;

const SESSION_HEADER: &str = "mcp-session-id";

/// Which call a request is, decided from its head.
enum Call {
    Invoke { name: String },
    OnSession { session: String },
}

impl Gateway {
    /// Serves the request when it is such a call: `Ok(true)` when answered
    /// (or the client left meanwhile).
    pub(super) async fn direct_call(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let direct = match self.federation.as_ref().and_then(|f| f.direct.as_ref()) {
            Some(direct) => direct.clone(),
            None => return Ok(false),
        };
        let Some(fed) = ctx.federation.as_ref() else {
            return Ok(false);
        };
        let Some((call, scope)) = call_of(session, &fed.target) else {
            return Ok(false);
        };
        let caller = caller_of(session, ctx, &fed.identity);
        if let Call::OnSession { session: id } = &call {
            if !direct.sessions.admits(id, &caller, &scope) {
                return Ok(false);
            }
        }
        // Kept for the proxy path if the body turns out not to be a call.
        session.as_mut().enable_retry_buffering();
        let body = read_body(session).await?;
        let answer = match &call {
            Call::Invoke { name } => {
                let invoke = direct::invoke(&direct.fed, &caller, &scope, name, &body);
                until_client_leaves(session, invoke).await
            }
            Call::OnSession { session: id } => {
                let Some(tools_call) = direct::tools_call(&body) else {
                    return Ok(false);
                };
                let mcp_name = session.req_header().headers.get("mcp-name").cloned();
                let served = session_call(&direct, id, &caller, &scope, mcp_name, tools_call);
                until_client_leaves(session, served).await
            }
        };
        let Some(mut response) = answer else {
            // The call was dropped with its future, which cancelled it.
            ctx.client_left = true;
            session.set_keepalive(None);
            return Ok(true);
        };
        response
            .extra_headers
            .extend(ctx.snapshot.cors.response_headers(ctx.origin.as_deref()));
        if let Some(id) = &ctx.request_id {
            response = response.with_header("x-request-id", id.as_str());
        }
        write_local(session, response).await?;
        Ok(true)
    }
}

/// A `tools/call` on a front session, answered as JSON (a Streamable HTTP
/// client takes either JSON or an event stream for a POST).
async fn session_call(
    direct: &Direct,
    session: &str,
    caller: &Caller,
    scope: &Scope,
    mcp_name: Option<http::HeaderValue>,
    call: direct::ToolsCall,
) -> LocalResponse {
    let body = direct::session_call(direct, session, caller, scope, mcp_name.as_ref(), call).await;
    LocalResponse {
        status: 200,
        content_type: "application/json",
        body,
        extra_headers: Vec::new(),
    }
}

/// The call a request's head names, with its scope; `None`: not one the
/// data plane serves.
fn call_of(session: &Session, target: &Target) -> Option<(Call, Scope)> {
    let req = session.req_header();
    let sized = content_length(&req.headers).is_some_and(|n| n <= MAX_BODY);
    if req.method != Method::POST
        || !sized
        || req.headers.contains_key(TRANSFER_ENCODING)
        || req.headers.contains_key(UPGRADE)
        || req.headers.contains_key(EXPECT)
    {
        return None;
    }
    let on_session = || {
        if !rmcp_would_take(&req.headers) {
            return None;
        }
        let mut ids = req.headers.get_all(SESSION_HEADER).iter();
        let id = ids.next()?.to_str().ok()?;
        ids.next().is_none().then(|| Call::OnSession {
            session: id.to_owned(),
        })
    };
    match target {
        Target::Path(FederationPath::Invoke) => {
            let name = direct::invoke_name(req.uri.path())?.to_owned();
            Some((Call::Invoke { name }, Scope::Everything))
        }
        Target::Path(FederationPath::Mcp) => Some((on_session()?, Scope::Everything)),
        Target::Virtual(v) => Some((on_session()?, Scope::Virtual(v.scope.clone()))),
        Target::Path(_) => None,
    }
}

/// The protocol revisions whose requests this path serves; a request
/// naming another goes to rmcp, which answers it as it does.
const KNOWN_REVISIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// Whether rmcp would take the request's head as a `tools/call` (its
/// transport checks: content type, `Accept`, protocol revision, the
/// standard `Mcp-*` request headers); anything else goes to rmcp, which
/// refuses it with its own status and words.
fn rmcp_would_take(headers: &http::HeaderMap) -> bool {
    // `Some(None)`: absent; `None`: repeated or not text.
    let one = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Some(None),
            (Some(v), None) => v.to_str().ok().map(Some),
            _ => None,
        }
    };
    let json =
        matches!(one("content-type"), Some(Some(t)) if starts_with_ci(t, "application/json"));
    let accept = matches!(one("accept"), Some(Some(a))
        if contains_ci(a, "application/json") && contains_ci(a, "text/event-stream"));
    let revision = match one("mcp-protocol-version") {
        Some(None) => true,
        Some(Some(v)) => KNOWN_REVISIONS.contains(&v),
        None => false,
    };
    let method = matches!(one("mcp-method"), Some(None) | Some(Some("tools/call")));
    let one_name = one("mcp-name").is_some();
    let no_params = !headers.keys().any(|n| n.as_str().starts_with("mcp-param-"));
    json && accept && revision && method && one_name && no_params
}

fn starts_with_ci(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn contains_ci(text: &str, needle: &str) -> bool {
    text.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The caller as the hand-over would describe it to the service.
fn caller_of(session: &Session, ctx: &RequestCtx, identity: &Identity) -> Caller {
    let mut headers = session.req_header().headers.clone();
    for name in super::federation::forged(&headers) {
        headers.remove(name);
    }
    if let Some(id) = &ctx.request_id {
        if let Ok(value) = http::HeaderValue::from_str(id.as_str()) {
            headers.insert("x-request-id", value);
        }
    }
    Caller {
        identity: identity.clone(),
        peer: peer_ip(session),
        cert_names: crate::tls::client_cert_names(session.digest()).map(<[String]>::to_vec),
        headers,
    }
}

/// The whole body of a request whose `Content-Length` is at most
/// [`MAX_BODY`].
async fn read_body(session: &mut Session) -> Result<Bytes> {
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > MAX_BODY as usize {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "body longer than announced");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `work`'s output, or `None` when the client closes the connection first
/// (`work` is then dropped).
async fn until_client_leaves<F: Future>(session: &mut Session, work: F) -> Option<F::Output> {
    tokio::select! {
        out = work => Some(out),
        _ = session.as_mut().read_body_or_idle(true) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, http::HeaderValue::from_static(v));
        }
        h
    }

    const PLAIN: [(&str, &str); 2] = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];

    #[test]
    fn only_what_rmcp_would_take_is_served_here() {
        assert!(rmcp_would_take(&headers(&PLAIN)));
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = PLAIN.to_vec();
            all.extend_from_slice(extra);
            rmcp_would_take(&headers(&all))
        };
        assert!(with(&[("mcp-protocol-version", "2025-06-18")]));
        assert!(rmcp_would_take(&headers(&[
            ("content-type", "Application/JSON; charset=utf-8"),
            ("accept", "TEXT/EVENT-STREAM, application/json"),
        ])));
        assert!(with(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "demo-echo")
        ]));
        assert!(!with(&[("mcp-protocol-version", "1999-01-01")]));
        assert!(!with(&[("mcp-method", "tools/list")]));
        assert!(!with(&[("mcp-name", "a"), ("mcp-name", "b")]));
        assert!(!with(&[("mcp-param-region", "eu")]));
        assert!(!rmcp_would_take(&headers(&[(
            "accept",
            "application/json"
        )])));
        assert!(!rmcp_would_take(&headers(&[
            ("content-type", "text/plain"),
            ("accept", "application/json, text/event-stream"),
        ])));
    }
}
