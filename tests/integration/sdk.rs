//! The official MCP Python SDK as the client: both transports, two
//! replicas, through the gateway. The SDK is installed by `make deps-test`
//! (scripts/install-test-deps.sh, which `make test` runs) into a venv under
//! cargo's target directory; `MCP_SDK_PYTHON` may point at a Python that
//! already has it. The test never installs it itself: offline or not, a
//! missing SDK is a failure that says how to fix it, never a silent pass.

use crate::harness::*;
use std::path::PathBuf;
use std::process::Command;

/// The pinned SDK; the install script copies this file into the venv as its
/// marker, so a changed pin is noticed here, not as a confusing SDK error.
const REQUIREMENTS: &str = include_str!("requirements.txt");

pub fn sdk_python() -> PathBuf {
    if let Ok(p) = std::env::var("MCP_SDK_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mcp-sdk-venv");
    let python = venv.join("bin/python");
    let installed = std::fs::read_to_string(venv.join(".installed")).ok();
    assert!(
        python.exists() && installed.as_deref() == Some(REQUIREMENTS),
        "\n\n*** The MCP Python SDK is not installed (or not the pinned version) in {}.\n\
         *** Run `make deps-test` (scripts/install-test-deps.sh; `make test` runs it),\n\
         *** or set MCP_SDK_PYTHON to a python that has tests/integration/requirements.txt.\n",
        venv.display()
    );
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
