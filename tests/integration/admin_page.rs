//! The admin service of the real binary: its API over a socket, and the
//! admin page driven in Debian's headless Chromium
//! (tests/browser/admin.spec.mjs, playwright-core from
//! scripts/install-test-deps.sh).

use crate::harness::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "browser-test-password";

struct Admin {
    gateway: Gateway,
    admin: String,
    _db_dir: PathBuf,
}

/// The gateway with its admin service on a free port and a fresh SQLite
/// registry, once `/ready` says the registry answers.
fn start_admin() -> Admin {
    // The admin port was free when looked at; should another test have
    // taken it before the gateway binds it, the gateway exits saying so:
    // another port.
    let mut attempts = 0;
    let (gateway, admin_port, db_dir) = loop {
        attempts += 1;
        let admin_port = free_port().to_string();
        let db_dir =
            std::env::temp_dir().join(format!("mcp-gw-admin-{}-{admin_port}", std::process::id()));
        std::fs::create_dir_all(&db_dir).expect("db dir");
        let db = format!("sqlite:///{}/mcp.db", db_dir.display());
        let mut env = PROXY_ENV.to_vec();
        env.extend([
            ("ADMIN_ENABLED", "true"),
            ("ADMIN_PORT", admin_port.as_str()),
            ("PLATFORM_ADMIN_EMAIL", EMAIL),
            ("PLATFORM_ADMIN_PASSWORD", PASSWORD),
            ("DATABASE_URL", db.as_str()),
        ]);
        match Gateway::try_start(&env, "servers: []\n") {
            Ok(gateway) => break (gateway, admin_port, db_dir),
            Err(why) if attempts < 5 && why.contains("ADMIN_HOST/ADMIN_PORT: cannot listen") => {}
            Err(why) => panic!("{why}"),
        }
    };
    let admin = format!("127.0.0.1:{admin_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !try_request(&admin, "GET", "/ready", &[], "").is_ok_and(|r| r.status == 200) {
        assert!(
            Instant::now() < deadline,
            "admin service not ready:\n{}",
            gateway.proc.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Admin {
        gateway,
        admin,
        _db_dir: db_dir,
    }
}

#[test]
fn admin_api_login_create_and_logout_over_a_socket() {
    let a = start_admin();
    let json = [("Content-Type", "application/json")];
    let login = request(
        &a.admin,
        "POST",
        "/auth/login",
        &json,
        &format!(r#"{{"email":"{EMAIL}","password":"{PASSWORD}"}}"#),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = login.header("set-cookie").expect("session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let bearer = format!("Bearer {}", login.json()["token"].as_str().expect("token"));
    let demo = Demo::start("admin-it");
    let created = request(
        &a.admin,
        "POST",
        "/api/servers",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer),
        ],
        &format!(r#"{{"name":"added","urls":["{}"]}}"#, demo.url()),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let out = request(
        &a.admin,
        "POST",
        "/auth/logout",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(out.status, 204);
    let after = request(
        &a.admin,
        "GET",
        "/api/servers",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(after.status, 401);
    drop(a.gateway);
}

#[test]
fn the_admin_page_in_headless_chromium() {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir()
            && PathBuf::from("/usr/bin/chromium").exists(),
        "chromium and playwright-core are missing: run `make deps-test`"
    );
    let a = start_admin();
    let demo = Demo::start("browser");
    let out = Command::new("node")
        .arg(browser_dir.join("admin.spec.mjs"))
        .current_dir(&browser_dir)
        .env("ADMIN_URL", format!("http://{}/", a.admin))
        .env("GATEWAY_URL", format!("http://{}", a.gateway.addr))
        .env("ADMIN_EMAIL", EMAIL)
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("UPSTREAM_URL", demo.url())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "browser test failed:\n{}\n{}\ngateway:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        a.gateway.proc.output()
    );
}
