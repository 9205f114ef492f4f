//! The YAML file that declares MCP servers (`--config conf/gateway.yaml`).

use super::fields::{check_auth_fields, check_name};
use super::tls::{upstream_tls, RawUpstreamTls, UpstreamTls};
use super::values::{parse_header_name, Secret};
use super::virtual_servers::{validate_virtual_servers, VirtualServerSpec};
use super::ConfigError;
use http::{HeaderName, Uri};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};

/// How a server authenticates its callers; `Inherit` uses the global settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Inherit,
    Proxy,
    Jwt,
}

/// One replica of a server, parsed once so the data plane never re-parses a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub original: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `host` or `host:port`, as the `Host` header the replica expects.
    pub authority: String,
    /// Path of the Streamable HTTP endpoint, e.g. `/mcp`.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub name: String,
    pub urls: Vec<UpstreamUrl>,
    pub auth_mode: AuthMode,
    pub proxy_header: Option<HeaderName>,
    pub jwt_audience: Option<String>,
    /// Replaces the global passthrough list for this server when set.
    pub passthrough_headers: Option<Vec<HeaderName>>,
    /// What the gateway itself presents to this server's replicas.
    pub upstream_auth: UpstreamCredential,
    /// TLS to this server's `https://` replicas (its `tls:` block).
    pub tls: UpstreamTls,
    /// How often the catalog gathers this server again; `None`: the
    /// global `CATALOG_REFRESH_INTERVAL`.
    pub refresh_interval: Option<std::time::Duration>,
}

/// The credential the gateway presents upstream for a server (the
/// reference's registered gateways' `auth_type`). A client's
/// `X-Upstream-Authorization` still wins where the header rules allow it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UpstreamCredential {
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: Secret },
    /// Each header set as given.
    Headers(Vec<(HeaderName, Secret)>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    servers: Vec<RawServer>,
    #[serde(default)]
    virtual_servers: Vec<super::virtual_servers::RawVirtualServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    name: String,
    #[serde(default)]
    urls: Vec<String>,
    url: Option<String>,
    #[serde(default)]
    auth_mode: AuthMode,
    proxy_header: Option<String>,
    jwt_audience: Option<String>,
    passthrough_headers: Option<Vec<String>>,
    upstream_auth: Option<RawCredential>,
    tls: Option<RawUpstreamTls>,
    refresh_interval: Option<i64>,
}

/// The YAML form of an [`UpstreamCredential`]: secrets are named by the
/// environment variable holding them, never written in the file.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum RawCredential {
    Bearer {
        token_env: String,
    },
    Basic {
        username: String,
        password_env: String,
    },
    Headers {
        headers_env: BTreeMap<String, String>,
    },
}

/// Where a credential's secrets are read: the process environment over
/// `.env`, as every other setting.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn credential(
    raw: RawCredential,
    env: EnvLookup,
    field: &dyn Fn(&str) -> String,
) -> Result<UpstreamCredential, ConfigError> {
    let secret = |var: &str, at: &str| {
        env(var).map(Secret::new).ok_or_else(|| {
            ConfigError::new(
                field(&format!("upstream_auth.{at}")),
                format!("environment variable {var} is not set"),
            )
        })
    };
    Ok(match raw {
        RawCredential::Bearer { token_env } => {
            UpstreamCredential::Bearer(secret(&token_env, "token_env")?)
        }
        RawCredential::Basic {
            username,
            password_env,
        } => UpstreamCredential::Basic {
            username,
            password: secret(&password_env, "password_env")?,
        },
        RawCredential::Headers { headers_env } => UpstreamCredential::Headers(
            headers_env
                .iter()
                .map(|(name, var)| {
                    let at = format!("headers_env.{name}");
                    let name = parse_header_name(name)
                        .map_err(|e| ConfigError::new(field(&format!("upstream_auth.{at}")), e))?;
                    Ok((name, secret(var, &at)?))
                })
                .collect::<Result<_, ConfigError>>()?,
        ),
    })
}

/// The servers of a YAML file, credentials read from the process environment.
#[cfg(test)]
pub fn parse_servers_yaml(text: &str, file: &str) -> Result<Vec<ServerSpec>, ConfigError> {
    parse_file_with_env(text, file, &|var| std::env::var(var).ok()).map(|(servers, _)| servers)
}

