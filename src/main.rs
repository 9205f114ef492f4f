//! The `mcp-gateway` binary: parse arguments, load settings, run.

use clap::{Parser, Subcommand};
use mcp_gateway::access_log;
use mcp_gateway::config::LogFormat;
use mcp_gateway::log_writer::{self, LogWriter};
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
    #[arg(long, env = "MCP_GATEWAY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Validate the configuration, print the warnings, and exit.
    #[arg(long)]
    check_config: bool,
    /// Take the listening sockets from the running gateway (over
    /// UPGRADE_SOCK), then send that one SIGQUIT: a binary upgrade
    /// without refused connections (README, "Operations").
    #[arg(long)]
    upgrade: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Ask the gateway at HOST:PORT for /health; exit 0 on 200, 1 otherwise
    /// (for a container HEALTHCHECK: no curl needed).
    Healthcheck,
}

fn main() {
    let cli = Cli::parse();
    let settings = match mcp_gateway::app::load_settings(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("mcp-gateway: configuration error: {e}");
            // A health probe reports one failure code, whatever the cause.
            let code = if cli.command.is_some() { 1 } else { 2 };
            std::process::exit(code);
        }
    };
    if let Some(Command::Healthcheck) = cli.command {
        let addr = mcp_gateway::healthcheck::target(settings.listen.host, settings.listen.port);
        let tls = settings.tls.is_some();
        match mcp_gateway::healthcheck::probe_over(addr, mcp_gateway::healthcheck::TIMEOUT, tls) {
            Ok(()) => return,
            Err(e) => {
                eprintln!("mcp-gateway healthcheck: {e}");
                std::process::exit(1);
            }
        }
    }
    let filter =
        std::env::var("RUST_LOG").unwrap_or_else(|_| settings.observability.log_level.clone());
    init_logger(&filter, settings.log.format);
    mcp_gateway::access_log::configure(settings.log);
    for warning in settings.warnings() {
        log::warn!("{warning}");
    }
    if cli.check_config {
        // After the warnings, which the log writer may still hold.
        log_writer::flush();
        println!("configuration OK: {} server(s)", settings.servers.len());
        return;
    }
    // Before any listener or connection exists; with --check-config the
    // limit of the checking shell does not matter.
    mcp_gateway::fdlimit::raise_at_start();
    mcp_gateway::app::run(settings, cli.config, cli.upgrade)
}

/// Every log line to standard output (journald, `docker logs` and
/// Kubernetes collect it there), as text or, with `LOG_FORMAT=json`, one
/// JSON object a line, through the log writer's buffer: a request never
/// waits for stdout (see `log_writer`). Access lines arrive formatted and
/// skip env_logger (`access_log::emit`); the other records come through
/// its pipe target into the same buffer, so they stay in order and whole.
fn init_logger(filter: &str, format: LogFormat) {
    use std::io::Write;
    let warning: log_writer::DropWarning = Box::new(move |dropped| {
        log::log_enabled!(log::Level::Warn).then(|| {
            access_log::format_message(
                std::time::SystemTime::now(),
                "WARN",
                "mcp_gateway::log_writer",
                &format!(
                    "stdout cannot keep up: log lines are being dropped \
                     ({dropped} so far, mcp_access_log_dropped_total)"
                ),
                format,
            )
        })
    });
    let target = match LogWriter::spawn(
        Box::new(std::io::stdout()),
        log_writer::PENDING_CAP,
        log_writer::DROPPED.clone(),
        warning,
    ) {
        Ok(writer) => {
            log_writer::install(writer.clone());
            env_logger::Target::Pipe(Box::new(writer))
        }
        Err(e) => {
            eprintln!("mcp-gateway: no log writer thread ({e}): logging straight to stdout");
            env_logger::Target::Stdout
        }
    };
    env_logger::Builder::new()
        // Pingora's debug lines print whole request headers, credentials
        // included: a debug level stays ours unless RUST_LOG names pingora.
        .filter_module("pingora", log::LevelFilter::Info)
        .parse_filters(filter)
        .target(target)
        .write_style(env_logger::WriteStyle::Never)
        .format(move |buf, record| {
            if record.target() == access_log::TARGET {
                // Formatted already (the fallback of `access_log::emit`).
                return writeln!(buf, "{}", record.args());
            }
            let line = access_log::format_message(
                std::time::SystemTime::now(),
                record.level().as_str(),
                record.target(),
                &record.args().to_string(),
                format,
            );
            buf.write_all(line.as_bytes())
        })
        .init();
}
