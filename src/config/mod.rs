//! Configuration: environment, `.env` and the YAML server file, merged once
//! into an immutable, validated [`Settings`]. Every other module receives the
//! part it needs from here and never reads the environment itself.

mod fields;
mod logging;
mod servers;
pub(crate) mod tls;
mod values;
mod variables;
mod virtual_servers;

pub use fields::{
    check_description, is_valid_server_name, MAX_AUDIENCE_CHARS, MAX_DESCRIPTION_CHARS,
};
pub use logging::{LogFormat, LogSettings};
pub use servers::{
    parse_upstream_url, validate_server, AuthMode, ServerFields, ServerSpec, UpstreamCredential,
    UpstreamUrl,
};
pub use tls::{read_certificates, ListenerTls, UpstreamTls};
pub use values::Secret;
pub use variables::KNOWN_VARIABLES;
pub use virtual_servers::{
    validate_virtual_server, IncludePattern, VirtualServerFields, VirtualServerSpec, MAX_INCLUDE,
};

use crate::registry::crypto::DEFAULT_ENCRYPTION_SECRET;
use http::HeaderName;
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use values::*;

/// One line naming the variable (or file field) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheType {
    Memory,
    Redis,
    Database,
    None,
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub secret: Option<Secret>,
    pub algorithm: Algorithm,
    pub audience: Option<String>,
    pub issuer: Option<String>,
}

/// The listener and the process: where to bind, how many workers, how
/// connections idle and how the process stops.
#[derive(Debug, Clone)]
pub struct ListenSettings {
    pub host: IpAddr,
    pub port: u16,
    pub worker_threads: usize,
    /// How long an idle client connection is kept open.
    pub keepalive_timeout: Duration,
    /// How long a request header may take to arrive whole, from its first byte.
    pub request_header_timeout: Duration,
    pub shutdown_drain: Duration,
    pub shutdown_grace: Duration,
    /// `UPGRADE_SOCK`: the Unix socket over which a process started with
    /// `--upgrade` receives the listening sockets of the running one.
    pub upgrade_sock: PathBuf,
}

/// Who may call: the global identity rules.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub mcp_client_auth_enabled: bool,
    pub trust_proxy_auth: bool,
    pub proxy_user_header: HeaderName,
    /// `PROXY_USER_CLAIM`: the proxy header carries a base64 JSON payload
    /// (Istio's `outputPayloadToHeader`) and the user is this claim of it.
    pub proxy_user_claim: Option<String>,
    pub auth_required: bool,
    /// Empty means any peer may send the proxy identity header.
    pub trusted_proxies: Vec<IpNet>,
    /// `TRUSTED_PROXY_CERT_NAMES`, lower-cased: the header counts only over
    /// mTLS from a client certificate carrying one of these names.
    pub trusted_proxy_cert_names: Vec<String>,
    pub jwt: JwtSettings,
}

/// Which client headers may travel upstream besides the allowlist.
#[derive(Debug, Clone)]
pub struct HeaderSettings {
    pub enable_header_passthrough: bool,
    pub enable_overwrite_base_headers: bool,
    pub default_passthrough_headers: Vec<HeaderName>,
}

/// MCP session tokens.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// `SESSION_SECRET`; without it the key is derived from `JWT_SECRET_KEY`.
    pub secret: Option<Secret>,
    /// `MCP_SESSION_TTL`.
    pub ttl: Duration,
}

/// How the gateway talks to MCP servers.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    /// Longest upstream silence for a request that cannot be answered as an
    /// event stream.
    pub read_timeout: Duration,
    /// Longest upstream silence for a request that may be answered as an
    /// event stream; `None` waits as long as the stream stays open.
    pub stream_idle_timeout: Option<Duration>,
    pub health_check_interval: Duration,
    /// PEM bundle trusted for upstream TLS instead of the system store.
    pub ca_file: Option<String>,
    /// How often the federation catalog gathers each server's tools again.
    pub catalog_refresh_interval: Duration,
    /// Between server and tool in a qualified tool name (`GATEWAY_TOOL_NAME_SEPARATOR`).
    pub tool_name_separator: String,
}

