//! The federation catalog (`mcp_gateway::catalog`) against the real demo
//! server: gathering over MCP, calls on a caller's behalf with the server's
//! header policy, schema checks before any upstream call, a dead server.

use crate::harness::Demo;
use http::{HeaderMap, HeaderName, HeaderValue};
use mcp_gateway::catalog::{no_virtual_servers, CatalogFederation, CatalogOptions};
use mcp_gateway::config::{Settings, Source};
use mcp_gateway::federation::{CallContext, CallError, Caller, Federation, Scope, VirtualScope};
use mcp_gateway::identity::{Identity, IdentitySource};
use mcp_gateway::snapshot::Routing;
use rmcp::model::{CallToolResult, JsonObject};
use serde_json::{json, Value};
use std::sync::Arc;

/// Proxy mode: `X-Authenticated-User` from a trusted proxy is the identity;
/// the gateway presents its own bearer token to the demo server.
async fn federation(demo: &Demo) -> CatalogFederation {
    federation_with(demo, Box::new(no_virtual_servers)).await
}

async fn federation_with(
    demo: &Demo,
    virtuals: Box<dyn mcp_gateway::catalog::VirtualLookup>,
) -> CatalogFederation {
    let yaml = format!(
        "servers:\n  - name: demo\n    urls: [{}]\n    upstream_auth: {{type: bearer, token_env: DEMO_TOKEN}}\n",
        demo.url()
    );
    let settings = Settings::load(
        &Source::from_pairs([
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
            ("AUTH_REQUIRED", "true"),
            ("PROXY_USER_HEADER", "X-Authenticated-User"),
            ("DEMO_TOKEN", "svc-token"),
        ]),
        Some(("gateway.yaml", &yaml)),
    )
    .expect("settings");
    let routing: Arc<Routing> = Routing::from_settings(&settings).await.expect("routing");
    CatalogFederation::new(routing, &CatalogOptions::from_settings(&settings), virtuals)
}

