//! The gateway's own endpoints: `/health`, `/ready`, `/metrics`, `/version`.

use crate::responses::LocalResponse;
use crate::routing::LocalEndpoint;
use crate::state::GatewayState;
use http::HeaderMap;
use serde_json::json;
use std::net::IpAddr;

pub fn respond(
    endpoint: LocalEndpoint,
    state: &GatewayState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> LocalResponse {
    match endpoint {
        LocalEndpoint::Health => LocalResponse::json(200, json!({"status": "healthy"})),
        LocalEndpoint::Ready => ready(state),
        LocalEndpoint::Metrics => metrics(state),
        LocalEndpoint::Version => version(state, headers, peer),
    }
}

fn ready(state: &GatewayState) -> LocalResponse {
    if state.lifecycle.is_draining() {
        LocalResponse::json(503, json!({"status": "draining"}))
    } else {
        LocalResponse::json(200, json!({"status": "ready"}))
    }
}

fn metrics(state: &GatewayState) -> LocalResponse {
    state
        .metrics
        .set_backends(state.servers.iter().flat_map(|server| {
            server
                .upstream
                .health()
                .into_iter()
                .map(|(addr, up)| (server.name.clone(), addr.to_string(), up))
        }));
    LocalResponse::text(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        state.metrics.render(),
    )
}

/// Name and version for anyone; for an authenticated caller also the
/// identity the gateway resolved and where it came from, which is what one
/// needs when a proxy deployment answers 401.
fn version(state: &GatewayState, headers: &HeaderMap, peer: Option<IpAddr>) -> LocalResponse {
    let mut body = json!({
        "name": "mcp-gateway",
        "version": env!("CARGO_PKG_VERSION"),
    });
    match state.global_auth.authenticate(headers, peer) {
        Ok(identity) if identity.is_authenticated() => {
            body["identity"] = json!({"user": identity.user, "source": identity.source.as_str()});
            body["config"] = state.public_config.clone();
        }
        Ok(_) => body["identity"] = json!({"user": "anonymous", "source": "anonymous"}),
        Err(e) => body["auth"] = json!({"authenticated": false, "reason": e.message()}),
    }
    LocalResponse::json(200, body)
}
