//! In-process handler tests: the real router, driven with
//! `tower::ServiceExt::oneshot`, over the in-memory registry double.

mod auth;
mod browser;
mod hostile;
mod openapi;
mod servers;
mod service;
mod sql_store;
mod virtual_servers;

use super::auth::{test_params, AuthConfig};
use super::test_registry::{FixedHealth, MemoryRegistry};
use super::{router, AdminState};
use crate::config::Secret;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

pub const EMAIL: &str = "admin@example.com";
pub const PASSWORD: &str = "correct horse battery";
pub const JWT_KEY: &str = "an-admin-jwt-signing-key-of-32-bytes!";
pub const HOST: &str = "admin.test:4445";
pub const ORIGIN: &str = "http://admin.test:4445";

pub fn auth_config() -> AuthConfig {
    AuthConfig {
        required: true,
        admin_email: EMAIL.into(),
        admin_password: Some(Secret::new(PASSWORD)),
        basic_user: "basic-admin".into(),
        basic_password: Some(Secret::new("basic-password")),
        allow_basic: false,
        jwt_secret: Some(Secret::new(JWT_KEY)),
        jwt_algorithm: Algorithm::HS256,
        jwt_audience: None,
        jwt_issuer: None,
        session_ttl: Duration::from_secs(3600),
        cookie_secure: false,
        argon2_params: test_params(),
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error body's message, asserting the error shape.
    pub fn error(&self) -> &Self {
        let body = self.json();
        assert_eq!(
            body["error"]["status"].as_u64(),
            Some(self.status.as_u16() as u64),
            "error shape: {}",
            self.text
        );
        assert!(body["error"]["message"].is_string(), "{}", self.text);
        self
    }

    pub fn field(&self) -> Option<String> {
        self.json()["error"]["field"].as_str().map(str::to_string)
    }
}

pub struct Fixture {
    pub state: AdminState,
    pub registry: Arc<MemoryRegistry>,
    pub health: Arc<FixedHealth>,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(edit: impl FnOnce(&mut AuthConfig)) -> Self {
        let mut config = auth_config();
        edit(&mut config);
        let registry = Arc::new(MemoryRegistry::default());
        registry.seed_from_config("from-yaml", "conf/gateway.yaml");
        let health = Arc::new(FixedHealth::default());
        let effective = serde_json::json!({"PORT": 4444, "JWT_SECRET_KEY": "***"});
        let state = AdminState::new(
            registry.clone(),
            registry.clone(),
            health.clone(),
            effective,
            config,
        )
        .expect("admin state");
        Fixture {
            state,
            registry,
            health,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        self.call_from(None, method, path, headers, body).await
    }

    /// As from a client at `peer`, as the socket server would record it.
    pub async fn call_from(
        &self,
        peer: Option<std::net::SocketAddr>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req = req.header("host", HOST);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("request");
        if let Some(peer) = peer {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let response = router(self.state.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn login(&self) -> String {
        let body = format!(r#"{{"email":"{EMAIL}","password":"{PASSWORD}"}}"#);
        let r = self.call("POST", "/auth/login", &[], Some(&body)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json()["token"].as_str().expect("token").to_string()
    }

    /// `Authorization: Bearer` for a fresh session.
    pub async fn bearer(&self) -> String {
        format!("Bearer {}", self.login().await)
    }
}
