//! What the registry end-to-end tests share: a fresh database per test
//! (a SQLite file always, a PostgreSQL database of its own when
//! `TEST_DATABASE_URL` is set), a gateway with its admin service logged in,
//! data-plane replicas on the same database, and a TCP relay to PostgreSQL
//! the test can cut.

use crate::harness::*;
use sqlx::Connection;
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

pub const EMAIL: &str = "admin@example.com";
pub const PASSWORD: &str = "registry-e2e-password";
/// Every process on one database must share the key of its credentials.
pub const ENCRYPTION_SECRET: &str = "registry-e2e-encryption-secret-0123456789";

static N: AtomicUsize = AtomicUsize::new(0);
static LOUD: Once = Once::new();

/// A database that exists for one test; a PostgreSQL one is dropped with it.
pub struct Db {
    pub url: String,
    pub label: &'static str,
    /// SQLite: the file, to read its bytes raw.
    pub sqlite: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: (server URL, database name).
    pg: Option<(String, String)>,
}

impl Db {
    pub fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("mcp.db");
        Db {
            // Four slashes: an absolute path (SQLAlchemy's rule).
            url: format!("sqlite:///{}", file.display()),
            label: "sqlite",
            sqlite: Some(file),
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh PostgreSQL database, if `TEST_DATABASE_URL` is set.
    pub fn postgres() -> Option<Db> {
        let server = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|s| !s.is_empty());
        let Some(server) = server else {
            LOUD.call_once(|| {
                // Straight to the stream: the test harness captures `eprintln!`.
                let _ = std::io::stderr().write_all(
                    b"\n*** TEST_DATABASE_URL is not set: the registry end-to-end tests run against SQLite ONLY ***\n",
                );
            });
            return None;
        };
        let name = format!(
            "gw_e2e_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(&server)
                .await
                .expect("TEST_DATABASE_URL reachable");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create a test database");
        });
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        Some(Db {
            url: format!("{base}/{name}"),
            label: "postgres",
            sqlite: None,
            _dir: None,
            pg: Some((server.clone(), name)),
        })
    }

    /// SQLite, and PostgreSQL when `TEST_DATABASE_URL` is set.
    pub fn all() -> Vec<Db> {
        let mut out = vec![Db::sqlite()];
        out.extend(Db::postgres());
        out
    }

    /// The same database reached through `relay` (PostgreSQL only).
    pub fn url_via(&self, relay: &Relay) -> String {
        let (_, name) = self.pg.as_ref().expect("a PostgreSQL database");
        format!("postgres://postgres@127.0.0.1:{}/{name}", relay.port)
    }

    /// host:port of the PostgreSQL server.
    pub fn pg_addr(&self) -> String {
        let (server, _) = self.pg.as_ref().expect("a PostgreSQL database");
        let after_at = server.rsplit_once('@').map_or(server.as_str(), |(_, h)| h);
        let after_scheme = after_at.rsplit_once("://").map_or(after_at, |(_, h)| h);
        after_scheme
            .split('/')
            .next()
            .unwrap_or("127.0.0.1:5432")
            .to_string()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some((server, name)) = self.pg.take() {
            block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// Polls `done` every 20 ms until it holds; panics with `log` after 20 s.
/// Returns how long it took, printed: the tests measure, never assert, time.
pub fn eventually(
    what: &str,
    log: impl Fn() -> String,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} never happened:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    println!("{what}: {took:?}");
    took
}

/// The data plane's answer to an MCP `initialize` on `server`.
pub fn route_status(gw: &Gateway, server: &str) -> u16 {
    gw.initialize(server, &ALICE).0.status
}

/// The same, by address, for a thread that does not own the gateway; a
/// request that gets no response at all counts as 0.
pub fn route_status_at(addr: &str, server: &str) -> u16 {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}"#;
    let headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ALICE[0],
    ];
    try_request(
        addr,
        "POST",
        &format!("/servers/{server}/mcp"),
        &headers,
        body,
    )
    .map_or(0, |r| r.status)
}

