//! Starts the real binaries on free ports and talks to them over raw
//! sockets, so a test sees exactly the bytes a client would: duplicate
//! headers, odd header names and `Connection` tricks included.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

/// Proxy-header mode, as behind an auth proxy on loopback (JWT secret set
/// for the session key).
pub const PROXY_ENV: [(&str, &str); 3] = [
    ("MCP_CLIENT_AUTH_ENABLED", "false"),
    ("TRUST_PROXY_AUTH", "true"),
    ("JWT_SECRET_KEY", SECRET),
];
/// The identity header of a caller the auth proxy vouched for.
pub const ALICE: [(&str, &str); 1] = [("X-Authenticated-User", "alice")];
pub const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn scratch_dir() -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mcp-gw-it-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A child process killed when the test ends, however it ends.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The output once `ready` holds for it (or after 10 s, for the
    /// assertion to show): the gateway writes its log from a thread of its
    /// own, so a line may reach the file just after the response it follows.
    pub fn output_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.output();
            if ready(&out) || Instant::now() >= deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` (`-HUP`, `-TERM`, ...). A signal the gateway handles is
    /// sent once its handler is installed, which is after the listener
    /// opens: Pingora installs SIGTERM's and SIGQUIT's once its services
    /// run, the reload service SIGHUP's once it starts; a signal sent before
    /// would end the process (or, SIGHUP, be ignored).
    pub fn signal(&self, sig: &str) {
        if let Some(number) = handled_signal(sig) {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match self.catches(number) {
                    Some(true) | None => break,
                    Some(false) => {}
                }
                assert!(
                    Instant::now() < deadline,
                    "{sig}: no handler installed within 30 s:\n{}",
                    self.output()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// Whether process `pid` has a TCP socket listening on `port` (its socket
/// inodes in `/proc/PID/fd`, the listening ones in `/proc/PID/net/tcp*`).
/// Without `/proc`, true: the caller's probe alone decides.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return true;
    };
    let own: std::collections::HashSet<u64> = fds
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|link| {
            link.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .any(|table| {
            table.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let on_port = fields
                    .get(1)
                    .and_then(|local| local.rsplit_once(':'))
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                    == Some(port);
                // State 0A: listening.
                on_port
                    && fields.get(3) == Some(&"0A")
                    && fields
                        .get(9)
                        .and_then(|inode| inode.parse::<u64>().ok())
                        .is_some_and(|inode| own.contains(&inode))
            })
        })
}

/// The signal numbers of the signals the gateway handles (Linux's).
fn handled_signal(sig: &str) -> Option<u32> {
    match sig.trim_start_matches('-') {
        "HUP" => Some(1),
        "INT" => Some(2),
        "QUIT" => Some(3),
        "TERM" => Some(15),
        _ => None,
    }
}

impl Proc {
    /// Whether the process has a handler for signal `number` (`SigCgt` in
    /// `/proc/PID/status`); `None` once it is gone (or there is no `/proc`).
    fn catches(&self, number: u32) -> Option<bool> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())?;
        // A zombie (exited, not yet reaped) catches nothing any more.
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        (!zombie).then_some(caught & (1 << (number - 1)) != 0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo MCP server shipped with the project.
pub struct Demo {
    pub proc: Proc,
    pub addr: String,
}

impl Demo {
    pub fn start(name: &str) -> Demo {
        Demo::start_with(name, &[])
    }

    /// With extra flags, e.g. a misbehaviour a test needs.
    pub fn start_with(name: &str, extra: &[&str]) -> Demo {
        let dir = scratch_dir();
        let log = dir.join("demo.log");
        // Port 0: the demo server says which port it got. A port found
        // free beforehand could be another test's by the time it binds.
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-demo-server"))
            .args(["--listen", "127.0.0.1:0", "--name", name])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("demo server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("demo server prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("demo server said {line:?}"))
            .to_string();
        Demo {
            proc: Proc { child, log },
            addr,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// How many MCP requests (`/mcp`, `/sse`, `/message`) reached this server.
    pub fn mcp_requests(&self) -> u64 {
        request(&self.addr, "GET", "/healthz", &[], "").json()["mcp_requests"]
            .as_u64()
            .expect("mcp_requests in /healthz")
    }

    /// The MCP requests that carried `X-Authenticated-User`: those a test
    /// sent through the gateway, without the gateway's own gathering.
    pub fn user_requests(&self) -> u64 {
        request(&self.addr, "GET", "/healthz", &[], "").json()["user_requests"]
            .as_u64()
            .expect("user_requests in /healthz")
    }
}

/// The npm project of MCP software nobody here wrote (tests/mcp-clients:
/// the TypeScript SDK, server-everything, the Inspector), installed by
/// `make deps-test`. Panics, saying how to fix it, when it is not installed
/// as pinned: a missing client fails loudly, never passes silently.
pub fn mcp_clients_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp-clients");
    let lock = std::fs::read(dir.join("package-lock.json")).ok();
    let marker = std::fs::read(dir.join("node_modules/.installed")).ok();
    assert!(
        lock.is_some() && lock == marker,
        "\n\n*** The npm MCP clients are not installed (or not as pinned) in {}/node_modules.\n\
         *** Run `make deps-test` (scripts/install-test-deps.sh; `make test` runs it).\n",
        dir.display()
    );
    dir
}

/// `@modelcontextprotocol/server-everything`, the MCP reference server that
/// exercises every feature (progress, sampling, cancellation...), in its
/// Streamable HTTP mode on a free port; killed when dropped.
pub struct Everything {
    /// Held for its `Drop`, which kills the server; the log stays in the
    /// scratch directory.
    _proc: Proc,
    pub addr: String,
}

impl Everything {
    pub fn start() -> Everything {
        // A port found free may be taken before node binds it (node then
        // exits with EADDRINUSE, and the probe below would reach whoever
        // took it): it counts as started once node itself listens there.
        for _ in 0..5 {
            if let Some(everything) = Everything::start_on(free_port()) {
                return everything;
            }
        }
        panic!("server-everything never started on a port of its own");
    }

    fn start_on(port: u16) -> Option<Everything> {
        let entry = mcp_clients_dir()
            .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        let log = scratch_dir().join(format!("everything-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new("node")
            .arg(entry)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("node starts server-everything");
        let mut proc = Proc { child, log };
        let addr = format!("127.0.0.1:{port}");
        // It binds every address; ready once it answers HTTP at all (a GET
        // without a session is its 400) on a socket of its own.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(listens_on(proc.child.id(), port)
            && try_request(&addr, "GET", "/mcp", &[], "").is_ok())
        {
            if let Ok(Some(status)) = proc.child.try_wait() {
                let output = proc.output();
                if output.contains("EADDRINUSE") {
                    return None;
                }
                panic!("server-everything exited with {status}:\n{output}");
            }
            assert!(
                Instant::now() < deadline,
                "server-everything never answered:\n{}",
                proc.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Everything { _proc: proc, addr })
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }
}

pub struct Gateway {
    pub proc: Proc,
    pub addr: String,
}

/// Settings every test gets unless it overrides them: fast health checks
/// and a short drain, so failover and shutdown tests finish quickly.
/// The admin service is off unless a test turns it on: its default port
/// would be shared by every gateway the suite starts.
const BASE_ENV: [(&str, &str); 6] = [
    ("ADMIN_ENABLED", "false"),
    ("HEALTH_CHECK_INTERVAL", "0.2"),
    ("SHUTDOWN_DRAIN_SECONDS", "0.5"),
    ("SHUTDOWN_GRACE_SECONDS", "3"),
    ("WORKER_THREADS", "2"),
    ("LOG_LEVEL", "info"),
];

pub fn gateway_command(env: &[(&str, &str)], yaml: &str, port: u16) -> (Command, PathBuf) {
    let dir = scratch_dir();
    let config = dir.join("gateway.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(&dir)
        .arg("--config")
        .arg(&config)
        .env("PORT", port.to_string())
        // Each gateway its own registry file (SQLAlchemy's four slashes: an
        // absolute path), not a `./mcp.db` shared by every test.
        .env(
            "DATABASE_URL",
            format!("sqlite:///{}/mcp.db", dir.display()),
        );
    for (k, v) in BASE_ENV.iter().chain(env) {
        cmd.env(k, v);
    }
    (cmd, dir)
}

/// A YAML file with one server per (name, urls).
pub fn servers_yaml(servers: &[(&str, &[String])]) -> String {
    let mut out = String::from("servers:\n");
    for (name, urls) in servers {
        out.push_str(&format!(
            "  - name: {name}\n    urls: [{}]\n",
            urls.join(", ")
        ));
    }
    out
}

impl Gateway {
    /// Starts the gateway and waits until `/ready`: listening, and the
    /// registry's servers routed.
    pub fn start(env: &[(&str, &str)], yaml: &str) -> Gateway {
        Gateway::start_probing(env, yaml, &|addr| {
            try_request(addr, "GET", "/ready", &[], "").is_ok_and(|r| r.status == 200)
        })
    }

    /// Waits only until `/health`: for a gateway whose registry database
    /// is out of reach.
    pub fn start_live(env: &[(&str, &str)], yaml: &str) -> Gateway {
        Gateway::start_probing(env, yaml, &|addr| {
            try_request(addr, "GET", "/health", &[], "").is_ok_and(|r| r.status == 200)
        })
    }

    /// Starts it and waits until `healthy(addr)` (a TLS listener needs
    /// another client than this harness's plain sockets).
    pub fn start_probing(
        env: &[(&str, &str)],
        yaml: &str,
        healthy: &dyn Fn(&str) -> bool,
    ) -> Gateway {
        Gateway::try_start_probing(env, yaml, healthy).unwrap_or_else(|why| panic!("{why}"))
    }

    /// As [`Gateway::start`], with `Err` (the status and the log) for a
    /// gateway that exits instead.
    pub fn try_start(env: &[(&str, &str)], yaml: &str) -> Result<Gateway, String> {
        Gateway::try_start_probing(env, yaml, &|addr| {
            try_request(addr, "GET", "/ready", &[], "").is_ok_and(|r| r.status == 200)
        })
    }

    fn try_start_probing(
        env: &[(&str, &str)],
        yaml: &str,
        healthy: &dyn Fn(&str) -> bool,
    ) -> Result<Gateway, String> {
        // The port was free when looked at; another test may have taken it
        // before the gateway binds it (Pingora then retries, logging that it
        // is in use). The probe must not take another test's gateway on it
        // for this one: healthy counts once this process listens there.
        let mut attempts = 0;
        'start: loop {
            attempts += 1;
            let port = free_port();
            let (mut cmd, dir) = gateway_command(env, yaml, port);
            let log = dir.join("gateway.log");
            // The log (access lines included) goes to stdout, start-up errors
            // to stderr: one file holds both, in order.
            let file = std::fs::File::create(&log).expect("log file");
            let child = cmd
                .stdout(file.try_clone().expect("log file"))
                .stderr(file)
                .spawn()
                .expect("gateway starts");
            let mut gw = Gateway {
                proc: Proc { child, log },
                addr: format!("127.0.0.1:{port}"),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = gw.proc.child.try_wait() {
                    return Err(format!(
                        "gateway exited with {status}:\n{}",
                        gw.proc.output()
                    ));
                }
                if attempts < 5 && gw.proc.output().contains(" is in use, will try again") {
                    // Dropped: killed. Another port.
                    continue 'start;
                }
                if healthy(&gw.addr) && listens_on(gw.proc.child.id(), port) {
                    return Ok(gw);
                }
                assert!(
                    Instant::now() < deadline,
                    "gateway never became ready:\n{}",
                    gw.proc.output()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Runs the gateway expecting it to exit (bad configuration, `--check-config`).
    pub fn run_to_exit(env: &[(&str, &str)], yaml: &str, extra: &[&str]) -> (i32, String) {
        let (mut cmd, _dir) = gateway_command(env, yaml, free_port());
        let out = cmd.args(extra).output().expect("gateway runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout),
        )
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        request(&self.addr, method, path, headers, body)
    }

    /// `initialize` on a server's MCP endpoint; returns the response and the session id.
    pub fn initialize(&self, server: &str, headers: &[(&str, &str)]) -> (Response, Option<String>) {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}"#;
        let r = self.mcp_post(server, headers, None, body);
        let sid = r.header("mcp-session-id").map(str::to_string);
        (r, sid)
    }

    pub fn mcp_post(
        &self,
        server: &str,
        headers: &[(&str, &str)],
        sid: Option<&str>,
        body: &str,
    ) -> Response {
        let mut all = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        all.extend_from_slice(headers);
        if let Some(sid) = sid {
            all.push(("Mcp-Session-Id", sid));
        }
        self.request("POST", &format!("/servers/{server}/mcp"), &all, body)
    }

    /// Calls the demo server's `whoami` tool: which replica answered and the
    /// headers it received.
    pub fn whoami(&self, server: &str, headers: &[(&str, &str)], sid: &str) -> Value {
        let body = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
        let r = self.mcp_post(server, headers, Some(sid), body);
        assert_eq!(r.status, 200, "whoami failed: {r:?}");
        let text = r.json()["result"]["content"][0]["text"]
            .as_str()
            .expect("whoami text")
            .to_string();
        serde_json::from_str(&text).expect("whoami JSON")
    }

    /// initialize + whoami: what the upstream saw for these request headers.
    pub fn upstream_view(&self, server: &str, headers: &[(&str, &str)]) -> Value {
        let (r, sid) = self.initialize(server, headers);
        assert_eq!(r.status, 200, "initialize failed: {r:?}");
        self.whoami(server, headers, &sid.expect("session id"))
    }

    pub fn metrics(&self) -> String {
        self.request("GET", "/metrics", &[], "").body
    }

    /// Waits until the federation catalog has gathered `server` (its
    /// MCP-level check is in). The gathering is the gateway's own traffic to
    /// the server (`initialize`, its GET stream, the lists), racing a test
    /// that counts what reaches the server; after it, nothing more comes
    /// until the next refresh.
    pub fn wait_gathered(&self, server: &str) {
        let series = format!("mcp_server_mcp_up{{server=\"{server}\"}}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while metric(&self.metrics(), &series) != 1.0 {
            assert!(
                Instant::now() < deadline,
                "the catalog never gathered {server}: {}",
                self.proc.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A scrape bearing `METRICS_TOKEN`, which adds the per-user series.
    pub fn metrics_as(&self, token: &str) -> String {
        let auth = bearer(token);
        let r = self.request("GET", "/metrics", &[("Authorization", &auth)], "");
        assert_eq!(r.status, 200, "{r:?}");
        r.body
    }
}

/// A metric's value in Prometheus text, 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.write_all(raw_request(addr, method, path, headers, body).as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

pub fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut all = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    raw_keepalive_request(addr, method, path, &all, body)
}

/// A request that leaves the connection open for the next one.
pub fn raw_keepalive_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// Reads exactly one response (Content-Length or chunked body) from a
/// connection that stays open.
pub fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        reader.read_until(b'\n', &mut raw)?;
        if raw.len() == before {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if raw.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let head = parse_response(&raw)?;
    let length = head
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(length) = length {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        raw.extend_from_slice(&body);
    } else if head
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            let mut size_line = Vec::new();
            reader.read_until(b'\n', &mut size_line)?;
            raw.extend_from_slice(&size_line);
            let size = usize::from_str_radix(String::from_utf8_lossy(&size_line).trim(), 16)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            raw.extend_from_slice(&chunk);
            if size == 0 {
                break;
            }
        }
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

pub fn jwt(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token encodes")
}

pub fn in_an_hour() -> u64 {
    jsonwebtoken::get_current_timestamp() + 3600
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Opens a streaming GET and returns a line reader over the socket.
/// Initialises a session on `server` and opens its GET event stream.
pub fn open_session_stream(
    gw: &Gateway,
    server: &str,
    caller: &[(&str, &str)],
) -> BufReader<TcpStream> {
    let sid = gw.initialize(server, caller).1.expect("a session id");
    let mut headers = caller.to_vec();
    headers.push(("Mcp-Session-Id", &sid));
    open_stream(gw, &format!("/servers/{server}/mcp"), &headers)
}

pub fn open_stream(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(&gw.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut all = vec![("Accept", "text/event-stream")];
    all.extend_from_slice(headers);
    stream
        .write_all(raw_request(&gw.addr, "GET", path, &all, "").as_bytes())
        .expect("write");
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    assert!(status.contains(" 200 "), "stream status: {status}");
    reader
}

/// The next SSE `data:` line (chunk-size lines of a chunked body are skipped).
pub fn next_data(reader: &mut BufReader<TcpStream>) -> String {
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "stream ended"
        );
        if let Some(data) = line.strip_prefix("data:") {
            return data.trim().to_string();
        }
    }
}
