//! `virtual_servers:` in the YAML file: MCP servers the gateway itself
//! serves at `/servers/{name}/mcp`, made of tools of registered servers,
//! each with its own authentication rules.

use super::fields::{check_auth_fields, check_description, check_name, is_valid_server_name};
use super::servers::AuthMode;
use super::ConfigError;
use http::HeaderName;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;

/// What one `include` entry takes: one tool of a server, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludePattern {
    pub server: String,
    /// `None`: `server/*`.
    pub tool: Option<String>,
}

impl fmt::Display for IncludePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.tool.as_deref().unwrap_or("*"))
    }
}

/// Longest tool name accepted in a pattern (MCP suggests at most 128).
const MAX_TOOL_NAME: usize = 128;

impl IncludePattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((server, tool)) = text.split_once('/') else {
            return Err(format!("{text:?} must be server/tool or server/*"));
        };
        if !is_valid_server_name(server) {
            return Err(format!(
                "{text:?}: the server name must match [a-z0-9-]{{1,63}}"
            ));
        }
        if tool == "*" {
            return Ok(IncludePattern {
                server: server.to_string(),
                tool: None,
            });
        }
        // Tool names are what upstreams chose; only what can never be a
        // name (empty, a wildcard inside it, spaces, a slash) is refused.
        if tool.is_empty()
            || tool.len() > MAX_TOOL_NAME
            || tool.contains(['*', '/'])
            || !tool.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "{text:?}: the tool must be * or a name of 1 to {MAX_TOOL_NAME} visible ASCII \
                 characters without '/' or '*'"
            ));
        }
        Ok(IncludePattern {
            server: server.to_string(),
            tool: Some(tool.to_string()),
        })
    }

    /// Whether this pattern takes `tool` of `server`.
    pub fn takes(&self, server: &str, tool: &str) -> bool {
        self.server == server && self.tool.as_deref().is_none_or(|t| t == tool)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServerSpec {
    pub name: String,
    pub include: Vec<IncludePattern>,
    pub auth_mode: AuthMode,
    pub proxy_header: Option<HeaderName>,
    pub jwt_audience: Option<String>,
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVirtualServer {
    name: String,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    auth_mode: AuthMode,
    proxy_header: Option<String>,
    jwt_audience: Option<String>,
    description: Option<String>,
}

/// Validates the file's virtual servers; `real` is the file's server names
/// (a shared name space: `/servers/{name}/mcp` must mean one thing).
pub(super) fn validate_virtual_servers(
    raw: Vec<RawVirtualServer>,
    real: &HashSet<&str>,
    file: &str,
) -> Result<Vec<VirtualServerSpec>, ConfigError> {
    let mut seen = HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let field = |f: &str| format!("{file}: virtual_servers[{i}].{f}");
            let fields = VirtualServerFields {
                name: &raw.name,
                include: &raw.include,
                auth_mode: raw.auth_mode,
                proxy_header: raw.proxy_header.as_deref(),
                jwt_audience: raw.jwt_audience.as_deref(),
                description: raw.description.as_deref().unwrap_or_default(),
            };
            let spec = validate_virtual_server(fields, &field)?;
            if real.contains(spec.name.as_str()) {
                return Err(ConfigError::new(
                    field("name"),
                    format!(
                        "{:?} is also the name of a server: /servers/{0}/mcp must name one of them",
                        spec.name
                    ),
                ));
            }
            if !seen.insert(spec.name.clone()) {
                return Err(ConfigError::new(
                    field("name"),
                    format!("duplicate virtual server name {:?}", spec.name),
                ));
            }
            Ok(spec)
        })
        .collect()
}

/// Most `include` entries a virtual server may hold.
pub const MAX_INCLUDE: usize = 256;

/// A virtual server's fields as written, before validation: what the YAML
/// file and the registry's records both hold.
pub struct VirtualServerFields<'a> {
    pub name: &'a str,
    pub include: &'a [String],
    pub auth_mode: AuthMode,
    pub proxy_header: Option<&'a str>,
    pub jwt_audience: Option<&'a str>,
    /// Empty for none.
    pub description: &'a str,
}

