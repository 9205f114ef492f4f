//! A binary upgrade under HTTP/2 clients (TLS, ALPN): Pingora's graceful
//! GOAWAY moves them to the new process without a failed request.

use crate::harness::*;
use crate::pki::{curl, Pki};
use crate::upgrade::{start_upgrade, wait_for};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one HTTP/2 client (curl, one connection reused) saw.
#[derive(Default, Debug)]
struct H2Tally {
    ok: u64,
    /// Connections opened: 1 at the start, one more after the GOAWAY.
    connects: u64,
    failures: Vec<String>,
}

/// HTTP/2 clients across the upgrade: the old process sends GOAWAY when it
/// stops accepting (Pingora's graceful shutdown), finishes the streams
/// already open, and each client carries on over a new connection, which
/// the new process accepts. curl requests `/health` endlessly (a URL glob)
/// over one connection and writes a line per response as it completes.
#[test]
fn http2_clients_follow_the_goaway_without_a_failure() {
    let pki = Pki::new("upgrade-h2");
    pki.ca("ca").issue(
        "ca",
        "server",
        "localhost",
        &["DNS:localhost", "IP:127.0.0.1"],
    );
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("server.pem"),
        pki.path("server.key"),
    );
    let sock = pki.path("upgrade.sock");
    let mut env = PROXY_ENV.to_vec();
    env.extend([
        ("SSL", "true"),
        ("CERT_FILE", cert.as_str()),
        ("KEY_FILE", key.as_str()),
        ("UPGRADE_SOCK", sock.as_str()),
    ]);
    let health = |addr: &str| {
        curl(&["--cacert", &ca, &format!("https://{addr}/health")]).is_ok_and(|r| r.status == 200)
    };
    let mut old = Gateway::start_probing(&env, "servers: []\n", &health);

    let url = format!("https://{}/health?[1-100000000]", old.addr);
    let tallies: Vec<Arc<Mutex<H2Tally>>> = (0..2).map(|_| Arc::default()).collect();
    let mut clients = Vec::new();
    let mut readers = Vec::new();
    for tally in &tallies {
        let mut child = Command::new("curl")
            .args(["-sS", "--http2", "--cacert", &ca, "-o", "/dev/null"])
            .args([
                "-w",
                "%{stderr}%{http_code} %{http_version} %{num_connects}\\n",
            ])
            .arg(&url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl runs");
        let stderr = child.stderr.take().expect("stderr");
        let tally = tally.clone();
        readers.push(std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr);
            let mut line = String::new();
            // A line cut by the kill at the end has no newline.
            while lines.read_line(&mut line).is_ok_and(|n| n > 0) && line.ends_with('\n') {
                let mut t = tally.lock().unwrap();
                match line.split_whitespace().collect::<Vec<_>>()[..] {
                    ["200", "2", n] => {
                        t.ok += 1;
                        t.connects += n.parse::<u64>().unwrap_or(0);
                    }
                    _ => t.failures.push(line.trim_end().to_string()),
                }
                line.clear();
            }
        }));
        clients.push(child);
    }
    let log = || old.proc.output();
    wait_for(
        "HTTP/2 load on the old process",
        Duration::from_secs(30),
        || tallies.iter().all(|t| t.lock().unwrap().ok > 5),
        log,
    );

    let port = old.addr.rsplit(':').next().expect("port").to_string();
    env.push(("PORT", port.as_str()));
    let new = start_upgrade(&env, "servers: []\n");
    old.proc.signal("-QUIT");
    let status = old
        .proc
        .wait_exit(Duration::from_secs(60))
        .expect("the old process exits by itself");
    assert!(status.success(), "{status}\n{}", old.proc.output());
    // Every client reconnected (to the new process: the old one is gone)
    // and goes on there.
    let after: Vec<u64> = tallies.iter().map(|t| t.lock().unwrap().ok).collect();
    wait_for(
        "HTTP/2 load on the new process",
        Duration::from_secs(30),
        || {
            tallies.iter().zip(&after).all(|(t, before)| {
                let t = t.lock().unwrap();
                t.connects >= 2 && t.ok > before + 5
            })
        },
        || new.output(),
    );
    for mut client in clients {
        let _ = client.kill();
        let _ = client.wait();
    }
    for reader in readers {
        reader.join().expect("reader");
    }
    for tally in &tallies {
        let t = tally.lock().unwrap();
        println!("HTTP/2 client: {} ok over {} connections", t.ok, t.connects);
        assert!(t.failures.is_empty(), "failed requests: {:?}", t.failures);
        assert_eq!(t.connects, 2, "{t:?}");
    }
    let _ = std::fs::remove_dir_all(&pki.dir);
}