/// The environment of a gateway on `database_url`.
fn env_for(database_url: &str, admin_port: Option<&str>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = PROXY_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("DATABASE_URL".into(), database_url.into()));
    env.push(("AUTH_ENCRYPTION_SECRET".into(), ENCRYPTION_SECRET.into()));
    match admin_port {
        Some(port) => env.extend([
            ("ADMIN_ENABLED".into(), "true".into()),
            ("ADMIN_PORT".into(), port.into()),
            ("PLATFORM_ADMIN_EMAIL".into(), EMAIL.into()),
            ("PLATFORM_ADMIN_PASSWORD".into(), PASSWORD.into()),
        ]),
        None => env.push(("ADMIN_ENABLED".into(), "false".into())),
    }
    env
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A pure data-plane replica on `database_url`, once `/ready`.
pub fn replica(database_url: &str, yaml: &str) -> Gateway {
    Gateway::start(&borrowed(&env_for(database_url, None)), yaml)
}

/// A gateway with its admin service, and a bearer token from `/auth/login`.
pub struct Admin {
    pub gw: Gateway,
    pub addr: String,
    pub bearer: String,
}

impl Admin {
    pub fn start(database_url: &str, yaml: &str) -> Admin {
        // The admin port was free when looked at; should another test have
        // taken it before the gateway binds it, the gateway exits saying so:
        // another port.
        let mut attempts = 0;
        let (gw, port) = loop {
            attempts += 1;
            let port = free_port().to_string();
            let env = env_for(database_url, Some(&port));
            match Gateway::try_start(&borrowed(&env), yaml) {
                Ok(gw) => break (gw, port),
                Err(why)
                    if attempts < 5 && why.contains("ADMIN_HOST/ADMIN_PORT: cannot listen") => {}
                Err(why) => panic!("{why}"),
            }
        };
        let addr = format!("127.0.0.1:{port}");
        eventually(
            "the admin service ready",
            || gw.proc.output(),
            || try_request(&addr, "GET", "/ready", &[], "").is_ok_and(|r| r.status == 200),
        );
        let login = request(
            &addr,
            "POST",
            "/auth/login",
            &[("Content-Type", "application/json")],
            &format!(r#"{{"email":"{EMAIL}","password":"{PASSWORD}"}}"#),
        );
        assert_eq!(login.status, 200, "{}", login.body);
        let bearer = format!("Bearer {}", login.json()["token"].as_str().expect("token"));
        Admin { gw, addr, bearer }
    }

    /// An authenticated admin API call.
    pub fn call(&self, method: &str, path: &str, body: &str) -> Response {
        let mut headers = vec![("Authorization", self.bearer.as_str())];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        request(&self.addr, method, path, &headers, body)
    }

    pub fn create(&self, name: &str, url: &str, extra: &str) -> Response {
        self.call(
            "POST",
            "/api/servers",
            &format!(r#"{{"name":"{name}","urls":["{url}"]{extra}}}"#),
        )
    }

    pub fn log(&self) -> String {
        self.gw.proc.output()
    }
}

/// A TCP relay between the gateway and PostgreSQL. `cut` drops every
/// relayed connection and closes new ones as soon as they arrive (a
/// database that went away); `resume` relays again.
pub struct Relay {
    pub port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    pub fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay binds");
        let port = listener.local_addr().expect("relay address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, stop2, conns2) = (cut.clone(), stop.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::Acquire) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let pair = (client.try_clone(), server.try_clone());
                let (Ok(client2), Ok(server2)) = pair else {
                    continue;
                };
                if let Ok(mut list) = conns2.lock() {
                    list.extend(client.try_clone());
                    list.extend(server.try_clone());
                }
                pipe(client, server);
                pipe(server2, client2);
            }
        });
        Relay {
            port,
            cut,
            stop,
            conns,
        }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        if let Ok(mut list) = self.conns.lock() {
            for conn in list.drain(..) {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn resume(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
