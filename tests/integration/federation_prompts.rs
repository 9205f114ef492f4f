//! prompts/get, resources/read and resource templates through the
//! federation front (`/mcp` and a virtual server) of the real binary, to
//! the demo server and `@modelcontextprotocol/server-everything`; each
//! server's own auth policy and a URI two servers serve; a server's own
//! `refresh_interval`; the MCP-level check in `/metrics` and the admin API.

use crate::harness::*;
use crate::registry_env::{eventually, Admin, Db};
use serde_json::{json, Value};

const REQUIRED: (&str, &str) = ("AUTH_REQUIRED", "true");

fn proxy_env() -> Vec<(&'static str, &'static str)> {
    let mut env = PROXY_ENV.to_vec();
    env.push(REQUIRED);
    env
}

/// One MCP session on a federation path, as `alice` (or whoever `headers` say).
struct Session<'a> {
    gw: &'a Gateway,
    path: String,
    headers: Vec<(&'a str, &'a str)>,
    id: String,
}

impl<'a> Session<'a> {
    fn open(gw: &'a Gateway, path: &str, headers: &[(&'a str, &'a str)]) -> Session<'a> {
        let mut s = Session {
            gw,
            path: path.to_string(),
            headers: headers.to_vec(),
            id: String::new(),
        };
        let init = json!({"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "it", "version": "1"}});
        let r = s.post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}));
        assert_eq!(r.status, 200, "initialize on {path}: {r:?}");
        s.id = r.header("mcp-session-id").expect("a session").to_string();
        let done = s.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert_eq!(done.status, 202, "{done:?}");
        s
    }

    fn post(&self, body: &Value) -> Response {
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        headers.extend_from_slice(&self.headers);
        if !self.id.is_empty() {
            headers.push(("Mcp-Session-Id", &self.id));
            headers.push(("Mcp-Protocol-Version", "2025-06-18"));
        }
        self.gw
            .request("POST", &self.path, &headers, &body.to_string())
    }

    /// The JSON-RPC response to `method` (from a JSON body or the SSE one).
    fn rpc(&self, method: &str, params: Value) -> Value {
        let r = self.post(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}));
        assert_eq!(r.status, 200, "{method} on {}: {r:?}", self.path);
        let messages: Vec<Value> = if r.body.trim_start().starts_with('{') {
            vec![r.json()]
        } else {
            r.body
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str(d.trim()).ok())
                .collect()
        };
        messages
            .into_iter()
            .find(|m| m["id"] == 7)
            .unwrap_or_else(|| panic!("no response to {method}: {r:?}"))
    }

    fn names(&self, method: &str, list: &str, key: &str) -> Vec<String> {
        let v = self.rpc(method, json!({}));
        v["result"][list]
            .as_array()
            .unwrap_or_else(|| panic!("{method}: {v}"))
            .iter()
            .filter_map(|p| p[key].as_str().map(str::to_string))
            .collect()
    }

    fn prompts(&self) -> Vec<String> {
        self.names("prompts/list", "prompts", "name")
    }
}

fn text_of_prompt(v: &Value) -> &str {
    v["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no prompt text: {v}"))
}

