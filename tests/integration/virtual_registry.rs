//! Virtual servers written through the admin API, end to end with the real
//! binary: an MCP client initializes and lists tools at
//! `/servers/{virtual}/mcp` under the virtual server's own `auth_mode`, an
//! `include` change shows in `tools/list`, a delete makes the route a 404,
//! a replica on the same database follows, and a virtual server from the
//! YAML file is read-only in the API. SQLite always; PostgreSQL with
//! `TEST_DATABASE_URL`.

use crate::harness::*;
use crate::registry_env::*;
use serde_json::Value;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

/// The JSON-RPC messages of a response: one JSON body, or the `data:`
/// lines of an event stream.
fn messages(r: &Response) -> Vec<Value> {
    let sse = r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream"));
    if sse {
        r.body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        serde_json::from_str(&r.body).into_iter().collect()
    }
}

/// What an MCP client sees at `/servers/{name}/mcp`: `Err(status)` if a
/// request is refused (0: no response), else the sorted tool names of
/// `tools/list`.
fn tools_at(addr: &str, name: &str, who: &[(&str, &str)]) -> Result<Vec<String>, u16> {
    let path = format!("/servers/{name}/mcp");
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    headers.extend_from_slice(who);
    let init = try_request(addr, "POST", &path, &headers, INIT).map_err(|_| 0u16)?;
    if init.status != 200 {
        return Err(init.status);
    }
    let sid = init
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    headers.push(("Mcp-Session-Id", &sid));
    headers.push(("Mcp-Protocol-Version", "2025-06-18"));
    // A change may land between two requests (the route gone after the
    // initialize): any refusal is the answer, for the caller to poll again.
    let done = try_request(addr, "POST", &path, &headers, INITIALIZED).map_err(|_| 0u16)?;
    if done.status != 202 {
        return Err(done.status);
    }
    let list = try_request(addr, "POST", &path, &headers, LIST).map_err(|_| 0u16)?;
    if list.status != 200 {
        return Err(list.status);
    }
    let mut names: Vec<String> = messages(&list)
        .iter()
        .filter_map(|m| m["result"]["tools"].as_array())
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn an_api_virtual_server_serves_its_tools_follows_its_include_and_goes() {
    for db in Db::all() {
        let label = db.label;
        let alpha = Demo::start("alpha");
        let beta = Demo::start("beta");
        let a = Admin::start(&db.url, "servers: []\n");
        let b = replica(&db.url, "servers: []\n");
        // A caller sees a server's tools when the server's own route would
        // authenticate them: these take the JWT the virtual server does.
        for (name, demo) in [("alpha", &alpha), ("beta", &beta)] {
            let r = a.create(name, &demo.url(), r#","auth_mode":"jwt""#);
            assert_eq!(r.status, 201, "{label}: {}", r.body);
        }
        // `unresolved` is judged against the routes in effect: wait for the
        // two servers to be routed here before the virtual server names them.
        eventually(
            &format!("{label}: alpha and beta routed on A"),
            || a.log(),
            || {
                ["alpha", "beta"]
                    .iter()
                    .all(|s| a.gw.initialize(s, &ALICE).0.status != 404)
            },
        );
        let jwt_caller = bearer(&jwt(serde_json::json!({"sub": "bob", "exp": in_an_hour()})));
        let bob = [("Authorization", jwt_caller.as_str())];

        // Its own policy (JWT) while the global one is the proxy header.
        let r = a.call(
            "POST",
            "/api/virtual-servers",
            r#"{"name":"team","include":["alpha/*","nobody/*"],"auth_mode":"jwt"}"#,
        );
        assert_eq!(r.status, 201, "{label}: {}", r.body);
        assert_eq!(
            r.json()["unresolved"],
            serde_json::json!(["nobody/*"]),
            "{label}: {}",
            r.body
        );
        let alpha_tools = strings(&["alpha-echo", "alpha-whoami"]);
        eventually(
            &format!("{label}: created -> alpha's tools at /servers/team/mcp"),
            || a.log(),
            || tools_at(&a.gw.addr, "team", &bob).as_ref() == Ok(&alpha_tools),
        );
        assert_eq!(
            tools_at(&a.gw.addr, "team", &ALICE),
            Err(401),
            "{label}: the proxy header is not a JWT"
        );
        eventually(
            &format!("{label}: created on A -> served by B"),
            || b.proc.output(),
            || tools_at(&b.addr, "team", &bob).as_ref() == Ok(&alpha_tools),
        );

        // A narrower include: tools/list changes, here and on the replica.
        let r = a.call(
            "PATCH",
            "/api/virtual-servers/team",
            r#"{"include":["beta/echo"]}"#,
        );
        assert_eq!(r.status, 200, "{label}: {}", r.body);
        assert_eq!(r.json()["version"], 2, "{label}");
        let beta_echo = strings(&["beta-echo"]);
        eventually(
            &format!("{label}: include changed -> tools/list follows"),
            || a.log(),
            || tools_at(&a.gw.addr, "team", &bob).as_ref() == Ok(&beta_echo),
        );
        eventually(
            &format!("{label}: include changed on A -> tools/list on B"),
            || b.proc.output(),
            || tools_at(&b.addr, "team", &bob).as_ref() == Ok(&beta_echo),
        );

        // One name space with the servers.
        let r = a.create("team", &alpha.url(), "");
        assert_eq!(r.status, 409, "{label}: {}", r.body);
        assert_eq!(r.json()["error"]["field"], "name", "{label}");

        let r = a.call("DELETE", "/api/virtual-servers/team", "");
        assert_eq!(r.status, 204, "{label}: {}", r.body);
        eventually(
            &format!("{label}: deleted -> 404"),
            || a.log(),
            || tools_at(&a.gw.addr, "team", &bob) == Err(404),
        );
        eventually(
            &format!("{label}: deleted on A -> 404 on B"),
            || b.proc.output(),
            || tools_at(&b.addr, "team", &bob) == Err(404),
        );
        assert_eq!(
            a.call("GET", "/api/virtual-servers/team", "").status,
            404,
            "{label}"
        );
    }
}

#[test]
fn a_yaml_virtual_server_is_a_read_only_record_served_at_once() {
    for db in Db::all() {
        let label = db.label;
        let demo = Demo::start("demo");
        let yaml = format!(
            "servers:\n  - name: demo\n    urls: [{}]\nvirtual_servers:\n  - name: filed\n    include: [demo/echo]\n",
            demo.url()
        );
        let a = Admin::start(&db.url, &yaml);
        let record = a.call("GET", "/api/virtual-servers/filed", "");
        assert_eq!(record.status, 200, "{label}: {}", record.body);
        let record = record.json();
        assert_eq!(record["origin"], "config", "{label}: {record}");
        assert!(
            record["config_file"]
                .as_str()
                .is_some_and(|f| f.ends_with("gateway.yaml")),
            "{label}: {record}"
        );
        for (method, body) in [
            ("PATCH", r#"{"include":["demo/*"]}"#),
            (
                "PUT",
                r#"{"name":"filed","include":["demo/*"],"version":1}"#,
            ),
            ("DELETE", ""),
        ] {
            let r = a.call(method, "/api/virtual-servers/filed", body);
            assert_eq!(r.status, 409, "{label} {method}: {}", r.body);
            assert!(
                r.json()["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("gateway.yaml")),
                "{label} {method}: {}",
                r.body
            );
        }
        eventually(
            &format!("{label}: the file's virtual server serves"),
            || a.log(),
            || tools_at(&a.gw.addr, "filed", &ALICE).as_ref() == Ok(&strings(&["demo-echo"])),
        );
        // Neither a server nor an API virtual server may take its name.
        let r = a.create("filed", &demo.url(), "");
        assert_eq!(r.status, 409, "{label}: {}", r.body);
        let r = a.call("POST", "/api/virtual-servers", r#"{"name":"filed"}"#);
        assert_eq!(r.status, 409, "{label}: {}", r.body);
    }
}
