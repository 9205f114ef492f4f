//! Server→client requests through the federation, end to end: the real
//! gateway in front of server-everything, rmcp clients on `/mcp`. A tool's
//! sampling, elicitation or roots request reaches the client that called
//! it, and only it; a client that declared none of them lends no such
//! capability to the upstream session its calls use.

// MCP 2026-07-28 (SEP-2577) deprecates sampling and roots in rmcp's model;
// the revisions clients and servers speak today have them, and the gateway
// relays what they speak.
#![allow(deprecated)]

use crate::harness::*;
use http::{HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    ElicitationCapability, ErrorData, ListRootsResult, ProtocolVersion, RootsCapabilities,
    SamplingCapability,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Answers every server request with its own name in it, and counts them.
#[derive(Clone)]
struct Named {
    name: &'static str,
    capabilities: ClientCapabilities,
    asked: Arc<AtomicUsize>,
}

impl Named {
    fn new(name: &'static str, sampling: bool, elicitation: bool, roots: bool) -> Self {
        let mut capabilities = ClientCapabilities::default();
        capabilities.sampling = sampling.then(SamplingCapability::default);
        capabilities.elicitation = elicitation.then(ElicitationCapability::default);
        capabilities.roots = roots.then(RootsCapabilities::default);
        Named {
            name,
            capabilities,
            asked: Arc::default(),
        }
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ErrorData> {
    serde_json::from_value(v).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

impl ClientHandler for Named {
    async fn create_message(
        &self,
        _params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        from_json(json!({"model": "test", "role": "assistant",
            "content": {"type": "text", "text": format!("sampled by {}", self.name)}}))
    }

    async fn create_elicitation(
        &self,
        _params: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        from_json(json!({"action": "accept", "content": {"name": self.name, "check": true}}))
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        from_json(
            json!({"roots": [{"uri": format!("file:///work/{}", self.name), "name": self.name}]}),
        )
    }

    fn get_info(&self) -> ClientConfig {
        let mut config = ClientConfig::default();
        // The last revision with server→client requests (2026-07-28 has none).
        config.protocol_version = ProtocolVersion::V_2025_11_25;
        config.capabilities = self.capabilities.clone();
        config
    }
}

async fn connect(
    gw: &Gateway,
    user: &'static str,
    handler: Named,
) -> RunningService<RoleClient, Named> {
    let headers = HashMap::from([(
        HeaderName::from_static("x-authenticated-user"),
        HeaderValue::from_static(user),
    )]);
    let config = StreamableHttpClientTransportConfig::with_uri(format!("http://{}/mcp", gw.addr))
        .custom_headers(headers);
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    handler
        .serve(transport)
        .await
        .expect("initialize through the gateway")
}

fn call(name: &str, args: Value) -> CallToolRequestParams {
    let args = args.as_object().cloned().unwrap_or_default();
    CallToolRequestParams::new(name.to_owned()).with_arguments(args)
}

fn text(result: &CallToolResult) -> String {
    serde_json::to_value(&result.content)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// The gateway once its catalog lists server-everything's tools for clients
/// that can sample (gathered in the background after start).
fn gateway(everything: &Everything) -> Gateway {
    let gw = Gateway::start(
        &PROXY_ENV,
        &servers_yaml(&[("everything", &[everything.url()])]),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = gw.request("GET", "/tools", &ALICE, "");
        if r.status == 200 && r.body.contains(SAMPLE) {
            return gw;
        }
        assert!(
            Instant::now() < deadline,
            "the catalog never listed {SAMPLE}: {r:?}\n{}",
            gw.proc.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SAMPLE: &str = "everything-trigger-sampling-request";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_of_one_principal_each_sample_their_own_client() {
    let everything = Everything::start();
    let gw = gateway(&everything);
    let (a, b) = (
        Named::new("a", true, false, false),
        Named::new("b", true, false, false),
    );
    let client_a = connect(&gw, "alice", a.clone()).await;
    let client_b = connect(&gw, "alice", b.clone()).await;
    let args = json!({"prompt": "hello", "maxTokens": 10});
    let (ra, rb) = tokio::join!(
        client_a.call_tool(call(SAMPLE, args.clone())),
        client_b.call_tool(call(SAMPLE, args)),
    );
    let (ra, rb) = (ra.expect("a's call"), rb.expect("b's call"));
    assert!(
        text(&ra).contains("sampled by a") && !text(&ra).contains("sampled by b"),
        "{ra:?}"
    );
    assert!(
        text(&rb).contains("sampled by b") && !text(&rb).contains("sampled by a"),
        "{rb:?}"
    );
    assert_eq!((a.asked(), b.asked()), (1, 1));
    client_a.cancel().await.expect("close a");
    client_b.cancel().await.expect("close b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_sampling_lends_none_to_the_upstream() {
    let everything = Everything::start();
    let gw = gateway(&everything);
    let plain = Named::new("plain", false, false, false);
    let client = connect(&gw, "alice", plain.clone()).await;
    // The catalog lists the tool (the gateway gathers as a client that can
    // relay sampling)...
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == SAMPLE), "{tools:?}");
    // ...but server-everything offers it only on sessions that declared
    // sampling, and this client's calls go over one that did not.
    let outcome = client
        .call_tool(call(SAMPLE, json!({"prompt": "hello", "maxTokens": 10})))
        .await;
    let seen = match &outcome {
        Ok(r) => {
            assert_eq!(r.is_error, Some(true), "{r:?}");
            text(r)
        }
        Err(e) => e.to_string(),
    };
    assert!(seen.contains("not found"), "{seen}");
    assert_eq!(plain.asked(), 0);
    client.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elicitation_and_roots_reach_the_caller_and_come_back() {
    let everything = Everything::start();
    let gw = gateway(&everything);
    let carol = Named::new("carol", false, true, true);
    let client = connect(&gw, "carol", carol.clone()).await;
    let elicited = client
        .call_tool(call("everything-trigger-elicitation-request", json!({})))
        .await
        .expect("elicitation tool");
    assert!(text(&elicited).contains("Name: carol"), "{elicited:?}");
    let roots = client
        .call_tool(call("everything-get-roots-list", json!({})))
        .await
        .expect("roots tool");
    assert!(text(&roots).contains("file:///work/carol"), "{roots:?}");
    assert!(carol.asked() >= 2, "asked {} times", carol.asked());
    client.cancel().await.expect("close");
}
