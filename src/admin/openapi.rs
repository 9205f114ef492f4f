//! The OpenAPI 3.1 document, kept as JSON beside the code and embedded;
//! a test holds it to [`ROUTES`](super::ROUTES).

pub const DOCUMENT: &str = include_str!("openapi.json");
