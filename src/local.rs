//! The gateway's own endpoints: `/health`, `/ready`, `/metrics`, `/version`.

use crate::refusal::Refusal;
use crate::responses::LocalResponse;
use crate::routing::LocalEndpoint;
use crate::snapshot::Snapshot;
use crate::state::Runtime;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use subtle::ConstantTimeEq;

pub fn respond(
    endpoint: LocalEndpoint,
    state: &Runtime,
    snapshot: &Snapshot,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<LocalResponse, Refusal> {
    Ok(match endpoint {
        LocalEndpoint::Health => LocalResponse::json(200, json!({"status": "healthy"})),
        LocalEndpoint::Ready => ready(state),
        LocalEndpoint::Metrics => {
            let with_users =
                metrics_access(state.metrics_token.as_ref(), headers.get(AUTHORIZATION))?;
            metrics(state, snapshot, with_users)
        }
        LocalEndpoint::Version => version(state, snapshot, headers, peer),
    })
}

/// `METRICS_TOKEN` as it is kept: its SHA-256, so comparing takes the same
/// time whatever the presented token's length or content.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsToken([u8; 32]);

impl MetricsToken {
    pub fn new(token: &str) -> Self {
        MetricsToken(Sha256::digest(token.as_bytes()).into())
    }

    fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        self.0.ct_eq(&digest).into()
    }
}

/// Whether a `/metrics` scrape sees the per-user series, which would let
/// anyone who reaches the port list every caller. Without `METRICS_TOKEN`
/// nobody does; with it, a scrape bearing it does, a scrape without
/// `Authorization` gets the rest, and a wrong token is refused, so a
/// misconfigured Prometheus shows its target down instead of silently
/// losing series.
pub fn metrics_access(
    token: Option<&MetricsToken>,
    authorization: Option<&HeaderValue>,
) -> Result<bool, Refusal> {
    let (Some(token), Some(value)) = (token, authorization) else {
        return Ok(false);
    };
    let bytes = value.as_bytes();
    let presented = match bytes.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => bytes[7..].trim_ascii(),
        _ => return Err(Refusal::MetricsTokenInvalid),
    };
    if token.matches(presented) {
        Ok(true)
    } else {
        Err(Refusal::MetricsTokenInvalid)
    }
}

fn ready(state: &Runtime) -> LocalResponse {
    if state.lifecycle.is_draining() {
        LocalResponse::json(503, json!({"status": "draining"}))
    } else if !state.routing_loaded() {
        LocalResponse::json(
            503,
            json!({"status": "starting", "reason": "the server registry has not been loaded yet"}),
        )
    } else {
        LocalResponse::json(200, json!({"status": "ready"}))
    }
}

fn metrics(state: &Runtime, snapshot: &Snapshot, with_users: bool) -> LocalResponse {
    state
        .metrics
        .set_backends(snapshot.servers.iter().flat_map(|server| {
            server
                .upstream
                .health()
                .into_iter()
                .map(|(addr, up)| (server.name.clone(), addr.to_string(), up))
        }));
    state.metrics.set_mcp_servers(state.mcp_health.all());
    LocalResponse::text(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        state.metrics.render(with_users),
    )
}

/// Name and version for anyone; for an authenticated caller also the
/// identity the gateway resolved and where it came from, which is what one
/// needs when a proxy deployment answers 401.
fn version(
    state: &Runtime,
    snapshot: &Snapshot,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> LocalResponse {
    let mut body = json!({
        "name": "mcp-gateway",
        "version": env!("CARGO_PKG_VERSION"),
    });
    match state.global_auth.authenticate(headers, peer) {
        Ok(identity) if identity.is_authenticated() => {
            body["identity"] = json!({"user": identity.user, "source": identity.source.as_str()});
            // Which process answered: during a binary upgrade two do.
            body["pid"] = json!(std::process::id());
            body["config"] = state.public_config.clone();
            // The server set changes with reloads; the rest is fixed.
            body["config"]["servers"] = json!(snapshot.servers.len());
        }
        Ok(_) => body["identity"] = json!({"user": "anonymous", "source": "anonymous"}),
        Err(e) => body["auth"] = json!({"authenticated": false, "reason": e.message()}),
    }
    LocalResponse::json(200, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(v: &'static str) -> HeaderValue {
        HeaderValue::from_static(v)
    }

    #[test]
    fn per_user_series_need_the_metrics_token() {
        let token = MetricsToken::new("scrape-token-0123456789");
        let t = Some(&token);
        assert_eq!(metrics_access(t, None), Ok(false));
        let right = auth("Bearer scrape-token-0123456789");
        assert_eq!(metrics_access(t, Some(&right)), Ok(true));
        let lower = auth("bearer scrape-token-0123456789");
        assert_eq!(metrics_access(t, Some(&lower)), Ok(true));
        for wrong in [
            "Bearer scrape-token-012345678",
            "Bearer scrape-token-0123456789x",
            "Basic c2NyYXBlOnRva2Vu",
            "Bearer",
            "",
        ] {
            assert_eq!(
                metrics_access(t, Some(&auth(wrong))),
                Err(Refusal::MetricsTokenInvalid),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn ready_waits_for_the_first_routing_load() {
        let settings = crate::config::Settings::load(
            &crate::config::Source::from_pairs([("MCP_CLIENT_AUTH_ENABLED", "false")]),
            None,
        )
        .unwrap();
        let (health, log) = crate::upstream::health_registry();
        let runtime = Runtime::build(&settings, health, log, Box::leak(Box::default())).unwrap();
        assert_eq!(ready(&runtime).status, 200);
        runtime.set_routing_loaded(false);
        let response = ready(&runtime);
        assert_eq!(response.status, 503);
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["status"], "starting");
        assert!(body["reason"].as_str().unwrap().contains("registry"));
        runtime.set_routing_loaded(true);
        assert_eq!(ready(&runtime).status, 200);
    }

    #[test]
    fn without_a_token_nobody_sees_users() {
        assert_eq!(metrics_access(None, None), Ok(false));
        let any = auth("Bearer anything");
        assert_eq!(metrics_access(None, Some(&any)), Ok(false));
    }
}
