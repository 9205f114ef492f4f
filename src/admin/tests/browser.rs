//! The admin page in Debian's headless Chromium (tests/browser/admin.spec.mjs)
//! against the router on a real socket, over the registry double and a
//! stand-in for the data plane. The same script runs against the real
//! binary in tests/integration/admin_page.rs once the store is merged.

use super::*;
use crate::registry::{BackendHealth, HealthView};
use axum::routing::post;
use std::path::PathBuf;
use std::process::Command;

/// Every server's one backend is up, as health checks would find a live
/// replica.
struct AllUp;

impl HealthView for AllUp {
    fn server_health(&self, name: &str) -> Option<Vec<BackendHealth>> {
        Some(vec![BackendHealth {
            replica: format!("http://127.0.0.1:9/{name}"),
            backend: "127.0.0.1:9".into(),
            healthy: true,
            last_check: Some(1_700_000_000),
            consecutive_failures: 0,
            last_error: None,
        }])
    }
}

async fn listen(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_drives_the_api_in_headless_chromium() {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir()
            && PathBuf::from("/usr/bin/chromium").exists(),
        "chromium and playwright-core are missing: run `make deps-test`"
    );
    let registry = Arc::new(MemoryRegistry::default());
    let state = AdminState::new(
        registry.clone(),
        registry,
        Arc::new(AllUp),
        serde_json::json!({}),
        auth_config(),
    )
    .expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = listener.local_addr().expect("addr").to_string();
    tokio::spawn(crate::admin::serve(listener, state, std::future::pending()));
    // What the data plane would answer for a routed server.
    let gateway = listen(axum::Router::new().route(
        "/servers/{name}/mcp",
        post(|| async { axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {}})) }),
    ))
    .await;

    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(browser_dir.join("admin.spec.mjs"))
            .current_dir(&browser_dir)
            .env("ADMIN_URL", format!("http://{admin}/"))
            .env("GATEWAY_URL", format!("http://{gateway}"))
            .env("ADMIN_EMAIL", EMAIL)
            .env("ADMIN_PASSWORD", PASSWORD)
            .env("UPSTREAM_URL", "http://127.0.0.1:9/mcp")
            .output()
            .expect("node runs")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
