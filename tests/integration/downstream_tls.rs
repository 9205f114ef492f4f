//! The gateway listener over TLS (`SSL`, `CERT_FILE`, `KEY_FILE`): MCP
//! over HTTP/1.1 and HTTP/2 by ALPN, plain HTTP refused; with
//! `CLIENT_CA_FILE` client certificates are required, and
//! `TRUSTED_PROXY_CERT_NAMES` decides whose proxy identity header counts.

use crate::harness::*;
use crate::pki::{curl, CurlResult, Pki};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}"#;
const SLOW_CALL: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow","arguments":{"silence_ms":0,"then":"answer"}}}"#;

/// A CA and the gateway's certificate for 127.0.0.1 and localhost.
fn server_pki(label: &str) -> Pki {
    let pki = Pki::new(label);
    pki.ca("ca").issue(
        "ca",
        "server",
        "localhost",
        &["DNS:localhost", "IP:127.0.0.1"],
    );
    pki
}

fn tls_env(pki: &Pki) -> Vec<(&'static str, String)> {
    vec![
        ("SSL", "true".into()),
        ("CERT_FILE", pki.path("server.pem")),
        ("KEY_FILE", pki.path("server.key")),
    ]
}

fn start(env: &[(&'static str, String)], yaml: &str, client: &[String]) -> Gateway {
    let mut all: Vec<(&str, &str)> = PROXY_ENV.to_vec();
    all.extend(env.iter().map(|(k, v)| (*k, v.as_str())));
    let client = client.to_vec();
    Gateway::start_probing(&all, yaml, &move |addr| {
        let mut args: Vec<String> = client.clone();
        args.push(format!("https://{addr}/health"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args).is_ok_and(|r| r.status == 200)
    })
}

/// A POST to the gateway over TLS with curl's `extra` arguments.
fn post(
    gw: &Gateway,
    extra: &[String],
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<CurlResult, (i32, String)> {
    let mut args: Vec<String> = extra.to_vec();
    for (k, v) in [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ]
    .iter()
    .chain(headers)
    {
        args.push("-H".into());
        args.push(format!("{k}: {v}"));
    }
    args.extend([
        "-X".into(),
        "POST".into(),
        "--data-binary".into(),
        body.into(),
        format!("https://{}{path}", gw.addr),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&args)
}

/// An HTTP/2 client's legacy `/sse` stream stays on Pingora's path (the
/// lean relay is HTTP/1.1 only), where the body filter rewrites the
/// endpoint event with the same code as the relay.
#[test]
fn a_legacy_sse_stream_over_http2_gets_the_rewritten_endpoint() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let pki = server_pki("sse-h2");
    let demo = Demo::start("demo");
    let yaml = servers_yaml(&[("demo", &[demo.url()])]);
    let ca = pki.path("ca.pem");
    let gw = start(&tls_env(&pki), &yaml, &["--cacert".to_string(), ca.clone()]);
    let (name, value) = ALICE[0];
    let mut curl = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "-N",
            "--http2",
            "--max-time",
            "20",
            "--cacert",
            &ca,
        ])
        .args(["-H", &format!("{name}: {value}")])
        .arg(format!("https://{}/servers/demo/sse", gw.addr))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs");
    let stdout = curl.stdout.take().expect("curl's stdout");
    let mut lines = BufReader::new(stdout).lines();
    let status = lines.next().expect("a status line").expect("read");
    let data = lines
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("data:").map(|d| d.trim().to_string()));
    let _ = curl.kill();
    let _ = curl.wait();
    assert!(status.starts_with("HTTP/2 200"), "{status}");
    let endpoint = data.expect("an endpoint event");
    assert!(
        endpoint.starts_with("/servers/demo/message?sessionId="),
        "{endpoint}"
    );
}

#[test]
fn tls_serves_mcp_over_http1_and_http2_and_refuses_plain_http() {
    let pki = server_pki("listener");
    let demo = Demo::start("demo");
    let yaml = servers_yaml(&[("demo", &[demo.url()])]);
    let trust = vec!["--cacert".to_string(), pki.path("ca.pem")];
    let gw = start(&tls_env(&pki), &yaml, &trust);

    for (flag, version) in [("--http1.1", "HTTP/1.1"), ("--http2", "HTTP/2")] {
        let mut client = trust.clone();
        client.push(flag.into());
        let r = post(&gw, &client, "/servers/demo/mcp", &ALICE, INITIALIZE).expect("TLS works");
        assert_eq!((r.status, r.version.as_str()), (200, version), "{r:?}");
        let sid = r
            .header("mcp-session-id")
            .expect("a session id")
            .to_string();
        // A tool call answered as an event stream, passed through whole.
        let mut headers = ALICE.to_vec();
        headers.push(("Mcp-Session-Id", &sid));
        let r = post(&gw, &client, "/servers/demo/mcp", &headers, SLOW_CALL).expect("SSE");
        assert_eq!((r.status, r.version.as_str()), (200, version), "{r:?}");
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert!(
            r.body.contains("working") && r.body.contains("done"),
            "{r:?}"
        );
    }

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = try_request(&gw.addr, "GET", "/health", &[], "");
    assert!(
        !plain.as_ref().is_ok_and(|r| r.status != 0),
        "plain HTTP was answered: {plain:?}"
    );

    // Neither /version nor the log shows key material.
    let mut args = trust.clone();
    args.push(format!("https://{}/version", gw.addr));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let version = curl(&args).expect("/version");
    let key = std::fs::read_to_string(pki.path("server.key")).expect("key");
    let key_line = key.lines().nth(1).expect("a base64 line of the key");
    for text in [version.body.as_str(), &gw.proc.output()] {
        assert!(!text.contains("PRIVATE KEY") && !text.contains(key_line));
    }
    assert!(gw
        .proc
        .output_when(|log| log.contains("listening on"))
        .contains("listening on https://"));

    // The container HEALTHCHECK's subcommand speaks TLS to a TLS listener.
    let port = gw.addr.rsplit(':').next().expect("port").to_string();
    let mut env: Vec<(&str, String)> = tls_env(&pki);
    env.extend(PROXY_ENV.iter().map(|(k, v)| (*k, v.to_string())));
    env.push(("PORT", port));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .env_clear()
        .envs(env)
        .current_dir(&pki.dir)
        .arg("healthcheck")
        .output()
        .expect("healthcheck runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn mtls_refuses_clients_without_a_certificate_and_trusts_the_header_by_name() {
    let pki = server_pki("mtls");
    pki.ca("clients")
        .issue("clients", "proxy", "auth-proxy", &["DNS:proxy.internal"])
        .issue("clients", "other", "other", &["DNS:other.internal"])
        .ca("rogue")
        .issue("rogue", "forged", "forged", &["DNS:proxy.internal"]);
    let demo = Demo::start("demo");
    let yaml = servers_yaml(&[("demo", &[demo.url()])]);
    let mut env = tls_env(&pki);
    env.push(("CLIENT_CA_FILE", pki.path("clients.pem")));
    env.push(("TRUSTED_PROXY_CERT_NAMES", "proxy.internal".into()));
    let with_cert = |name: &str| {
        vec![
            "--cacert".to_string(),
            pki.path("ca.pem"),
            "--cert".into(),
            pki.path(&format!("{name}.pem")),
            "--key".into(),
            pki.path(&format!("{name}.key")),
        ]
    };
    let gw = start(&env, &yaml, &with_cert("proxy"));

    // No certificate, or one another CA signed: no HTTP exchange at all.
    let bare = vec!["--cacert".to_string(), pki.path("ca.pem")];
    for client in [bare, with_cert("forged")] {
        let r = post(&gw, &client, "/servers/demo/mcp", &ALICE, INITIALIZE);
        assert!(r.is_err(), "handshake accepted: {r:?}");
    }

    // The trusted name's certificate: the header counts, over h1 and h2.
    for flag in ["--http1.1", "--http2"] {
        let mut client = with_cert("proxy");
        client.push(flag.into());
        let r = post(&gw, &client, "/servers/demo/mcp", &ALICE, INITIALIZE).expect("mTLS");
        assert_eq!(r.status, 200, "{r:?}");
    }
    // A certificate the CA signed for another name: verified, not trusted.
    let r = post(
        &gw,
        &with_cert("other"),
        "/servers/demo/mcp",
        &ALICE,
        INITIALIZE,
    )
    .expect("a verified certificate is served");
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("not accepted from this peer"), "{r:?}");
}

#[test]
fn bad_tls_settings_stop_start_up_naming_the_variable() {
    let pki = server_pki("bad");
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![
                ("SSL", "true".into()),
                ("CERT_FILE", "/nonexistent/cert.pem".into()),
            ],
            "CERT_FILE",
        ),
        (
            vec![
                ("SSL", "true".into()),
                ("CERT_FILE", pki.path("server.pem")),
                // A certificate is not a key.
                ("KEY_FILE", pki.path("ca.pem")),
            ],
            "KEY_FILE",
        ),
        (
            vec![
                ("SSL", "true".into()),
                ("CERT_FILE", pki.path("server.pem")),
                // The CA's key does not match the server certificate.
                ("KEY_FILE", pki.path("ca.key")),
            ],
            "KEY_FILE",
        ),
        (
            {
                let mut env = tls_env(&pki);
                env.push(("TRUSTED_PROXY_CERT_NAMES", "proxy.internal".into()));
                env
            },
            "TRUSTED_PROXY_CERT_NAMES",
        ),
    ];
    for (env, variable) in cases {
        let mut all: Vec<(&str, &str)> = PROXY_ENV.to_vec();
        all.extend(env.iter().map(|(k, v)| (*k, v.as_str())));
        let (code, out) = Gateway::run_to_exit(&all, "servers: []\n", &[]);
        assert_eq!(code, 2, "{variable}: {out}");
        assert!(out.contains(variable), "{variable}: {out}");
        assert!(!out.contains("PRIVATE KEY"), "{out}");
    }
}