/// The file's servers and virtual servers.
pub fn parse_file_with_env(
    text: &str,
    file: &str,
    env: EnvLookup,
) -> Result<(Vec<ServerSpec>, Vec<VirtualServerSpec>), ConfigError> {
    let doc: FileDoc = serde_yaml::from_str(text)
        .map_err(|e| ConfigError::new(file, format!("invalid YAML: {e}")))?;
    let servers = servers_of(doc.servers, file, env)?;
    let names: HashSet<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    let virtuals = validate_virtual_servers(doc.virtual_servers, &names, file)?;
    Ok((servers, virtuals))
}

fn servers_of(
    raw: Vec<RawServer>,
    file: &str,
    env: EnvLookup,
) -> Result<Vec<ServerSpec>, ConfigError> {
    let mut seen = HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let field = |f: &str| format!("{file}: servers[{i}].{f}");
            let upstream_auth = match raw.upstream_auth {
                Some(cred) => credential(cred, env, &field)?,
                None => UpstreamCredential::None,
            };
            let mut urls = raw.urls;
            urls.extend(raw.url);
            let fields = ServerFields {
                name: &raw.name,
                urls: &urls,
                auth_mode: raw.auth_mode,
                proxy_header: raw.proxy_header.as_deref(),
                jwt_audience: raw.jwt_audience.as_deref(),
                passthrough_headers: raw.passthrough_headers.as_deref(),
                upstream_auth: &upstream_auth,
                refresh_interval: raw.refresh_interval,
            };
            let mut spec = validate_server(fields, &field)?;
            spec.tls = upstream_tls(raw.tls.unwrap_or_default(), &field)?;
            if !seen.insert(spec.name.clone()) {
                return Err(ConfigError::new(
                    field("name"),
                    format!("duplicate server name {:?}", spec.name),
                ));
            }
            Ok(spec)
        })
        .collect()
}

/// A server's fields as written, before validation: what the YAML file and
/// the registry's drafts both hold.
pub struct ServerFields<'a> {
    pub name: &'a str,
    pub urls: &'a [String],
    pub auth_mode: AuthMode,
    pub proxy_header: Option<&'a str>,
    pub jwt_audience: Option<&'a str>,
    pub passthrough_headers: Option<&'a [String]>,
    pub upstream_auth: &'a UpstreamCredential,
    /// Seconds.
    pub refresh_interval: Option<i64>,
}

/// The one set of rules for a server, from the YAML file or the registry;
/// `field` turns a field's name into how the caller names it in an error.
pub fn validate_server(
    raw: ServerFields<'_>,
    field: &dyn Fn(&str) -> String,
) -> Result<ServerSpec, ConfigError> {
    check_name(raw.name, field)?;
    if raw.urls.is_empty() {
        return Err(ConfigError::new(
            field("urls"),
            "at least one URL is required",
        ));
    }
    let urls = raw
        .urls
        .iter()
        .enumerate()
        .map(|(j, u)| {
            parse_upstream_url(u).map_err(|e| ConfigError::new(field(&format!("urls[{j}]")), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let proxy_header = check_auth_fields(raw.auth_mode, raw.proxy_header, raw.jwt_audience, field)?;
    let passthrough_headers = raw
        .passthrough_headers
        .map(|list| {
            list.iter()
                .map(|h| parse_header_name(h))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConfigError::new(field("passthrough_headers"), e))
        })
        .transpose()?;
    validate_credential(raw.upstream_auth).map_err(|(f, e)| ConfigError::new(field(&f), e))?;
    let refresh_interval = raw
        .refresh_interval
        .map(super::values::refresh_interval)
        .transpose()
        .map_err(|e| ConfigError::new(field("refresh_interval"), e))?;
    Ok(ServerSpec {
        name: raw.name.to_string(),
        urls,
        auth_mode: raw.auth_mode,
        proxy_header,
        jwt_audience: raw.jwt_audience.map(str::to_string),
        passthrough_headers,
        upstream_auth: raw.upstream_auth.clone(),
        // Per-server TLS files are the YAML file's alone (see the parser).
        tls: UpstreamTls::default(),
        refresh_interval,
    })
}

/// Every value must travel as an HTTP header value; the gateway's framing,
/// routing and identity headers are not the credential's to set.
fn validate_credential(cred: &UpstreamCredential) -> Result<(), (String, String)> {
    let header_safe =
        |v: &str| !v.is_empty() && v.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    let too_long = |v: &str| v.len() > 4096;
    match cred {
        UpstreamCredential::None => Ok(()),
        UpstreamCredential::Bearer(token) => {
            let t = token.expose();
            if t.is_empty() || too_long(t) || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err((
                    "upstream_auth.token".into(),
                    "must be 1 to 4096 visible ASCII characters without spaces".into(),
                ));
            }
            Ok(())
        }
        UpstreamCredential::Basic { username, password } => {
            if username.is_empty()
                || too_long(username)
                || username.contains(':')
                || !header_safe(username)
            {
                return Err((
                    "upstream_auth.username".into(),
                    "must be 1 to 4096 printable ASCII characters without ':'".into(),
                ));
            }
            let p = password.expose();
            if too_long(p) || !p.chars().all(|c| !c.is_control()) {
                return Err((
                    "upstream_auth.password".into(),
                    "must be at most 4096 characters without control characters".into(),
                ));
            }
            Ok(())
        }
        UpstreamCredential::Headers(headers) => {
            if headers.is_empty() || headers.len() > 16 {
                return Err((
                    "upstream_auth.headers".into(),
                    "must hold 1 to 16 headers".into(),
                ));
            }
            let mut seen = HashSet::new();
            for (name, value) in headers {
                let field = format!("upstream_auth.headers.{name}");
                if crate::headers::is_reserved_name(name) && name != http::header::AUTHORIZATION {
                    return Err((
                        field,
                        "is a header the gateway sets or forwards itself".into(),
                    ));
                }
                if !seen.insert(name.clone()) {
                    return Err((field, "appears twice".into()));
                }
                if too_long(value.expose()) || !header_safe(value.expose()) {
                    return Err((field, "must be 1 to 4096 printable ASCII characters".into()));
                }
            }
            Ok(())
        }
    }
}

/// `raw` with what may be a secret hidden: the user-information part
/// (`user:password@`) and the query string (`?api_key=...`).
pub fn url_for_messages(raw: &str) -> String {
    let (before_query, query) = match raw.split_once('?') {
        Some((b, _)) => (b, "?***"),
        None => (raw, ""),
    };
    let (scheme, rest) = match before_query.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), before_query),
    };
    let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    format!("{scheme}{authority}{path}{query}")
}

