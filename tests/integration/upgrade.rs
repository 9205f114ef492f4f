//! Binary upgrade: a second gateway started with `--upgrade` takes the
//! listening sockets of the running one, which on SIGQUIT hands them over,
//! finishes what it has in flight (an open event stream included) and
//! exits by itself, while clients keep sending MCP requests throughout.
//! Not one request fails and none is sent twice: the clients here do not
//! retry, as a client sending a non-idempotent POST must not.

use crate::harness::*;
use crate::sd_notify::NotifySocket;
use serde_json::Value;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `SHUTDOWN_GRACE_SECONDS` of both processes.
const GRACE_SECONDS: &str = "6";

/// What a load thread saw.
#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    failures: Vec<String>,
    /// Answers that said `Connection: close`, after which the next request
    /// went on a new connection.
    told_to_close: u64,
    /// Which process answered `/version`, in order, repeats folded.
    pids: Vec<u64>,
    /// How many times the answering process changed.
    switches: u64,
    last_pid: u64,
}

fn ping_body(n: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"ping"}}"#)
}

fn mcp_headers(sid: &str) -> Vec<(&str, &str)> {
    vec![
        ("X-Authenticated-User", "alice"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("Mcp-Session-Id", sid),
    ]
}

fn is_ping_result(r: &Response) -> bool {
    r.status == 200 && r.body.contains("\"result\"")
}

/// MCP pings on one connection reused for as long as the server keeps it.
fn keepalive_load(addr: String, sid: String, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let headers = mcp_headers(&sid);
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let req =
            raw_keepalive_request(&addr, "POST", "/servers/demo/mcp", &headers, &ping_body(n));
        let reader = match conn.take() {
            Some(reader) => reader,
            None => match TcpStream::connect(&addr) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
                    BufReader::new(s)
                }
                Err(e) => {
                    tally.lock().unwrap().failures.push(format!("connect: {e}"));
                    continue;
                }
            },
        };
        let mut reader = reader;
        let sent = reader.get_mut().write_all(req.as_bytes());
        let answer = sent.and_then(|()| read_response(&mut reader));
        let mut t = tally.lock().unwrap();
        match answer {
            Ok(r) if is_ping_result(&r) => {
                t.ok += 1;
                if r.header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    t.told_to_close += 1;
                } else {
                    conn = Some(reader);
                }
            }
            Ok(r) => t
                .failures
                .push(format!("keep-alive: {} {}", r.status, r.body)),
            // An idle connection closed under the request included: that
            // is the race the old process must not lose.
            Err(e) => t.failures.push(format!("keep-alive request {n}: {e}")),
        }
    }
}

/// A new connection for every request: an MCP ping, then `/version` to
/// learn which process accepted it.
fn new_connection_load(addr: String, sid: String, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let headers = mcp_headers(&sid);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let ping = try_request(&addr, "POST", "/servers/demo/mcp", &headers, &ping_body(n));
        let version = try_request(&addr, "GET", "/version", &ALICE, "");
        let mut t = tally.lock().unwrap();
        match ping {
            Ok(r) if is_ping_result(&r) => t.ok += 1,
            Ok(r) => t
                .failures
                .push(format!("new connection: {} {}", r.status, r.body)),
            Err(e) => t.failures.push(format!("new connection: {e}")),
        }
        match version.map(|r| (r.status, serde_json::from_str::<Value>(&r.body))) {
            Ok((200, Ok(v))) => {
                let pid = v["pid"].as_u64().unwrap_or(0);
                if t.pids.last() != Some(&pid) {
                    t.switches += 1;
                    if !t.pids.contains(&pid) {
                        t.pids.push(pid);
                    }
                }
                t.last_pid = pid;
                t.ok += 1;
            }
            other => t.failures.push(format!("/version: {other:?}")),
        }
    }
}

pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `mcp-gateway --upgrade` with `env` (which names the old
/// process's `PORT`) and waits until it waits for the sockets.
pub fn start_upgrade(env: &[(&str, &str)], yaml: &str) -> Proc {
    let (mut cmd, new_dir) = gateway_command(env, yaml, 0);
    let new_log = new_dir.join("gateway.log");
    // Log lines go to stdout, start-up errors to stderr: one file for both.
    let file = std::fs::File::create(&new_log).expect("log file");
    let child = cmd
        .arg("--upgrade")
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("new gateway starts");
    let new = Proc {
        child,
        log: new_log,
    };
    wait_for(
        "the new process waits for the sockets",
        Duration::from_secs(30),
        || new.output().contains("waiting on"),
        || new.output(),
    );
    new
}

#[test]
fn upgrade_under_load_drops_nothing_and_the_old_process_drains_then_exits() {
    let demo = Demo::start("d");
    let yaml = servers_yaml(&[("demo", &[demo.url()])]);
    let dir = std::env::temp_dir().join(format!("mcp-gw-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let sock = dir.join("upgrade.sock").display().to_string();
    let db = format!("sqlite:///{}/mcp.db", dir.display());
    // systemd's notify socket, one for both processes as under systemd.
    let notify_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&notify_path);
    let mut systemd = NotifySocket::bind(&notify_path);
    let notify = notify_path.display().to_string();
    let admin_port = free_port().to_string();
    let mut env = PROXY_ENV.to_vec();
    env.extend([
        ("UPGRADE_SOCK", sock.as_str()),
        ("DATABASE_URL", db.as_str()),
        ("SHUTDOWN_GRACE_SECONDS", GRACE_SECONDS),
        ("ADMIN_ENABLED", "true"),
        ("ADMIN_PORT", admin_port.as_str()),
        ("PLATFORM_ADMIN_PASSWORD", "upgrade-test-password"),
        ("NOTIFY_SOCKET", notify.as_str()),
    ]);
    let mut old = Gateway::start(&env, &yaml);
    let admin = format!("127.0.0.1:{admin_port}");
    let old_pid = u64::from(old.proc.child.id());

    let sid = old.initialize("demo", &ALICE).1.expect("a session id");
    let mut stream_headers = ALICE.to_vec();
    stream_headers.push(("Mcp-Session-Id", &sid));
    let mut stream = open_stream(&old, "/servers/demo/mcp", &stream_headers);
    assert!(next_data(&mut stream).contains("\"tick\":0"));

    let stop = Arc::new(AtomicBool::new(false));
    let keepalive = Arc::new(Mutex::new(Tally::default()));
    let fresh = Arc::new(Mutex::new(Tally::default()));
    let threads = [
        {
            let (a, s, st, t) = (
                old.addr.clone(),
                sid.clone(),
                stop.clone(),
                keepalive.clone(),
            );
            std::thread::spawn(move || keepalive_load(a, s, st, t))
        },
        {
            let (a, s, st, t) = (old.addr.clone(), sid.clone(), stop.clone(), fresh.clone());
            std::thread::spawn(move || new_connection_load(a, s, st, t))
        },
    ];
    wait_for(
        "load on the old process",
        Duration::from_secs(10),
        || fresh.lock().unwrap().ok > 5,
        || old.proc.output(),
    );

    // The new binary: same port, same registry file, same socket path.
    let port = old.addr.rsplit(':').next().expect("port").to_string();
    env.push(("PORT", port.as_str()));
    let mut new = start_upgrade(&env, &yaml);
    let new_pid = u64::from(new.child.id());

    old.proc.signal("-QUIT");
    let quit = Instant::now();
    wait_for(
        "a new connection served by the new process",
        Duration::from_secs(30),
        || fresh.lock().unwrap().last_pid == new_pid,
        || format!("old:\n{}\nnew:\n{}", old.proc.output(), new.output()),
    );
    let new_serves = quit.elapsed();
    println!("new process served a new connection {new_serves:?} after SIGQUIT");

    // The stream opened on the old process keeps flowing after that.
    let mut ticks_after = 0;
    let stream_end = loop {
        let mut line = String::new();
        match std::io::BufRead::read_line(&mut stream, &mut line) {
            Ok(0) | Err(_) => break quit.elapsed(),
            Ok(_) if line.starts_with("data:") && quit.elapsed() > new_serves => ticks_after += 1,
            Ok(_) => {}
        }
    };
    println!("old stream: {ticks_after} events after the new process served, ended {stream_end:?} after SIGQUIT");
    assert!(
        ticks_after >= 5,
        "the stream was cut early: {ticks_after} events after the switch"
    );
    // Not before the grace period was over: 5 s of both processes
    // accepting, then GRACE_SECONDS (less a second for where `quit` was
    // measured). A lower bound only: a slow machine makes it later.
    assert!(
        stream_end >= Duration::from_secs(5 + 6 - 1),
        "the stream ended {stream_end:?} after SIGQUIT, before the grace period was over"
    );

    let status = old
        .proc
        .wait_exit(Duration::from_secs(60))
        .expect("the old process exits by itself");
    println!(
        "old process exited {:?} after SIGQUIT: {status}",
        quit.elapsed()
    );
    assert!(status.success(), "{status}\n{}", old.proc.output());

    // Load on the new process alone for a moment, then stop.
    let before = fresh.lock().unwrap().ok;
    wait_for(
        "load on the new process",
        Duration::from_secs(10),
        || fresh.lock().unwrap().ok > before + 5,
        || new.output(),
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("load thread");
    }
    let (k, f) = (keepalive.lock().unwrap(), fresh.lock().unwrap());
    println!(
        "keep-alive: {} ok, told to close {} times",
        k.ok, k.told_to_close
    );
    println!(
        "new connections: {} ok, served by pids {:?} (old {old_pid}, new {new_pid}), {} switches while both accepted",
        f.ok, f.pids, f.switches
    );
    assert!(
        k.failures.is_empty() && f.failures.is_empty(),
        "failed requests: {:?} {:?}",
        k.failures,
        f.failures
    );
    assert_eq!(
        (f.pids.as_slice(), f.last_pid),
        (&[old_pid, new_pid][..], new_pid)
    );
    // The old process moved the keep-alive client off, by saying so.
    assert!(k.told_to_close >= 1, "{k:?}");

    // The new process's registry (the same SQLite file) and admin API answer.
    let r = request(&old.addr, "GET", "/ready", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(
        "the new admin service",
        Duration::from_secs(60),
        || try_request(&admin, "GET", "/ready", &[], "").is_ok_and(|r| r.status == 200),
        || new.output(),
    );
    assert!(
        new.child.try_wait().expect("status").is_none(),
        "the new process runs on"
    );

    // systemd was told to follow the new process, and the old one did not
    // say STOPPING=1 (the unit would stop under the new one).
    let ready = systemd.wait_for(
        "the new process's MAINPID= and READY=1",
        Duration::from_secs(10),
        |m| m.contains(&format!("MAINPID={new_pid}\n")),
        || new.output(),
    );
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(
        !systemd.seen.iter().any(|m| m.contains("STOPPING=1")),
        "{:?}",
        systemd.seen
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The race the old process used to lose: a keep-alive connection idle
/// when it stopped accepting was closed at once, under a request the client
/// was sending. Now it stays open, and a request on it is answered, with
/// `Connection: close`.
#[test]
fn a_connection_idle_at_the_stop_is_answered_then_closed() {
    let demo = Demo::start("d");
    let yaml = servers_yaml(&[("demo", &[demo.url()])]);
    let dir = std::env::temp_dir().join(format!("mcp-gw-upgrade-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let sock = dir.join("upgrade.sock").display().to_string();
    let mut env = PROXY_ENV.to_vec();
    // Long enough that the open stream keeps the old process alive for the
    // whole test: it exits only when the test ends.
    env.extend([
        ("UPGRADE_SOCK", sock.as_str()),
        ("SHUTDOWN_GRACE_SECONDS", "120"),
    ]);
    let mut old = Gateway::start(&env, &yaml);
    let sid = old.initialize("demo", &ALICE).1.expect("a session id");
    let mut stream_headers = ALICE.to_vec();
    stream_headers.push(("Mcp-Session-Id", &sid));
    let mut stream = open_stream(&old, "/servers/demo/mcp", &stream_headers);
    assert!(next_data(&mut stream).contains("\"tick\":0"));

    let headers = mcp_headers(&sid);
    let mut conn = BufReader::new(TcpStream::connect(&old.addr).expect("connect"));
    conn.get_mut()
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let ping = |n| {
        raw_keepalive_request(
            &old.addr,
            "POST",
            "/servers/demo/mcp",
            &headers,
            &ping_body(n),
        )
    };
    conn.get_mut().write_all(ping(1).as_bytes()).expect("send");
    let first = read_response(&mut conn).expect("answer");
    assert!(is_ping_result(&first), "{first:?}");
    assert_eq!(
        first
            .header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("keep-alive")
    );

    let port = old.addr.rsplit(':').next().expect("port").to_string();
    env.push(("PORT", port.as_str()));
    let new = start_upgrade(&env, &yaml);
    old.proc.signal("-QUIT");
    // Pingora's line once the old process stops accepting (5 s after the
    // hand-over); the connection has been idle all along.
    wait_for(
        "the old process stops accepting",
        Duration::from_secs(30),
        || old.proc.output().contains("Graceful shutdown started"),
        || format!("old:\n{}\nnew:\n{}", old.proc.output(), new.output()),
    );
    conn.get_mut()
        .write_all(ping(2).as_bytes())
        .expect("send on the idle connection");
    let second = read_response(&mut conn).expect("an answer on the connection idle at the stop");
    assert!(is_ping_result(&second), "{second:?}");
    assert_eq!(
        second
            .header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close")
    );
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut conn, &mut rest).expect("closed after the answer");
    assert!(rest.is_empty());
    assert!(
        old.proc.child.try_wait().expect("status").is_none(),
        "the stream holds it"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn upgrade_without_a_running_gateway_exits_1_naming_the_socket() {
    let dir = std::env::temp_dir().join(format!("mcp-gw-upgrade-none-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let sock = dir.join("upgrade.sock").display().to_string();
    let started = Instant::now();
    let mut env = PROXY_ENV.to_vec();
    env.push(("UPGRADE_SOCK", sock.as_str()));
    let (code, out) = Gateway::run_to_exit(&env, "servers: []\n", &["--upgrade"]);
    println!("gave up after {:?}", started.elapsed());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&sock), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_relative_or_overlong_upgrade_sock_is_a_configuration_error() {
    let long = format!("/{}", "s".repeat(120));
    for bad in ["relative.sock", long.as_str()] {
        let (code, out) = Gateway::run_to_exit(
            &[("UPGRADE_SOCK", bad)],
            "servers: []\n",
            &["--check-config"],
        );
        assert_eq!(code, 2, "{bad}: {out}");
        assert!(out.contains("UPGRADE_SOCK"), "{out}");
    }
}

#[test]
fn sigquit_with_no_new_process_waiting_is_ignored() {
    let dir = std::env::temp_dir().join(format!("mcp-gw-upgrade-stray-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let sock = dir.join("upgrade.sock").display().to_string();
    let mut env = PROXY_ENV.to_vec();
    env.push(("UPGRADE_SOCK", sock.as_str()));
    let mut gw = Gateway::start(&env, "servers: []\n");
    gw.proc.signal("-QUIT");
    wait_for(
        "the SIGQUIT is refused",
        Duration::from_secs(30),
        || gw.proc.output().contains("SIGQUIT ignored"),
        || gw.proc.output(),
    );
    assert!(gw.proc.output().contains(&sock));
    assert_eq!(gw.request("GET", "/health", &[], "").status, 200);
    assert!(gw.proc.child.try_wait().expect("status").is_none());
    // SIGTERM still drains and stops it.
    gw.proc.signal("-TERM");
    let status = gw
        .proc
        .wait_exit(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}
