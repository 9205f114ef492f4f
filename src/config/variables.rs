//! The one list of environment variables the gateway reads. Deployment
//! files (`conf/`, the systemd example environment) are checked against it,
//! the README's configuration table is tested against it, and start-up warns
//! about a variable that looks like the gateway's but is not on it (a typo
//! that would otherwise silently leave a default in place).

/// Every variable the gateway reads, from the environment or `.env`.
pub const KNOWN_VARIABLES: &[&str] = &[
    // Identity
    "MCP_CLIENT_AUTH_ENABLED",
    "TRUST_PROXY_AUTH",
    "PROXY_USER_HEADER",
    "PROXY_USER_CLAIM",
    "AUTH_REQUIRED",
    "TRUSTED_PROXIES",
    "JWT_SECRET_KEY",
    "JWT_ALGORITHM",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    // Admin, registry and caches
    "PLATFORM_ADMIN_EMAIL",
    "PLATFORM_ADMIN_PASSWORD",
    "BASIC_AUTH_USER",
    "BASIC_AUTH_PASSWORD",
    "DATABASE_URL",
    "CACHE_TYPE",
    "REDIS_URL",
    "SESSION_TTL",
    "AUTH_ENCRYPTION_SECRET",
    "ADMIN_ENABLED",
    "ADMIN_HOST",
    "ADMIN_PORT",
    "API_ALLOW_BASIC_AUTH",
    "ADMIN_COOKIE_SECURE",
    // Headers
    "ENABLE_HEADER_PASSTHROUGH",
    "ENABLE_OVERWRITE_BASE_HEADERS",
    "DEFAULT_PASSTHROUGH_HEADERS",
    // MCP sessions
    "SESSION_SECRET",
    "MCP_SESSION_TTL",
    // Listener and process
    "HOST",
    "PORT",
    "WORKER_THREADS",
    "KEEPALIVE_TIMEOUT",
    "REQUEST_HEADER_TIMEOUT",
    "SHUTDOWN_DRAIN_SECONDS",
    "SHUTDOWN_GRACE_SECONDS",
    "UPGRADE_SOCK",
    "RUNTIME_DIRECTORY",
    // Set by systemd for Type=notify (read in `sd_notify`)
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "SSL",
    "CERT_FILE",
    "KEY_FILE",
    "CLIENT_CA_FILE",
    "TRUSTED_PROXY_CERT_NAMES",
    // Upstreams
    "UPSTREAM_CONNECT_TIMEOUT",
    "UPSTREAM_READ_TIMEOUT",
    "STREAM_IDLE_TIMEOUT",
    "HEALTH_CHECK_INTERVAL",
    "UPSTREAM_CA_FILE",
    // Federation
    "CATALOG_REFRESH_INTERVAL",
    "GATEWAY_TOOL_NAME_SEPARATOR",
    // Browsers
    "CORS_ENABLED",
    "ALLOWED_ORIGINS",
    // Observability
    "LOG_LEVEL",
    "LOG_FORMAT",
    "ACCESS_LOG",
    "RUST_LOG",
    "METRICS_MAX_USERS",
    "METRICS_TOKEN",
    // The command line's `--config`
    "MCP_GATEWAY_CONFIG",
];

/// Prefixes only this gateway's variables use; other software's variables
/// (`PATH`, `HTTP_PROXY`, …) never start with them.
const OWN_PREFIXES: [&str; 7] = [
    "MCP_",
    "PROXY_USER_",
    "TRUST_PROXY",
    "JWT_",
    "UPSTREAM_",
    "SHUTDOWN_",
    "METRICS_",
];

/// Whether Kubernetes made this name: it injects `<SERVICE>_SERVICE_HOST`,
/// `<SERVICE>_PORT_4444_TCP…` for every Service, so a Service named
/// `mcp-gateway` yields `MCP_GATEWAY_SERVICE_HOST` and friends.
fn from_kubernetes_service_links(name: &str) -> bool {
    name.contains("_SERVICE_")
        || name.ends_with("_SERVICE_HOST")
        || name.contains("_PORT_")
        || name.ends_with("_PORT")
}

