//! An open-loop HTTP/1.1 load generator for the fixed-rate part of the load
//! benchmark (`make bench-load`, `MODE=rate`).
//!
//! Requests are scheduled at fixed intervals (`--rate` per second in total),
//! spread round robin over `--connections` keep-alive connections. When a
//! connection is still waiting for its previous response at a request's
//! scheduled time, the request's latency counts from that scheduled time, not
//! from when it could finally be sent: a slow server is charged for the queue
//! it caused (no "coordinated omission"). When the connection was idle, the
//! latency counts from the actual send, so the generator's own timer slack
//! (tokio's timer has millisecond resolution) is not charged to the server.
//!
//! Prints one JSON line: counts, achieved rate, p50/p90/p99/max in µs.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:4444/servers/bench/mcp \
//!     --rate 2000 --duration 10s -H 'X-Authenticated-User: bench' --body '{"jsonrpc":"2.0"}'
//! ```

use clap::Parser;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "Open-loop fixed-rate HTTP/1.1 load generator")]
struct Cli {
    /// Target, `http://host:port/path` (host must be an IP address).
    #[arg(long)]
    url: String,
    /// Requests per second, over all connections.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Measured duration, e.g. `10s`, `500ms`, `1m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Sent at the same rate before the measurement and not counted.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Keep-alive connections the requests are spread over.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Runtime worker threads of the generator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Extra request header, `Name: value`; repeatable.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    #[arg(long, default_value = "POST")]
    method: String,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Request body read from a file.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// A request without a complete response after this long is an error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let (number, unit) = match raw.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {raw:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("bad duration unit in {raw:?} (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// What every connection task shares.
struct Plan {
    addr: SocketAddr,
    request: Vec<u8>,
    start: Instant,
    rate: u64,
    /// Requests with an index below this are warm-up.
    first_measured: u64,
    total: u64,
    connections: u64,
    timeout: Duration,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    non200: u64,
    errors: u64,
    first_error: Option<String>,
}

fn build_plan(cli: &Cli) -> Result<Plan, String> {
    let rest = cli
        .url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|e| format!("{authority:?} is not ip:port: {e}"))?;
    let body = match (&cli.body, &cli.body_file) {
        (Some(b), _) => b.clone().into_bytes(),
        (None, Some(f)) => std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?,
        (None, None) => Vec::new(),
    };
    let mut head = format!("{} {path} HTTP/1.1\r\nHost: {authority}\r\n", cli.method);
    for h in &cli.headers {
        if !h.contains(':') {
            return Err(format!("header {h:?} is not `Name: value`"));
        }
        head.push_str(h);
        head.push_str("\r\n");
    }
    if !body.is_empty() || cli.method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(&body);
    if cli.rate == 0 || cli.connections == 0 {
        return Err("--rate and --connections must be positive".into());
    }
    let per_second = |d: Duration| (d.as_secs_f64() * cli.rate as f64).round() as u64;
    let first_measured = per_second(cli.warmup);
    Ok(Plan {
        addr,
        request,
        // Time to open the connections before the first request is due.
        start: Instant::now() + Duration::from_millis(200),
        rate: cli.rate,
        first_measured,
        total: first_measured + per_second(cli.duration),
        connections: cli.connections as u64,
        timeout: cli.timeout,
    })
}

/// One connection's share of the schedule: requests c, c+N, c+2N, …
async fn run_connection(c: u64, plan: Arc<Plan>) -> Tally {
    let mut tally = Tally::default();
    let mut stream = connect(plan.addr).await.ok();
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut previous_done = plan.start;
    let mut index = c;
    while index < plan.total {
        let scheduled = plan.start + Duration::from_nanos(index * 1_000_000_000 / plan.rate);
        tokio::time::sleep_until(scheduled.into()).await;
        let sent = Instant::now();
        let charged_from = if previous_done > scheduled {
            scheduled
        } else {
            sent
        };
        let outcome = tokio::time::timeout(
            plan.timeout,
            exchange(&mut stream, &plan.request, plan.addr, &mut buf),
        )
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "response timeout")));
        previous_done = Instant::now();
        if index >= plan.first_measured {
            match outcome {
                Ok(status) => {
                    let micros = previous_done.duration_since(charged_from).as_micros();
                    tally.latencies_us.push(micros.min(u32::MAX as u128) as u32);
                    if status == 200 {
                        tally.ok += 1;
                    } else {
                        tally.non200 += 1;
                    }
                }
                Err(ref e) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        if outcome.is_err() {
            stream = None;
        }
        index += plan.connections;
    }
    tally
}

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends the request and reads one whole response; returns its status.
async fn exchange(
    stream: &mut Option<TcpStream>,
    request: &[u8],
    addr: SocketAddr,
    buf: &mut Vec<u8>,
) -> io::Result<u16> {
    if stream.is_none() {
        *stream = Some(connect(addr).await?);
    }
    let Some(s) = stream.as_ref() else {
        unreachable!("connected above")
    };
    write_all(s, request).await?;
    let (status, keep_alive) = read_response(s, buf).await?;
    if !keep_alive {
        *stream = None;
    }
    Ok(status)
}