/// The admin side of the reference: accounts, the registry store and caches.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub platform_admin_email: String,
    pub platform_admin_password: Option<Secret>,
    pub basic_auth_user: String,
    pub basic_auth_password: Option<Secret>,
    /// `DATABASE_URL`, the registry's database.
    pub database_url: crate::registry::DatabaseUrl,
    /// `AUTH_ENCRYPTION_SECRET`: the key of the upstream credentials stored
    /// in the registry.
    pub encryption_secret: Secret,
    pub cache_type: CacheType,
    pub redis_url: Secret,
    /// `SESSION_TTL`: a cached user session (admin), not an MCP session.
    pub session_ttl: Duration,
    /// `ADMIN_ENABLED`, `ADMIN_HOST`, `ADMIN_PORT`, `API_ALLOW_BASIC_AUTH`.
    pub service: AdminServiceSettings,
    /// Which of [`NOT_YET_IN_EFFECT`] the environment or `.env` set, so
    /// start-up can say they do nothing yet (defaults alone say nothing).
    pub set_but_not_in_effect: Vec<&'static str>,
}

/// The admin sidecar's listener and what it accepts.
#[derive(Debug, Clone)]
pub struct AdminServiceSettings {
    /// `ADMIN_ENABLED=false` makes a pure data-plane replica.
    pub enabled: bool,
    pub host: IpAddr,
    pub port: u16,
    /// `API_ALLOW_BASIC_AUTH`: Basic auth with `BASIC_AUTH_USER` /
    /// `BASIC_AUTH_PASSWORD` is refused unless this is set.
    pub allow_basic_auth: bool,
    /// `ADMIN_COOKIE_SECURE`: mark the session cookie `Secure` even over
    /// plain HTTP (behind a TLS-terminating proxy).
    pub cookie_secure: bool,
}

/// Browsers: CORS and the `Origin` check (names as in ContextForge).
#[derive(Debug, Clone)]
pub struct CorsSettings {
    /// `CORS_ENABLED`; off, no browser origin is allowed at all.
    pub enabled: bool,
    /// `ALLOWED_ORIGINS`, normalised; `*` means any (without credentials).
    pub allowed_origins: Vec<String>,
}

/// Accepted and validated, as the reference's deployments set them, but read
/// by nothing until the registry, caches and admin UI arrive (issue 8).
pub const NOT_YET_IN_EFFECT: [&str; 2] = ["CACHE_TYPE", "REDIS_URL"];

#[derive(Debug, Clone)]
pub struct ObservabilitySettings {
    pub log_level: String,
    pub metrics_max_users: usize,
    /// `METRICS_TOKEN`: a scrape bearing it sees the per-user series;
    /// without it nobody does.
    pub metrics_token: Option<Secret>,
    /// Set variables that look like the gateway's but are not read (typos).
    pub unrecognised_variables: Vec<String>,
}

/// Everything the gateway is configured with, parsed and validated once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: ListenSettings,
    pub auth: AuthSettings,
    pub headers: HeaderSettings,
    pub sessions: SessionSettings,
    pub upstream: UpstreamSettings,
    pub admin: AdminSettings,
    pub cors: CorsSettings,
    pub observability: ObservabilitySettings,
    pub log: LogSettings,
    /// The listener's TLS; `None` is plain HTTP.
    pub tls: Option<ListenerTls>,
    pub servers: Vec<ServerSpec>,
    /// `virtual_servers:` of the file: served by the federation service.
    pub virtual_servers: Vec<VirtualServerSpec>,
}

/// Where raw values come from: the process environment over `.env`.
pub struct Source {
    vars: HashMap<String, String>,
}