/// The names that look like the gateway's but that it does not read,
/// sorted: most likely typos (`TRUST_PROXY_AUTHH`, `MCP_SESION_TTL`).
pub fn unrecognised<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = names
        .into_iter()
        .filter(|n| OWN_PREFIXES.iter().any(|p| n.starts_with(p)))
        .filter(|n| !KNOWN_VARIABLES.contains(n))
        .filter(|n| !from_kubernetes_service_links(n))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On [`KNOWN_VARIABLES`] for work that lands on other branches; each
    /// leaves this list when its row joins the README's configuration table.
    const ARRIVING: &[&str] = &[];

    /// The names the loader passes to `src.get(`, `src.string(`, `src.secret(`.
    fn names_the_loader_reads() -> Vec<String> {
        let mut out = Vec::new();
        let loaders = [
            include_str!("mod.rs"),
            include_str!("tls.rs"),
            include_str!("logging.rs"),
        ];
        for (loader, call) in loaders.iter().flat_map(|l| {
            ["src.get(", "src.string(", "src.secret("]
                .into_iter()
                .map(move |c| (l, c))
        }) {
            for (at, _) in loader.match_indices(call) {
                let rest = loader[at + call.len()..].trim_start();
                if let Some(quoted) = rest.strip_prefix('"') {
                    if let Some(end) = quoted.find('"') {
                        out.push(quoted[..end].to_string());
                    }
                }
            }
        }
        out
    }

    /// The first column of README.md's configuration table.
    fn readme_table() -> Vec<String> {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has a Configuration section");
        section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_variable_the_loader_reads_is_known() {
        let read = names_the_loader_reads();
        assert!(read.len() >= 35, "the scan found too few: {read:?}");
        for name in &read {
            assert!(
                KNOWN_VARIABLES.contains(&name.as_str()),
                "{name} is read but not known"
            );
        }
    }

    #[test]
    fn the_readme_table_and_the_list_agree() {
        let table = readme_table();
        for name in &table {
            assert!(
                KNOWN_VARIABLES.contains(&name.as_str()),
                "README names {name}, unknown"
            );
        }
        for name in KNOWN_VARIABLES {
            let documented = table.iter().any(|t| t == name);
            let arriving = ARRIVING.contains(name);
            assert!(
                documented || arriving,
                "{name} is missing from README's table"
            );
            assert!(
                !(documented && arriving),
                "{name} is documented: remove it from ARRIVING"
            );
        }
        let mut sorted = KNOWN_VARIABLES.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), KNOWN_VARIABLES.len(), "duplicates");
    }

    #[test]
    fn start_up_warns_naming_a_lookalike_but_never_its_value() {
        let src = crate::config::Source::from_pairs([
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
            ("TRUST_PROXY_AUTHH", "secret-looking-value"),
        ]);
        let warnings = crate::config::Settings::load(&src, None)
            .expect("valid settings")
            .warnings();
        let line = warnings
            .iter()
            .find(|w| w.contains("not read by the gateway"))
            .expect("a warning");
        assert!(line.starts_with("TRUST_PROXY_AUTHH set"), "{line}");
        assert!(!line.contains("secret-looking-value"), "{line}");
    }

    #[test]
    fn names_lookalikes_but_not_others_or_kubernetes_links() {
        let env = [
            "PATH",
            "HOME",
            "HTTP_PROXY",
            "TRUST_PROXY_AUTH",
            "TRUST_PROXY_AUTHH",
            "MCP_SESION_TTL",
            "MCP_SESION_TTL",
            "JWT_SECRET",
            "MCP_GATEWAY_SERVICE_HOST",
            "MCP_GATEWAY_PORT_4444_TCP_ADDR",
            "MCP_GATEWAY_PORT",
            "PORT",
        ];
        assert_eq!(
            unrecognised(env),
            ["JWT_SECRET", "MCP_SESION_TTL", "TRUST_PROXY_AUTHH"]
        );
    }
}
