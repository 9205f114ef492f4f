//! How the process logs: `LOG_FORMAT` (text or JSON lines, for every log
//! line) and `ACCESS_LOG` (one line per request, target `access`).

use super::values::parse_bool;
use super::{ConfigError, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct LogSettings {
    pub format: LogFormat,
    /// `ACCESS_LOG`: one line per request at `info` on target `access`.
    pub access_log: bool,
}

impl LogSettings {
    pub fn load(src: &Source) -> Result<Self, ConfigError> {
        Ok(LogSettings {
            format: src.get("LOG_FORMAT", LogFormat::Text, |raw| {
                match raw.to_ascii_lowercase().as_str() {
                    "text" => Ok(LogFormat::Text),
                    "json" => Ok(LogFormat::Json),
                    _ => Err(format!("expected text or json, got {raw:?}")),
                }
            })?,
            access_log: src.get("ACCESS_LOG", true, parse_bool)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_on_by_default() {
        let s = LogSettings::load(&Source::from_pairs([])).unwrap();
        assert_eq!(s.format, LogFormat::Text);
        assert!(s.access_log);
        let s = LogSettings::load(&Source::from_pairs([
            ("LOG_FORMAT", "JSON"),
            ("ACCESS_LOG", "false"),
        ]))
        .unwrap();
        assert_eq!(s.format, LogFormat::Json);
        assert!(!s.access_log);
        let e = LogSettings::load(&Source::from_pairs([("LOG_FORMAT", "xml")])).unwrap_err();
        assert_eq!(e.field, "LOG_FORMAT");
    }
}