impl Source {
    /// The process environment, over the `.env` file in the working directory
    /// if there is one (the environment wins).
    pub fn from_process(dotenv: &Path) -> Result<Self, ConfigError> {
        let mut vars = HashMap::new();
        if dotenv.exists() {
            let items = dotenvy::from_path_iter(dotenv)
                .map_err(|e| ConfigError::new(dotenv.display().to_string(), e.to_string()))?;
            for item in items {
                let (k, v) = item
                    .map_err(|e| ConfigError::new(dotenv.display().to_string(), e.to_string()))?;
                vars.insert(k, v);
            }
        }
        vars.extend(std::env::vars());
        Ok(Source { vars })
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Source {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn raw(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn get<T>(
        &self,
        key: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some(raw) => parse(raw).map_err(|problem| ConfigError::new(key, problem)),
        }
    }

    fn string(&self, key: &str) -> Option<String> {
        self.raw(key).map(str::to_string)
    }

    fn secret(&self, key: &str) -> Option<Secret> {
        self.raw(key).map(Secret::new)
    }
}

impl Settings {
    /// Builds and validates the settings; `servers_yaml` is the `--config`
    /// file's (name, text), if any.
    pub fn load(src: &Source, servers_yaml: Option<(&str, &str)>) -> Result<Self, ConfigError> {
        let (servers, virtual_servers) = match servers_yaml {
            Some((name, text)) => servers::parse_file_with_env(text, name, &|var| src.string(var))?,
            None => (Vec::new(), Vec::new()),
        };
        let settings = Settings {
            listen: ListenSettings::load(src)?,
            auth: AuthSettings::load(src)?,
            headers: HeaderSettings::load(src)?,
            sessions: SessionSettings::load(src)?,
            upstream: UpstreamSettings::load(src)?,
            admin: AdminSettings::load(src)?,
            cors: CorsSettings::load(src)?,
            observability: ObservabilitySettings::load(src)?,
            log: LogSettings::load(src)?,
            tls: tls::listener_tls(src)?,
            servers,
            virtual_servers,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Rules that span several variables.
    fn validate(&self) -> Result<(), ConfigError> {
        let any_jwt = self.auth.mcp_client_auth_enabled
            || self.servers.iter().any(|s| s.auth_mode == AuthMode::Jwt)
            || self
                .virtual_servers
                .iter()
                .any(|v| v.auth_mode == AuthMode::Jwt);
        if any_jwt && self.auth.jwt.secret.is_none() {
            return Err(ConfigError::new(
                "JWT_SECRET_KEY",
                "required when MCP_CLIENT_AUTH_ENABLED=true or a server uses auth_mode jwt \
                 (for an auth-proxy deployment set MCP_CLIENT_AUTH_ENABLED=false and TRUST_PROXY_AUTH=true)",
            ));
        }
        let mtls = self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some());
        if !self.auth.trusted_proxy_cert_names.is_empty() && !mtls {
            return Err(ConfigError::new(
                "TRUSTED_PROXY_CERT_NAMES",
                "needs verified client certificates: set SSL=true and CLIENT_CA_FILE",
            ));
        }
        if self.auth.proxy_user_claim.is_some()
            && self.auth.trusted_proxies.is_empty()
            && self.auth.trusted_proxy_cert_names.is_empty()
        {
            // Once the proxy has verified the JWT the payload is plain
            // base64: any peer that can reach the gateway could write one.
            return Err(ConfigError::new(
                "TRUSTED_PROXIES",
                "required when PROXY_USER_CLAIM is set: list the auth proxy's addresses \
                 (for an Istio sidecar, 127.0.0.0/8), or its certificate names in \
                 TRUSTED_PROXY_CERT_NAMES",
            ));
        }
        if self.admin.cache_type == CacheType::Redis && self.admin.redis_url.expose().is_empty() {
            return Err(ConfigError::new(
                "REDIS_URL",
                "required when CACHE_TYPE=redis",
            ));
        }
        let admin = &self.admin.service;
        if admin.enabled && admin.host == self.listen.host && admin.port == self.listen.port {
            return Err(ConfigError::new(
                "ADMIN_PORT",
                format!(
                    "{} is also PORT: give the admin service its own port",
                    admin.port
                ),
            ));
        }
        if self.admin.session_ttl.is_zero() {
            return Err(ConfigError::new("SESSION_TTL", "must be at least 1 second"));
        }
        if self.sessions.ttl.is_zero() {
            return Err(ConfigError::new(
                "MCP_SESSION_TTL",
                "must be at least 1 second",
            ));
        }
        Ok(())
    }

    /// Start-up warnings: configurations that work but deserve a human's eye.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.auth.mcp_client_auth_enabled && !self.auth.trust_proxy_auth {
            out.push(
                "MCP client authentication is disabled but trust_proxy_auth is not set".to_string(),
            );
        }
        let proxy_in_use = self.auth.trust_proxy_auth
            || self.servers.iter().any(|s| s.auth_mode == AuthMode::Proxy)
            || self
                .virtual_servers
                .iter()
                .any(|v| v.auth_mode == AuthMode::Proxy);
        for v in self.virtual_servers.iter().filter(|v| v.include.is_empty()) {
            out.push(format!(
                "virtual server {}: no include: it offers no tools (list server/tool or server/*)",
                v.name
            ));
        }
        for server in self.servers.iter().filter(|s| !s.tls.verify) {
            out.push(format!(
                "server {}: upstream TLS certificates are not verified (tls.verify: false)",
                server.name
            ));
        }
        if proxy_in_use
            && self.auth.trusted_proxies.is_empty()
            && self.auth.trusted_proxy_cert_names.is_empty()
        {
            out.push(
                "TRUSTED_PROXIES is empty: identity headers are accepted from any peer; \
                 make sure only the auth proxy can reach the gateway"
                    .to_string(),
            );
        }
        if let Some(secret) = &self.auth.jwt.secret {
            if secret.expose().len() < 32 {
                out.push(
                    "JWT_SECRET_KEY is shorter than 32 bytes: use a longer random secret".into(),
                );
            }
        }
        if let Some(token) = &self.observability.metrics_token {
            if token.expose().len() < 16 {
                out.push(
                    "METRICS_TOKEN is shorter than 16 characters: use a longer random token".into(),
                );
            }
        }
        if self.cors.enabled && self.cors.allowed_origins.iter().any(|o| o == "*") {
            out.push(
                "ALLOWED_ORIGINS contains *: any web page may call the gateway from a browser \
                 (without cookies); list the origins of your web clients instead"
                    .into(),
            );
        }
        if self.sessions.secret.is_none() && self.auth.jwt.secret.is_none() {
            out.push(
                "neither SESSION_SECRET nor JWT_SECRET_KEY is set: MCP session ids are sealed \
                 with a random key, so they do not survive a restart or work across replicas"
                    .into(),
            );
        }
        if self.admin.service.enabled && !self.auth.auth_required {
            out.push(
                "AUTH_REQUIRED=false: the admin API and page are open to anyone who can reach \
                 ADMIN_HOST:ADMIN_PORT, with no login"
                    .into(),
            );
        }
        if self.admin.service.enabled
            && self.auth.auth_required
            && self.admin.platform_admin_password.is_none()
        {
            out.push(
                "PLATFORM_ADMIN_PASSWORD is not set: nobody can log in to the admin service".into(),
            );
        }
        if self.admin.encryption_secret.expose() == DEFAULT_ENCRYPTION_SECRET {
            out.push(format!(
                "AUTH_ENCRYPTION_SECRET is the reference's published default ({DEFAULT_ENCRYPTION_SECRET:?}): \
                 anyone can decrypt the upstream credentials stored in the registry; \
                 CHANGE IT IN PRODUCTION (e.g. openssl rand -hex 32)"
            ));
        } else if self.admin.encryption_secret.expose().len() < 16 {
            out.push(
                "AUTH_ENCRYPTION_SECRET is shorter than 16 characters: use a longer random secret"
                    .into(),
            );
        }
        if !self.admin.set_but_not_in_effect.is_empty() {
            out.push(format!(
                "{} set but not yet in effect: the registry, caches and admin UI arrive with issue 8",
                self.admin.set_but_not_in_effect.join(", ")
            ));
        }
        if !self.observability.unrecognised_variables.is_empty() {
            out.push(format!(
                "{} set but not read by the gateway (a typo?); the variables are listed in README.md",
                self.observability.unrecognised_variables.join(", ")
            ));
        }
        if !self.listen.host.is_loopback() {
            log::info!(
                "binding {}:{} (not loopback)",
                self.listen.host,
                self.listen.port
            );
        }
        out
    }
}

impl ListenSettings {
    fn load(src: &Source) -> Result<Self, ConfigError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(ListenSettings {
            host: src.get("HOST", IpAddr::from([127, 0, 0, 1]), |r| {
                r.parse().map_err(|_| format!("{r:?} is not an IP address"))
            })?,
            port: src.get("PORT", 4444, |r| {
                r.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{r:?} is not a TCP port"))
            })?,
            worker_threads: src.get("WORKER_THREADS", cpus, |r| {
                parse_u64(r)
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .map(|n| n as usize)
                    .ok_or_else(|| format!("expected 1 to 1024, got {r:?}"))
            })?,
            keepalive_timeout: src.get(
                "KEEPALIVE_TIMEOUT",
                Duration::from_secs(75),
                positive_seconds,
            )?,
            request_header_timeout: src.get(
                "REQUEST_HEADER_TIMEOUT",
                Duration::from_secs(10),
                positive_seconds,
            )?,
            shutdown_drain: src.get(
                "SHUTDOWN_DRAIN_SECONDS",
                Duration::from_secs(5),
                parse_seconds,
            )?,
            shutdown_grace: src.get(
                "SHUTDOWN_GRACE_SECONDS",
                Duration::from_secs(15),
                parse_seconds,
            )?,
            upgrade_sock: src.get(
                "UPGRADE_SOCK",
                default_upgrade_sock(src.raw("RUNTIME_DIRECTORY")),
                parse_upgrade_sock,
            )?,
        })
    }
}

