//! What ships for deployment: the `healthcheck` subcommand a container
//! probes with, `make install`, the systemd unit and the Dockerfile.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
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

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-gw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `make install` with the test's own binaries (the debug build).
fn make_install(vars: &[String]) -> Output {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .parent()
        .expect("binary directory");
    Command::new("make")
        .current_dir(repo())
        .args(["-s", "install", &format!("BUILD_DIR={}", bin_dir.display())])
        .args(vars)
        .output()
        .expect("make runs")
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn make_install_stages_everything_under_destdir_and_keeps_a_configuration() {
    let dest = scratch("destdir");
    let out = make_install(&[format!("DESTDIR={}", dest.display())]);
    assert!(out.status.success(), "{out:?}");
    let at = |p: &str| dest.join(p.trim_start_matches('/'));
    for (path, expected_mode) in [
        ("/usr/local/bin/mcp-gateway", 0o755),
        ("/usr/local/bin/mcp-demo-server", 0o755),
        ("/usr/local/lib/systemd/system/mcp-gateway.service", 0o644),
        ("/usr/local/share/doc/mcp-gateway/README.md", 0o644),
        (
            "/usr/local/share/doc/mcp-gateway/mcp-gateway.env.example",
            0o644,
        ),
        ("/usr/local/share/doc/mcp-gateway/conf/gateway.yaml", 0o644),
        (
            "/usr/local/share/doc/mcp-gateway/conf/nginx/nginx.conf",
            0o644,
        ),
        ("/etc/mcp-gateway/gateway.yaml", 0o644),
        // It will hold secrets.
        ("/etc/mcp-gateway/env", 0o600),
    ] {
        assert_eq!(mode(&at(path)), expected_mode, "{path}");
    }
    let unit = std::fs::read_to_string(at("/usr/local/lib/systemd/system/mcp-gateway.service"))
        .expect("unit");
    assert!(unit.contains(
        "\nExecStart=/usr/local/bin/mcp-gateway --config /etc/mcp-gateway/gateway.yaml\n"
    ));
    assert!(unit.contains("\nDocumentation=file:/usr/local/share/doc/mcp-gateway/README.md\n"));
    assert!(
        !unit.contains(&dest.display().to_string()),
        "DESTDIR leaked into the unit"
    );

    // A second install (an upgrade) leaves an edited configuration alone.
    std::fs::write(at("/etc/mcp-gateway/env"), "PORT=4000\n").expect("edit");
    let out = make_install(&[format!("DESTDIR={}", dest.display())]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(at("/etc/mcp-gateway/env")).expect("env"),
        "PORT=4000\n"
    );
    let _ = std::fs::remove_dir_all(&dest);
}

#[test]
fn make_install_without_a_build_says_to_build_first() {
    let dest = scratch("nobuild");
    let out = Command::new("make")
        .current_dir(repo())
        .args(["-s", "install", "BUILD_DIR=/nonexistent"])
        .arg(format!("DESTDIR={}", dest.display()))
        .output()
        .expect("make runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run make build first"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&dest);
}

/// `systemd-analyze verify` checks the unit's syntax, and that every
/// command it names exists: installed under a PREFIX inside a temporary
/// directory (not DESTDIR), the unit names the binaries it installed.
#[test]
fn the_installed_unit_passes_systemd_analyze_verify() {
    let root = scratch("prefix");
    let prefix = root.join("usr/local");
    let out = make_install(&[
        format!("PREFIX={}", prefix.display()),
        format!("SYSCONFDIR={}", root.join("etc").display()),
    ]);
    assert!(out.status.success(), "{out:?}");
    let unit = prefix.join("lib/systemd/system/mcp-gateway.service");
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs (make deps-test installs it)");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{complaints}");
    assert!(
        complaints.trim().is_empty(),
        "systemd-analyze: {complaints}"
    );

    // The hardening stays: exposure at most 2.0 ("OK") out of 10.
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security runs");
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(security.status.success(), "{report}");
    let _ = std::fs::remove_dir_all(&root);
}

/// The line of `text` that runs `cargo build`, trimmed of its instruction.
fn cargo_build_command(text: &str, prefix: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix(prefix))
        .map(str::trim)
        .filter(|l| l.starts_with("cargo build"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one cargo build in {prefix:?} lines: {lines:?}"
    );
    lines[0].to_string()
}

#[test]
fn the_dockerfile_builds_exactly_what_make_build_builds() {
    let makefile = std::fs::read_to_string(repo().join("Makefile")).expect("Makefile");
    let build_target = makefile
        .split("\nbuild:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a build target");
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    assert_eq!(
        cargo_build_command(&dockerfile, "RUN "),
        cargo_build_command(build_target, "")
    );
    for line in [
        "HEALTHCHECK",
        "CMD [\"/usr/local/bin/mcp-gateway\", \"healthcheck\"]",
        "EXPOSE 4444",
        "STOPSIGNAL SIGTERM",
        "USER 10001:10001",
        "VOLUME [\"/var/lib/mcp-gateway\"]",
    ] {
        assert!(dockerfile.contains(line), "Dockerfile lacks {line}");
    }
}
