//! The effective configuration as `GET /api/config` shows it: every
//! setting by its environment name, secrets only as "set" / "not set".

use crate::config::{CacheType, Secret, Settings};
use serde_json::{json, Value};

fn secret(s: Option<&Secret>) -> &'static str {
    if s.is_some() {
        "set"
    } else {
        "not set"
    }
}

/// `scheme://user:password@host/...` with the password replaced.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{path}")
            } else {
                format!("{scheme}://{user}@{host}{path}")
            }
        }
        None => url.to_string(),
    }
}

pub fn effective_config(s: &Settings) -> Value {
    let cache = match s.admin.cache_type {
        CacheType::Memory => "memory",
        CacheType::Redis => "redis",
        CacheType::Database => "database",
        CacheType::None => "none",
    };
    // In groups: one json! of fifty entries exceeds the macro's recursion.
    let groups = [
        json!({
        "HOST": s.listen.host.to_string(),
        "PORT": s.listen.port,
        "WORKER_THREADS": s.listen.worker_threads,
        "KEEPALIVE_TIMEOUT": s.listen.keepalive_timeout.as_secs_f64(),
        "REQUEST_HEADER_TIMEOUT": s.listen.request_header_timeout.as_secs_f64(),
        "SHUTDOWN_DRAIN_SECONDS": s.listen.shutdown_drain.as_secs_f64(),
        "SHUTDOWN_GRACE_SECONDS": s.listen.shutdown_grace.as_secs_f64(),
        "UPGRADE_SOCK": s.listen.upgrade_sock.display().to_string(),
        }),
        json!({
        "MCP_CLIENT_AUTH_ENABLED": s.auth.mcp_client_auth_enabled,
        "TRUST_PROXY_AUTH": s.auth.trust_proxy_auth,
        "PROXY_USER_HEADER": s.auth.proxy_user_header.as_str(),
        "PROXY_USER_CLAIM": s.auth.proxy_user_claim,
        "AUTH_REQUIRED": s.auth.auth_required,
        "TRUSTED_PROXIES": s.auth.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "JWT_SECRET_KEY": secret(s.auth.jwt.secret.as_ref()),
        "JWT_ALGORITHM": format!("{:?}", s.auth.jwt.algorithm),
        "JWT_AUDIENCE": s.auth.jwt.audience,
        "JWT_ISSUER": s.auth.jwt.issuer,
        }),
        json!({
        "ENABLE_HEADER_PASSTHROUGH": s.headers.enable_header_passthrough,
        "ENABLE_OVERWRITE_BASE_HEADERS": s.headers.enable_overwrite_base_headers,
        "DEFAULT_PASSTHROUGH_HEADERS": s.headers.default_passthrough_headers.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
        "SESSION_SECRET": secret(s.sessions.secret.as_ref()),
        "MCP_SESSION_TTL": s.sessions.ttl.as_secs(),
        "UPSTREAM_CONNECT_TIMEOUT": s.upstream.connect_timeout.as_secs_f64(),
        "UPSTREAM_READ_TIMEOUT": s.upstream.read_timeout.as_secs_f64(),
        "STREAM_IDLE_TIMEOUT": s.upstream.stream_idle_timeout.map_or(0.0, |d| d.as_secs_f64()),
        "HEALTH_CHECK_INTERVAL": s.upstream.health_check_interval.as_secs_f64(),
        "UPSTREAM_CA_FILE": if s.upstream.ca_file.is_some() { "set" } else { "not set" },
        }),
        json!({
        "PLATFORM_ADMIN_EMAIL": s.admin.platform_admin_email,
        "PLATFORM_ADMIN_PASSWORD": secret(s.admin.platform_admin_password.as_ref()),
        "BASIC_AUTH_USER": s.admin.basic_auth_user,
        "BASIC_AUTH_PASSWORD": secret(s.admin.basic_auth_password.as_ref()),
        "DATABASE_URL": s.admin.database_url.redacted(),
        "AUTH_ENCRYPTION_SECRET": if s.admin.encryption_secret.expose()
            == crate::registry::crypto::DEFAULT_ENCRYPTION_SECRET
        {
            "the published default"
        } else {
            "set"
        },
        "CACHE_TYPE": cache,
        "REDIS_URL": redact_url(s.admin.redis_url.expose()),
        "SESSION_TTL": s.admin.session_ttl.as_secs(),
        "ADMIN_ENABLED": s.admin.service.enabled,
        "ADMIN_HOST": s.admin.service.host.to_string(),
        "ADMIN_PORT": s.admin.service.port,
        "API_ALLOW_BASIC_AUTH": s.admin.service.allow_basic_auth,
        "ADMIN_COOKIE_SECURE": s.admin.service.cookie_secure,
        "CORS_ENABLED": s.cors.enabled,
        "ALLOWED_ORIGINS": s.cors.allowed_origins,
        "LOG_LEVEL": s.observability.log_level,
        "METRICS_MAX_USERS": s.observability.metrics_max_users,
        "METRICS_TOKEN": secret(s.observability.metrics_token.as_ref()),
        "servers": s.servers.iter().map(|srv| srv.name.as_str()).collect::<Vec<_>>(),
        }),
    ];
    let mut out = serde_json::Map::new();
    for group in groups {
        if let Value::Object(entries) = group {
            out.extend(entries);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("postgresql+psycopg://u:pw@db:5432/mcp"),
            "postgresql+psycopg://u:***@db:5432/mcp"
        );
        assert_eq!(redact_url("sqlite:///./mcp.db"), "sqlite:///./mcp.db");
        assert_eq!(redact_url("redis://:p@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact_url("redis://h:6379/0"), "redis://h:6379/0");
    }

    #[test]
    fn no_secret_value_appears() {
        let pairs = [
            ("JWT_SECRET_KEY", "secret-jwt-key-value-0123456789"),
            ("SESSION_SECRET", "secret-session-value"),
            ("PLATFORM_ADMIN_PASSWORD", "secret-admin-password"),
            ("BASIC_AUTH_PASSWORD", "secret-basic-password"),
            ("METRICS_TOKEN", "secret-metrics-token"),
            ("DATABASE_URL", "postgresql://u:secret-db-password@db/mcp"),
            ("AUTH_ENCRYPTION_SECRET", "secret-encryption-key-0123456789"),
            ("REDIS_URL", "redis://:secret-redis-password@cache:6379/0"),
        ];
        let s = Settings::load(&Source::from_pairs(pairs), None).unwrap();
        let text = effective_config(&s).to_string();
        assert!(!text.contains("secret-"), "{text}");
        let v = effective_config(&s);
        assert_eq!(v["JWT_SECRET_KEY"], "set");
        assert_eq!(v["ADMIN_PORT"], 4445);
        assert!(v["DATABASE_URL"].as_str().unwrap().contains("u:***@db"));
        assert_eq!(v["AUTH_ENCRYPTION_SECRET"], "set");
    }
}