pub fn parse_upstream_url(raw: &str) -> Result<UpstreamUrl, String> {
    // Refusals are logged, printed at start-up and returned by the admin
    // API: they show the URL without the secrets it may wrongly carry.
    let shown = url_for_messages(raw);
    let uri: Uri = raw
        .parse()
        .map_err(|e| format!("{shown:?} is not a valid URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{shown:?} must be an http:// or https:// URL")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{shown:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{shown:?}: credentials in URLs are not supported"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{shown:?} has no host"));
    }
    // `http://h:abc/` parses, its port then unreadable: refused, not 80.
    let text = authority.as_str();
    let after_host = match text.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(_, rest)| rest),
        None => text,
    };
    let port_text = after_host.rsplit_once(':').map(|(_, port)| port);
    if port_text.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(format!(
            "{shown:?}: the port is not a number from 0 to 65535"
        ));
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = match uri.path() {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    if uri.query().is_some() {
        return Err(format!(
            "{shown:?}: a query string is not supported in a server URL"
        ));
    }
    Ok(UpstreamUrl {
        original: raw.to_string(),
        tls,
        host: host.to_string(),
        port,
        authority: authority.as_str().to_string(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_that_is_not_a_number_is_refused() {
        for raw in ["https://h8:afM", "http://h:HHgf3/mcp", "http://h:/mcp"] {
            let e = parse_upstream_url(raw).map(|u| u.port);
            assert!(e.is_err(), "{raw}: {e:?}");
        }
        assert_eq!(parse_upstream_url("http://h:8080/mcp").unwrap().port, 8080);
        assert_eq!(parse_upstream_url("https://h/mcp").unwrap().port, 443);
    }

    #[test]
    fn a_refused_url_is_named_without_its_secrets() {
        for (raw, secret) in [
            ("http://bot:hunter2@10.0.0.5:3001/mcp", "hunter2"),
            ("https://hunter2@h/mcp", "hunter2"),
            ("http://h:1/mcp?api_key=hunter2", "hunter2"),
            ("ftp://u:hunter2@h/mcp", "hunter2"),
            ("http://u:hunter2 @h/mcp", "hunter2"),
        ] {
            let e = parse_upstream_url(raw).unwrap_err();
            assert!(!e.contains(secret), "{e}");
            assert!(e.contains("***"), "{e}");
        }
        assert_eq!(
            url_for_messages("http://a:b@h:1/p?q=1"),
            "http://***@h:1/p?***"
        );
        assert_eq!(url_for_messages("http://h:1/p"), "http://h:1/p");
    }

    #[test]
    fn parses_the_documented_example() {
        let yaml = r#"
servers:
  - name: github
    urls: [http://10.0.0.5:3001/mcp, https://mcp.example.com/mcp]
    auth_mode: proxy
    proxy_header: X-Employee-Id
    passthrough_headers: [X-Tenant-Id]
  - name: external
    url: http://127.0.0.1:9000/mcp
    auth_mode: jwt
    jwt_audience: external-clients
"#;
        let servers = parse_servers_yaml(yaml, "g.yaml").unwrap();
        assert_eq!(servers.len(), 2);
        let gh = &servers[0];
        assert_eq!(gh.auth_mode, AuthMode::Proxy);
        assert_eq!(gh.urls[1].port, 443);
        assert!(gh.urls[1].tls);
        assert_eq!(gh.urls[0].authority, "10.0.0.5:3001");
        assert_eq!(gh.proxy_header.as_ref().unwrap().as_str(), "x-employee-id");
        assert_eq!(servers[1].jwt_audience.as_deref(), Some("external-clients"));
    }

    #[test]
    fn upstream_credentials_come_from_the_environment() {
        let yaml = r#"
servers:
  - name: a
    url: http://h/mcp
    upstream_auth: {type: bearer, token_env: A_TOKEN}
  - name: b
    url: http://h/mcp
    upstream_auth: {type: basic, username: svc, password_env: B_PW}
  - name: c
    url: http://h/mcp
    upstream_auth: {type: headers, headers_env: {X-Api-Key: C_KEY}}
"#;
        let env = |var: &str| match var {
            "A_TOKEN" => Some("tok".to_string()),
            "B_PW" => Some("pw".to_string()),
            "C_KEY" => Some("key".to_string()),
            _ => None,
        };
        let servers = parse_file_with_env(yaml, "f", &env)
            .map(|(s, _)| s)
            .unwrap();
        assert_eq!(
            servers[0].upstream_auth,
            UpstreamCredential::Bearer(Secret::new("tok"))
        );
        assert_eq!(
            servers[1].upstream_auth,
            UpstreamCredential::Basic {
                username: "svc".into(),
                password: Secret::new("pw")
            }
        );
        assert_eq!(
            servers[2].upstream_auth,
            UpstreamCredential::Headers(vec![(
                HeaderName::from_static("x-api-key"),
                Secret::new("key")
            )])
        );
        let missing = |_: &str| None;
        let e = parse_file_with_env(yaml, "f", &missing)
            .map(|(s, _)| s)
            .unwrap_err();
        assert!(
            e.to_string().contains("servers[0].upstream_auth.token_env"),
            "{e}"
        );
        assert!(e.to_string().contains("A_TOKEN"), "{e}");
        // A secret in the file itself is not a field.
        let inline =
            "servers:\n  - {name: a, url: http://h/mcp, upstream_auth: {type: bearer, token: x}}\n";
        assert!(parse_file_with_env(inline, "f", &env)
            .map(|(s, _)| s)
            .is_err());
        let bad_name = "servers:\n  - {name: a, url: http://h/mcp, upstream_auth: {type: headers, headers_env: {\"a b\": C_KEY}}}\n";
        let e = parse_file_with_env(bad_name, "f", &env)
            .map(|(s, _)| s)
            .unwrap_err();
        assert!(e.to_string().contains("upstream_auth.headers_env"), "{e}");
    }

    #[test]
    fn rejects_bad_servers_naming_the_field() {
        let dup =
            "servers:\n  - {name: a, urls: [http://h/mcp]}\n  - {name: a, urls: [http://h/mcp]}\n";
        let e = parse_servers_yaml(dup, "f").unwrap_err();
        assert!(e.to_string().contains("servers[1].name"), "{e}");
        let ftp = "servers:\n  - {name: a, urls: [ftp://h/mcp]}\n";
        let e = parse_servers_yaml(ftp, "f").unwrap_err();
        assert!(e.to_string().contains("servers[0].urls[0]"), "{e}");
        let upper = "servers:\n  - {name: GitHub, urls: [http://h/mcp]}\n";
        assert!(parse_servers_yaml(upper, "f").is_err());
        let typo = "servers:\n  - {name: a, urls: [http://h/mcp], auth_mod: proxy}\n";
        assert!(parse_servers_yaml(typo, "f").is_err());
        let none = "servers:\n  - {name: a}\n";
        assert!(parse_servers_yaml(none, "f").is_err());
        // The client's X-Request-Id is forwarded as sent: never an identity.
        let owned = "servers:\n  - {name: a, urls: [http://h/mcp], auth_mode: proxy, proxy_header: X-Request-Id}\n";
        let e = parse_servers_yaml(owned, "f").unwrap_err();
        assert!(e.to_string().contains("servers[0].proxy_header"), "{e}");
    }
}
