//! `/ws`: the `/mcp` server's JSON-RPC over a WebSocket. Each text frame
//! carries one JSON-RPC message (or a batch); answers and notifications
//! come back one per text frame. The connection is the session: it belongs
//! to the caller the data plane authenticated at the upgrade, and ends with
//! it. The same rmcp handler as `/mcp` serves it, over a transport made of
//! two channels; this module only turns frames into messages and back.

use super::mcp::HandlerFactory;
use super::{Caller, Scope};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::StatusCode;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::RoleServer;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Largest frame accepted, as rmcp's limit on a POST body.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// RFC 6455 §7.4.1: the endpoint received data of a type it cannot accept.
pub const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
/// Messages read ahead of the handler; the socket is not read beyond them.
const INBOUND_QUEUE: usize = 32;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;

pub(crate) async fn upgrade(
    State(factory): State<HandlerFactory>,
    caller: Option<Extension<Caller>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Some(Extension(caller)) = caller else {
        log::error!("federation: /ws request without the hand-over's Caller (a routing bug)");
        let body = json!({"error": "internal error", "status": 500});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            let body = json!({"error": format!("expected a WebSocket upgrade: {rejection}"), "status": 400});
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    // A client that asks for the `mcp` subprotocol gets it named back (some
    // WebSocket libraries close the connection otherwise); none is required.
    ws.max_message_size(MAX_FRAME)
        .protocols(["mcp"])
        .on_upgrade(move |socket| serve(socket, factory, caller))
}

/// What one text frame holds: the messages for the handler, and the
/// errors to answer at once for the parts that are not JSON-RPC.
#[derive(Debug, Default)]
pub struct Decoded {
    pub messages: Vec<ClientJsonRpcMessage>,
    pub errors: Vec<Value>,
}

fn error_frame(id: Value, code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn decode_one(value: Value, into: &mut Decoded) {
    // The id of a broken request, when it has a usable one, so the client
    // can match the error to what it sent.
    let id = match value.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    };
    match serde_json::from_value::<ClientJsonRpcMessage>(value) {
        Ok(message) => into.messages.push(message),
        Err(e) => into.errors.push(error_frame(
            id,
            INVALID_REQUEST,
            format!("invalid JSON-RPC message: {e}"),
        )),
    }
}

/// A text frame's JSON-RPC content. A batch is taken apart: each member
/// is answered in its own frame (MCP dropped batches in 2025-06-18; this
/// keeps clients of the older revisions working without rmcp support).
pub fn decode(text: &str) -> Decoded {
    let mut decoded = Decoded::default();
    match serde_json::from_str::<Value>(text) {
        Err(e) => decoded.errors.push(error_frame(
            Value::Null,
            PARSE_ERROR,
            format!("parse error: {e}"),
        )),
        Ok(Value::Array(batch)) if batch.is_empty() => decoded.errors.push(error_frame(
            Value::Null,
            INVALID_REQUEST,
            "invalid request: empty batch".into(),
        )),
        Ok(Value::Array(batch)) => batch.into_iter().for_each(|v| decode_one(v, &mut decoded)),
        Ok(value) => decode_one(value, &mut decoded),
    }
    decoded
}

/// rmcp's side of the connection. Outbound is unbounded so rmcp never
/// waits on the socket while the socket loop waits on rmcp (that would
/// deadlock once both queues fill); inbound is bounded, so a flooding
/// client is simply not read.
struct ChannelTransport {
    outbound: mpsc::UnboundedSender<ServerJsonRpcMessage>,
    inbound: mpsc::Receiver<ClientJsonRpcMessage>,
}

impl Transport<RoleServer> for ChannelTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        let sent = self
            .outbound
            .send(item)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "WebSocket closed"));
        std::future::ready(sent)
    }

    fn receive(
        &mut self,
    ) -> impl std::future::Future<Output = Option<ClientJsonRpcMessage>> + Send {
        self.inbound.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inbound.close();
        Ok(())
    }
}

async fn serve(mut socket: WebSocket, factory: HandlerFactory, caller: Caller) {
    let principal = caller.identity.principal().to_owned();
    let closed = CancellationToken::new();
    // Whatever ends this function ends the session's calls too.
    let _close_on_exit = closed.clone().drop_guard();
    let (to_handler, inbound) = mpsc::channel(INBOUND_QUEUE);
    let (outbound, mut from_handler) = mpsc::unbounded_channel();
    let handler = factory.connection(caller, Scope::Everything, closed.clone());
    tokio::spawn(async move {
        match rmcp::serve_server(handler, ChannelTransport { outbound, inbound }).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(e) => log::info!("federation: /ws session not initialised: {e}"),
        }
    });

    loop {
        tokio::select! {
            frame = socket.recv() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let decoded = decode(text.as_str());
                    for error in decoded.errors {
                        if socket.send(Message::Text(error.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                    for message in decoded.messages {
                        if to_handler.send(message).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    log::info!("federation: /ws of {principal:?} closed: binary frame");
                    let close = CloseFrame {
                        code: CLOSE_UNSUPPORTED_DATA,
                        reason: "binary frames are not supported: send JSON-RPC as text".into(),
                    };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    return;
                }
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            },
            out = from_handler.recv() => match out {
                Some(message) => {
                    let text = match serde_json::to_string(&message) {
                        Ok(text) => text,
                        Err(e) => {
                            log::error!("federation: /ws cannot serialise a message: {e}");
                            continue;
                        }
                    };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // The session ended (never initialised, or shut down).
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_is_a_parse_error_with_a_null_id() {
        let d = decode("{not json");
        assert!(d.messages.is_empty());
        assert_eq!(d.errors.len(), 1);
        assert_eq!(d.errors[0]["error"]["code"], PARSE_ERROR);
        assert_eq!(d.errors[0]["id"], Value::Null);
    }

    #[test]
    fn a_request_is_one_message() {
        let d = decode(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert_eq!((d.messages.len(), d.errors.len()), (1, 0));
    }

    #[test]
    fn a_batch_is_taken_apart_and_its_broken_members_answered_by_id() {
        let d = decode(
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},
                {"jsonrpc":"2.0","id":"x","nonsense":true},
                {"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
        );
        assert_eq!(d.messages.len(), 2);
        assert_eq!(d.errors.len(), 1);
        assert_eq!(d.errors[0]["id"], "x");
        assert_eq!(d.errors[0]["error"]["code"], INVALID_REQUEST);
    }

    #[test]
    fn an_empty_batch_is_an_invalid_request() {
        let d = decode("[]");
        assert_eq!(d.errors[0]["error"]["code"], INVALID_REQUEST);
    }
}