// Readiness + try_read/try_write need only tokio's `net` feature, which the
// crate already enables (AsyncRead/AsyncWrite would need `io-util`).
async fn write_all(s: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        s.writable().await?;
        match s.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends what the socket has; `Ok(false)` at end of stream.
async fn read_more(s: &TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        s.readable().await?;
        match s.try_read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

fn protocol_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Reads one response (status line, headers, body by Content-Length or
/// chunked encoding); returns the status and whether the connection stays open.
async fn read_response(s: &TcpStream, buf: &mut Vec<u8>) -> io::Result<(u16, bool)> {
    buf.clear();
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(protocol_error("response head over 64 KiB"));
        }
        if !read_more(s, buf).await? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response",
            ));
        }
    };
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| protocol_error("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| protocol_error("bad status line"))?;
    let mut keep_alive = version == "HTTP/1.1";
    let mut framing = if status == 204 || status == 304 || status < 200 {
        Framing::Length(0)
    } else {
        Framing::UntilClose
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            if let Framing::UntilClose = framing {
                let n = value
                    .parse()
                    .map_err(|_| protocol_error("bad Content-Length"))?;
                framing = Framing::Length(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            if value.contains("close") {
                keep_alive = false;
            } else if value.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }
    match framing {
        Framing::Length(n) => {
            while buf.len() < head_end + n {
                if !read_more(s, buf).await? {
                    return Err(protocol_error("connection closed inside the body"));
                }
            }
        }
        Framing::Chunked => {
            while chunked_end(&buf[head_end..])?.is_none() {
                if !read_more(s, buf).await? {
                    return Err(protocol_error("connection closed inside a chunked body"));
                }
            }
        }
        Framing::UntilClose => {
            while read_more(s, buf).await? {}
            keep_alive = false;
        }
    }
    Ok((status, keep_alive))
}

/// Where a chunked body ends in `body`, if it is complete.
fn chunked_end(body: &[u8]) -> io::Result<Option<usize>> {
    let mut at = 0;
    loop {
        let Some(line_len) = find(&body[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&body[at..at + line_len])
            .map_err(|_| protocol_error("bad chunk size"))?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_hex, 16).map_err(|_| protocol_error("bad chunk size"))?;
        at += line_len + 2;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let Some(len) = find(&body[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += len + 2;
                if len == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if body.len() < at + size + 2 {
            return Ok(None);
        }
        at += size + 2;
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let cli = Cli::parse();
    let plan = match build_plan(&cli) {
        Ok(plan) => Arc::new(plan),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("loadgen: cannot start the runtime: {e}");
            std::process::exit(2);
        });
    let tallies = runtime.block_on(async {
        let tasks: Vec<_> = (0..plan.connections)
            .map(|c| tokio::spawn(run_connection(c, plan.clone())))
            .collect();
        let mut tallies = Vec::with_capacity(tasks.len());
        for task in tasks {
            tallies.push(task.await.unwrap_or_default());
        }
        tallies
    });
    let mut all = Tally::default();
    for t in tallies {
        all.latencies_us.extend(t.latencies_us);
        all.ok += t.ok;
        all.non200 += t.non200;
        all.errors += t.errors;
        all.first_error = all.first_error.or(t.first_error);
    }
    all.latencies_us.sort_unstable();
    let measured = plan.total - plan.first_measured;
    let seconds = cli.duration.as_secs_f64();
    let line = serde_json::json!({
        "label": cli.label,
        "url": cli.url,
        "rate": cli.rate,
        "duration_s": seconds,
        "connections": cli.connections,
        "scheduled": measured,
        "completed": all.ok + all.non200,
        "ok": all.ok,
        "non200": all.non200,
        "errors": all.errors,
        "achieved_rps": ((all.ok + all.non200) as f64 / seconds).round(),
        "p50_us": percentile(&all.latencies_us, 50.0),
        "p90_us": percentile(&all.latencies_us, 90.0),
        "p99_us": percentile(&all.latencies_us, 99.0),
        "max_us": all.latencies_us.last().copied().unwrap_or(0),
        "first_error": all.first_error,
    });
    println!("{line}");
}
