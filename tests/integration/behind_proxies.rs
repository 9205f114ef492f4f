//! The gateway behind real auth proxies, as deployed: Debian's nginx with
//! basic auth and with `auth_request`, and Caddy with `forward_auth`, each
//! run by the test from the shipped `conf/` files on free ports under a
//! temporary directory. Through the proxy the right credential reaches the
//! demo server's tool as that user; a wrong one stops at the proxy; a
//! client that goes around the proxy, or smuggles the identity header
//! through it, is refused.

use crate::harness::*;
use base64::Engine;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(super) const PASSWORD: &str = "correct horse battery staple";
/// The auth service's answer for this bearer token names this user.
const GOOD_TOKEN: &str = "alice-token";
const GOOD_EMAIL: &str = "alice@example.com";
/// For this token the auth service says yes but names nobody.
const NAMELESS_TOKEN: &str = "nameless-token";

pub(super) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(super) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcp-gw-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A program the test needs, or a loud failure naming what installs it.
pub(super) fn program(name: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let candidate = Path::new(dir).join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} is not installed: run `make deps-test`");
}

pub(super) fn wait_listening(addr: &str, proc: &mut Proc, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("{what} exited with {status}:\n{}", proc.output());
        }
        assert!(
            Instant::now() < deadline,
            "{what} not listening:\n{}",
            proc.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(super) fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A stand-in for oauth2-proxy's `/oauth2/auth`: 202 with
/// `X-Auth-Request-Email` for the good token, 202 without it for the
/// nameless one, 401 otherwise.
fn start_auth_service() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn);
            let mut authorization = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("authorization") {
                        authorization = value.trim().to_string();
                    }
                }
            }
            let answer = if authorization == bearer(GOOD_TOKEN) {
                format!("HTTP/1.1 202 Accepted\r\nX-Auth-Request-Email: {GOOD_EMAIL}\r\n")
            } else if authorization == bearer(NAMELESS_TOKEN) {
                "HTTP/1.1 202 Accepted\r\n".to_string()
            } else {
                "HTTP/1.1 401 Unauthorized\r\n".to_string()
            };
            let _ = reader.get_mut().write_all(
                format!("{answer}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
            );
        }
    });
    addr
}

/// The demo server behind a gateway in proxy mode.
pub(super) fn demo_and_gateway(env: &[(&str, &str)]) -> (Demo, Gateway) {
    let demo = Demo::start("behind");
    let mut all = vec![
        ("MCP_CLIENT_AUTH_ENABLED", "false"),
        ("TRUST_PROXY_AUTH", "true"),
        ("JWT_SECRET_KEY", SECRET),
    ];
    all.extend_from_slice(env);
    let gw = Gateway::start(&all, &servers_yaml(&[("demo", &[demo.url()])]));
    // The tests count what reaches the demo server.
    gw.wait_gathered("demo");
    (demo, gw)
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}"#;
const WHOAMI: &str =
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;

fn mcp_post(addr: &str, headers: &[(&str, &str)], sid: Option<&str>, body: &str) -> Response {
    let mut all = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    all.extend_from_slice(headers);
    if let Some(sid) = sid {
        all.push(("Mcp-Session-Id", sid));
    }
    request(addr, "POST", "/servers/demo/mcp", &all, body)
}

/// initialize + the `whoami` tool through `addr`: the headers the MCP server received.
fn tool_view(addr: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let init = mcp_post(addr, headers, None, INITIALIZE);
    assert_eq!(init.status, 200, "initialize through {addr}: {init:?}");
    let sid = init
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    let reply = mcp_post(addr, headers, Some(&sid), WHOAMI);
    assert_eq!(reply.status, 200, "whoami through {addr}: {reply:?}");
    let text = reply.json()["result"]["content"][0]["text"]
        .as_str()
        .expect("whoami text")
        .to_string();
    serde_json::from_str::<serde_json::Value>(&text).expect("whoami JSON")["headers"].clone()
}

