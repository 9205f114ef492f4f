//! The official MCP Python SDK as the client.

use super::*;

/// The SDK venv `make deps-test` makes under the target directory (or
/// `MCP_SDK_PYTHON`); missing, the test fails saying how to fix it.
fn sdk_python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("MCP_SDK_PYTHON") {
        return p.into();
    }
    // The test binary is target/<profile>/deps/<name>.
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target directory")
        .to_path_buf();
    let python = target.join("tmp/mcp-sdk-venv/bin/python");
    assert!(
        python.exists(),
        "the MCP Python SDK is not installed at {}: run `make deps-test` or set MCP_SDK_PYTHON",
        python.display()
    );
    python
}

#[tokio::test]
async fn the_official_python_sdk_initialises_pages_calls_and_sees_progress_first() {
    let h = start().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/federation/front_sdk_client.py"
    );
    let url = format!("http://{}/mcp", h.addr);
    let python = sdk_python();
    // The server runs on this runtime: the client waits on another thread.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args([script, &url])
            .output()
    })
    .await
    .expect("joined")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(seen["server"], "mcp-gateway");
    assert_eq!(seen["tools"], json!(TOOLS));
    assert_eq!(seen["pages"], 3);
    assert!(seen["echo"]
        .as_str()
        .is_some_and(|e| e.contains("from python")));
    assert_eq!(
        seen["events"],
        json!(["progress 1", "progress 2", "progress 3", "result"])
    );
    assert_eq!(seen["failed_is_error"], true);
}
