//! `/ws` through Debian's nginx with basic auth, as the reference deploys
//! it: its troubleshooting `location /ws` block verbatim, and the one
//! `conf/nginx/nginx.conf` ships (the include's Upgrade/Connection map).
//! The right password opens a WebSocket whose calls reach the tools as
//! that user; none, or a wrong one, stops at nginx; a client going around
//! nginx with a forged identity header is refused by the gateway.

use crate::behind_proxies::{
    basic, demo_and_gateway, nginx_http_prelude, program, repo, temp_dir, wait_listening,
    write_htpasswd, PASSWORD,
};
use crate::harness::*;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{
    self, client::IntoClientRequest, http, HandshakeError, Message, WebSocket,
};

/// The reference's block (PROXY-AUTH.md, "WebSocket connections fail"),
/// its upstream name replaced by the test's gateway.
const REFERENCE_WS_BLOCK: &str = r#"location /ws {
            proxy_pass http://mcp_gateway;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header X-Authenticated-User $remote_user;
        }"#;

/// The `location /ws` block of the shipped nginx.conf, as written.
fn shipped_ws_block() -> String {
    let conf = std::fs::read_to_string(repo().join("conf/nginx/nginx.conf")).expect("nginx.conf");
    let start = conf
        .find("location /ws {")
        .expect("nginx.conf has a /ws block");
    let end = start + conf[start..].find('}').expect("the block ends") + 1;
    conf[start..end].to_string()
}

/// nginx with one basic-auth server per `/ws` block, each on its own port,
/// reaching `gateway` from 127.0.0.2 like the shipped configuration.
fn start_nginx(gateway: &str, blocks: &[String]) -> (Proc, Vec<String>) {
    let dir = temp_dir("nginx-ws");
    write_htpasswd(&dir);
    // The shipped block includes this file by a relative name.
    std::fs::copy(
        repo().join("conf/nginx/mcp-gateway-proxy.conf"),
        dir.join("mcp-gateway-proxy.conf"),
    )
    .expect("include");
    let d = dir.display();
    let mut addrs = Vec::new();
    let mut servers = String::new();
    for block in blocks {
        let addr = format!("127.0.0.1:{}", free_port());
        servers.push_str(&format!(
            r#"    server {{
        listen {addr};
        proxy_bind 127.0.0.2;
        auth_basic "MCP gateway";
        auth_basic_user_file {d}/htpasswd;
        {block}
    }}
"#
        ));
        addrs.push(addr);
    }
    let config = format!("{}\n{servers}}}\n", nginx_http_prelude(&dir, gateway));
    std::fs::write(dir.join("nginx.conf"), config).expect("nginx.conf");
    let child = Command::new(program("nginx"))
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("nginx.out")).expect("log"))
        .spawn()
        .expect("nginx starts");
    let mut proc = Proc {
        child,
        log: dir.join("error.log"),
    };
    for addr in &addrs {
        wait_listening(addr, &mut proc, "nginx");
    }
    (proc, addrs)
}

/// Opens `ws://addr/ws` with `headers`; a refused upgrade gives its
/// status and body.
fn ws_connect(addr: &str, headers: &[(&str, &str)]) -> Result<WebSocket<TcpStream>, (u16, String)> {
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .expect("a request");
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            http::HeaderValue::from_str(value).expect("a header value"),
        );
    }
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    match tungstenite::client::client(request, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            let body = response.body().as_deref().unwrap_or_default();
            Err((
                response.status().as_u16(),
                String::from_utf8_lossy(body).into_owned(),
            ))
        }
        Err(e) => panic!("WebSocket handshake with {addr}: {e}"),
    }
}

/// Sends one JSON-RPC request and returns the answer with its id.
fn call(ws: &mut WebSocket<TcpStream>, id: u64, method: &str, params: Value) -> Value {
    let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    ws.send(Message::Text(request.to_string().into()))
        .expect("send");
    loop {
        match ws.read().expect("a frame") {
            Message::Text(text) => {
                let answer: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if answer["id"] == id {
                    return answer;
                }
            }
            Message::Close(frame) => panic!("closed while waiting for {method}: {frame:?}"),
            _ => {}
        }
    }
}

#[test]
fn nginx_ws_blocks_carry_the_basic_auth_user_and_refuse_the_rest() {
    let (demo, gw) = demo_and_gateway(&[("TRUSTED_PROXIES", "127.0.0.2/32")]);
    let blocks = [REFERENCE_WS_BLOCK.to_string(), shipped_ws_block()];
    let (nginx, addrs) = start_nginx(&gw.addr, &blocks);
    let auth = basic("alice", PASSWORD);
    for (addr, block) in addrs.iter().zip(&blocks) {
        let mut ws = ws_connect(addr, &[("Authorization", &auth)])
            .unwrap_or_else(|e| panic!("{block}: upgrade refused: {e:?}"));
        let init = call(
            &mut ws,
            1,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "nginx-ws", "version": "1"}}),
        );
        assert_eq!(
            init["result"]["serverInfo"]["name"], "mcp-gateway",
            "{init}"
        );
        ws.send(Message::Text(
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
                .to_string()
                .into(),
        ))
        .expect("send");
        let list = call(&mut ws, 2, "tools/list", json!({}));
        let names: Vec<&str> = list["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{block}: {list}"))
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(names.contains(&"demo-whoami"), "{block}: {names:?}");
        // The tool runs as the user nginx authenticated, without the password.
        let called = call(
            &mut ws,
            3,
            "tools/call",
            json!({"name": "demo-whoami", "arguments": {}}),
        );
        let text = called["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{block}: {called}"));
        let seen: Value = serde_json::from_str(text).expect("whoami JSON");
        assert_eq!(seen["headers"]["x-authenticated-user"], "alice", "{seen}");
        assert!(seen["headers"].get("authorization").is_none(), "{seen}");
        let _ = ws.close(None);

        // No credential, or a wrong one: nginx answers 401 and nothing is upgraded.
        for headers in [vec![], vec![("Authorization", basic("alice", "wrong"))]] {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match ws_connect(addr, &headers) {
                Ok(_) => panic!("{block}: upgraded without the password"),
                Err((status, _)) => assert_eq!(status, 401, "{block}"),
            }
        }
    }
    assert!(
        nginx.output().contains("password mismatch"),
        "{}",
        nginx.output()
    );

    // Around nginx, straight to the gateway, a forged identity header.
    match ws_connect(&gw.addr, &[("X-Authenticated-User", "alice")]) {
        Ok(_) => panic!("the gateway upgraded a forged identity"),
        Err((status, body)) => {
            assert_eq!(status, 401, "{body}");
            assert!(body.contains("not accepted from this peer"), "{body}");
        }
    }
    drop(demo);
}
