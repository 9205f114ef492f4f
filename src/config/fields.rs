//! The rules servers and virtual servers share, whether they come from the
//! YAML file or the registry: one name space, one set of authentication
//! fields, one description limit. `field` turns a field's name into how
//! the caller names it in an error (`f.yaml: servers[2].name`, or `name`).

use super::servers::AuthMode;
use super::values::parse_identity_header_name;
use super::ConfigError;
use http::HeaderName;

/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Longest `jwt_audience`, in characters.
pub const MAX_AUDIENCE_CHARS: usize = 256;

pub fn is_valid_server_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A server's or virtual server's name: both appear in `/servers/{name}/mcp`.
pub fn check_name(name: &str, field: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    if is_valid_server_name(name) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field("name"),
            format!("{name:?} must match [a-z0-9-]{{1,63}}"),
        ))
    }
}

/// `auth_mode`, `proxy_header` and `jwt_audience` together: the header
/// parsed (never one the gateway owns), and each field only where the mode
/// can use it.
pub fn check_auth_fields(
    auth_mode: AuthMode,
    proxy_header: Option<&str>,
    jwt_audience: Option<&str>,
    field: &dyn Fn(&str) -> String,
) -> Result<Option<HeaderName>, ConfigError> {
    let header = proxy_header
        .map(|h| {
            parse_identity_header_name(h).map_err(|e| ConfigError::new(field("proxy_header"), e))
        })
        .transpose()?;
    if header.is_some() && auth_mode == AuthMode::Jwt {
        return Err(ConfigError::new(
            field("proxy_header"),
            "only meaningful with auth_mode proxy or inherit",
        ));
    }
    if let Some(aud) = jwt_audience {
        if auth_mode == AuthMode::Proxy {
            return Err(ConfigError::new(
                field("jwt_audience"),
                "only meaningful with auth_mode jwt or inherit",
            ));
        }
        if aud.is_empty()
            || aud.chars().count() > MAX_AUDIENCE_CHARS
            || aud.chars().any(char::is_control)
        {
            return Err(ConfigError::new(
                field("jwt_audience"),
                format!("must be 1 to {MAX_AUDIENCE_CHARS} characters without control characters"),
            ));
        }
    }
    Ok(header)
}

/// Free text shown to administrators: bounded, and without control
/// characters that would garble a log line or a table (newlines and tabs
/// are text).
pub fn check_description(text: &str, field: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ConfigError::new(
            field("description"),
            format!("at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ConfigError::new(
            field("description"),
            "holds a control character",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(f: &str) -> String {
        f.to_string()
    }

    #[test]
    fn names_share_one_pattern() {
        for (name, ok) in [("a-1", true), ("A", false), ("a_b", false), ("", false)] {
            assert_eq!(check_name(name, &plain).is_ok(), ok, "{name}");
        }
        assert!(check_name(&"a".repeat(64), &plain).is_err());
    }

    #[test]
    fn auth_fields_only_where_the_mode_uses_them() {
        let h = check_auth_fields(AuthMode::Proxy, Some("X-Employee-Id"), None, &plain);
        assert_eq!(h.unwrap().unwrap().as_str(), "x-employee-id");
        let field = |r: Result<Option<HeaderName>, ConfigError>| r.unwrap_err().field;
        assert_eq!(
            field(check_auth_fields(AuthMode::Jwt, Some("X-U"), None, &plain)),
            "proxy_header"
        );
        assert_eq!(
            field(check_auth_fields(AuthMode::Proxy, None, Some("a"), &plain)),
            "jwt_audience"
        );
        assert_eq!(
            field(check_auth_fields(AuthMode::Jwt, None, Some(""), &plain)),
            "jwt_audience"
        );
        // The client's X-Request-Id is forwarded as sent: never an identity.
        assert_eq!(
            field(check_auth_fields(
                AuthMode::Proxy,
                Some("X-Request-Id"),
                None,
                &plain
            )),
            "proxy_header"
        );
        assert!(check_auth_fields(AuthMode::Inherit, None, Some("aud"), &plain).is_ok());
    }

    #[test]
    fn descriptions_are_bounded_text() {
        assert!(check_description("two\nlines\tand a tab", &plain).is_ok());
        assert!(check_description("bell\u{7}", &plain).is_err());
        assert!(check_description(&"x".repeat(MAX_DESCRIPTION_CHARS + 1), &plain).is_err());
    }
}
