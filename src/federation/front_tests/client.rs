//! rmcp's own client against /mcp.

use super::*;

#[tokio::test]
async fn an_rmcp_client_initialises_lists_calls_cancels_and_hears_list_changed() {
    let mut h = start().await;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let transport = StreamableHttpClientTransport::from_uri(format!("http://{}/mcp", h.addr));
    let client = Recorder(events_tx)
        .serve(transport)
        .await
        .expect("initialize");

    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("mcp-gateway")
    );
    assert_eq!(
        info.capabilities
            .tools
            .as_ref()
            .and_then(|t| t.list_changed),
        Some(true)
    );
    assert!(info.capabilities.prompts.is_some() && info.capabilities.resources.is_some());

    // Five tools, two per page: three pages, every tool once, in order.
    let mut names = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = client
            .list_tools(Some(PaginatedRequestParams::default().with_cursor(cursor)))
            .await
            .expect("tools/list");
        pages += 1;
        names.extend(page.tools.iter().map(|t| t.name.to_string()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, TOOLS);
    let prompts = client.list_prompts(None).await.expect("prompts/list");
    assert_eq!(prompts.prompts[0].name, "alpha-greet");
    client.list_resources(None).await.expect("resources/list");
    client
        .send_request(ClientRequest::PingRequest(Default::default()))
        .await
        .expect("ping");

    let args: JsonObject = serde_json::from_value(json!({"text": "hi"})).expect("object");
    let echoed = client
        .call_tool(CallToolRequestParams::new("alpha-echo").with_arguments(args))
        .await
        .expect("tools/call");
    assert_ne!(echoed.is_error, Some(true));
    assert!(format!("{:?}", echoed.content).contains("hi"));

    let failed = client
        .call_tool(CallToolRequestParams::new("beta-fail"))
        .await
        .expect("a tool's own error is a result");
    assert_eq!(failed.is_error, Some(true));

    let unknown = client
        .call_tool(CallToolRequestParams::new("nope"))
        .await
        .unwrap_err();
    let unknown = format!("{unknown:?}");
    assert!(
        unknown.contains("-32602") && unknown.contains("nope"),
        "{unknown}"
    );

    // Progress reaches the client (every rmcp request carries a token).
    client
        .call_tool(CallToolRequestParams::new("alpha-progress"))
        .await
        .expect("progress tool");
    for expected in 1..=3 {
        assert_eq!(
            events.recv().await,
            Some(Event::Progress(f64::from(expected)))
        );
    }

    // Cancellation: the fake sees the client's notifications/cancelled.
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(rmcp::model::Request::new(CallToolRequestParams::new(
                "alpha-wait",
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("send");
    assert_eq!(h.started.recv().await.as_deref(), Some("alice"));
    handle
        .cancel(Some("changed my mind".into()))
        .await
        .expect("cancel");
    assert_eq!(h.cancelled.recv().await, Some(()));

    // The catalog changes: the client hears list_changed.
    h.fed.changes.send_modify(|n| *n += 1);
    assert_eq!(events.recv().await, Some(Event::ListChanged));

    client.cancel().await.expect("close");
}
