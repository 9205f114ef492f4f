//! `/ws` with a WebSocket client.

use super::*;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_send(ws: &mut Ws, value: &Value) {
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        value.to_string().into(),
    ))
    .await
    .expect("send frame");
}

/// The next text frame, as JSON.
async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await.expect("a frame").expect("frame ok") {
            tokio_tungstenite::tungstenite::Message::Text(t) => {
                return serde_json::from_str(t.as_str()).expect("frame is JSON")
            }
            tokio_tungstenite::tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn ws_serves_the_same_json_rpc_and_survives_a_malformed_frame() {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let h = start().await;
    let mut request = format!("ws://{}/ws", h.addr)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("x-test-user", ::http::HeaderValue::from_static("carol"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");

    ws_send(&mut ws, &initialize(1)).await;
    let init = ws_next(&mut ws).await;
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["serverInfo"]["name"], "mcp-gateway");
    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;

    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    let list = ws_next(&mut ws).await;
    assert_eq!(list["id"], 2);
    assert_eq!(list["result"]["tools"].as_array().map(Vec::len), Some(2));
    assert_eq!(list["result"]["nextCursor"], "2");

    ws.send(Message::Text("{not json".into()))
        .await
        .expect("send");
    let parse_error = ws_next(&mut ws).await;
    assert_eq!(parse_error["error"]["code"], -32700);
    assert_eq!(parse_error["id"], Value::Null);

    // Still alive: a call with progress, progress first.
    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "alpha-progress", "arguments": {}, "_meta": {"progressToken": 5}}}),
    )
    .await;
    for expected in 1..=3 {
        let progress = ws_next(&mut ws).await;
        assert_eq!(progress["method"], "notifications/progress");
        assert_eq!(progress["params"]["progressToken"], 5);
        assert_eq!(progress["params"]["progress"], f64::from(expected));
    }
    let answer = ws_next(&mut ws).await;
    assert_eq!(answer["id"], 3);
    assert_eq!(answer["result"]["content"][0]["text"], "done");
    assert_eq!(
        h.fed
            .callers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_slice(),
        ["carol"]
    );

    // list_changed on the socket too.
    h.fed.changes.send_modify(|n| *n += 1);
    assert_eq!(
        ws_next(&mut ws).await["method"],
        "notifications/tools/list_changed"
    );

    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send");
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1003);
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn ws_cancels_a_call_when_the_socket_goes_away() {
    let mut h = start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", h.addr))
        .await
        .expect("upgrade");
    ws_send(&mut ws, &initialize(1)).await;
    ws_next(&mut ws).await;
    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "alpha-wait", "arguments": {}}}),
    )
    .await;
    assert_eq!(h.started.recv().await.as_deref(), Some("alice"));
    drop(ws);
    assert_eq!(h.cancelled.recv().await, Some(()));
}

#[tokio::test]
async fn ws_relays_a_server_request_and_routes_the_clients_answer_back() {
    let h = start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", h.addr))
        .await
        .expect("upgrade");
    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {"sampling": {}},
        "clientInfo": {"name": "test", "version": "1"}}}),
    )
    .await;
    ws_next(&mut ws).await;
    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "alpha-sample", "arguments": {}}}),
    )
    .await;
    let asked = ws_next(&mut ws).await;
    assert_eq!(asked["method"], "sampling/createMessage", "{asked}");
    ws_send(
        &mut ws,
        &json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "model": "m", "role": "assistant",
        "content": {"type": "text", "text": "answer over ws"}}}),
    )
    .await;
    let answer = ws_next(&mut ws).await;
    assert_eq!(answer["id"], 2, "{answer}");
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("answer over ws"), "{answer}");
}