/// A request from a chosen loopback source address, as a client elsewhere
/// than the trusted proxy would send it.
fn request_from(source: Ipv4Addr, addr: &str, headers: &[(&str, &str)], body: &str) -> Response {
    use std::os::fd::FromRawFd;
    let dest: SocketAddrV4 = addr.parse().expect("an IPv4 address");
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket is owned by the TcpStream made from it (or
    // closed on failure); the sockaddr structs outlive the calls.
    let stream = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let src = sockaddr(source, 0);
        let dst = sockaddr(*dest.ip(), dest.port());
        let bound = libc::bind(fd, &src as *const _ as *const libc::sockaddr, len) == 0;
        let connected =
            bound && libc::connect(fd, &dst as *const _ as *const libc::sockaddr, len) == 0;
        let error = std::io::Error::last_os_error();
        let stream = TcpStream::from_raw_fd(fd);
        assert!(connected, "connect from {source} to {addr}: {error}");
        stream
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut all = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    all.extend_from_slice(headers);
    (&stream)
        .write_all(raw_request(addr, "POST", "/servers/demo/mcp", &all, body).as_bytes())
        .expect("write");
    read_response(&mut BufReader::new(stream)).expect("a response")
}

// ---------------------------------------------------------------- nginx

/// An htpasswd file in `dir` with one user, alice, whose password is
/// `PASSWORD`.
pub(super) fn write_htpasswd(dir: &Path) {
    let hash = Command::new(program("openssl"))
        .args(["passwd", "-apr1", PASSWORD])
        .output()
        .expect("openssl runs");
    assert!(hash.status.success(), "{hash:?}");
    std::fs::write(
        dir.join("htpasswd"),
        format!("alice:{}", String::from_utf8_lossy(&hash.stdout)),
    )
    .expect("htpasswd");
}

/// nginx.conf up to its servers, unprivileged in `dir`: the `http` block
/// (left open) with the reference's `mcp_gateway` upstream at `gateway`
/// and its `$connection_upgrade` map.
pub(super) fn nginx_http_prelude(dir: &Path, gateway: &str) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream mcp_gateway {{
        server {gateway};
        keepalive 8;
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ""      "";
    }}"#
    )
}

struct Nginx {
    proc: Proc,
    basic_addr: String,
    auth_request_addr: String,
}

/// nginx with two servers in front of `gateway`: basic auth (nginx.conf's
/// locations) and auth_request (auth-request.conf's), both with the shipped
/// mcp-gateway-proxy.conf and `proxy_bind 127.0.0.2`.
fn start_nginx(gateway: &str, auth_service: &str) -> Nginx {
    let dir = temp_dir("nginx");
    write_htpasswd(&dir);
    let include = repo().join("conf/nginx/mcp-gateway-proxy.conf");
    let (basic_port, auth_request_port) = (free_port(), free_port());
    let d = dir.display();
    let include = include.display();
    let prelude = nginx_http_prelude(&dir, gateway);
    let config = format!(
        r#"{prelude}
    server_tokens off;
    server {{
        listen 127.0.0.1:{basic_port};
        proxy_bind 127.0.0.2;
        auth_basic "MCP gateway";
        auth_basic_user_file {d}/htpasswd;
        location /servers/ {{
            include {include};
            proxy_set_header X-Authenticated-User $remote_user;
        }}
        location /ws {{
            include {include};
            proxy_set_header X-Authenticated-User $remote_user;
        }}
    }}
    server {{
        listen 127.0.0.1:{auth_request_port};
        proxy_bind 127.0.0.2;
        location = /oauth2/auth {{
            internal;
            proxy_pass http://{auth_service};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Host $host;
            proxy_set_header X-Original-URI $request_uri;
        }}
        location /servers/ {{
            auth_request /oauth2/auth;
            auth_request_set $auth_email $upstream_http_x_auth_request_email;
            include {include};
            proxy_set_header X-Auth-Request-Email $auth_email;
        }}
    }}
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), config).expect("nginx.conf");
    let log = dir.join("nginx.out");
    let child = Command::new(program("nginx"))
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("nginx starts");
    let mut proc = Proc {
        child,
        log: dir.join("error.log"),
    };
    let basic_addr = format!("127.0.0.1:{basic_port}");
    let auth_request_addr = format!("127.0.0.1:{auth_request_port}");
    wait_listening(&basic_addr, &mut proc, "nginx");
    wait_listening(&auth_request_addr, &mut proc, "nginx");
    Nginx {
        proc,
        basic_addr,
        auth_request_addr,
    }
}

