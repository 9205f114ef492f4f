//! Configuration errors stop start-up with exit code 2 and one line naming
//! the variable or field; `--check-config` validates and exits.

use crate::harness::*;

const OK_ENV: [(&str, &str); 2] = [
    ("MCP_CLIENT_AUTH_ENABLED", "false"),
    ("TRUST_PROXY_AUTH", "true"),
];

fn expect_exit_2(env: &[(&str, &str)], yaml: &str, names: &str) {
    let (code, output) = Gateway::run_to_exit(env, yaml, &[]);
    assert_eq!(code, 2, "{output}");
    let line = output
        .lines()
        .find(|l| l.contains("configuration error"))
        .unwrap_or_else(|| panic!("no error line in {output}"));
    assert!(line.contains(names), "{line:?} should name {names}");
}

#[test]
fn bad_environment_values_exit_2_naming_the_variable() {
    for (key, value) in [
        ("TRUST_PROXY_AUTH", "perhaps"),
        ("MCP_CLIENT_AUTH_ENABLED", "2"),
        ("DEFAULT_PASSTHROUGH_HEADERS", "X-Tenant-Id"),
        ("TRUSTED_PROXIES", "10.0.0.0/40"),
        ("PORT", "http"),
        ("SESSION_TTL", "-1"),
        ("UPSTREAM_CA_FILE", "/nonexistent/ca.pem"),
        ("JWT_ALGORITHM", "none"),
        ("METRICS_TOKEN", "two words"),
        ("CORS_ENABLED", "maybe"),
        ("ALLOWED_ORIGINS", "null"),
    ] {
        let mut env = OK_ENV.to_vec();
        env.push((key, value));
        expect_exit_2(&env, "servers: []\n", key);
    }
}

#[test]
fn a_malformed_database_url_exits_2_without_its_password() {
    let mut env = OK_ENV.to_vec();
    env.push((
        "DATABASE_URL",
        "postgresql+psycopg://mcp:db-hunter2@db:port/mcp",
    ));
    let (code, output) = Gateway::run_to_exit(&env, "servers: []\n", &[]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("DATABASE_URL"), "{output}");
    assert!(output.contains("mcp:***@db"), "{output}");
    assert!(!output.contains("db-hunter2"), "{output}");
}

#[test]
fn jwt_mode_without_a_secret_exits_2() {
    expect_exit_2(&[], "servers: []\n", "JWT_SECRET_KEY");
}

#[test]
fn bad_server_files_exit_2_naming_the_field() {
    let dup = "servers:\n  - {name: a, urls: [http://127.0.0.1:1/mcp]}\n  - {name: a, urls: [http://127.0.0.1:1/mcp]}\n";
    expect_exit_2(&OK_ENV, dup, "servers[1].name");
    let scheme = "servers:\n  - {name: a, urls: [ftp://127.0.0.1/mcp]}\n";
    expect_exit_2(&OK_ENV, scheme, "servers[0].urls[0]");
    expect_exit_2(&OK_ENV, "servers: [oops\n", "gateway.yaml");
}

#[test]
fn check_config_validates_and_exits() {
    let yaml = "servers:\n  - {name: a, urls: [http://127.0.0.1:1/mcp]}\n";
    let (code, output) = Gateway::run_to_exit(
        &[("MCP_CLIENT_AUTH_ENABLED", "false")],
        yaml,
        &["--check-config"],
    );
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("configuration OK: 1 server(s)"));
    assert!(
        output.contains("MCP client authentication is disabled but trust_proxy_auth is not set")
    );
}

#[test]
fn dotenv_is_read_and_the_environment_wins() {
    let demo = Demo::start("d");
    let yaml = servers_yaml(&[("demo", &[demo.url()])]);
    // The harness runs the gateway in a scratch directory holding the config;
    // a `.env` beside it is picked up.
    let (code, output) =
        Gateway::run_to_exit(&[("TRUST_PROXY_AUTH", "true")], &yaml, &["--check-config"]);
    assert_eq!(code, 2, "JWT mode without a secret: {output}");
    let dir = std::env::temp_dir().join(format!("mcp-gw-dotenv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join(".env"),
        "MCP_CLIENT_AUTH_ENABLED=false\nPROXY_USER_HEADER=Remote-User\n",
    )
    .expect(".env");
    std::fs::write(dir.join("gw.yaml"), &yaml).expect("yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .env_clear()
        .env("TRUST_PROXY_AUTH", "true")
        .env("PROXY_USER_HEADER", "X-Employee-Id")
        .current_dir(&dir)
        .args(["--config", "gw.yaml", "--check-config"])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
