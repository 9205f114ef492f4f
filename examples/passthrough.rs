//! The smallest useful Pingora proxy, as a yardstick for the load benchmark
//! (`make bench-load`): it refuses requests without one header (401) and
//! forwards everything else, untouched, to one fixed upstream. Whatever the
//! gateway costs beyond this is the price of its own work (identity, routing,
//! header policy, metrics), not of Pingora.
//!
//! ```text
//! cargo run --release --example passthrough -- --listen 127.0.0.1:6190 --upstream 127.0.0.1:8080
//! curl -i -H 'X-Authenticated-User: me' http://127.0.0.1:6190/mcp
//! ```

use async_trait::async_trait;
use bytes::Bytes;
use clap::Parser;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;

// The same allocator as the gateway, so the comparison measures Pingora and
// the gateway's own work, not two allocators.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Minimal Pingora pass-through proxy (benchmark baseline)")]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6190")]
    listen: String,
    /// The one upstream every request goes to (plain HTTP).
    #[arg(long)]
    upstream: SocketAddr,
    /// Requests without this header get 401.
    #[arg(long, default_value = "x-authenticated-user")]
    require_header: String,
    /// Worker threads; 0 means one per CPU, like the gateway.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Also set `Host`, `X-Forwarded-For`, `-Proto` and `-Host` upstream, as
    /// the gateway must: what those four header edits cost in Pingora alone.
    #[arg(long)]
    forwarded_headers: bool,
}

struct Passthrough {
    upstream: SocketAddr,
    require_header: http::HeaderName,
    /// `Some(upstream Host value)` with `--forwarded-headers`.
    forwarded_host: Option<http::HeaderValue>,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();
    fn new_ctx(&self) -> Self::CTX {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        if session
            .req_header()
            .headers
            .contains_key(&self.require_header)
        {
            return Ok(false);
        }
        session
            .respond_error_with_body(401, Bytes::from_static(b"missing identity header\n"))
            .await?;
        Ok(true)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        let Some(upstream_host) = &self.forwarded_host else {
            return Ok(());
        };
        let client_host = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .cloned();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        upstream_request.insert_header(http::header::HOST, upstream_host.clone())?;
        upstream_request.insert_header("X-Forwarded-For", peer)?;
        upstream_request
            .insert_header("X-Forwarded-Proto", http::HeaderValue::from_static("http"))?;
        if let Some(host) = client_host {
            upstream_request.insert_header("X-Forwarded-Host", host)?;
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        // The same connection-pool settings as the gateway, so both reuse
        // upstream connections alike.
        peer.options.connection_timeout = Some(Duration::from_secs(5));
        peer.options.total_connection_timeout = Some(Duration::from_secs(10));
        peer.options.read_timeout = Some(Duration::from_secs(300));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let require_header = match http::HeaderName::try_from(cli.require_header.as_str()) {
        Ok(name) => name,
        Err(e) => {
            eprintln!("passthrough: --require-header: {e}");
            std::process::exit(2);
        }
    };
    let threads = match cli.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let conf = ServerConf {
        threads,
        // A benchmark target: stop at once on SIGTERM.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Passthrough {
            upstream: cli.upstream,
            require_header,
            forwarded_host: cli
                .forwarded_headers
                .then(|| http::HeaderValue::from_str(&cli.upstream.to_string()))
                .and_then(Result::ok),
        },
    );
    proxy.add_tcp(&cli.listen);
    server.add_service(proxy);
    log::warn!(
        "passthrough listening on http://{} -> {} ({threads} threads)",
        cli.listen,
        cli.upstream
    );
    server.run_forever();
}