impl AuthSettings {
    fn load(src: &Source) -> Result<Self, ConfigError> {
        Ok(AuthSettings {
            mcp_client_auth_enabled: src.get("MCP_CLIENT_AUTH_ENABLED", true, parse_bool)?,
            trust_proxy_auth: src.get("TRUST_PROXY_AUTH", false, parse_bool)?,
            proxy_user_header: src.get(
                "PROXY_USER_HEADER",
                HeaderName::from_static("x-authenticated-user"),
                parse_identity_header_name,
            )?,
            proxy_user_claim: src
                .get("PROXY_USER_CLAIM", None, |r| parse_claim_name(r).map(Some))?,
            auth_required: src.get("AUTH_REQUIRED", true, parse_bool)?,
            trusted_proxies: src.get("TRUSTED_PROXIES", Vec::new(), parse_cidr_list)?,
            trusted_proxy_cert_names: tls::trusted_cert_names(src)?,
            jwt: JwtSettings {
                secret: src.secret("JWT_SECRET_KEY"),
                algorithm: src.get("JWT_ALGORITHM", Algorithm::HS256, parse_algorithm)?,
                audience: src.string("JWT_AUDIENCE"),
                issuer: src.string("JWT_ISSUER"),
            },
        })
    }
}

impl HeaderSettings {
    fn load(src: &Source) -> Result<Self, ConfigError> {
        Ok(HeaderSettings {
            enable_header_passthrough: src.get("ENABLE_HEADER_PASSTHROUGH", false, parse_bool)?,
            enable_overwrite_base_headers: src.get(
                "ENABLE_OVERWRITE_BASE_HEADERS",
                false,
                parse_bool,
            )?,
            default_passthrough_headers: src.get(
                "DEFAULT_PASSTHROUGH_HEADERS",
                vec![
                    HeaderName::from_static("x-tenant-id"),
                    HeaderName::from_static("x-trace-id"),
                ],
                parse_header_list,
            )?,
        })
    }
}

