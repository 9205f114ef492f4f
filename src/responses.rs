//! Responses the gateway writes itself: errors (a JSON-RPC error body on MCP
//! routes, plain JSON elsewhere) and the local endpoints.

use bytes::Bytes;
use serde_json::json;

/// A complete response, built by a pure function and written by the adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
    pub extra_headers: Vec<(&'static str, String)>,
}

impl LocalResponse {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        LocalResponse {
            status,
            content_type: "application/json",
            body: Bytes::from(body.to_string()),
            extra_headers: Vec::new(),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Self {
        LocalResponse {
            status,
            content_type,
            body: Bytes::from(body),
            extra_headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra_headers.push((name, value.into()));
        self
    }
}

/// Where an error happened decides its body's shape: MCP clients parse
/// JSON-RPC, everything else gets `{"error": ..., "status": ...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    JsonRpc,
    Plain,
}

/// JSON-RPC error code for an HTTP status (implementation-defined range).
fn rpc_code(status: u16) -> i64 {
    match status {
        400 | 405 => -32600,
        401 | 403 => -32001,
        404 => -32002,
        503 => -32003,
        _ => -32000,
    }
}

pub fn error(shape: ErrorShape, status: u16, message: &str) -> LocalResponse {
    let body = match shape {
        ErrorShape::JsonRpc => json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": rpc_code(status), "message": message},
        }),
        ErrorShape::Plain => json!({"error": message, "status": status}),
    };
    LocalResponse::json(status, body)
}

/// A 401 with the challenge RFC 6750 asks for.
pub fn unauthorized(shape: ErrorShape, message: &str, invalid_token: bool) -> LocalResponse {
    let challenge = if invalid_token {
        "Bearer realm=\"mcp-gateway\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"mcp-gateway\""
    };
    error(shape, 401, message).with_header("www-authenticate", challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rpc_errors_have_null_id() {
        let r = error(ErrorShape::JsonRpc, 503, "no healthy backend");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert!(v["id"].is_null());
        assert_eq!(v["error"]["code"], -32003);
    }

    #[test]
    fn unauthorized_carries_the_challenge() {
        let r = unauthorized(ErrorShape::Plain, "authentication required", false);
        assert_eq!(r.status, 401);
        assert!(r
            .extra_headers
            .iter()
            .any(|(n, v)| *n == "www-authenticate" && v.starts_with("Bearer")));
    }
}
