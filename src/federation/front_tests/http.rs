//! Raw Streamable HTTP: sessions and their owners, scopes, refusals, progress order, disconnects.

use super::*;

#[tokio::test]
async fn a_session_opened_by_alice_is_refused_to_bob_and_to_another_scope() {
    let h = start().await;
    let http = reqwest::Client::new();
    let mcp = format!("http://{}/mcp", h.addr);
    let session = open_session(&http, &mcp, "alice").await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});

    let (status, _, body) = post(&http, &mcp, "bob", Some(&session), list.clone()).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(body[0]["error"]["code"], -32001);
    assert_eq!(body[0]["error"]["message"], "unknown session");

    let team = format!("http://{}/servers/team/mcp", h.addr);
    let (status, _, _) = post(&http, &team, "alice", Some(&session), list.clone()).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);

    let (status, _, body) = post(&http, &mcp, "alice", Some(&session), list).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(body[0]["result"]["tools"].as_array().map(Vec::len), Some(2));
    assert!(h
        .fed
        .callers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_empty());
}

#[tokio::test]
async fn rmcp_refusals_and_closed_sessions_answer_in_json() {
    let h = start().await;
    let http = reqwest::Client::new();
    let mcp = format!("http://{}/mcp", h.addr);
    let refused = http
        .post(&mcp)
        .header("accept", "text/plain")
        .header("content-type", "application/json")
        .json(&initialize(1))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), reqwest::StatusCode::NOT_ACCEPTABLE);
    let body: Value = refused.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], -32600);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("accept"), "{body}");

    let session = open_session(&http, &mcp, "alice").await;
    let deleted = http
        .delete(&mcp)
        .header("mcp-session-id", &session)
        .header("x-test-user", "alice")
        .send()
        .await
        .expect("delete");
    // 200, as the SDKs' servers answer (rmcp's own 202 made the Python
    // client log a failed termination).
    assert_eq!(deleted.status(), reqwest::StatusCode::OK);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, _, body) = post(&http, &mcp, "alice", Some(&session), list).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(body[0]["error"]["code"], -32001);
}

#[tokio::test]
async fn sessions_beyond_the_limit_are_refused_until_one_closes() {
    let fed = Arc::new(FakeFederation::quiet());
    let config = FrontConfig {
        max_sessions: 1,
        ..FrontConfig::default()
    };
    let app = router_with(fed, config).layer(axum::middleware::from_fn(handover));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::new();
    let mcp = format!("http://{addr}/mcp");
    let first = open_session(&http, &mcp, "alice").await;
    let (status, session, body) = post(&http, &mcp, "bob", None, initialize(1)).await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(session, None);
    assert!(body[0]["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("sessions")));

    let deleted = http
        .delete(&mcp)
        .header("mcp-session-id", &first)
        .send()
        .await
        .expect("delete");
    assert!(deleted.status().is_success());
    open_session(&http, &mcp, "bob").await;
}

#[tokio::test]
async fn a_virtual_server_lists_and_calls_only_what_it_includes() {
    let h = start().await;
    let http = reqwest::Client::new();
    let team = format!("http://{}/servers/team/mcp", h.addr);
    let session = open_session(&http, &team, "alice").await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (_, _, body) = post(&http, &team, "alice", Some(&session), list).await;
    let names: Vec<&str> = body[0]["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["beta-fail", "beta-two"]);
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "alpha-echo", "arguments": {}}});
    let (_, _, body) = post(&http, &team, "alice", Some(&session), call).await;
    assert_eq!(
        body.last().map(|m| m["error"]["code"].clone()),
        Some(json!(-32602))
    );
}

#[tokio::test]
async fn progress_arrives_before_the_result_with_the_clients_token() {
    let h = start().await;
    let http = reqwest::Client::new();
    let mcp = format!("http://{}/mcp", h.addr);
    let session = open_session(&http, &mcp, "alice").await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "alpha-progress", "arguments": {}, "_meta": {"progressToken": "tok-1"}}});
    let (_, _, messages) = post(&http, &mcp, "alice", Some(&session), call).await;
    let kinds: Vec<String> = messages
        .iter()
        .map(|m| match m["method"].as_str() {
            Some(method) => format!(
                "{method}:{}:{}",
                m["params"]["progressToken"], m["params"]["progress"]
            ),
            None => format!("answer:{}", m["id"]),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "notifications/progress:\"tok-1\":1.0",
            "notifications/progress:\"tok-1\":2.0",
            "notifications/progress:\"tok-1\":3.0",
            "answer:7",
        ]
    );
}

#[tokio::test]
async fn a_dropped_connection_cancels_its_call() {
    let mut h = start().await;
    let http = reqwest::Client::new();
    let mcp = format!("http://{}/mcp", h.addr);
    let session = open_session(&http, &mcp, "alice").await;
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": "alpha-wait", "arguments": {}}});
    let response = http
        .post(&mcp)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&call)
        .send()
        .await
        .expect("send");
    assert_eq!(h.started.recv().await.as_deref(), Some("alice"));
    drop(response);
    assert_eq!(h.cancelled.recv().await, Some(()));
}

#[tokio::test]
async fn a_request_without_the_handover_is_an_internal_error_not_anonymous() {
    let fed = Arc::new(FakeFederation::quiet());
    let app = router_with(fed, FrontConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::new();
    let (status, session, body) = post(
        &http,
        &format!("http://{addr}/mcp"),
        "alice",
        None,
        initialize(1),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        (session, body[0]["error"]["code"].clone()),
        (None, json!(-32603))
    );
}
