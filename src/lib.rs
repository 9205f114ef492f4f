//! mcp-gateway: a Model Context Protocol gateway on Pingora.
//!
//! Decisions live in plain modules (`identity`, `headers`, `routing`,
//! `session`) that take plain inputs and are tested and benchmarked without
//! a network; `proxy` adapts them to Pingora's phases; `app` assembles the
//! server.

pub mod app;
pub mod config;
pub mod cors;
pub mod fdlimit;
pub mod headers;
pub mod identity;
pub mod legacy_sse;
pub mod lifecycle;
pub mod local;
pub mod metrics;
pub mod proxy;
pub mod refusal;
pub mod responses;
pub mod routing;
pub mod session;
pub mod state;
pub mod upstream;
