//! systemd's readiness protocol (sd_notify(3)) for `Type=notify`, without
//! libsystemd: one datagram of `KEY=value` lines to the Unix socket named by
//! `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Outside
//! systemd the variable is unset and every call does nothing.
//!
//! What the gateway says and when: `READY=1` once its listener is up, the
//! first routing snapshot having been applied before it opened, and a
//! `STATUS=` once the registry's servers are in too (`app::readiness`);
//! `RELOADING=1` with `MONOTONIC_USEC=` when a SIGHUP
//! starts and `READY=1` when it is done (`reload`); `STOPPING=1` when
//! SIGTERM's drain begins (`lifecycle`); `STATUS=` lines throughout; and,
//! after a binary upgrade, `MAINPID=` with the new process's `READY=1`.
//! `WATCHDOG=1` every half `WATCHDOG_USEC` when systemd asks for it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Where `$NOTIFY_SOCKET` points.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Path(PathBuf),
    /// The name after the `@`, which stands for the leading NUL byte.
    Abstract(Vec<u8>),
}

/// `None` for an empty or unsupported value (systemd's `vsock:` addresses
/// are for virtual machines, not services).
pub fn parse_target(value: &OsStr) -> Option<Target> {
    let bytes = value.as_bytes();
    match bytes.first()? {
        b'@' if bytes.len() > 1 => Some(Target::Abstract(bytes[1..].to_vec())),
        b'/' => Some(Target::Path(PathBuf::from(value))),
        _ => None,
    }
}

/// One `STATUS=` line. A line break would end the assignment and start
/// another (a reload error quoting a file could otherwise say `READY=1`).
fn status_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("STATUS={flat}")
}

/// The listener is up and the routes are loaded. `main_pid`: after a binary
/// upgrade, this process's id, so that systemd follows it (MAINPID comes
/// first: systemd applies it before READY).
pub fn ready(status: &str, main_pid: Option<u32>) -> String {
    let mut lines = Vec::with_capacity(3);
    if let Some(pid) = main_pid {
        lines.push(format!("MAINPID={pid}"));
    }
    lines.push("READY=1".to_string());
    lines.push(status_line(status));
    lines.join("\n")
}

/// A SIGHUP's reload begins; `monotonic_usec` is `CLOCK_MONOTONIC` now, which
/// `Type=notify-reload` requires and plain `notify` accepts.
pub fn reloading(monotonic_usec: u64, status: &str) -> String {
    format!(
        "RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\n{}",
        status_line(status)
    )
}

/// The drain begins: systemd shows the unit as deactivating.
pub fn stopping(status: &str) -> String {
    format!("STOPPING=1\n{}", status_line(status))
}

pub fn status(text: &str) -> String {
    status_line(text)
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as sd_notify(3)
/// advises, if it is set and `WATCHDOG_PID` is absent or names this process
/// (a variable inherited from a parent is not for us).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != own {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares with.
pub fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
}

struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    fn from_env() -> Option<Notifier> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        let Some(target) = parse_target(&value) else {
            log::warn!("NOTIFY_SOCKET={value:?} is not a Unix socket address; sd_notify is off");
            return None;
        };
        let address = match &target {
            Target::Path(path) => SocketAddr::from_pathname(path),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)
            }
        };
        // Non-blocking: a send must never hold a runtime thread; a full
        // queue loses the message (logged) instead.
        let opened = address.and_then(|address| {
            let socket = UnixDatagram::unbound()?;
            socket.set_nonblocking(true)?;
            Ok((socket, address))
        });
        match opened {
            Ok((socket, address)) => Some(Notifier { socket, address }),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET={value:?}: {e}; sd_notify is off");
                None
            }
        }
    }
}

static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();

/// Whether the start-up's `READY=1` went out: until then a reload must not
/// say `READY=1` (systemd would take the start as done). Sending it and
/// marking it sent is one step under this lock: a SIGHUP between the two
/// reloaded without `RELOADING=1`, which `Type=notify-reload` waits for.
static STARTED: Mutex<bool> = Mutex::new(false);

fn started_lock() -> std::sync::MutexGuard<'static, bool> {
    STARTED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The start-up's `READY=1` (see [`ready`]).
pub fn notify_started(message: &str) {
    let mut started = started_lock();
    notify(message);
    *started = true;
}

/// Sends `message` if the start-up's `READY=1` has gone out, in one step
/// with that check; says whether it had.
pub fn notify_if_started(message: impl FnOnce() -> String) -> bool {
    let started = started_lock();
    if *started {
        notify(&message());
    }
    *started
}

/// Sends `message` to systemd, if it listens. A lost message is logged and
/// not retried: systemd's own timeouts then tell the operator.
pub fn notify(message: &str) {
    let Some(notifier) = NOTIFIER.get_or_init(Notifier::from_env) else {
        return;
    };
    if let Err(e) = notifier
        .socket
        .send_to_addr(message.as_bytes(), &notifier.address)
    {
        let first = message.lines().next().unwrap_or_default();
        log::warn!("sd_notify {first}: {e}");
    }
}

/// Sends `WATCHDOG=1` every half `WATCHDOG_USEC` until the process exits,
/// from its own thread: it goes on through the drain and the grace period,
/// when Pingora's runtimes are stopping. It proves the process is alive and
/// scheduled, not that every request succeeds (that is `/health`'s job).
pub fn start_watchdog() {
    let own = std::process::id();
    let interval = watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        own,
    );
    let Some(interval) = interval else {
        return;
    };
    log::info!("systemd watchdog: WATCHDOG=1 every {interval:?}");
    let started = std::thread::Builder::new()
        .name("sd-watchdog".into())
        .spawn(move || loop {
            notify("WATCHDOG=1");
            std::thread::sleep(interval);
        });
    if let Err(e) = started {
        log::error!("cannot start the systemd watchdog thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_paths_and_abstract_names() {
        assert_eq!(
            parse_target(OsStr::new("/run/systemd/notify")),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_target(OsStr::new("@/org/freedesktop/systemd1/notify/1")),
            Some(Target::Abstract(
                b"/org/freedesktop/systemd1/notify/1".to_vec()
            ))
        );
        for bad in ["", "@", "relative.sock", "vsock:2:1234"] {
            assert_eq!(parse_target(OsStr::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn messages() {
        assert_eq!(ready("serving", None), "READY=1\nSTATUS=serving");
        assert_eq!(
            ready("serving", Some(4711)),
            "MAINPID=4711\nREADY=1\nSTATUS=serving"
        );
        assert_eq!(
            reloading(123, "reloading gateway.yaml"),
            "RELOADING=1\nMONOTONIC_USEC=123\nSTATUS=reloading gateway.yaml"
        );
        assert_eq!(stopping("draining"), "STOPPING=1\nSTATUS=draining");
    }

    #[test]
    fn a_status_cannot_add_an_assignment() {
        assert_eq!(
            status("refused: bad\nREADY=1\r\tx"),
            "STATUS=refused: bad READY=1  x"
        );
    }

    #[test]
    fn watchdog_only_when_asked_and_for_this_process() {
        let half = Some(Duration::from_secs(10));
        assert_eq!(watchdog_interval(Some("20000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("20000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("20000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("20000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("mcp-gateway-sd-notify-test-{}", std::process::id());
        let receiver =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let target = parse_target(OsStr::new(&format!("@{name}"))).unwrap();
        let Target::Abstract(bytes) = target else {
            panic!("abstract expected");
        };
        let sender = UnixDatagram::unbound().unwrap();
        sender
            .send_to_addr(b"READY=1", &SocketAddr::from_abstract_name(bytes).unwrap())
            .unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
