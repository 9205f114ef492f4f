//! The federation catalog's memory: fills a catalog with synthetic servers
//! and tools shaped like real ones (a description, a small input schema)
//! and prints the process's resident set before and after.
//!
//! `cargo run --release --example catalog_memory -- [servers] [tools]`
//! (defaults: 1000 servers × 100 tools).

use mcp_gateway::catalog::model::{CatalogStore, ServerCatalog};
use rmcp::model::Tool;
use serde_json::json;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// VmRSS in KiB, from /proc (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn tool(server: usize, n: usize) -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look for"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100},
        },
        "required": ["query"],
    });
    let serde_json::Value::Object(schema) = schema else {
        unreachable!("an object literal")
    };
    Tool::new(
        format!("tool_{n}"),
        format!("Tool {n} of server {server}: searches things and returns what it found."),
        Arc::new(schema),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let servers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let tools: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let before = rss_kib();
    let store = CatalogStore::new("-");
    let now = SystemTime::now();
    let entries: Vec<Arc<ServerCatalog>> = (0..servers)
        .map(|s| {
            let list = (0..tools).map(|t| tool(s, t)).collect();
            Arc::new(ServerCatalog::gathered(
                &format!("server-{s}"),
                "-",
                list,
                Vec::new(),
                Vec::new(),
                now,
            ))
        })
        .collect();
    let tools_only = rss_kib();
    let started = Instant::now();
    let collisions = store.replace(entries);
    let build = started.elapsed();
    let after = rss_kib();
    let catalog = store.current();
    println!(
        "catalog: {servers} servers x {tools} tools = {} tools, {} collisions",
        catalog.tool_count(),
        collisions.len()
    );
    println!("VmRSS before: {:.1} MiB", before as f64 / 1024.0);
    println!(
        "VmRSS with the servers' tools, before the index: {:.1} MiB",
        tools_only as f64 / 1024.0
    );
    println!("VmRSS after:  {:.1} MiB", after as f64 / 1024.0);
    println!(
        "catalog: {:.1} MiB ({:.0} bytes per tool); index build and swap: {:.1} ms",
        (after.saturating_sub(before)) as f64 / 1024.0,
        (after.saturating_sub(before) * 1024) as f64 / catalog.tool_count().max(1) as f64,
        build.as_secs_f64() * 1000.0
    );
}