#[test]
fn nginx_basic_auth_the_right_password_reaches_the_tool_as_that_user() {
    let (demo, gw) = demo_and_gateway(&[("TRUSTED_PROXIES", "127.0.0.2/32")]);
    let nginx = start_nginx(&gw.addr, "127.0.0.1:9");
    let auth = basic("alice", PASSWORD);
    let seen = tool_view(&nginx.basic_addr, &[("Authorization", &auth)]);
    assert_eq!(seen["x-authenticated-user"], "alice", "{seen}");
    // nginx kept the password to itself.
    assert!(seen.get("authorization").is_none(), "{seen}");

    // The session's event stream, through nginx: events arrive one by one
    // (proxy_buffering off), not when a buffer fills.
    let init = mcp_post(
        &nginx.basic_addr,
        &[("Authorization", &auth)],
        None,
        INITIALIZE,
    );
    let sid = init
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    let mut stream = TcpStream::connect(&nginx.basic_addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let headers = [
        ("Accept", "text/event-stream"),
        ("Authorization", &auth),
        ("Mcp-Session-Id", &sid),
    ];
    stream
        .write_all(
            raw_request(&nginx.basic_addr, "GET", "/servers/demo/mcp", &headers, "").as_bytes(),
        )
        .expect("write");
    let mut events = BufReader::new(stream);
    let mut status = String::new();
    events.read_line(&mut status).expect("status line");
    assert!(status.contains(" 200 "), "{status}");
    let (first, second) = (next_data(&mut events), next_data(&mut events));
    assert_ne!(first, second, "two distinct events");

    // A wrong password, or none, stops at nginx: nothing reaches the server.
    let before = demo.mcp_requests();
    for headers in [vec![("Authorization", basic("alice", "wrong"))], vec![]] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = mcp_post(&nginx.basic_addr, &headers, None, INITIALIZE);
        assert_eq!(r.status, 401, "{r:?}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Basic")),
            "{r:?}"
        );
    }
    assert_eq!(demo.mcp_requests(), before);
    assert!(
        nginx.proc.output().contains("password mismatch"),
        "{}",
        nginx.proc.output()
    );

    // A client that goes around nginx cannot name itself anyone.
    let r = gw.mcp_post(
        "demo",
        &[("X-Authenticated-User", "alice")],
        None,
        INITIALIZE,
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("not accepted from this peer"), "{}", r.body);
    assert_eq!(demo.mcp_requests(), before);
    drop(nginx);
}

