//! systemd readiness (`Type=notify`): the gateway started with
//! `NOTIFY_SOCKET` pointing at a datagram socket this test binds, as
//! systemd's would be, says READY=1 once it listens, RELOADING=1 and READY=1
//! around a SIGHUP, STOPPING=1 when SIGTERM's drain begins, and pings the
//! watchdog when `WATCHDOG_USEC` asks for it.

use crate::harness::*;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// systemd's end of the protocol: every datagram the gateway sent.
pub struct NotifySocket {
    socket: UnixDatagram,
    pub seen: Vec<String>,
}

impl NotifySocket {
    pub fn bind(path: &std::path::Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        NotifySocket::from(socket)
    }

    fn from(socket: UnixDatagram) -> NotifySocket {
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        NotifySocket {
            socket,
            seen: Vec::new(),
        }
    }

    /// Waits for a message for which `wanted` holds and returns it; every
    /// message received meanwhile is kept in `seen`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
        log: impl Fn() -> String,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; received {:?}\n{}",
                self.seen,
                log()
            );
            let Some(message) = self.recv() else {
                continue;
            };
            if wanted(&message) {
                return message;
            }
        }
    }

    /// The next message, kept in `seen`; `None` after 200 ms without one.
    fn recv(&mut self) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.seen.push(message.clone());
        Some(message)
    }
}

fn lines(message: &str) -> Vec<&str> {
    message.lines().collect()
}

fn start_with_notify(env: &[(&str, &str)], port: u16) -> (Proc, String) {
    let demo_free = servers_yaml(&[]);
    let (mut cmd, dir) = gateway_command(env, &demo_free, port);
    let log = dir.join("gateway.log");
    let file = std::fs::File::create(&log).expect("log file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("gateway starts");
    (Proc { child, log }, format!("127.0.0.1:{port}"))
}

/// Starts the gateway and waits for its start-up's READY=1 (`what` if it
/// never comes); returns the gateway, its address and that message. The
/// port was free when looked at; should another test have taken it
/// before the gateway binds it (Pingora then retries, saying it is in
/// use), the gateway never says READY=1 and starts again on another port.
fn start_ready(
    env: &[(&str, &str)],
    systemd: &mut NotifySocket,
    what: &str,
) -> (Proc, String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut gw, mut addr) = start_with_notify(env, free_port());
    let mut restarts = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "{what}: not within 30 s; received {:?}\n{}",
            systemd.seen,
            gw.output()
        );
        if let Some(message) = systemd.recv() {
            if lines(&message).contains(&"READY=1") {
                return (gw, addr, message);
            }
        } else if restarts < 5 && gw.output().contains(" is in use, will try again") {
            restarts += 1;
            (gw, addr) = start_with_notify(env, free_port());
        }
    }
}

#[test]
fn ready_after_listening_reloading_on_sighup_stopping_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("mcp-gw-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let mut systemd = NotifySocket::bind(&path);
    let notify = path.display().to_string();
    let mut env = PROXY_ENV.to_vec();
    env.push(("NOTIFY_SOCKET", notify.as_str()));
    let (mut gw, addr, ready) = start_ready(&env, &mut systemd, "READY=1 at start-up");
    // Right now, not eventually: the listener was up before the gateway
    // said so.
    let health = try_request(&addr, "GET", "/health", &[], "").expect("listening at READY=1");
    assert_eq!(health.status, 200);
    assert!(ready.contains("STATUS=serving on http://"), "{ready}");
    assert!(!ready.contains("MAINPID="), "not an upgrade: {ready}");
    // The status names the registry until its servers are in; once it no
    // longer does, /ready agrees.
    if ready.contains("waiting for the registry") {
        systemd.wait_for(
            "the status once the registry is loaded",
            Duration::from_secs(30),
            |m| m.starts_with("STATUS=serving on http://") && !m.contains("registry"),
            || gw.output(),
        );
    }
    let r = try_request(&addr, "GET", "/ready", &[], "").expect("listening");
    assert_eq!(r.status, 200, "{}", r.body);

    // A SIGHUP's reload says RELOADING=1 only once the start-up's READY=1
    // is marked sent, just after it went out (`sd_notify::started`); under
    // load a HUP sent at once was reloaded without a word (a reload logged,
    // no RELOADING=1). The readiness service has marked it when it ends,
    // which Pingora logs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gw.output().contains("service 'BG sd-notify ready' exited") {
        assert!(
            Instant::now() < deadline,
            "the readiness service never ended:\n{}",
            gw.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gw.signal("-HUP");
    let reloading = systemd.wait_for(
        "RELOADING=1 on SIGHUP",
        Duration::from_secs(30),
        |m| lines(m).contains(&"RELOADING=1"),
        || gw.output(),
    );
    let usec = lines(&reloading)
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|u| u > 0), "{reloading}");
    let reloaded = systemd.wait_for(
        "READY=1 after the reload",
        Duration::from_secs(30),
        |m| lines(m).contains(&"READY=1"),
        || gw.output(),
    );
    assert!(reloaded.contains("reloaded"), "{reloaded}");

    gw.signal("-TERM");
    let stopping = systemd.wait_for(
        "STOPPING=1 on SIGTERM",
        Duration::from_secs(30),
        |m| lines(m).contains(&"STOPPING=1"),
        || gw.output(),
    );
    assert!(stopping.contains("STATUS=draining"), "{stopping}");
    let status = gw.wait_exit(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{status}");
    assert!(
        !systemd.seen.iter().any(|m| m.contains("WATCHDOG=1")),
        "no WATCHDOG_USEC, no pings: {:?}",
        systemd.seen
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn abstract_socket_and_the_watchdog() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("mcp-gw-notify-test-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .expect("abstract address");
    let mut systemd = NotifySocket::from(UnixDatagram::bind_addr(&address).expect("bind abstract"));
    let notify = format!("@{name}");
    let mut env = PROXY_ENV.to_vec();
    // A ping every 100 ms.
    env.extend([
        ("NOTIFY_SOCKET", notify.as_str()),
        ("WATCHDOG_USEC", "200000"),
    ]);
    let (gw, _addr, _) = start_ready(&env, &mut systemd, "READY=1 over the abstract socket");
    for n in 0..3 {
        systemd.wait_for(
            &format!("WATCHDOG=1 #{n}"),
            Duration::from_secs(30),
            |m| m == "WATCHDOG=1",
            || gw.output(),
        );
    }
}

/// A registry out of reach does not hold READY=1 back (systemd would kill
/// and restart a gateway serving the file's servers); the status says what
/// is missing.
#[test]
fn ready_with_the_files_servers_while_the_registry_is_out_of_reach() {
    let dir = std::env::temp_dir().join(format!("mcp-gw-notify-db-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let mut systemd = NotifySocket::bind(&path);
    let notify = path.display().to_string();
    let mut env = PROXY_ENV.to_vec();
    env.extend([
        ("NOTIFY_SOCKET", notify.as_str()),
        ("DATABASE_URL", "postgresql://u@127.0.0.1:1/mcp"),
    ]);
    let (gw, addr, ready) = start_ready(&env, &mut systemd, "READY=1 without the registry");
    assert!(
        ready.contains("waiting for the registry"),
        "{ready}\n{}",
        gw.output()
    );
    let health = try_request(&addr, "GET", "/health", &[], "").expect("listening at READY=1");
    assert_eq!(health.status, 200);
    let r = try_request(&addr, "GET", "/ready", &[], "").expect("listening");
    assert_eq!(r.status, 503, "{}", r.body);
    let _ = std::fs::remove_dir_all(&dir);
}