impl SessionSettings {
    fn load(src: &Source) -> Result<Self, ConfigError> {
        Ok(SessionSettings {
            secret: src.secret("SESSION_SECRET"),
            ttl: src.get("MCP_SESSION_TTL", Duration::from_secs(86_400), |r| {
                parse_u64(r).map(Duration::from_secs)
            })?,
        })
    }
}

impl UpstreamSettings {
    fn load(src: &Source) -> Result<Self, ConfigError> {
        Ok(UpstreamSettings {
            connect_timeout: src.get(
                "UPSTREAM_CONNECT_TIMEOUT",
                Duration::from_secs(5),
                positive_seconds,
            )?,
            read_timeout: src.get(
                "UPSTREAM_READ_TIMEOUT",
                Duration::from_secs(300),
                positive_seconds,
            )?,
            stream_idle_timeout: src.get(
                "STREAM_IDLE_TIMEOUT",
                Some(Duration::from_secs(3600)),
                |r| parse_seconds(r).map(|d| Some(d).filter(|d| !d.is_zero())),
            )?,
            health_check_interval: src.get(
                "HEALTH_CHECK_INTERVAL",
                Duration::from_secs(5),
                positive_seconds,
            )?,
            ca_file: src.get("UPSTREAM_CA_FILE", None, |r| parse_pem_file(r).map(Some))?,
            catalog_refresh_interval: src.get(
                "CATALOG_REFRESH_INTERVAL",
                Duration::from_secs(300),
                positive_seconds,
            )?,
            tool_name_separator: src.get(
                "GATEWAY_TOOL_NAME_SEPARATOR",
                "-".to_string(),
                parse_tool_name_separator,
            )?,
        })
    }
}

impl AdminSettings {
    fn load(src: &Source) -> Result<Self, ConfigError> {
        Ok(AdminSettings {
            platform_admin_email: src
                .string("PLATFORM_ADMIN_EMAIL")
                .unwrap_or_else(|| "admin@example.com".into()),
            platform_admin_password: src.secret("PLATFORM_ADMIN_PASSWORD"),
            basic_auth_user: src
                .string("BASIC_AUTH_USER")
                .unwrap_or_else(|| "admin".into()),
            basic_auth_password: src.secret("BASIC_AUTH_PASSWORD"),
            database_url: src.get(
                "DATABASE_URL",
                crate::registry::DatabaseUrl::default(),
                crate::registry::DatabaseUrl::parse,
            )?,
            encryption_secret: src
                .secret("AUTH_ENCRYPTION_SECRET")
                .unwrap_or_else(|| Secret::new(DEFAULT_ENCRYPTION_SECRET)),
            cache_type: src.get("CACHE_TYPE", CacheType::Memory, parse_cache_type)?,
            redis_url: src.get(
                "REDIS_URL",
                Secret::new("redis://localhost:6379/0"),
                parse_redis_url,
            )?,
            session_ttl: src.get("SESSION_TTL", Duration::from_secs(3600), |r| {
                parse_u64(r).map(Duration::from_secs)
            })?,
            service: AdminServiceSettings::load(src)?,
            set_but_not_in_effect: NOT_YET_IN_EFFECT
                .into_iter()
                .filter(|k| src.raw(k).is_some())
                .collect(),
        })
    }
}