/// The certificate a new connection is shown (its PEM block) and the
/// protocol ALPN chose, as `openssl s_client` reports them.
fn served(gw: &Gateway, trust: &str) -> (String, String) {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &gw.addr, "-servername", "localhost"])
        .args([
            "-alpn",
            "h2,http/1.1",
            "-CAfile",
            trust,
            "-verify_return_error",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let pem = pem_block(&text).unwrap_or_else(|| panic!("no certificate shown: {out:?}"));
    let alpn = text
        .lines()
        .find_map(|l| l.strip_prefix("ALPN protocol: "))
        .unwrap_or("none")
        .to_string();
    (pem, alpn)
}

/// The first certificate of a PEM text.
fn pem_block(text: &str) -> Option<String> {
    let begin = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = begin + text[begin..].find("-----END CERTIFICATE-----")?;
    Some(text[begin..end].to_string())
}

fn file_pem(path: &str) -> String {
    pem_block(&std::fs::read_to_string(path).expect("certificate file")).expect("a PEM file")
}

/// Sends SIGHUP and waits for the listener certificate's reload line.
fn hangup(gw: &Gateway) -> String {
    let lines = |gw: &Gateway| {
        gw.proc
            .output()
            .lines()
            .filter(|l| l.contains("listener certificate: "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let before = lines(gw).len();
    gw.proc.signal("-HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(line) = lines(gw).get(before) {
            return line.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reload line:\n{}",
            gw.proc.output()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn sighup_swaps_the_listener_certificate_and_keeps_it_when_the_new_key_is_broken() {
    let pki = server_pki("cert-reload");
    pki.issue(
        "ca",
        "renewed",
        "localhost",
        &["DNS:localhost", "IP:127.0.0.1"],
    );
    let (live_cert, live_key) = (pki.path("live.pem"), pki.path("live.key"));
    let install = |name: &str| {
        std::fs::copy(pki.path(&format!("{name}.pem")), &live_cert).expect("cert");
        std::fs::copy(pki.path(&format!("{name}.key")), &live_key).expect("key");
    };
    install("server");
    let demo = Demo::start("demo");
    let yaml = servers_yaml(&[("demo", &[demo.url()])]);
    let env = vec![
        ("SSL", "true".to_string()),
        ("CERT_FILE", live_cert.clone()),
        ("KEY_FILE", live_key.clone()),
    ];
    let ca = pki.path("ca.pem");
    let trust = vec!["--cacert".to_string(), ca.clone()];
    let gw = start(&env, &yaml, &trust);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !gw.proc.output().contains("SIGHUP reloads") {
        assert!(std::time::Instant::now() < deadline, "{}", gw.proc.output());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (first, alpn) = served(&gw, &ca);
    assert_eq!(first, file_pem(&pki.path("server.pem")));
    assert_eq!(alpn, "h2");

    install("renewed");
    let line = hangup(&gw);
    assert!(line.contains("replaced"), "{line}");
    let (second, alpn) = served(&gw, &ca);
    assert_eq!(second, file_pem(&pki.path("renewed.pem")));
    assert_ne!(second, first);
    assert_eq!(alpn, "h2");
    let mut h2 = trust.clone();
    h2.push("--http2".into());
    let r = post(&gw, &h2, "/servers/demo/mcp", &ALICE, INITIALIZE).expect("TLS after reload");
    assert_eq!((r.status, r.version.as_str()), (200, "HTTP/2"), "{r:?}");

    // The same files again: nothing to swap.
    assert!(hangup(&gw).contains("unchanged"));

    // A broken key: refused, with the reason, and the renewed pair stays.
    std::fs::write(&live_key, "-----BEGIN PRIVATE KEY-----\nbroken\n").expect("key");
    let line = hangup(&gw);
    assert!(
        line.contains("reload refused") && line.contains("KEY_FILE") && line.contains(&live_key),
        "{line}"
    );
    let (third, _) = served(&gw, &ca);
    assert_eq!(third, second);
    let r = post(&gw, &h2, "/servers/demo/mcp", &ALICE, INITIALIZE).expect("still served");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!gw.proc.output().contains("PRIVATE KEY"));
}
