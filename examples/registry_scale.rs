//! The registry at scale (issue 8's benchmark): a registry of `--servers`
//! servers, seeded directly through the store API (`SqlRegistry::create`,
//! the code path of an admin POST minus HTTP and login), then the real
//! gateway binary measured on it:
//!
//! - start-up: process spawn to `/ready` (listening, and every server
//!   loaded from the database and routed), with `--servers` and with 1;
//! - VmRSS once ready, with `--servers` and with 1;
//! - an API change to its route: `POST /api/servers` through the admin
//!   service of process A, then the time until an MCP `initialize` on the
//!   new server answers 200 on A itself and on B, a data-plane replica on
//!   the same database.
//!
//! SQLite always; PostgreSQL too with `--pg postgres://…/db` (two scratch
//! databases are created next to it and dropped). Prints a Markdown table.
//!
//! ```text
//! cargo build --release --bins
//! cargo run --example registry_scale -- --pg postgres://postgres@127.0.0.1:5432/test
//! ```

use clap::Parser;
use mcp_gateway::config::Secret;
use mcp_gateway::registry::{Actor, DatabaseUrl, Registry, ServerDraft, SqlRegistry};
use sqlx::Connection;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "registry-scale-encryption-secret-0123456789";
const EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "registry-scale-password";

#[derive(Parser)]
#[command(about = "Start-up, memory and change-to-route delay at N registered servers")]
struct Cli {
    /// The gateway binary measured.
    #[arg(long, default_value = "target/release/mcp-gateway")]
    gateway: PathBuf,
    /// The demo MCP server every registered server points at.
    #[arg(long, default_value = "target/release/mcp-demo-server")]
    demo: PathBuf,
    #[arg(long, default_value_t = 1000)]
    servers: usize,
    /// Start-ups measured per registry size (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// API changes timed to their route.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// A PostgreSQL server URL (any database on it) to measure it too.
    #[arg(long)]
    pg: Option<String>,
}

fn main() {
    let mut cli = Cli::parse();
    // The gateway runs in a scratch directory: relative paths would break.
    for bin in [&mut cli.gateway, &mut cli.demo] {
        *bin = std::fs::canonicalize(&*bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    }
    let scratch = tempfile::tempdir().expect("scratch dir");
    let demo = Demo::start(&cli.demo);
    let demo_url = format!("http://{}/mcp", demo.addr);
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    let mut backends: Vec<(&str, Vec<String>, Option<String>)> = Vec::new();
    let sqlite = |n: usize| {
        let path = scratch.path().join(format!("mcp-{n}.db"));
        format!("sqlite:///{}", path.display())
    };
    backends.push(("SQLite", vec![sqlite(cli.servers), sqlite(1)], None));
    if let Some(pg) = &cli.pg {
        let base = pg
            .rsplit_once('/')
            .map_or(pg.as_str(), |(b, _)| b)
            .to_string();
        let names = [
            format!("gw_scale_{}", cli.servers),
            "gw_scale_1".to_string(),
        ];
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(pg)
                .await
                .expect("--pg reachable");
            for name in &names {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create a scratch database");
            }
        });
        let urls = names.iter().map(|n| format!("{base}/{n}")).collect();
        backends.push(("PostgreSQL", urls, Some(pg.clone())));
    }

    println!("| Database | What | Figure |");
    println!("|---|---|---|");
    for (label, urls, pg) in &backends {
        let (big, one) = (&urls[0], &urls[1]);
        let seeded = rt.block_on(seed(big, cli.servers, &demo_url));
        rt.block_on(seed(one, 1, &demo_url));
        println!(
            "| {label} | seed {} servers through the store API | {:.2} s |",
            cli.servers,
            seeded.as_secs_f64()
        );
        for (n, url) in [(cli.servers, big), (1, one)] {
            let mut starts = Vec::new();
            let mut rss = Vec::new();
            for _ in 0..cli.runs {
                let (start, kib) = start_up(&cli.gateway, url, scratch.path());
                starts.push(start);
                rss.push(kib);
            }
            starts.sort();
            rss.sort();
            println!(
                "| {label} | start-up to /ready, {n} servers (median of {}; min-max) | {} ms ({}-{}) |",
                cli.runs,
                starts[starts.len() / 2].as_millis(),
                starts[0].as_millis(),
                starts[starts.len() - 1].as_millis()
            );
            println!(
                "| {label} | VmRSS once ready, {n} servers (median) | {:.1} MiB |",
                rss[rss.len() / 2] as f64 / 1024.0
            );
        }
        let (same, replica, post) =
            changes(&cli.gateway, big, scratch.path(), &demo_url, cli.changes);
        let show = |mut d: Vec<Duration>| {
            d.sort();
            format!(
                "median {:.1} ms, max {:.1} ms",
                d[d.len() / 2].as_secs_f64() * 1e3,
                d[d.len() - 1].as_secs_f64() * 1e3
            )
        };
        let n = cli.servers;
        println!(
            "| {label} | POST /api/servers answered, {n} servers | {} |",
            show(post)
        );
        println!(
            "| {label} | 201 → routed by the same process | {} |",
            show(same)
        );
        println!(
            "| {label} | 201 → routed by a replica on the database | {} |",
            show(replica)
        );
        if let Some(pg) = pg {
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(pg).await {
                    for url in urls {
                        let name = url.rsplit('/').next().unwrap_or_default();
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                }
            });
        }
    }
}