impl AdminServiceSettings {
    fn load(src: &Source) -> Result<Self, ConfigError> {
        Ok(AdminServiceSettings {
            enabled: src.get("ADMIN_ENABLED", true, parse_bool)?,
            host: src.get("ADMIN_HOST", IpAddr::from([127, 0, 0, 1]), |r| {
                r.parse().map_err(|_| format!("{r:?} is not an IP address"))
            })?,
            port: src.get("ADMIN_PORT", 4445, |r| {
                r.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{r:?} is not a TCP port"))
            })?,
            allow_basic_auth: src.get("API_ALLOW_BASIC_AUTH", false, parse_bool)?,
            cookie_secure: src.get("ADMIN_COOKIE_SECURE", false, parse_bool)?,
        })
    }
}

impl CorsSettings {
    fn load(src: &Source) -> Result<Self, ConfigError> {
        Ok(CorsSettings {
            enabled: src.get("CORS_ENABLED", true, parse_bool)?,
            allowed_origins: src.get(
                "ALLOWED_ORIGINS",
                vec!["http://localhost".into(), "http://localhost:4444".into()],
                parse_origin_list,
            )?,
        })
    }
}

impl ObservabilitySettings {
    fn load(src: &Source) -> Result<Self, ConfigError> {
        Ok(ObservabilitySettings {
            log_level: src.get("LOG_LEVEL", "info".to_string(), parse_log_level)?,
            metrics_max_users: src.get("METRICS_MAX_USERS", 1000, |r| {
                parse_u64(r).map(|n| n as usize)
            })?,
            metrics_token: src.get("METRICS_TOKEN", None, |r| parse_bearer_token(r).map(Some))?,
            unrecognised_variables: variables::unrecognised(src.vars.keys().map(String::as_str)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load(&Source::from_pairs(pairs.iter().copied()), None)
    }

    const PROXY: [(&str, &str); 2] = [
        ("MCP_CLIENT_AUTH_ENABLED", "false"),
        ("TRUST_PROXY_AUTH", "true"),
    ];

    #[test]
    fn the_catalogs_separator_and_interval_are_settings() {
        let s = load(&[("JWT_SECRET_KEY", "k")]).unwrap();
        assert_eq!(s.upstream.tool_name_separator, "-");
        assert_eq!(
            s.upstream.catalog_refresh_interval,
            Duration::from_secs(300)
        );
        let s = load(&[
            ("JWT_SECRET_KEY", "k"),
            ("GATEWAY_TOOL_NAME_SEPARATOR", "__"),
            ("CATALOG_REFRESH_INTERVAL", "30"),
        ])
        .unwrap();
        assert_eq!(s.upstream.tool_name_separator, "__");
        assert_eq!(s.upstream.catalog_refresh_interval, Duration::from_secs(30));
        // (An empty value is an unset one: the default.)
        for bad in ["a b", "a/b", "123456789"] {
            let pairs = [
                ("JWT_SECRET_KEY", "k"),
                ("GATEWAY_TOOL_NAME_SEPARATOR", bad),
            ];
            assert_eq!(
                load(&pairs).unwrap_err().field,
                "GATEWAY_TOOL_NAME_SEPARATOR",
                "{bad:?}"
            );
        }
        let pairs = [("JWT_SECRET_KEY", "k"), ("CATALOG_REFRESH_INTERVAL", "0")];
        assert_eq!(load(&pairs).unwrap_err().field, "CATALOG_REFRESH_INTERVAL");
    }

    #[test]
    fn defaults_match_the_reference() {
        let s = load(&[("JWT_SECRET_KEY", "k")]).unwrap();
        assert!(s.auth.mcp_client_auth_enabled);
        assert!(!s.auth.trust_proxy_auth);
        assert_eq!(s.auth.proxy_user_header.as_str(), "x-authenticated-user");
        assert!(s.auth.auth_required);
        assert!(!s.headers.enable_header_passthrough);
        assert!(!s.headers.enable_overwrite_base_headers);
        assert_eq!(s.admin.session_ttl, Duration::from_secs(3600));
        assert_eq!(s.listen.port, 4444);
        assert!(s.listen.host.is_loopback());
        assert_eq!(s.auth.jwt.algorithm, Algorithm::HS256);
        assert_eq!(s.listen.keepalive_timeout, Duration::from_secs(75));
        assert!(s.observability.metrics_token.is_none());
        assert!(s.cors.enabled);
        assert_eq!(
            s.cors.allowed_origins,
            ["http://localhost", "http://localhost:4444"]
        );
        assert_eq!(s.listen.request_header_timeout, Duration::from_secs(10));
        assert_eq!(
            s.admin.database_url,
            crate::registry::DatabaseUrl::default()
        );
        assert_eq!(s.admin.encryption_secret.expose(), "my-test-salt");
        assert_eq!(
            s.upstream.stream_idle_timeout,
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn stream_idle_timeout_zero_means_none() {
        let mut pairs = PROXY.to_vec();
        pairs.push(("STREAM_IDLE_TIMEOUT", "0"));
        assert_eq!(load(&pairs).unwrap().upstream.stream_idle_timeout, None);
        pairs.push(("REQUEST_HEADER_TIMEOUT", "2.5"));
        let s = load(&pairs).unwrap();
        assert_eq!(s.listen.request_header_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn jwt_mode_needs_a_secret() {
        let e = load(&[]).unwrap_err();
        assert_eq!(e.field, "JWT_SECRET_KEY");
        assert!(load(&PROXY).is_ok());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (key, value) in [
            ("TRUST_PROXY_AUTH", "sure"),
            ("DEFAULT_PASSTHROUGH_HEADERS", "[\"X-A\""),
            ("TRUSTED_PROXIES", "10.0.0.0/99"),
            ("PORT", "70000"),
            ("DATABASE_URL", "mysql://x"),
            ("JWT_ALGORITHM", "none"),
            ("PROXY_USER_HEADER", "X_Authenticated_User"),
            ("PROXY_USER_HEADER", "X-Request-Id"),
            ("PROXY_USER_HEADER", "X-Forwarded-Proto"),
            ("KEEPALIVE_TIMEOUT", "0"),
            ("METRICS_TOKEN", "has spaces"),
            ("CORS_ENABLED", "sometimes"),
            ("ALLOWED_ORIGINS", "[\"null\"]"),
            ("ALLOWED_ORIGINS", "localhost:6274"),
            ("REQUEST_HEADER_TIMEOUT", "0"),
            ("REQUEST_HEADER_TIMEOUT", "soon"),
            ("STREAM_IDLE_TIMEOUT", "-1"),
            ("STREAM_IDLE_TIMEOUT", "forever"),
            ("PROXY_USER_CLAIM", "user name"),
        ] {
            let mut pairs = PROXY.to_vec();
            pairs.push((key, value));
            let e = load(&pairs).unwrap_err();
            assert_eq!(e.field, key, "{e}");
        }
    }

    #[test]
    fn a_payload_claim_needs_trusted_proxies() {
        let mut pairs = PROXY.to_vec();
        pairs.push(("PROXY_USER_CLAIM", "email"));
        assert_eq!(load(&pairs).unwrap_err().field, "TRUSTED_PROXIES");
        pairs.push(("TRUSTED_PROXIES", "127.0.0.0/8"));
        let s = load(&pairs).unwrap();
        assert_eq!(s.auth.proxy_user_claim.as_deref(), Some("email"));
        assert_eq!(load(&PROXY).unwrap().auth.proxy_user_claim, None);
    }

    #[test]
    fn warns_when_auth_is_off_without_trust() {
        let s = load(&[("MCP_CLIENT_AUTH_ENABLED", "false")]).unwrap();
        assert!(s
            .warnings()
            .iter()
            .any(|w| w == "MCP client authentication is disabled but trust_proxy_auth is not set"));
    }

    #[test]
    fn names_the_variables_that_are_set_but_not_in_effect() {
        let not_in_effect = |pairs: &[(&str, &str)]| {
            let mut all = PROXY.to_vec();
            all.extend_from_slice(pairs);
            let warnings = load(&all).unwrap().warnings();
            warnings
                .into_iter()
                .filter(|w| w.contains("not yet in effect"))
                .collect::<Vec<_>>()
        };
        // Defaults alone, or an empty value, say nothing.
        assert!(not_in_effect(&[]).is_empty());
        assert!(not_in_effect(&[("CACHE_TYPE", " ")]).is_empty());
        let w = not_in_effect(&[
            ("CACHE_TYPE", "redis"),
            ("REDIS_URL", "redis://cache:6379/0"),
            ("DATABASE_URL", "postgresql://u:pw@db/mcp"),
            ("PLATFORM_ADMIN_PASSWORD", "pw"),
            ("SESSION_SECRET", "in-effect-so-not-named"),
        ]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("CACHE_TYPE, REDIS_URL set but not yet in effect"),
            "{}",
            w[0]
        );
        assert!(!w[0].contains("pw"), "never a value");
    }

    #[test]
    fn admin_service_defaults_and_validation() {
        let s = load(&PROXY).unwrap();
        let admin = &s.admin.service;
        assert!(admin.enabled);
        assert_eq!(admin.host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(admin.port, 4445);
        assert!(!admin.allow_basic_auth);
        assert!(!admin.cookie_secure);

        for (key, value) in [
            ("ADMIN_ENABLED", "maybe"),
            ("ADMIN_HOST", "localhost:1"),
            ("ADMIN_PORT", "0"),
            ("ADMIN_PORT", "65536"),
            ("API_ALLOW_BASIC_AUTH", "yes please"),
            ("ADMIN_COOKIE_SECURE", "2"),
        ] {
            let mut pairs = PROXY.to_vec();
            pairs.push((key, value));
            assert_eq!(load(&pairs).unwrap_err().field, key, "{key}={value}");
        }

        let mut pairs = PROXY.to_vec();
        pairs.extend([
            ("ADMIN_ENABLED", "false"),
            ("ADMIN_HOST", "0.0.0.0"),
            ("ADMIN_PORT", "9000"),
            ("API_ALLOW_BASIC_AUTH", "true"),
        ]);
        let s = load(&pairs).unwrap();
        let admin = &s.admin.service;
        assert!(!admin.enabled && admin.allow_basic_auth && admin.port == 9000);
        assert!(!admin.host.is_loopback());
    }

    #[test]
    fn the_admin_port_must_differ_from_the_gateway_port() {
        let mut pairs = PROXY.to_vec();
        pairs.push(("ADMIN_PORT", "4444"));
        assert_eq!(load(&pairs).unwrap_err().field, "ADMIN_PORT");
        pairs.push(("ADMIN_ENABLED", "false"));
        assert!(
            load(&pairs).is_ok(),
            "a disabled admin service binds nothing"
        );
    }

    #[test]
    fn warns_when_the_admin_service_is_open_or_unusable() {
        let warns = |extra: &[(&str, &str)], needle: &str| {
            let mut pairs = PROXY.to_vec();
            pairs.extend_from_slice(extra);
            load(&pairs)
                .unwrap()
                .warnings()
                .iter()
                .any(|w| w.contains(needle))
        };
        assert!(warns(&[("AUTH_REQUIRED", "false")], "AUTH_REQUIRED=false"));
        assert!(warns(&[], "PLATFORM_ADMIN_PASSWORD is not set"));
        assert!(!warns(
            &[("PLATFORM_ADMIN_PASSWORD", "pw")],
            "PLATFORM_ADMIN_PASSWORD"
        ));
        assert!(!warns(
            &[("AUTH_REQUIRED", "false"), ("ADMIN_ENABLED", "false")],
            "AUTH_REQUIRED"
        ));
    }

    #[test]
    fn the_published_encryption_secret_is_called_out() {
        let warned = |pairs: &[(&str, &str)]| {
            let mut all = PROXY.to_vec();
            all.extend_from_slice(pairs);
            load(&all)
                .unwrap()
                .warnings()
                .into_iter()
                .any(|w| w.contains("AUTH_ENCRYPTION_SECRET"))
        };
        assert!(warned(&[]));
        assert!(warned(&[("AUTH_ENCRYPTION_SECRET", "my-test-salt")]));
        assert!(warned(&[("AUTH_ENCRYPTION_SECRET", "short")]));
        assert!(!warned(&[(
            "AUTH_ENCRYPTION_SECRET",
            "a-long-random-secret-0123456789"
        )]));
    }

    #[test]
    fn a_malformed_database_url_names_the_variable_without_its_password() {
        let mut pairs = PROXY.to_vec();
        pairs.push(("DATABASE_URL", "postgresql+psycopg://u:dbpass@db:port/mcp"));
        let e = load(&pairs).unwrap_err();
        assert_eq!(e.field, "DATABASE_URL");
        assert!(!e.to_string().contains("dbpass"), "{e}");
        assert!(e.to_string().contains("u:***@"), "{e}");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let s = load(&[
            ("METRICS_TOKEN", "super-secret-value"),
            ("JWT_SECRET_KEY", "super-secret-value"),
            ("DATABASE_URL", "postgresql+psycopg://u:dbpass@db/mcp"),
        ])
        .unwrap();
        let text = format!("{s:?}");
        assert!(!text.contains("super-secret-value") && !text.contains("dbpass"));
    }
}
