//! Holds N open MCP event streams through one target, for the streams part of
//! the load benchmark (`MODE=streams make bench-load`, issue 10).
//!
//! Each stream is one connection that initialises a session (`POST`
//! `initialize`, as every MCP client does first) and then, on the same
//! connection, opens the session's standalone `GET` event stream (`--kind
//! get`) or calls a long-running tool whose answer is an event stream of
//! progress notifications (`--kind post`: the demo server's `countdown`,
//! which needs `--progress-tool`). The demo server
//! sends an event on it every 200 ms carrying its send time (`sent_us`), so
//! the delay of each event from the server's clock to this client's is
//! measured; the difference between a proxy's figures and the direct ones is
//! what the proxy adds. Both ends share the machine's clock (loopback).
//!
//! With `--kind sse` each stream is instead a legacy HTTP+SSE stream (`GET`
//! on the `/sse` URL, no session first): opened once its first event, the
//! `endpoint` event, is in. It carries no timed events, so only memory
//! means anything for that kind.
//!
//! Prints one JSON line when every stream is open (`"phase":"open"`), then,
//! after `--settle`, records delays for `--measure` and prints the result
//! (`"phase":"measured"`), then holds the streams until SIGTERM or `--hold`.
//!
//! ```text
//! cargo run --release --example streams -- --url http://127.0.0.1:3001/mcp --count 1000
//! ```

use clap::Parser;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(
    about = "Holds N open MCP event streams (GET, POST-answered or legacy /sse) and times their events"
)]
struct Cli {
    /// The MCP endpoint, `http://ip:port/path`.
    #[arg(long)]
    url: String,
    /// Streams (connections) to hold open.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Streams being opened at once (the listen backlog is finite).
    #[arg(long, default_value_t = 128)]
    parallel: usize,
    /// Extra request header, `Name: value`; repeatable.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Seconds between the last stream opening and the measurement.
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// Seconds of event delays recorded.
    #[arg(long, default_value_t = 10.0)]
    measure: f64,
    /// Seconds to hold the streams after the measurement.
    #[arg(long, default_value_t = 600.0)]
    hold: f64,
    /// Runtime worker threads of this client.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `get`: the session's GET stream; `post`: a `tools/call` of
    /// `countdown` answered as an event stream; `sse`: a legacy `/sse`
    /// stream.
    #[arg(long, value_enum, default_value_t = Kind::Get)]
    kind: Kind,
    /// Copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Get,
    Post,
    Sse,
}

/// A `countdown` that outlasts any run: one progress event every 200 ms.
const COUNTDOWN: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"countdown","arguments":{"steps":100000000,"interval_ms":200},"_meta":{"progressToken":"streams-bench"}}}"#;