#[test]
fn nginx_auth_request_forwards_the_auth_services_email_and_nothing_the_client_sent() {
    let (demo, gw) = demo_and_gateway(&[
        ("TRUSTED_PROXIES", "127.0.0.2/32"),
        ("PROXY_USER_HEADER", "X-Auth-Request-Email"),
    ]);
    let nginx = start_nginx(&gw.addr, &start_auth_service());
    let good = bearer(GOOD_TOKEN);
    let seen = tool_view(
        &nginx.auth_request_addr,
        &[
            ("Authorization", &good),
            ("X-Auth-Request-Email", "mallory@example.com"),
        ],
    );
    assert_eq!(seen["x-auth-request-email"], GOOD_EMAIL, "{seen}");

    let before = demo.mcp_requests();
    let bad = bearer("stolen");
    let r = mcp_post(
        &nginx.auth_request_addr,
        &[("Authorization", &bad)],
        None,
        INITIALIZE,
    );
    assert_eq!(r.status, 401, "{r:?}");
    // The auth service vouches without naming anyone: the client's own
    // header must not fill the gap.
    let nameless = bearer(NAMELESS_TOKEN);
    let r = mcp_post(
        &nginx.auth_request_addr,
        &[
            ("Authorization", &nameless),
            ("X-Auth-Request-Email", "mallory@example.com"),
        ],
        None,
        INITIALIZE,
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert!(!r.body.contains("mallory"), "{}", r.body);
    let r = gw.mcp_post(
        "demo",
        &[("X-Auth-Request-Email", GOOD_EMAIL)],
        None,
        INITIALIZE,
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(demo.mcp_requests(), before);
    drop(nginx);
}

/// The shipped nginx.conf and auth-request.conf pass `nginx -t` with
/// stand-in certificate, password file and paths.
#[test]
fn the_shipped_nginx_configuration_passes_nginx_t() {
    let dir = temp_dir("nginx-t");
    let cert = Command::new(program("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=mcp.example.com",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl runs");
    assert!(cert.status.success(), "{cert:?}");
    std::fs::write(dir.join("htpasswd"), "alice:$apr1$x$y\n").expect("htpasswd");
    let shipped =
        |name: &str| std::fs::read_to_string(repo().join("conf/nginx").join(name)).expect(name);
    let localise = |text: String| {
        text.replace(
            "/etc/nginx/tls/mcp.example.com.pem",
            &dir.join("cert.pem").display().to_string(),
        )
        .replace(
            "/etc/nginx/tls/mcp.example.com.key",
            &dir.join("key.pem").display().to_string(),
        )
        .replace(
            "/etc/nginx/mcp-gateway.htpasswd",
            &dir.join("htpasswd").display().to_string(),
        )
    };
    std::fs::write(
        dir.join("mcp-gateway-proxy.conf"),
        shipped("mcp-gateway-proxy.conf"),
    )
    .expect("include");
    let main = localise(shipped("nginx.conf"));
    assert!(
        !main.contains("/etc/nginx"),
        "a path the test does not replace: {main}"
    );
    // The variant replaces the basic-auth server.
    let variant = localise(shipped("auth-request.conf"));
    let basic_server = main.find("    server {").expect("a server block");
    let with_variant = format!("{}{}\n}}\n", &main[..basic_server], variant);
    for (name, config) in [("nginx.conf", main.clone()), ("variant.conf", with_variant)] {
        let path = dir.join(name);
        std::fs::write(&path, format!("pid {}/nginx.pid;\n{config}", dir.display()))
            .expect("config");
        let out = Command::new(program("nginx"))
            .arg("-t")
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&path)
            .output()
            .expect("nginx runs");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------- Caddy

/// Caddy running conf/caddy/Caddyfile, its names pointed at the test's
/// auth service and gateway, on a free port without TLS.
fn start_caddy(gateway: &str, auth_service: &str) -> (Proc, String) {
    let dir = temp_dir("caddy");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let shipped = std::fs::read_to_string(repo().join("conf/caddy/Caddyfile")).expect("Caddyfile");
    for name in ["mcp.example.com {", "127.0.0.1:4180", "127.0.0.1:4444"] {
        assert!(
            shipped.contains(name),
            "the shipped Caddyfile no longer names {name}"
        );
    }
    let site = shipped
        .replace("mcp.example.com {", &format!("http://{addr} {{"))
        .replace("127.0.0.1:4180", auth_service)
        .replace("127.0.0.1:4444", gateway);
    let config = format!("{{\n\tadmin off\n\tauto_https off\n}}\n{site}");
    std::fs::write(dir.join("Caddyfile"), config).expect("Caddyfile");
    let log = dir.join("caddy.log");
    let child = Command::new(program("caddy"))
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.join("Caddyfile"))
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("caddy starts");
    let mut proc = Proc { child, log };
    wait_listening(&addr, &mut proc, "caddy");
    (proc, addr)
}

#[test]
fn caddy_forward_auth_forwards_the_auth_services_email_and_nothing_the_client_sent() {
    // Caddy 2.6 cannot choose its source address: it reaches the gateway
    // from 127.0.0.1, so the client going around it comes from 127.0.0.3.
    let (demo, gw) = demo_and_gateway(&[
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ("PROXY_USER_HEADER", "X-Auth-Request-Email"),
    ]);
    let (caddy, caddy_addr) = start_caddy(&gw.addr, &start_auth_service());
    let good = bearer(GOOD_TOKEN);
    let seen = tool_view(
        &caddy_addr,
        &[
            ("Authorization", &good),
            ("X-Auth-Request-Email", "mallory@example.com"),
        ],
    );
    assert_eq!(seen["x-auth-request-email"], GOOD_EMAIL, "{seen}");

    let before = demo.mcp_requests();
    let bad = bearer("stolen");
    let r = mcp_post(&caddy_addr, &[("Authorization", &bad)], None, INITIALIZE);
    assert_eq!(r.status, 401, "{r:?}");
    let nameless = bearer(NAMELESS_TOKEN);
    let r = mcp_post(
        &caddy_addr,
        &[
            ("Authorization", &nameless),
            ("X-Auth-Request-Email", "mallory@example.com"),
        ],
        None,
        INITIALIZE,
    );
    assert_eq!(r.status, 401, "{r:?} ({})", caddy.output());
    assert!(!r.body.contains("mallory"), "{}", r.body);
    let r = request_from(
        Ipv4Addr::new(127, 0, 0, 3),
        &gw.addr,
        &[("X-Auth-Request-Email", GOOD_EMAIL)],
        INITIALIZE,
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("not accepted from this peer"), "{}", r.body);
    assert_eq!(demo.mcp_requests(), before);
    drop(caddy);
}
