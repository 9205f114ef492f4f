//! mcp-gateway: a Model Context Protocol gateway on Pingora.
//!
//! Decisions live in plain modules (`identity`, `headers`, `routing`,
//! `session`, `cors`, `refusal`) that take plain inputs and are tested and
//! benchmarked without a network; `proxy` adapts them to Pingora's phases;
//! `app` assembles the server. Public are the modules the binaries, the
//! benchmarks and the fuzz targets use; the rest is the crate's own.
//!
//! Words: a *server* is a registered MCP server; a *replica* is one of its
//! configured URLs; a *backend* is one address a replica's host resolves
//! to, what health checks probe and a request connects to; a *route* is
//! what a request path denotes; a *pinned session* is what a client's
//! session token names (replica and upstream session id).

pub mod access_log;
pub mod admin;
pub mod app;
pub mod catalog;
pub mod config;
pub(crate) mod cors;
pub mod fdlimit;
pub mod federation;
pub mod headers;
pub mod healthcheck;
pub mod identity;
pub(crate) mod legacy_sse;
pub(crate) mod lifecycle;
pub(crate) mod listener_certs;
pub(crate) mod local;
pub mod log_writer;
pub(crate) mod metrics;
pub(crate) mod proxy;
pub mod refusal;
pub mod registry;
pub(crate) mod reload;
pub(crate) mod responses;
pub mod routing;
pub(crate) mod sd_notify;
pub mod session;
pub mod snapshot;
pub mod state;
pub(crate) mod tls;
pub(crate) mod upstream;