/// Registers `n` servers through the store, as the admin API would.
async fn seed(url: &str, n: usize, upstream: &str) -> Duration {
    let url = DatabaseUrl::parse(url).expect("a database URL");
    let registry = SqlRegistry::connect(&url, &Secret::new(SECRET))
        .await
        .expect("the registry opens");
    let actor = Actor(EMAIL.into());
    let start = Instant::now();
    for i in 0..n {
        let draft = ServerDraft {
            name: format!("server-{i:04}"),
            urls: vec![upstream.to_string()],
            enabled: true,
            ..ServerDraft::default()
        };
        registry.create(draft, &actor).await.expect("create");
    }
    let took = start.elapsed();
    registry.close().await;
    took
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Demo {
    _proc: Proc,
    addr: String,
}

impl Demo {
    fn start(bin: &Path) -> Demo {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(bin)
            .args(["--listen", &addr, "--name", "scale"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the demo server prints its address");
        Demo {
            _proc: Proc(child),
            addr,
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Spawns the gateway on `database_url`; `admin_port` turns the admin
/// service on.
fn gateway(bin: &Path, database_url: &str, dir: &Path, admin_port: Option<u16>) -> (Proc, String) {
    let port = free_port();
    let config = dir.join(format!("gateway-{port}.yaml"));
    std::fs::write(&config, "servers: []\n").expect("config file");
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .arg("--config")
        .arg(&config)
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env("DATABASE_URL", database_url)
        .env("AUTH_ENCRYPTION_SECRET", SECRET)
        .env("MCP_CLIENT_AUTH_ENABLED", "false")
        .env("TRUST_PROXY_AUTH", "true")
        .env(
            "JWT_SECRET_KEY",
            "registry-scale-jwt-secret-0123456789abcdef",
        )
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match admin_port {
        Some(p) => cmd
            .env("ADMIN_ENABLED", "true")
            .env("ADMIN_PORT", p.to_string())
            .env("PLATFORM_ADMIN_EMAIL", EMAIL)
            .env("PLATFORM_ADMIN_PASSWORD", PASSWORD),
        None => cmd.env("ADMIN_ENABLED", "false"),
    };
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    (Proc(child), format!("127.0.0.1:{port}"))
}

fn wait_ready(proc: &mut Proc, addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while status(addr, "GET", "/ready", &[], "") != 200 {
        if let Ok(Some(s)) = proc.0.try_wait() {
            panic!("the gateway exited with {s}");
        }
        assert!(Instant::now() < deadline, "the gateway never became ready");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Spawn → `/ready`, then VmRSS (KiB) after a second of settling.
fn start_up(bin: &Path, database_url: &str, dir: &Path) -> (Duration, u64) {
    let start = Instant::now();
    let (mut proc, addr) = gateway(bin, database_url, dir, None);
    wait_ready(&mut proc, &addr);
    let took = start.elapsed();
    assert_eq!(
        initialize(&addr, "server-0000"),
        200,
        "a seeded server is routed"
    );
    std::thread::sleep(Duration::from_secs(1));
    (took, vm_rss(proc.0.id()))
}

fn vm_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `changes` servers created through A's admin API, each timed from its
/// 201 to its first 200 on A and on B. Returns (A, B, POST) delays.
fn changes(
    bin: &Path,
    database_url: &str,
    dir: &Path,
    upstream: &str,
    changes: usize,
) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let admin_port = free_port();
    let admin = format!("127.0.0.1:{admin_port}");
    let (mut a, a_addr) = gateway(bin, database_url, dir, Some(admin_port));
    let (mut b, b_addr) = gateway(bin, database_url, dir, None);
    wait_ready(&mut a, &a_addr);
    wait_ready(&mut b, &b_addr);
    while status(&admin, "GET", "/ready", &[], "") != 200 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let login = format!(r#"{{"email":"{EMAIL}","password":"{PASSWORD}"}}"#);
    let (code, body) = call(
        &admin,
        "POST",
        "/auth/login",
        &[("Content-Type", "application/json")],
        &login,
    );
    assert_eq!(code, 200, "login: {body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).expect("login JSON")["token"]
        .as_str()
        .expect("token")
        .to_string();
    let auth = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    let (mut same, mut replica, mut post) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..changes {
        let name = format!("probe-{i:03}");
        let body = format!(r#"{{"name":"{name}","urls":["{upstream}"]}}"#);
        let sent = Instant::now();
        let (code, text) = call(&admin, "POST", "/api/servers", &headers, &body);
        assert_eq!(code, 201, "{text}");
        let committed = Instant::now();
        post.push(committed - sent);
        let (mut on_a, mut on_b) = (None, None);
        let deadline = committed + Duration::from_secs(30);
        while on_a.is_none() || on_b.is_none() {
            assert!(Instant::now() < deadline, "{name} never routed");
            if on_a.is_none() && initialize(&a_addr, &name) == 200 {
                on_a = Some(committed.elapsed());
            }
            if on_b.is_none() && initialize(&b_addr, &name) == 200 {
                on_b = Some(committed.elapsed());
            }
        }
        same.extend(on_a);
        replica.extend(on_b);
    }
    (same, replica, post)
}

fn initialize(addr: &str, server: &str) -> u16 {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"scale","version":"1"}}}"#;
    status(
        addr,
        "POST",
        &format!("/servers/{server}/mcp"),
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("X-Authenticated-User", "bench"),
        ],
        body,
    )
}

fn status(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    call(addr, method, path, headers, body).0
}

/// One request on a fresh connection; status 0 when there is no answer.
fn call(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let attempt = || -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(req.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    };
    attempt().unwrap_or((0, String::new()))
}