/// The one set of rules for a virtual server, from the YAML file or the
/// registry (the server rules for the name and the authentication fields);
/// `field` names a field as the caller does in an error. Whether the
/// included servers exist is not a rule: servers come and go.
pub fn validate_virtual_server(
    raw: VirtualServerFields<'_>,
    field: &dyn Fn(&str) -> String,
) -> Result<VirtualServerSpec, ConfigError> {
    check_name(raw.name, field)?;
    if raw.include.len() > MAX_INCLUDE {
        return Err(ConfigError::new(
            field("include"),
            format!("at most {MAX_INCLUDE} entries"),
        ));
    }
    let mut include: Vec<IncludePattern> = Vec::with_capacity(raw.include.len());
    for (j, p) in raw.include.iter().enumerate() {
        let pattern = IncludePattern::parse(p)
            .map_err(|e| ConfigError::new(field(&format!("include[{j}]")), e))?;
        if include.contains(&pattern) {
            return Err(ConfigError::new(
                field(&format!("include[{j}]")),
                format!("{p:?} appears twice"),
            ));
        }
        include.push(pattern);
    }
    let proxy_header = check_auth_fields(raw.auth_mode, raw.proxy_header, raw.jwt_audience, field)?;
    check_description(raw.description, field)?;
    Ok(VirtualServerSpec {
        name: raw.name.to_string(),
        include,
        auth_mode: raw.auth_mode,
        proxy_header,
        jwt_audience: raw.jwt_audience.map(str::to_string),
        description: Some(raw.description.to_string()).filter(|d| !d.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<VirtualServerSpec>, String> {
        let raw: Vec<RawVirtualServer> = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        validate_virtual_servers(raw, &HashSet::from(["github"]), "f").map_err(|e| e.to_string())
    }

    #[test]
    fn a_complete_virtual_server() {
        let v = parse(
            "- name: dev\n  include: [github/*, jira/create_issue]\n  auth_mode: proxy\n  proxy_header: X-Employee-Id\n  description: Dev tools\n",
        )
        .unwrap();
        assert_eq!(v[0].name, "dev");
        assert_eq!(v[0].auth_mode, AuthMode::Proxy);
        assert_eq!(v[0].proxy_header.as_ref().unwrap(), "x-employee-id");
        let shown: Vec<String> = v[0].include.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["github/*", "jira/create_issue"]);
        assert!(v[0].include[0].takes("github", "anything"));
        assert!(v[0].include[1].takes("jira", "create_issue"));
        assert!(!v[0].include[1].takes("jira", "delete_issue"));
        assert!(!v[0].include[0].takes("jira", "x"));
    }

    /// PROXY-AUTH.md's "multiple authentication methods" example, as
    /// written (no `include`: a virtual server offering nothing yet).
    #[test]
    fn the_reference_example_loads() {
        let v = parse(
            "# Server 1: Proxy auth\n- name: internal-server\n  auth_mode: proxy\n  proxy_header: X-Employee-Id\n\n# Server 2: JWT auth\n- name: external-server\n  auth_mode: jwt\n  jwt_audience: external-clients\n",
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert!(v[0].include.is_empty());
        assert_eq!(v[1].auth_mode, AuthMode::Jwt);
        assert_eq!(v[1].jwt_audience.as_deref(), Some("external-clients"));
    }

    #[test]
    fn refusals_name_the_field_and_the_problem() {
        for (yaml, expect) in [
            ("- {name: Dev, include: [a/*]}", "virtual_servers[0].name"),
            ("- {name: dev, include: [a]}", "include[0]"),
            ("- {name: dev, include: [a/]}", "include[0]"),
            ("- {name: dev, include: [a/b*]}", "include[0]"),
            ("- {name: dev, include: [A/b]}", "include[0]"),
            ("- {name: dev, include: [a/b c]}", "include[0]"),
            (
                "- {name: github, include: [a/*]}",
                "also the name of a server",
            ),
            (
                "- {name: d, include: [a/*]}\n- {name: d, include: [b/*]}",
                "duplicate virtual server",
            ),
            (
                "- {name: d, include: [a/*], auth_mode: jwt, proxy_header: X-U}",
                "proxy_header",
            ),
            (
                "- {name: d, include: [a/*], auth_mode: proxy, jwt_audience: x}",
                "jwt_audience",
            ),
            ("- {name: d, include: [a/*], urls: [x]}", "unknown field"),
            ("- {name: d, include: [a/*, a/*]}", "include[1]"),
            (
                "- {name: d, auth_mode: jwt, jwt_audience: \"\"}",
                "jwt_audience",
            ),
            (
                "- {name: d, include: [a/*], auth_mode: oauth}",
                "unknown variant",
            ),
        ] {
            let e = parse(yaml).unwrap_err();
            assert!(e.contains(expect), "{yaml}: {e}");
        }
    }
}
