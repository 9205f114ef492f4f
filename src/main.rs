//! The `mcp-gateway` binary: parse arguments, load settings, run.

use clap::Parser;
use mcp_gateway::access_log;
use mcp_gateway::config::LogFormat;
use std::path::PathBuf;

// glibc's malloc takes an arena lock when memory is freed on another thread
// than the one that allocated it, which Pingora's work-stealing runtime does
// on every request; under load that cost a third of the throughput.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mcp-gateway",
    version,
    about = "A gateway for the Model Context Protocol"
)]
struct Cli {
    /// YAML file declaring the MCP servers.
    #[arg(long, env = "MCP_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration, print the warnings, and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() {
    let cli = Cli::parse();
    let settings = match mcp_gateway::app::load_settings(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("mcp-gateway: configuration error: {e}");
            std::process::exit(2);
        }
    };
    let filter =
        std::env::var("RUST_LOG").unwrap_or_else(|_| settings.observability.log_level.clone());
    init_logger(&filter, settings.log.format);
    mcp_gateway::access_log::configure(settings.log);
    for warning in settings.warnings() {
        log::warn!("{warning}");
    }
    if cli.check_config {
        println!("configuration OK: {} server(s)", settings.servers.len());
        return;
    }
    // Before any listener or connection exists; with --check-config the
    // limit of the checking shell does not matter.
    mcp_gateway::fdlimit::raise_at_start();
    mcp_gateway::app::run(settings)
}

/// Every log line to standard output (journald, `docker logs` and
/// Kubernetes collect it there), as text or, with `LOG_FORMAT=json`, one
/// JSON object a line. Access lines arrive formatted and are written as
/// they are; each record is one `write` of a whole line.
fn init_logger(filter: &str, format: LogFormat) {
    use std::io::Write;
    env_logger::Builder::new()
        // Pingora's debug lines print whole request headers, credentials
        // included: a debug level stays ours unless RUST_LOG names pingora.
        .filter_module("pingora", log::LevelFilter::Info)
        .parse_filters(filter)
        .target(env_logger::Target::Stdout)
        .write_style(env_logger::WriteStyle::Never)
        .format(move |buf, record| {
            let mut line = String::with_capacity(128);
            if record.target() == access_log::TARGET {
                line = record.args().to_string();
            } else {
                let message = record.args().to_string();
                let mut time = String::with_capacity(24);
                access_log::rfc3339(std::time::SystemTime::now(), &mut time);
                match format {
                    LogFormat::Text => {
                        line.push_str(&time);
                        line.push(' ');
                        line.push_str(record.level().as_str());
                        line.push(' ');
                        line.push_str(record.target());
                        line.push_str(": ");
                        // A message may quote client input: one line it stays.
                        line.extend(
                            message
                                .chars()
                                .map(|c| if c.is_control() { ' ' } else { c }),
                        );
                    }
                    LogFormat::Json => {
                        line.push_str("{\"time\":\"");
                        line.push_str(&time);
                        line.push_str("\",\"level\":");
                        access_log::json_string(&mut line, record.level().as_str());
                        line.push_str(",\"target\":");
                        access_log::json_string(&mut line, record.target());
                        line.push_str(",\"message\":");
                        access_log::json_string(&mut line, &message);
                        line.push('}');
                    }
                }
            }
            line.push('\n');
            buf.write_all(line.as_bytes())
        })
        .init();
}