fn caller(user: Option<&str>, extra: &[(&'static str, &str)]) -> Caller {
    let mut headers = HeaderMap::new();
    if let Some(user) = user {
        headers.insert("x-authenticated-user", HeaderValue::from_str(user).unwrap());
    }
    for (name, value) in extra {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    Caller {
        identity: match user {
            Some(u) => Identity {
                user: u.into(),
                source: IdentitySource::ProxyHeader,
            },
            None => Identity::anonymous(),
        },
        peer: Some("127.0.0.1".parse().unwrap()),
        cert_names: None,
        headers,
    }
}

fn args(v: Value) -> Option<JsonObject> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn text(result: &CallToolResult) -> String {
    let v = serde_json::to_value(result).expect("result serialises");
    v["content"][0]["text"]
        .as_str()
        .expect("a text content")
        .to_string()
}

async fn call(
    fed: &CatalogFederation,
    who: &Caller,
    name: &str,
    arguments: Option<JsonObject>,
) -> Result<CallToolResult, CallError> {
    fed.call_tool(
        who,
        &Scope::Everything,
        name,
        arguments,
        CallContext::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_holds_the_demo_tools_with_their_schemas() {
    let demo = Demo::start("d1");
    let fed = federation(&demo).await;
    let report = fed.refresh(false).await;
    assert_eq!(report.gathered, ["demo"], "{report:?}");
    let alice = caller(Some("alice"), &[]);
    let entries = fed.tool_entries(&alice, &Scope::Everything);
    let names: Vec<&str> = entries.iter().map(|e| &*e.tool.name).collect();
    assert_eq!(names, ["demo-echo", "demo-whoami"]);
    let echo = &entries[0];
    assert_eq!(
        (echo.server.as_str(), echo.original_name.as_str()),
        ("demo", "echo")
    );
    assert!(echo.available && echo.unavailable_reason.is_none());
    assert_eq!(
        echo.tool.input_schema.get("required"),
        Some(&json!(["message"]))
    );
    let listed: Vec<String> = fed
        .list_tools(&alice, &Scope::Everything)
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(listed, ["demo-echo", "demo-whoami"]);
    // Nothing changed, nothing is due: a second round gathers nothing.
    assert!(fed.refresh(false).await.gathered.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reaches_the_tool_by_qualified_or_unambiguous_bare_name() {
    let demo = Demo::start("d1");
    let fed = federation(&demo).await;
    fed.refresh(false).await;
    let alice = caller(Some("alice"), &[]);
    let r = call(&fed, &alice, "demo-echo", args(json!({"message": "hello"})))
        .await
        .expect("echo");
    assert_eq!(text(&r), "hello");
    assert_ne!(r.is_error, Some(true));
    let r = call(&fed, &alice, "echo", args(json!({"message": "bare"})))
        .await
        .expect("bare echo");
    assert_eq!(text(&r), "bare");
    assert_eq!(
        call(&fed, &alice, "demo-nope", None).await.unwrap_err(),
        CallError::UnknownTool("demo-nope".into())
    );
}

/// A call as the data plane makes it (`call_tool_json`: over the
/// gateway's own session on the wire), its result read back.
async fn call_json(
    fed: &CatalogFederation,
    who: &Caller,
    name: &str,
    arguments: Option<JsonObject>,
) -> Result<CallToolResult, CallError> {
    let raw = fed
        .call_tool_json(
            who,
            &Scope::Everything,
            name,
            arguments,
            CallContext::default(),
        )
        .await?;
    Ok(serde_json::from_str(raw.get()).expect("a CallToolResult"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_carries_the_callers_identity_with_the_servers_policy() {
    identity_and_policy(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_the_wire_carries_the_callers_identity_with_the_servers_policy() {
    identity_and_policy(true).await;
}

async fn identity_and_policy(wire: bool) {
    let call = |fed, who, name, arguments| async move {
        if wire {
            call_json(fed, who, name, arguments).await
        } else {
            call(fed, who, name, arguments).await
        }
    };
    let demo = Demo::start("d1");
    let fed = federation(&demo).await;
    fed.refresh(false).await;
    let alice = caller(
        Some("alice"),
        &[("x-mcp-gateway-user", "mallory"), ("x-request-id", "first")],
    );
    let r = call(&fed, &alice, "demo-whoami", None)
        .await
        .expect("whoami");
    let seen: Value = serde_json::from_str(&text(&r)).expect("whoami JSON");
    let headers = &seen["headers"];
    assert_eq!(headers["x-authenticated-user"], "alice");
    // The server's registered credential, never anything of the caller's.
    assert_eq!(headers["authorization"], "Bearer svc-token");
    assert!(headers.get("x-mcp-gateway-user").is_none(), "{headers}");

    // The same caller again, in a request of its own (every request has
    // its own id): the pooled session, no new initialize.
    let alice_again = caller(Some("alice"), &[("x-request-id", "second")]);
    let again = call(&fed, &alice_again, "demo-whoami", None)
        .await
        .expect("whoami");
    let again: Value = serde_json::from_str(&text(&again)).unwrap();
    assert_eq!(again["session"], seen["session"]);
    assert_eq!(fed.pooled_sessions(), 1);

    // Another caller never gets alice's session.
    let bob = caller(Some("bob"), &[]);
    let theirs = call(&fed, &bob, "demo-whoami", None).await.expect("whoami");
    let theirs: Value = serde_json::from_str(&text(&theirs)).unwrap();
    assert_eq!(theirs["headers"]["x-authenticated-user"], "bob");
    assert_ne!(theirs["session"], seen["session"]);
    assert_eq!(fed.pooled_sessions(), 2);

    // The caller's X-Upstream-Authorization replaces the registered
    // credential, as on the proxied route.
    let own = caller(
        Some("alice"),
        &[("x-upstream-authorization", "Bearer alices")],
    );
    let r = call(&fed, &own, "demo-whoami", None).await.expect("whoami");
    let v: Value = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(v["headers"]["authorization"], "Bearer alices");
    assert_ne!(v["session"], seen["session"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_the_schema_refuses_never_reach_the_server() {
    let demo = Demo::start("d1");
    let fed = federation(&demo).await;
    fed.refresh(false).await;
    let alice = caller(Some("alice"), &[]);
    let err = call(&fed, &alice, "demo-echo", args(json!({"message": 5})))
        .await
        .unwrap_err();
    let CallError::InvalidArguments(why) = err else {
        panic!("expected InvalidArguments, got {err:?}");
    };
    assert!(why.contains("/message"), "{why}");
    let err = call(&fed, &alice, "demo-echo", None).await.unwrap_err();
    assert!(
        matches!(err, CallError::InvalidArguments(ref m) if m.contains("message")),
        "{err:?}"
    );
    // Every upstream call goes over a pooled session: none was opened.
    // (The demo's request counter would race with the gathering session's
    // event stream, which rmcp opens in the background.)
    assert_eq!(fed.pooled_sessions(), 0, "no upstream call was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_the_servers_policy_refuses_sees_nothing_and_may_call_nothing() {
    let demo = Demo::start("d1");
    let fed = federation(&demo).await;
    fed.refresh(false).await;
    let nobody = caller(None, &[]);
    assert!(fed.list_tools(&nobody, &Scope::Everything).is_empty());
    assert!(fed.tool_entries(&nobody, &Scope::Everything).is_empty());
    let err = call(&fed, &nobody, "demo-echo", args(json!({"message": "x"})))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Forbidden(_)), "{err:?}");
    assert_eq!(fed.pooled_sessions(), 0, "no upstream call was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_server_sees_only_what_it_includes() {
    let demo = Demo::start("d1");
    let scope = Arc::new(VirtualScope {
        name: "echo-only".into(),
        include: vec!["demo/echo".into()],
    });
    let lookup = {
        let scope = scope.clone();
        move |name: &str| (name == "echo-only").then(|| scope.clone())
    };
    let fed = federation_with(&demo, Box::new(lookup)).await;
    fed.refresh(false).await;
    assert!(fed.scope(Some("missing")).is_none());
    let virt = fed.scope(Some("echo-only")).expect("the virtual server");
    assert_eq!(virt, Scope::Virtual(scope));
    let alice = caller(Some("alice"), &[]);
    let names: Vec<String> = fed
        .list_tools(&alice, &virt)
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["demo-echo"]);
    let err = fed
        .call_tool(&alice, &virt, "demo-whoami", None, CallContext::default())
        .await
        .unwrap_err();
    assert_eq!(err, CallError::UnknownTool("demo-whoami".into()));
    let ok = fed
        .call_tool(
            &alice,
            &virt,
            "echo",
            args(json!({"message": "v"})),
            CallContext::default(),
        )
        .await
        .expect("echo through the virtual server");
    assert_eq!(text(&ok), "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_keeps_its_tools_listed_as_unavailable() {
    let mut demo = Demo::start("d1");
    let fed = federation(&demo).await;
    fed.refresh(false).await;
    let generation = *fed.changes().borrow();
    let alice = caller(Some("alice"), &[]);
    call(&fed, &alice, "demo-echo", args(json!({"message": "x"})))
        .await
        .expect("echo while the server is up");
    assert_eq!(fed.pooled_sessions(), 1);
    demo.proc.child.kill().expect("kill the demo server");
    demo.proc.child.wait().expect("reap it");
    let report = fed.refresh(true).await;
    assert_eq!(report.failed, ["demo"], "{report:?}");
    assert!(*fed.changes().borrow() > generation);
    let entries = fed.tool_entries(&alice, &Scope::Everything);
    assert_eq!(entries.len(), 2);
    for e in &entries {
        assert!(!e.available, "{e:?}");
        let reason = e.unavailable_reason.as_deref().unwrap_or_default();
        assert!(!reason.is_empty(), "{e:?}");
    }
    assert!(fed.list_tools(&alice, &Scope::Everything).is_empty());
    let err = call(&fed, &alice, "demo-echo", args(json!({"message": "x"})))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Upstream(_)), "{err:?}");
    // The broken session is not kept for the next call.
    assert_eq!(fed.pooled_sessions(), 0);
}

/// The demo server's `/healthz` counter of `notifications/cancelled`.
fn cancellations(demo: &Demo) -> u64 {
    crate::harness::request(&demo.addr, "GET", "/healthz", &[], "").json()["cancellations"]
        .as_u64()
        .expect("cancellations in /healthz")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_of_a_call_reaches_the_caller() {
    let demo = Demo::start_with("d1", &["--progress-tool"]);
    let fed = federation(&demo).await;
    fed.refresh(false).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let context = CallContext {
        progress: Some(Arc::new(move |p| {
            let _ = tx.send(p);
        })),
        ..CallContext::default()
    };
    let alice = caller(Some("alice"), &[]);
    let r = fed
        .call_tool(
            &alice,
            &Scope::Everything,
            "demo-countdown",
            args(json!({"steps": 3, "interval_ms": 20})),
            context,
        )
        .await
        .expect("countdown");
    assert_eq!(text(&r), "liftoff");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let p = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("three progress notifications")
            .expect("the sink is alive");
        seen.push(p.progress);
    }
    assert_eq!(seen, [1.0, 2.0, 3.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_is_cancelled_upstream() {
    let demo = Demo::start_with("d1", &["--progress-tool"]);
    let fed = federation(&demo).await;
    fed.refresh(false).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let on_progress = cancel.clone();
    // Cancelled once the upstream has started: at its first progress report.
    let context = CallContext {
        progress: Some(Arc::new(move |_| on_progress.cancel())),
        cancel,
        ..CallContext::default()
    };
    let alice = caller(Some("alice"), &[]);
    let err = fed
        .call_tool(
            &alice,
            &Scope::Everything,
            "demo-countdown",
            args(json!({"steps": 10000, "interval_ms": 100})),
            context,
        )
        .await
        .unwrap_err();
    assert_eq!(err, CallError::Cancelled);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cancellations(&demo) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        cancellations(&demo),
        1,
        "notifications/cancelled reached the server"
    );
    // The session stays usable.
    let r = call(&fed, &alice, "demo-echo", args(json!({"message": "after"})))
        .await
        .expect("echo after a cancel");
    assert_eq!(text(&r), "after");
}

/// Waits (without a timed assertion: the limit only ends a hung test) until
/// the catalog satisfies `done`.
async fn until(fed: &CatalogFederation, what: &str, done: impl Fn(&CatalogFederation) -> bool) {
    let mut changes = fed.changes();
    while !done(fed) {
        tokio::time::timeout(std::time::Duration::from_secs(30), changes.changed())
            .await
            .unwrap_or_else(|_| panic!("the catalog never came to have {what}"))
            .expect("the catalog store is alive");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_refresh_follows_the_routing_snapshot() {
    let one = Demo::start("d1");
    let two = Demo::start("d2");
    let yaml = |servers: &[(&str, &Demo)]| {
        let mut out = String::from("servers:\n");
        for (name, demo) in servers {
            out.push_str(&format!("  - {{name: {name}, urls: [{}]}}\n", demo.url()));
        }
        out
    };
    let env = [
        ("MCP_CLIENT_AUTH_ENABLED", "false"),
        ("TRUST_PROXY_AUTH", "true"),
    ];
    let settings = |text: &str| {
        Settings::load(&Source::from_pairs(env), Some(("gateway.yaml", text))).expect("settings")
    };
    let first = settings(&yaml(&[("one", &one)]));
    let routing = Routing::from_settings(&first).await.expect("routing");
    let fed = Arc::new(CatalogFederation::new(
        routing.clone(),
        &CatalogOptions::from_settings(&first),
        Box::new(no_virtual_servers),
    ));
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let fed = fed.clone();
        let stop = stop.clone();
        async move { fed.run(stop).await }
    });
    let servers = |fed: &CatalogFederation| -> Vec<String> {
        fed.catalog()
            .servers
            .iter()
            .map(|s| s.name.clone())
            .collect()
    };
    until(&fed, "server one", |f| servers(f) == ["one"]).await;

    // A server added to the routing is gathered at once, not at the next interval.
    let both = settings(&yaml(&[("one", &one), ("two", &two)]));
    routing.apply(both.servers.clone()).await.expect("apply");
    until(&fed, "servers one and two", |f| {
        servers(f) == ["one", "two"]
    })
    .await;
    let anyone = caller(Some("alice"), &[]);
    let names: Vec<String> = fed
        .list_tools(&anyone, &Scope::Everything)
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["one-echo", "one-whoami", "two-echo", "two-whoami"]);

    // A removed one leaves the catalog.
    let only_two = settings(&yaml(&[("two", &two)]));
    routing
        .apply(only_two.servers.clone())
        .await
        .expect("apply");
    until(&fed, "server two alone", |f| servers(f) == ["two"]).await;

    stop.cancel();
    running.await.expect("the refresher stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_and_resources_are_listed_and_fetched_from_their_server() {
    let demo = Demo::start_with("d1", &["--prompts-and-resources"]);
    let fed = federation(&demo).await;
    fed.refresh(false).await;
    let alice = caller(Some("alice"), &[]);
    let prompts: Vec<String> = fed
        .list_prompts(&alice, &Scope::Everything)
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(prompts, ["demo-greet"]);
    let resources: Vec<String> = fed
        .list_resources(&alice, &Scope::Everything)
        .iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(resources, ["demo://readme"]);

    let greeting = fed
        .get_prompt(
            &alice,
            &Scope::Everything,
            "demo-greet",
            args(json!({"who": "alice"})),
        )
        .await
        .expect("prompts/get");
    let v = serde_json::to_value(&greeting).unwrap();
    assert_eq!(v["messages"][0]["content"]["text"], "Hello, alice!");
    let bare = fed
        .get_prompt(
            &alice,
            &Scope::Everything,
            "greet",
            args(json!({"who": "b"})),
        )
        .await
        .expect("prompts/get by bare name");
    let v = serde_json::to_value(&bare).unwrap();
    assert_eq!(v["messages"][0]["content"]["text"], "Hello, b!");

    let readme = fed
        .read_resource(&alice, &Scope::Everything, "demo://readme")
        .await
        .expect("resources/read");
    let v = serde_json::to_value(&readme).unwrap();
    assert_eq!(v["contents"][0]["text"], "This is the demo server.");
    // Prompts and resources went over alice's one pooled session, as calls do.
    assert_eq!(fed.pooled_sessions(), 1);
    assert_eq!(
        fed.read_resource(&alice, &Scope::Everything, "demo://nope")
            .await
            .unwrap_err(),
        CallError::UnknownTool("demo://nope".into())
    );

    // Nobody the server's policy refuses sees or fetches them.
    let nobody = caller(None, &[]);
    assert!(fed.list_prompts(&nobody, &Scope::Everything).is_empty());
    let err = fed
        .read_resource(&nobody, &Scope::Everything, "demo://readme")
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Forbidden(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_list_changed_notification_makes_it_gathered_again() {
    let demo = Demo::start("d1");
    let fed = Arc::new(federation(&demo).await);
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let fed = fed.clone();
        let stop = stop.clone();
        async move { fed.run(stop).await }
    });
    let checked = |fed: &CatalogFederation| fed.catalog().server("demo").map(|s| s.checked_at);
    until(&fed, "server demo", |f| checked(f).is_some()).await;
    let first = checked(&fed);
    // The gateway's own session opens its event stream in the background:
    // tell the server once that stream is there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let told = crate::harness::request(&demo.addr, "POST", "/tools-changed", &[], "").json()
            ["streams"]
            .as_u64()
            .unwrap_or(0);
        if told > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never opened its stream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Gathered again long before the 300 s interval.
    until(&fed, "a second gathering", |f| checked(f) != first).await;
    stop.cancel();
    running.await.expect("the refresher stops");
}
