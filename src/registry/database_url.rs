//! `DATABASE_URL`: where the registry lives. The reference writes URLs in
//! SQLAlchemy's form (`postgresql+psycopg://…`, `sqlite:///./mcp.db`), sqlx
//! users write its own (`postgres://…`, `sqlite://mcp.db`); both are
//! accepted and turned into one validated value.

use crate::config::Secret;
use std::fmt;
use std::path::PathBuf;

/// The reference's default: a file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:///./mcp.db";

#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A file, created on first start.
    SqliteFile(PathBuf),
    /// `sqlite:///:memory:`: gone when the process ends (tests, trials).
    SqliteMemory,
    /// A `postgres://` URL as sqlx reads it (the SQLAlchemy driver suffix
    /// removed); it may hold a password, hence a [`Secret`].
    Postgres(Secret),
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (scheme, rest) = match raw.split_once(':') {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            // Not echoed: a value with no scheme may be a pasted password.
            None => return Err(
                "not a URL (e.g. sqlite:///./mcp.db or postgresql://user:password@host:5432/db)"
                    .into(),
            ),
        };
        // `postgresql+psycopg`, `sqlite+pysqlite`: the part after `+` names
        // a Python driver, meaningless here.
        let base = scheme.split('+').next().unwrap_or_default();
        match base {
            "sqlite" => parse_sqlite(rest).map_err(|e| format!("{}: {e}", redact(raw))),
            "postgres" | "postgresql" => {
                parse_postgres(rest).map_err(|e| format!("{}: {e}", redact(raw)))
            }
            _ => Err(format!(
                "{} is not a sqlite:// or postgresql:// URL",
                redact(raw)
            )),
        }
    }

    /// For logs and errors: the password replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::SqliteFile(path) => format!("sqlite file {}", path.display()),
            DatabaseUrl::SqliteMemory => "sqlite in memory".to_string(),
            DatabaseUrl::Postgres(url) => redact(url.expose()),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, DatabaseUrl::Postgres(_))
    }
}

impl Default for DatabaseUrl {
    fn default() -> Self {
        DatabaseUrl::SqliteFile(PathBuf::from("./mcp.db"))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `rest` is what follows `sqlite:`. SQLAlchemy's three slashes introduce a
/// relative path and four an absolute one (`sqlite:////var/lib/mcp.db`);
/// that reading wins over sqlx's (where `sqlite:///x` is `/x`) because the
/// reference's default, `sqlite:///./mcp.db`, must mean the working
/// directory. sqlx's `sqlite://mcp.db` and `sqlite:mcp.db` are relative.
fn parse_sqlite(rest: &str) -> Result<DatabaseUrl, String> {
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        return Err(format!(
            "SQLite URL options ({query}) are not supported: the gateway sets its own"
        ));
    }
    let path = if let Some(p) = path.strip_prefix("///") {
        p
    } else if let Some(p) = path.strip_prefix("//") {
        p
    } else {
        path
    };
    match path {
        "" => Err("no file path (e.g. sqlite:///./mcp.db)".into()),
        ":memory:" => Ok(DatabaseUrl::SqliteMemory),
        p if p.chars().any(char::is_control) => Err("the path holds a control character".into()),
        p => Ok(DatabaseUrl::SqliteFile(PathBuf::from(p))),
    }
}

/// `rest` is what follows `postgresql:`.
fn parse_postgres(rest: &str) -> Result<DatabaseUrl, String> {
    let Some(after) = rest.strip_prefix("//") else {
        return Err("expected postgresql://user:password@host:port/database".into());
    };
    let (authority, _path) = after.split_once('/').unwrap_or((after, ""));
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((ip, "")) => ip,
            Some((ip, port)) if port_ok(port.strip_prefix(':')) => ip,
            _ => "",
        }
    } else {
        match host_port.split_once(':') {
            Some((h, port)) if port_ok(Some(port)) => h,
            Some(_) => "",
            None => host_port,
        }
    };
    if host.is_empty() && !after.contains("host=") {
        return Err("no host, or a port that is not a number".into());
    }
    let url = format!("postgres://{after}");
    // The same parser sqlx uses, so what passes here connects the same way.
    url.parse::<sqlx::postgres::PgConnectOptions>()
        .map_err(|e| redact(&e.to_string()))?;
    Ok(DatabaseUrl::Postgres(Secret::new(url)))
}

