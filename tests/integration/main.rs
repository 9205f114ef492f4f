//! Integration tests: the real `mcp-gateway` and `mcp-demo-server` binaries
//! on free ports, driven over real sockets.

mod harness;

mod access_log;
mod admin_page;
mod behind_proxies;
mod behind_proxies_ws;
mod catalog;
mod catalog_retry;
mod conf_files;
mod config;
mod cors;
mod deploy;
mod direct_calls;
mod downstream_tls;
mod federation_prompts;
mod federation_relay;
mod federation_routes;
mod headers;
mod identity;
mod keepalive;
mod lifecycle;
mod observability;
mod pki;
mod post_relay;
mod refusals;
mod registry;
mod registry_env;
mod registry_outage;
mod reload;
mod routing;
mod sd_notify;
mod sdk;
mod sdk_clients;
mod sessions;
mod spoofing;
mod streams;
mod tls;
mod upgrade;
mod upgrade_http2;
mod virtual_registry;
mod wire;
