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

/// Headers on every response the gateway writes itself. `nosniff` keeps
/// a browser from reading an error body (which may echo request data) as
/// HTML or script.
pub const SECURITY_HEADERS: [(&str, &str); 1] = [("x-content-type-options", "nosniff")];

/// Where an error happened decides its body's shape: MCP clients parse
/// JSON-RPC, everything else gets `{"error": ..., "status": ...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    JsonRpc,
    Plain,
}

/// An error body; the status, code and message come from a
/// [`Refusal`](crate::refusal::Refusal), which is how callers build one.
pub fn error(shape: ErrorShape, status: u16, code: i64, message: &str) -> LocalResponse {
    let body = match shape {
        ErrorShape::JsonRpc => json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": code, "message": message},
        }),
        ErrorShape::Plain => json!({"error": message, "status": status}),
    };
    LocalResponse::json(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rpc_errors_have_null_id() {
        let r = error(ErrorShape::JsonRpc, 503, -32003, "no healthy backend");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert!(v["id"].is_null());
        assert_eq!(v["error"]["code"], -32003);
        let v: serde_json::Value =
            serde_json::from_slice(&error(ErrorShape::Plain, 404, -1, "x").body).unwrap();
        assert_eq!(v, serde_json::json!({"error": "x", "status": 404}));
    }
}