fn error_of(v: &Value) -> (i64, String) {
    (
        v["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("not an error: {v}")),
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[test]
fn prompts_and_resources_through_mcp_and_a_virtual_server_under_each_servers_policy() {
    let flags = ["--prompts-and-resources"];
    let demo = Demo::start_with("demo", &flags);
    let mirror = Demo::start_with("mirror", &flags);
    let locked = Demo::start_with("locked", &flags);
    // `locked` authenticates by a header alice's proxy does not send.
    let yaml = format!(
        "servers:\n  - {{name: demo, urls: [{}]}}\n  - {{name: mirror, urls: [{}]}}\n  \
         - {{name: locked, urls: [{}], auth_mode: proxy, proxy_header: X-Employee-Id}}\n\
         virtual_servers:\n  - {{name: docs, include: [\"demo/*\"]}}\n",
        demo.url(),
        mirror.url(),
        locked.url()
    );
    let gw = Gateway::start(&proxy_env(), &yaml);
    let mcp = Session::open(&gw, "/mcp", &ALICE);
    eventually(
        "the catalog gathered",
        || gw.proc.output(),
        || mcp.prompts().len() == 2,
    );
    // The server whose policy refuses alice lists nothing for her.
    assert_eq!(mcp.prompts(), ["demo-greet", "mirror-greet"]);

    let hello = mcp.rpc(
        "prompts/get",
        json!({"name": "demo-greet", "arguments": {"who": "alice"}}),
    );
    assert_eq!(text_of_prompt(&hello), "Hello, alice!", "{hello}");
    let (code, message) = error_of(&mcp.rpc("prompts/get", json!({"name": "greet"})));
    assert_eq!(code, -32602);
    assert!(message.contains("demo, mirror"), "{message}");
    let (code, message) = error_of(&mcp.rpc(
        "prompts/get",
        json!({"name": "locked-greet", "arguments": {"who": "alice"}}),
    ));
    assert_eq!(code, -32001, "{message}");
    assert!(message.contains("locked"), "{message}");
    let (code, message) = error_of(&mcp.rpc("prompts/get", json!({"name": "nope"})));
    assert_eq!((code, message.contains("unknown prompt")), (-32602, true));
    // The server's own refusal of the arguments comes back as such.
    let (code, _) = error_of(&mcp.rpc("prompts/get", json!({"name": "demo-greet"})));
    assert_eq!(code, -32602);

    // Two servers serve demo://readme: not read from one of them at random.
    let (code, message) = error_of(&mcp.rpc("resources/read", json!({"uri": "demo://readme"})));
    assert_eq!(code, -32602);
    assert!(message.contains("demo, mirror") && message.contains("virtual server"));
    let missing = mcp.rpc("resources/read", json!({"uri": "demo://nope"}));
    assert_eq!(error_of(&missing).0, -32002, "{missing}");
    assert_eq!(missing["error"]["data"]["uri"], "demo://nope");

    // The virtual server that includes one of them reads it, and takes a bare name.
    let docs = Session::open(&gw, "/servers/docs/mcp", &ALICE);
    assert_eq!(docs.prompts(), ["demo-greet"]);
    let readme = docs.rpc("resources/read", json!({"uri": "demo://readme"}));
    assert_eq!(
        readme["result"]["contents"][0]["text"], "This is the demo server.",
        "{readme}"
    );
    let bare = docs.rpc(
        "prompts/get",
        json!({"name": "greet", "arguments": {"who": "b"}}),
    );
    assert_eq!(text_of_prompt(&bare), "Hello, b!");
    let (code, _) = error_of(&docs.rpc(
        "prompts/get",
        json!({"name": "mirror-greet", "arguments": {"who": "b"}}),
    ));
    assert_eq!(code, -32602, "outside the virtual server's include");

    // A caller the server's policy admits gets the locked server's prompt.
    let both = [ALICE[0], ("X-Employee-Id", "e-17")];
    let admitted = Session::open(&gw, "/mcp", &both);
    let got = admitted.rpc(
        "prompts/get",
        json!({"name": "locked-greet", "arguments": {"who": "e-17"}}),
    );
    assert_eq!(text_of_prompt(&got), "Hello, e-17!", "{got}");

    // Upstream gone: an error naming the server.
    drop(mirror);
    let (code, message) = error_of(&mcp.rpc(
        "prompts/get",
        json!({"name": "mirror-greet", "arguments": {"who": "x"}}),
    ));
    assert_eq!(code, -32603, "{message}");
    assert!(message.contains("server mirror"), "{message}");
}

#[test]
fn server_everythings_prompts_resources_and_templates_through_mcp() {
    let everything = Everything::start();
    let yaml = servers_yaml(&[("everything", &[everything.url()])]);
    let gw = Gateway::start(&proxy_env(), &yaml);
    let mcp = Session::open(&gw, "/mcp", &ALICE);
    eventually(
        "server-everything's prompts in the catalog",
        || gw.proc.output(),
        || {
            mcp.prompts()
                .contains(&"everything-simple-prompt".to_string())
        },
    );
    let simple = mcp.rpc("prompts/get", json!({"name": "everything-simple-prompt"}));
    assert_eq!(
        text_of_prompt(&simple),
        "This is a simple prompt without arguments."
    );
    let args = mcp.rpc(
        "prompts/get",
        json!({"name": "args-prompt", "arguments": {"city": "Paris"}}),
    );
    assert_eq!(text_of_prompt(&args), "What's weather in Paris?");

    // A listed resource, read by its URI.
    let listed = mcp.names("resources/list", "resources", "uri");
    let first = listed.first().expect("server-everything lists resources");
    let read = mcp.rpc("resources/read", json!({"uri": first}));
    assert_eq!(
        read["result"]["contents"][0]["uri"],
        first.as_str(),
        "{read}"
    );

    // A URI only a template produces reaches the server that has the template.
    let templates = mcp.names(
        "resources/templates/list",
        "resourceTemplates",
        "uriTemplate",
    );
    assert!(
        templates.contains(&"demo://resource/dynamic/text/{resourceId}".to_string()),
        "{templates:?}"
    );
    let uri = "demo://resource/dynamic/text/3";
    let dynamic = mcp.rpc("resources/read", json!({"uri": uri}));
    assert_eq!(dynamic["result"]["contents"][0]["uri"], uri, "{dynamic}");
    let unknown = mcp.rpc("resources/read", json!({"uri": "other://x/1"}));
    assert_eq!(error_of(&unknown).0, -32002, "{unknown}");
}

/// When the admin API says a server was last gathered over MCP.
fn last_check(a: &Admin, server: &str) -> Option<i64> {
    a.call("GET", &format!("/api/servers/{server}/health"), "")
        .json()["mcp"]["last_check"]
        .as_i64()
}

#[test]
fn a_servers_refresh_interval_overrides_the_global_one() {
    let fast = Demo::start("fast");
    let slow = Demo::start("slow");
    // The global CATALOG_REFRESH_INTERVAL is its default, 300 s.
    let yaml = format!(
        "servers:\n  - {{name: fast, urls: [{}], refresh_interval: 1}}\n  \
         - {{name: slow, urls: [{}]}}\n",
        fast.url(),
        slow.url()
    );
    let db = Db::sqlite();
    let a = Admin::start(&db.url, &yaml);
    eventually(
        "both servers gathered",
        || a.log(),
        || last_check(&a, "fast").is_some() && last_check(&a, "slow").is_some(),
    );
    let slow_first = last_check(&a, "slow");
    let fast_first = last_check(&a, "fast").unwrap_or_default();
    // The fast server is gathered again and again (each a new second)...
    eventually(
        "the fast server gathered twice more",
        || a.log(),
        || last_check(&a, "fast").is_some_and(|t| t >= fast_first + 2),
    );
    // ...while the slow one, on the global interval, is left alone.
    assert_eq!(last_check(&a, "slow"), slow_first, "{}", a.log());
    // The registry keeps the YAML server's interval with its record.
    let record = a.call("GET", "/api/servers/fast", "").json();
    assert_eq!(record["refresh_interval"], 1, "{record}");
    assert_eq!(
        a.call("GET", "/api/servers/slow", "").json()["refresh_interval"],
        Value::Null
    );
}

#[test]
fn the_mcp_level_check_is_a_metric_and_part_of_a_servers_health() {
    let demo = Demo::start("demo");
    // The demo server's address on a path where no MCP server answers:
    // TCP-healthy, MCP-down.
    let mute_url = format!("http://{}/not-mcp", demo.addr);
    let db = Db::sqlite();
    let yaml = servers_yaml(&[
        ("demo", &[demo.url()]),
        ("mute", std::slice::from_ref(&mute_url)),
    ]);
    let a = Admin::start(&db.url, &yaml);
    let up = |server: &str| {
        metric(
            &a.gw.metrics(),
            &format!("mcp_server_mcp_up{{server=\"{server}\"}}"),
        )
    };
    let has = |server: &str| {
        a.gw.metrics()
            .contains(&format!("mcp_server_mcp_up{{server=\"{server}\"}}"))
    };
    eventually(
        "both servers checked",
        || a.log(),
        || has("demo") && has("mute"),
    );
    assert_eq!((up("demo"), up("mute")), (1.0, 0.0));

    let health = a.call("GET", "/api/servers/demo/health", "").json();
    assert_eq!(health["mcp"]["up"], true, "{health}");
    assert!(health["mcp"]["last_check"].as_i64().is_some(), "{health}");
    let health = a.call("GET", "/api/servers/mute/health", "").json();
    assert_eq!(health["mcp"]["up"], false, "{health}");
    assert!(health["mcp"]["reason"].is_string(), "{health}");
    // Reported, not routed on: the TCP check still has the replica up.
    assert_eq!(health["status"], "up", "{health}");

    // refresh_interval through the API: validated, stored, shown.
    let bad = a.create("later", &demo.url(), r#","refresh_interval":0"#);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(
        bad.json()["error"]["field"],
        "refresh_interval",
        "{}",
        bad.body
    );
    let made = a.create("later", &demo.url(), r#","refresh_interval":60"#);
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.json()["refresh_interval"], 60);
    let patched = a.call(
        "PATCH",
        "/api/servers/later",
        r#"{"refresh_interval":null}"#,
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["refresh_interval"], Value::Null);
}
