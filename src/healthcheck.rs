//! `mcp-gateway healthcheck`: asks the local gateway's `/health` and says
//! whether it answered 200, so a container's `HEALTHCHECK` or a supervisor
//! needs no curl. Plain `std::net` (and the OpenSSL the binary links for a
//! TLS listener), because the probe must work in a runtime image that has
//! nothing but this binary.

use pingora_core::tls::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Docker's default `HEALTHCHECK --timeout` is 30 s; a gateway that takes
/// more than this to answer `/health` is not healthy anyway.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// More than a status line and headers is never needed to decide.
const MAX_HEAD: usize = 8 * 1024;

/// Where to probe: the listen address, except that a wildcard bind
/// (`0.0.0.0`, `::`) is reached on the loopback of the same family.
pub fn target(host: IpAddr, port: u16) -> SocketAddr {
    let ip = match host {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    SocketAddr::new(ip, port)
}

/// The status code of an HTTP/1.x response head, or why there is none.
pub fn status_code(head: &[u8]) -> Result<u16, String> {
    let line_end = head
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no complete status line")?;
    let line = std::str::from_utf8(&head[..line_end])
        .map_err(|_| "status line is not text")?
        .trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {line:?}"));
    }
    parts
        .next()
        .filter(|code| code.len() == 3)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status code in {line:?}"))
}

/// `GET /health` on `addr` within `timeout`; Ok when it answers 200.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    probe_over(addr, timeout, false)
}

/// The same over TLS when the listener has `SSL=true`. The certificate is
/// not verified: this is the gateway probing its own local listener, and
/// the certificate names the public host. (With `CLIENT_CA_FILE` the probe
/// has no client certificate and is refused: probe such a gateway over TCP.)
pub fn probe_over(addr: SocketAddr, timeout: Duration, tls: bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let tcp = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    if !tls {
        return exchange(tcp, addr, deadline, timeout);
    }
    for set in [TcpStream::set_read_timeout, TcpStream::set_write_timeout] {
        set(&tcp, Some(timeout)).map_err(|e| e.to_string())?;
    }
    let mut connector = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    connector.set_verify(SslVerifyMode::NONE);
    let stream = connector
        .build()
        .configure()
        .map_err(|e| e.to_string())?
        .verify_hostname(false)
        .connect("localhost", tcp)
        .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
    exchange(stream, addr, deadline, timeout)
}

/// A connection the probe can set deadlines on.
trait ProbeStream: Read + Write {
    fn socket(&self) -> &TcpStream;
}

impl ProbeStream for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

impl ProbeStream for SslStream<TcpStream> {
    fn socket(&self) -> &TcpStream {
        self.get_ref()
    }
}

fn exchange(
    mut stream: impl ProbeStream,
    addr: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), String> {
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer from {addr} within {}s", timeout.as_secs_f32()))
    };
    stream
        .socket()
        .set_write_timeout(Some(remaining()?))
        .map_err(|e| e.to_string())?;
    let request =
        format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: mcp-gateway-healthcheck\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    while !head.contains(&b'\n') && head.len() < MAX_HEAD {
        stream
            .socket()
            .set_read_timeout(Some(remaining()?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("no answer from {addr}: {e}")),
        }
    }
    match status_code(&head)? {
        200 => Ok(()),
        code => Err(format!("{addr}/health answered {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_bind_is_probed_on_loopback() {
        assert_eq!(
            target("0.0.0.0".parse().unwrap(), 4444),
            "127.0.0.1:4444".parse().unwrap()
        );
        assert_eq!(
            target("::".parse().unwrap(), 80),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            target("10.1.2.3".parse().unwrap(), 9),
            "10.1.2.3:9".parse().unwrap()
        );
    }

    #[test]
    fn reads_the_status_code_of_a_response_head() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Ok(200));
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\nX: y\r\n"),
            Ok(503)
        );
        assert_eq!(status_code(b"HTTP/1.1 204\r\n"), Ok(204));
        for bad in [
            &b""[..],
            b"HTTP/1.1 200 OK",
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 abc\r\n",
            b"\xff\xfe\n",
        ] {
            assert!(status_code(bad).is_err(), "{bad:?}");
        }
    }
}