struct Shared {
    kind: Kind,
    addr: SocketAddr,
    authority: String,
    path: String,
    headers: String,
    recording: AtomicBool,
    delays_us: Mutex<Vec<u64>>,
    /// Events seen while recording (all streams).
    events: AtomicU64,
    /// Streams that ended or failed after opening.
    closed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads until a complete response head is in `buf`; returns its length.
async fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            return Ok(i + 4);
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("response head over 64 KiB"));
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::other("closed before the response head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Decodes as much of a chunked body as `raw` holds into `out`; returns
/// false at the last chunk.
fn dechunk(raw: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        let Some(eol) = find(raw, b"\r\n") else {
            return Ok(true);
        };
        let size_text = std::str::from_utf8(&raw[..eol]).map_err(io::Error::other)?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {size_text:?}")))?;
        if size == 0 {
            return Ok(false);
        }
        if raw.len() < eol + 2 + size + 2 {
            return Ok(true);
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw.drain(..eol + 2 + size + 2);
    }
}

/// Takes every complete event out of `data` and records its delay.
fn take_events(shared: &Shared, data: &mut Vec<u8>) -> usize {
    let mut seen = 0;
    while let Some(end) = find(data, b"\n\n") {
        let event = &data[..end];
        if let Some(i) = find(event, b"\"sent_us\":") {
            let digits: String = event[i + 10..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| b as char)
                .collect();
            if let (Ok(sent), true) = (
                digits.parse::<u64>(),
                shared.recording.load(Ordering::Relaxed),
            ) {
                let delay = now_us().saturating_sub(sent);
                shared.delays_us.lock().unwrap().push(delay);
                shared.events.fetch_add(1, Ordering::Relaxed);
            }
        }
        data.drain(..end + 2);
        seen += 1;
    }
    seen
}

/// Opens one stream: returns the connection and the bytes after the head.
async fn open(shared: &Shared) -> io::Result<(TcpStream, Vec<u8>, bool)> {
    let mut conn = TcpStream::connect(shared.addr).await?;
    conn.set_nodelay(true)?;
    if shared.kind == Kind::Sse {
        return open_sse(shared, conn).await;
    }
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"streams-bench","version":"1"}}}"#;
    let init = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\n{}Content-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
        shared.path,
        shared.authority,
        shared.headers,
        body.len()
    );
    conn.write_all(init.as_bytes()).await?;
    let mut buf = Vec::new();
    let head_len = read_head(&mut conn, &mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    if status(&head) != 200 {
        return Err(io::Error::other(format!(
            "initialize: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    let session = header(&head, "mcp-session-id")
        .ok_or_else(|| io::Error::other("initialize: no mcp-session-id"))?
        .to_owned();
    // The initialize reply is small: a Content-Length body or a chunked one.
    let mut rest = buf.split_off(head_len);
    if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::other("initialize: body cut short"));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
    } else {
        let mut out = Vec::new();
        while dechunk(&mut rest, &mut out)? {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::other("initialize: body cut short"));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
    }
    let open = match shared.kind {
        Kind::Get | Kind::Sse => format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n{}Accept: text/event-stream\r\nmcp-session-id: {session}\r\n\r\n",
            shared.path, shared.authority, shared.headers
        ),
        Kind::Post => format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\n{}Content-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nmcp-session-id: {session}\r\n\
             Content-Length: {}\r\n\r\n{COUNTDOWN}",
            shared.path,
            shared.authority,
            shared.headers,
            COUNTDOWN.len()
        ),
    };
    conn.write_all(open.as_bytes()).await?;
    let mut buf = Vec::new();
    let head_len = read_head(&mut conn, &mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    if status(&head) != 200 {
        return Err(io::Error::other(format!(
            "stream: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    let chunked = header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
    Ok((conn, buf.split_off(head_len), chunked))
}

/// Opens one legacy `/sse` stream on `conn`: returns as `open` does, once
/// the first event, which must be the `endpoint` event, is in.
async fn open_sse(shared: &Shared, mut conn: TcpStream) -> io::Result<(TcpStream, Vec<u8>, bool)> {
    let get = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n{}Accept: text/event-stream\r\n\r\n",
        shared.path, shared.authority, shared.headers
    );
    conn.write_all(get.as_bytes()).await?;
    let mut buf = Vec::new();
    let head_len = read_head(&mut conn, &mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    if status(&head) != 200 {
        return Err(io::Error::other(format!(
            "GET /sse: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    let chunked = header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let mut raw = buf.split_off(head_len);
    let mut data = Vec::new();
    loop {
        if chunked {
            dechunk(&mut raw, &mut data)?;
        } else {
            data.append(&mut raw);
        }
        if let Some(end) = find(&data, b"\n\n") {
            if find(&data[..end], b"event: endpoint").is_none() {
                let first = String::from_utf8_lossy(&data[..end]).into_owned();
                return Err(io::Error::other(format!("first event: {first:?}")));
            }
            return Ok((conn, raw, chunked));
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::other("closed before the endpoint event"));
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

/// Reads events until the stream ends.
async fn follow(
    shared: &Shared,
    mut conn: TcpStream,
    mut raw: Vec<u8>,
    chunked: bool,
) -> io::Result<()> {
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let more = if chunked {
            dechunk(&mut raw, &mut data)?
        } else {
            data.append(&mut raw);
            true
        };
        take_events(shared, &mut data);
        if !more {
            return Err(io::Error::other("the stream ended"));
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::other("the stream was closed"));
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

fn note_error(shared: &Shared, e: &io::Error) {
    let mut first = shared.first_error.lock().unwrap();
    if first.is_none() {
        *first = Some(e.to_string());
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(cli: Cli) -> Result<(), String> {
    let rest = cli.url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = authority
        .parse()
        .map_err(|e| format!("{authority:?}: {e}"))?;
    let mut headers = String::new();
    for h in &cli.headers {
        if !h.contains(':') {
            return Err(format!("header {h:?} is not `Name: value`"));
        }
        headers.push_str(h);
        headers.push_str("\r\n");
    }
    let shared = Arc::new(Shared {
        kind: cli.kind,
        addr,
        authority: authority.to_owned(),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        },
        headers,
        recording: AtomicBool::new(false),
        delays_us: Mutex::new(Vec::new()),
        events: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(cli.parallel.max(1)));
    let mut opening = Vec::with_capacity(cli.count);
    for _ in 0..cli.count {
        let shared = shared.clone();
        let gate = gate.clone();
        opening.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let opened = open(&shared).await;
            drop(permit);
            match opened {
                Ok((conn, raw, chunked)) => {
                    let follower = shared.clone();
                    tokio::spawn(async move {
                        if let Err(e) = follow(&follower, conn, raw, chunked).await {
                            follower.closed.fetch_add(1, Ordering::Relaxed);
                            note_error(&follower, &e);
                        }
                    });
                    true
                }
                Err(e) => {
                    note_error(&shared, &e);
                    false
                }
            }
        }));
    }
    let mut open_count = 0usize;
    for task in opening {
        if task.await.unwrap_or(false) {
            open_count += 1;
        }
    }
    let failed = cli.count - open_count;
    println!(
        r#"{{"phase":"open","label":"{}","requested":{},"open":{open_count},"failed":{failed},"open_s":{:.1},"first_error":{}}}"#,
        cli.label,
        cli.count,
        started.elapsed().as_secs_f64(),
        json_string(shared.first_error.lock().unwrap().as_deref())
    );
    if failed > 0 {
        return Err(format!("{failed} of {} streams did not open", cli.count));
    }

    tokio::time::sleep(Duration::from_secs_f64(cli.settle)).await;
    let closed_before = shared.closed.load(Ordering::Relaxed);
    shared.recording.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(cli.measure)).await;
    shared.recording.store(false, Ordering::Relaxed);
    let mut delays = std::mem::take(&mut *shared.delays_us.lock().unwrap());
    delays.sort_unstable();
    let events = shared.events.load(Ordering::Relaxed);
    let closed = shared.closed.load(Ordering::Relaxed);
    // 5 events per second per stream: what arrived of what was sent.
    let expected = (open_count as f64 * cli.measure * 5.0).max(1.0);
    println!(
        r#"{{"phase":"measured","label":"{}","open":{},"closed":{closed},"closed_before_measure":{closed_before},"events":{events},"events_per_s":{:.0},"delivered":{:.3},"p50_us":{},"p90_us":{},"p99_us":{},"max_us":{},"first_error":{}}}"#,
        cli.label,
        open_count as u64 - closed,
        events as f64 / cli.measure,
        events as f64 / expected,
        percentile(&delays, 0.50),
        percentile(&delays, 0.90),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(0),
        json_string(shared.first_error.lock().unwrap().as_deref())
    );
    tokio::time::sleep(Duration::from_secs_f64(cli.hold)).await;
    Ok(())
}

fn json_string(s: Option<&str>) -> String {
    match s {
        None => "null".into(),
        Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "'")),
    }
}

fn main() {
    let cli = Cli::parse();
    // Each stream is one descriptor here too.
    raise_nofile(cli.count as u64 + 256);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("streams: {e}");
        std::process::exit(1);
    }
    // The runtime would wait for the stream tasks, which never end.
    runtime.shutdown_background();
}

/// Raises the soft descriptor limit towards `need` (at most the hard limit).
fn raise_nofile(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < need {
            lim.rlim_cur = need.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