fn port_ok(port: Option<&str>) -> bool {
    port.is_some_and(|p| p.parse::<u16>().is_ok())
}

/// Replaces the password of `scheme://user:password@host` with `***`, even in
/// a URL too broken to parse.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        // Too broken to tell user from password: hide all that precedes `@`.
        return match (url.split_once(':'), url.rsplit_once('@')) {
            (Some((scheme, _)), Some((_, host))) => format!("{scheme}:***@{host}"),
            _ => url.to_string(),
        };
    };
    let tail = &url[scheme_end..];
    let authority_end = tail.find(['/', '?', '#']).unwrap_or(tail.len());
    let authority = &tail[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    let redacted_userinfo = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        user.to_string()
    };
    format!("{}{}{}", &url[..scheme_end], redacted_userinfo, &tail[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str) -> DatabaseUrl {
        DatabaseUrl::SqliteFile(PathBuf::from(p))
    }

    #[test]
    fn sqlite_urls_read_as_sqlalchemy_and_sqlx_write_them() {
        assert_eq!(
            DatabaseUrl::parse(DEFAULT_DATABASE_URL),
            Ok(file("./mcp.db"))
        );
        assert_eq!(
            DatabaseUrl::parse(DEFAULT_DATABASE_URL),
            Ok(DatabaseUrl::default())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:////var/lib/mcp.db"),
            Ok(file("/var/lib/mcp.db"))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///data/mcp.db"),
            Ok(file("data/mcp.db"))
        );
        assert_eq!(DatabaseUrl::parse("sqlite://mcp.db"), Ok(file("mcp.db")));
        assert_eq!(DatabaseUrl::parse("sqlite:mcp.db"), Ok(file("mcp.db")));
        assert_eq!(
            DatabaseUrl::parse("sqlite+pysqlite:///./a.db"),
            Ok(file("./a.db"))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///:memory:"),
            Ok(DatabaseUrl::SqliteMemory)
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite::memory:"),
            Ok(DatabaseUrl::SqliteMemory)
        );
        assert!(DatabaseUrl::parse("sqlite:///").is_err());
        assert!(DatabaseUrl::parse("sqlite:///./a.db?mode=ro").is_err());
    }

    #[test]
    fn postgres_urls_lose_the_driver_suffix() {
        let pg = |raw| match DatabaseUrl::parse(raw) {
            Ok(DatabaseUrl::Postgres(url)) => url.expose().to_string(),
            other => panic!("{raw}: {other:?}"),
        };
        assert_eq!(
            pg("postgresql+psycopg://postgres:password@db:5432/mcp"),
            "postgres://postgres:password@db:5432/mcp"
        );
        assert_eq!(pg("postgresql://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            pg("postgres://u:p@[::1]:5433/db"),
            "postgres://u:p@[::1]:5433/db"
        );
        assert_eq!(pg("postgres://h"), "postgres://h");
    }

    #[test]
    fn malformed_urls_are_refused_without_their_password() {
        for bad in [
            "mysql://u:hunter2@h/db",
            "postgresql+psycopg://u:hunter2@h:notaport/db",
            "postgresql+psycopg:u:hunter2@h/db",
            "postgres://u:hunter2@/db",
            "hunter2",
            "",
        ] {
            let e = DatabaseUrl::parse(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
    }

    #[test]
    fn redaction_keeps_everything_but_the_password() {
        assert_eq!(
            redact("postgresql+psycopg://postgres:pw@db:5432/mcp"),
            "postgresql+psycopg://postgres:***@db:5432/mcp"
        );
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///./mcp.db"), "sqlite:///./mcp.db");
        let url = DatabaseUrl::parse("postgres://u:pw@h/db").unwrap();
        assert_eq!(
            format!("{url:?} {url}"),
            "DatabaseUrl(postgres://u:***@h/db) postgres://u:***@h/db"
        );
    }
}
