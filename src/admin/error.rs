//! Every failure of the admin service as one JSON shape,
//! `{"error": {"status", "message", "field"?, "current_version"?}}`, and the
//! mapping from the registry's errors and from malformed input to it.

use crate::registry::RegistryError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
    pub current_version: Option<i64>,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
            current_version: None,
            retry_after: None,
        }
    }

    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        ApiError {
            field: Some(field),
            ..ApiError::new(StatusCode::BAD_REQUEST, message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn no_route() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "no such route")
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        registry_error(e, "server")
    }
}

/// The registry's error about a record of kind `noun` (`server`, `virtual
/// server`), in the API's shape.
pub fn registry_error(e: RegistryError, noun: &str) -> ApiError {
    let message = match &e {
        RegistryError::NotFound(name) => format!("no {noun} named {name:?}"),
        RegistryError::Exists(name) => format!("a {noun} named {name:?} already exists"),
        RegistryError::Conflict {
            name,
            current_version,
        } => format!("{noun} {name:?} was changed meanwhile: its version is now {current_version}"),
        RegistryError::ConfigOwned { name, file } => {
            format!("{noun} {name:?} is declared in {file}: change it there")
        }
        other => other.to_string(),
    };
    match e {
        RegistryError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, message),
        RegistryError::Exists(_) | RegistryError::NameTaken { .. } => ApiError {
            field: Some("name".into()),
            ..ApiError::new(StatusCode::CONFLICT, message)
        },
        RegistryError::Conflict {
            current_version, ..
        } => ApiError {
            field: Some("version".into()),
            current_version: Some(current_version),
            ..ApiError::new(StatusCode::CONFLICT, message)
        },
        RegistryError::ConfigOwned { .. } => ApiError::new(StatusCode::CONFLICT, message),
        RegistryError::Invalid { field, .. } => ApiError::bad_field(field, message),
        RegistryError::Unavailable(why) => {
            // The database's own words may name hosts or users: logged
            // for the operator, summarised for the client.
            log::warn!("admin: registry unavailable: {why}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the registry database is unavailable; nothing was changed, retry later",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"status": self.status.as_u16(), "message": self.message});
        if let Some(field) = &self.field {
            error["field"] = json!(field);
        }
        if let Some(v) = self.current_version {
            error["current_version"] = json!(v);
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mcp-gateway admin\""),
            );
        }
        response
    }
}

/// A JSON request body: `application/json`, within the body limit, and
/// deserialised with the path of the offending field kept, so a 400 can
/// name it.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    format!("the body is larger than {BODY_LIMIT} bytes"),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// `Path`, with axum's plain-text rejection (a name that is not UTF-8)
/// turned into the API's JSON error.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|r| ApiError::new(client_status(r.status()), r.body_text()))
    }
}

/// `Query`, likewise (a query string that does not decode).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|r| ApiError::new(client_status(r.status()), r.body_text()))
    }
}

/// The rejection's status when it blames the request, else 400.
fn client_status(status: StatusCode) -> StatusCode {
    if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// Largest request body the admin service reads.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Malformed JSON, a wrong type, a missing or unknown field: 400 naming
/// the field where there is one.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde's derived structs also accept a JSON array, field by position
    // (`[null, null]` was a valid, empty PATCH): every body is an object.
    // Other non-objects fail as the wrong type anyway.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {inner}"));
        }
        let path = e.path().to_string();
        let message = inner.to_string();
        let field = quoted_field(&message)
            .map(|name| join_path(&path, name))
            .unwrap_or(path);
        ApiError::bad_field(field, message)
    })?;
    de.end()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// serde names unknown and missing fields in backquotes.
fn quoted_field(message: &str) -> Option<&str> {
    if !(message.starts_with("unknown field") || message.starts_with("missing field")) {
        return None;
    }
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// serde_path_to_error ends the path of an unknown field with the field
/// itself, and that of a missing one with the parent.
fn join_path(parent: &str, name: &str) -> String {
    if parent == name || parent.ends_with(&format!(".{name}")) {
        parent.to_string()
    } else if parent.is_empty() || parent == "." {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
    }

    fn field_of(body: &str) -> Option<String> {
        parse_json::<Outer>(body.as_bytes()).unwrap_err().field
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        assert_eq!(
            field_of(r#"{"name":"a","colour":1}"#).as_deref(),
            Some("colour")
        );
        assert_eq!(field_of(r#"{}"#).as_deref(), Some("name"));
        assert_eq!(field_of(r#"{"name":5}"#).as_deref(), Some("name"));
        assert_eq!(
            field_of(r#"{"name":"a","inner":{"port":"x"}}"#).as_deref(),
            Some("inner.port")
        );
        assert_eq!(
            field_of(r#"{"name":"a","inner":{"port":1,"x":2}}"#).as_deref(),
            Some("inner.x")
        );
    }

    #[test]
    fn only_an_object_is_a_body() {
        for body in ["[\"a\", null]", " [null]", "[]", "\"a\"", "1", "null"] {
            let e = parse_json::<Outer>(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
        }
        assert_eq!(
            parse_json::<Outer>(br#" ["a", null]"#).unwrap_err().message,
            "the body must be a JSON object"
        );
        assert!(parse_json::<Outer>(br#" {"name":"a"}"#).is_ok());
    }

    #[test]
    fn malformed_json_is_a_400_without_a_field() {
        for body in [r#"{"name":"a""#, "nope", r#"{"name":"a"} trailing"#, ""] {
            let e = parse_json::<Outer>(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(
                e.message.starts_with("malformed JSON"),
                "{body}: {}",
                e.message
            );
            assert_eq!(e.field, None);
        }
    }

    #[test]
    fn registry_errors_map_to_statuses() {
        let cases = [
            (RegistryError::NotFound("a".into()), 404, None),
            (RegistryError::Exists("a".into()), 409, Some("name")),
            (
                RegistryError::NameTaken {
                    name: "a".into(),
                    by: "virtual server",
                },
                409,
                Some("name"),
            ),
            (
                RegistryError::Conflict {
                    name: "a".into(),
                    current_version: 3,
                },
                409,
                Some("version"),
            ),
            (
                RegistryError::ConfigOwned {
                    name: "a".into(),
                    file: "conf/gateway.yaml".into(),
                },
                409,
                None,
            ),
            (
                RegistryError::Invalid {
                    field: "urls[0]".into(),
                    problem: "bad".into(),
                },
                400,
                Some("urls[0]"),
            ),
            (RegistryError::Unavailable("db down".into()), 503, None),
        ];
        for (e, status, field) in cases {
            let api = ApiError::from(e.clone());
            assert_eq!(api.status.as_u16(), status, "{e:?}");
            assert_eq!(api.field.as_deref(), field, "{e:?}");
        }
        let owned = ApiError::from(RegistryError::ConfigOwned {
            name: "a".into(),
            file: "conf/gateway.yaml".into(),
        });
        assert!(owned.message.contains("conf/gateway.yaml"));
        let stale = ApiError::from(RegistryError::Conflict {
            name: "a".into(),
            current_version: 3,
        });
        assert_eq!(stale.current_version, Some(3));
        let gone = registry_error(RegistryError::NotFound("dev".into()), "virtual server");
        assert_eq!(gone.message, "no virtual server named \"dev\"");
        let down = ApiError::from(RegistryError::Unavailable("password=hunter2".into()));
        assert!(!down.message.contains("hunter2"));
    }
}
