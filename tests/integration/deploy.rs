//! What ships for deployment: the `healthcheck` subcommand a container
//! probes with, `make install`, the systemd unit and the Dockerfile.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

/// Runs `mcp-gateway healthcheck` with only these variables set.
fn healthcheck(env: &[(&str, &str)]) -> Output {
    let dir = std::env::temp_dir().join(format!("mcp-gw-hc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"));
    cmd.env_clear().current_dir(&dir).arg("healthcheck");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("healthcheck runs")
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn healthcheck_exits_0_for_a_healthy_gateway_on_a_wildcard_bind() {
    let demo = Demo::start("a");
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("a", &[demo.url()])]));
    let port = gw.addr.rsplit(':').next().expect("port").to_string();
    // The gateway listens on 127.0.0.1; HOST=0.0.0.0 (the container's
    // setting) must be probed on loopback.
    let mut env = PROXY_ENV.to_vec();
    env.extend([("HOST", "0.0.0.0"), ("PORT", port.as_str())]);
    let out = healthcheck(&env);
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}

#[test]
fn healthcheck_exits_1_with_one_line_when_nothing_listens() {
    let port = free_port().to_string();
    let mut env = PROXY_ENV.to_vec();
    env.push(("PORT", &port));
    let out = healthcheck(&env);
    assert_eq!(out.status.code(), Some(1));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("cannot connect"), "{lines:?}");
}

#[test]
fn healthcheck_exits_1_when_health_is_not_200() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 1024];
        let n = conn.read(&mut buf).expect("request");
        let request = String::from_utf8_lossy(&buf[..n]).into_owned();
        conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            .expect("answer");
        request
    });
    let mut env = PROXY_ENV.to_vec();
    env.push(("PORT", &port));
    let out = healthcheck(&env);
    let request = server.join().expect("server thread");
    assert!(
        request.starts_with("GET /health HTTP/1.1\r\n"),
        "{request:?}"
    );
    assert_eq!(out.status.code(), Some(1));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("answered 503"), "{lines:?}");
}

#[test]
fn healthcheck_exits_1_on_a_configuration_error() {
    let out = healthcheck(&[("PORT", "not-a-port")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_lines(&out)[0].contains("PORT"), "{out:?}");
}
