//! The official MCP Python SDK as the client: both transports, two
//! replicas, through the gateway. The SDK is installed once into a venv
//! under cargo's target directory (`MCP_SDK_PYTHON` may point at a Python
//! that already has it).

use crate::harness::*;
use std::path::PathBuf;
use std::process::Command;

/// Pinned so an SDK release cannot change what this test means.
const SDK: &str = "mcp==2.3.0";

fn sdk_python() -> PathBuf {
    if let Ok(p) = std::env::var("MCP_SDK_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mcp-sdk-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    if !ready.exists() {
        eprintln!("installing {SDK} into {} (once)", venv.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(&python)
                .args(["-m", "pip", "install", "-q", SDK])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok,
            "could not install the MCP Python SDK ({SDK}); python3 with venv and pip is required"
        );
        std::fs::write(&ready, SDK).expect("marker");
    }
    python
}

#[test]
fn official_python_sdk_works_through_the_gateway() {
    let python = sdk_python();
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let gw = Gateway::start(
        &[
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
        ],
        &servers_yaml(&[("demo", &[a.url(), b.url()])]),
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/integration/sdk_client.py"
    );
    let out = Command::new(python)
        .args([
            script,
            &format!("http://{}", gw.addr),
            "demo",
            "sdk-user@example.com",
        ])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(seen["tools"], serde_json::json!(["echo", "whoami"]));
    assert_eq!(seen["echo"], "hello");
    assert_eq!(
        seen["replicas"].as_array().map(Vec::len),
        Some(1),
        "one session, one replica: {seen}"
    );
    assert_eq!(seen["identity"], "sdk-user@example.com");
    assert!(seen["authorization"].is_null());
    assert_eq!(seen["legacy_echo"], "legacy");
}
