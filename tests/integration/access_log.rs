//! The access log: one line per request on stdout, text or JSON, with the
//! request id a trusted proxy sent or one the gateway made up; and no
//! secret in the log of a whole run.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Stops the gateway and returns everything it logged: after the exit no
/// line can still be on its way.
fn stop_and_read(mut gw: Gateway) -> String {
    gw.proc.signal("-TERM");
    gw.proc
        .wait_exit(Duration::from_secs(30))
        .expect("the gateway stops");
    gw.proc.output()
}

/// Waits for a log line containing `needle` (the line is written after the
/// response went out) and returns it.
fn log_line(gw: &Gateway, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(line) = gw.proc.output().lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?}:\n{}",
            gw.proc.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The demo server behind a gateway in proxy mode that trusts loopback's
/// `X-Request-Id`.
fn behind_a_trusted_proxy() -> (Demo, Gateway) {
    let demo = Demo::start("demo");
    let yaml = servers_yaml(&[("demo", &[demo.url()])]);
    let mut env = PROXY_ENV.to_vec();
    env.push(("TRUSTED_PROXIES", "127.0.0.1"));
    let gw = Gateway::start(&env, &yaml);
    (demo, gw)
}

fn assert_line_has(line: &str, parts: &[&str]) {
    for part in parts {
        assert!(line.contains(part), "{part} not in {line}");
    }
}

fn is_request_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn text_lines_and_a_trusted_proxys_request_id() {
    let (demo, gw) = behind_a_trusted_proxy();

    let mut headers = ALICE.to_vec();
    headers.push(("X-Request-Id", "proxy-id-1"));
    let (r, sid) = gw.initialize("demo", &headers);
    assert_eq!(r.header("x-request-id"), Some("proxy-id-1"), "{r:?}");
    let sid = sid.expect("session id");
    let line = log_line(&gw, "request_id=proxy-id-1");
    let backend = format!("backend={}", demo.addr);
    assert_line_has(
        &line,
        &[
            "method=POST",
            "path=/servers/demo/mcp",
            "server=demo",
            &backend,
            "status=200",
            "user=alice",
            "identity_source=proxy",
            "session=-",
            " duration_ms=",
            " bytes=",
        ],
    );
    assert!(line.starts_with("time=20"), "{line}");

    // Passed upstream as sent; the session shows as a hash, never the token.
    let mut headers = ALICE.to_vec();
    headers.push(("X-Request-Id", "proxy-id-2"));
    let seen = gw.whoami("demo", &headers, &sid);
    assert_eq!(seen["headers"]["x-request-id"], "proxy-id-2");
    let line = log_line(&gw, "request_id=proxy-id-2");
    assert!(!line.contains(&sid), "{line}");
    let hash = line
        .split(" session=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("a session field");
    assert_eq!(hash.len(), 12, "{line}");

    // No query string; a refusal is logged too, with a fresh id.
    let r = gw.request(
        "POST",
        "/servers/demo/mcp?api_key=in-the-query",
        &[
            ("Content-Type", "application/json"),
            ("X-Request-Id", "a b"),
        ],
        PING,
    );
    assert_eq!(r.status, 401);
    let id = r.header("x-request-id").expect("an id on a refusal");
    assert!(is_request_id(id), "an insane id is replaced: {id}");
    let line = log_line(&gw, id);
    assert!(
        line.contains("status=401") && line.contains("identity_source=none"),
        "{line}"
    );
    assert!(!stop_and_read(gw).contains("in-the-query"));
}

#[test]
fn json_lines_and_an_untrusted_clients_request_id() {
    let demo = Demo::start("demo");
    let yaml = servers_yaml(&[("demo", &[demo.url()])]);
    let mut env = PROXY_ENV.to_vec();
    env.extend([
        ("TRUSTED_PROXIES", "10.0.0.0/8"),
        ("AUTH_REQUIRED", "false"),
        ("LOG_FORMAT", "json"),
    ]);
    let gw = Gateway::start(&env, &yaml);
    let (r, sid) = gw.initialize("demo", &[("X-Request-Id", "chosen-by-client")]);
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.header("x-request-id").expect("an id").to_string();
    assert!(is_request_id(&id), "{id}");
    let seen = gw.whoami(
        "demo",
        &[("X-Request-Id", "chosen-by-client")],
        &sid.expect("sid"),
    );
    let upstream_id = seen["headers"]["x-request-id"].as_str().expect("sent up");
    assert!(is_request_id(upstream_id) && upstream_id != id);

    let line: Value = serde_json::from_str(&log_line(&gw, &id)).expect("a JSON line");
    let expected = json!({
        "method": "POST", "path": "/servers/demo/mcp", "server": "demo",
        "backend": demo.addr, "status": 200, "user": "anonymous",
        "identity_source": "anonymous", "session": null, "request_id": id,
    });
    for (key, value) in expected.as_object().expect("object") {
        assert_eq!(&line[key], value, "{key} in {line}");
    }
    for key in ["time", "duration_ms", "bytes"] {
        assert!(line.get(key).is_some(), "{key} in {line}");
    }
    // Every line is JSON, the gateway's other messages included.
    let log = stop_and_read(gw);
    assert!(!log.contains("chosen-by-client"));
    for l in log.lines().filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v.get("time").is_some(), "{l}");
    }
    assert!(log.contains("\"level\":\"INFO\""));
}

#[test]
fn access_log_off_writes_no_access_line() {
    let demo = Demo::start("demo");
    let yaml = servers_yaml(&[("demo", &[demo.url()])]);
    let mut env = PROXY_ENV.to_vec();
    env.push(("ACCESS_LOG", "false"));
    let gw = Gateway::start(&env, &yaml);
    assert_eq!(gw.initialize("demo", &ALICE).0.status, 200);
    let log = stop_and_read(gw);
    assert!(log.contains("listening on"), "{log}");
    assert!(!log.contains("request_id="), "{log}");
}

/// A whole run in JWT mode at debug level, with every kind of credential a
/// client sends: none of them may appear in the log.
#[test]
fn no_secret_reaches_the_log() {
    let demo = Demo::start("demo");
    let yaml = servers_yaml(&[("demo", &[demo.url()])]);
    let metrics_token = "metrics-token-0123456789abcdef";
    let env = [
        ("JWT_SECRET_KEY", SECRET),
        ("METRICS_TOKEN", metrics_token),
        ("ENABLE_HEADER_PASSTHROUGH", "true"),
        ("LOG_LEVEL", "debug"),
    ];
    let gw = Gateway::start(&env, &yaml);
    let token = jwt(json!({"sub": "alice", "exp": in_an_hour()}));
    let auth = bearer(&token);
    let cookie_value = "cookie-secret-value-42";
    let cookie = format!("session={cookie_value}");
    let upstream_auth = "Bearer upstream-credential-secret";
    let headers = [
        ("Authorization", auth.as_str()),
        ("Cookie", cookie.as_str()),
        ("X-Upstream-Authorization", upstream_auth),
    ];
    let (r, sid) = gw.initialize("demo", &headers);
    assert_eq!(r.status, 200, "{r:?}");
    let sid = sid.expect("sid");
    gw.whoami("demo", &headers, &sid);
    // A forged token and a bad metrics token are refused, and not logged.
    let forged = format!("{}x", &token[..token.len() - 1]);
    let forged_auth = bearer(&forged);
    let r = gw
        .initialize("demo", &[("Authorization", forged_auth.as_str())])
        .0;
    assert_eq!(r.status, 401);
    gw.metrics_as(metrics_token);
    let wrong = bearer("wrong-metrics-token-value");
    gw.request("GET", "/metrics", &[("Authorization", &wrong)], "");
    // The legacy transport's session token travels in the query string.
    let mut stream = open_stream(&gw, "/servers/demo/sse", &[("Authorization", &auth)]);
    let endpoint = next_data(&mut stream);
    let legacy = endpoint
        .split("sessionId=")
        .nth(1)
        .expect("a session token")
        .to_string();
    gw.request(
        "POST",
        &endpoint,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        PING,
    );
    drop(stream);

    let log = stop_and_read(gw);
    assert!(log.contains("request_id="), "the access log ran: {log}");
    let jwt_payload = token.split('.').nth(1).expect("payload");
    for secret in [
        token.as_str(),
        jwt_payload,
        forged.as_str(),
        sid.as_str(),
        legacy.as_str(),
        cookie_value,
        "upstream-credential-secret",
        metrics_token,
        "wrong-metrics-token-value",
        SECRET,
    ] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}

/// The GET stream, relayed off Pingora's path (`proxy::relay`), is logged
/// when it ends, with the same fields: here the client leaves (499).
#[test]
fn a_get_stream_is_logged_when_it_ends() {
    let (demo, gw) = behind_a_trusted_proxy();
    let sid = gw.initialize("demo", &ALICE).1.expect("session id");
    let mut headers = ALICE.to_vec();
    headers.push(("Mcp-Session-Id", &sid));
    headers.push(("X-Request-Id", "stream-id-1"));
    let mut reader = open_stream(&gw, "/servers/demo/mcp", &headers);
    next_data(&mut reader);
    drop(reader);
    let line = log_line(&gw, "request_id=stream-id-1");
    let backend = format!("backend={}", demo.addr);
    assert_line_has(
        &line,
        &[
            "method=GET",
            "path=/servers/demo/mcp",
            "server=demo",
            &backend,
            "status=499",
            "user=alice",
            "identity_source=proxy",
        ],
    );
    assert!(
        !line.contains(&sid) && !line.contains("session=-"),
        "{line}"
    );
}

/// The legacy `/sse` stream takes the same path: logged and counted when it
/// ends, here as the client leaves (499).
#[test]
fn a_legacy_sse_stream_is_logged_and_counted_when_it_ends() {
    let (demo, gw) = behind_a_trusted_proxy();
    let mut headers = ALICE.to_vec();
    headers.push(("X-Request-Id", "sse-id-1"));
    let mut reader = open_stream(&gw, "/servers/demo/sse", &headers);
    let endpoint = next_data(&mut reader);
    assert!(
        endpoint.starts_with("/servers/demo/message?sessionId="),
        "{endpoint}"
    );
    drop(reader);
    let line = log_line(&gw, "request_id=sse-id-1");
    let backend = format!("backend={}", demo.addr);
    assert_line_has(
        &line,
        &[
            "method=GET",
            "path=/servers/demo/sse",
            "server=demo",
            &backend,
            "status=499",
            "user=alice",
        ],
    );
    let series = "mcp_requests_total{server=\"demo\",status=\"499\"}";
    assert_eq!(metric(&gw.metrics(), series), 1.0, "{}", gw.metrics());
}

#[test]
fn a_made_up_request_id_reaches_the_upstream_once_and_comes_back() {
    let demo = Demo::start("demo");
    let yaml = servers_yaml(&[("demo", &[demo.url()])]);
    let gw = Gateway::start(&PROXY_ENV, &yaml);
    let (r, sid) = gw.initialize("demo", &ALICE);
    assert_eq!(r.status, 200, "{r:?}");
    let body = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
    let r = gw.mcp_post("demo", &ALICE, sid.as_deref(), body);
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.header("x-request-id").expect("an id").to_string();
    assert!(is_request_id(&id), "{id}");
    let text = r.json()["result"]["content"][0]["text"]
        .as_str()
        .expect("whoami text")
        .to_string();
    let seen: Value = serde_json::from_str(&text).expect("whoami JSON");
    // One value (a repeated header would be an array), the one sent back.
    assert_eq!(seen["headers"]["x-request-id"], json!(id));
}

/// Requests the burst test makes, from `BURST_CLIENTS` keep-alive
/// connections at once.
const BURST: usize = 2_000;
const BURST_CLIENTS: usize = 4;

/// The gateway with its stdout on a pipe the test does not read until the
/// gateway, told to stop by `signal`, has closed its listener (or exited):
/// the pipe fills, so most of a burst's access lines are still in the
/// gateway's log buffer when it begins to exit. Every one must come out
/// before the process ends, once, and in each client's order. Returns what
/// it wrote to stdout.
fn burst_then_stop(format: &str, signal: &str) -> String {
    use std::io::{BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::Stdio;
    let mut env = PROXY_ENV.to_vec();
    env.extend([("TRUSTED_PROXIES", "127.0.0.1"), ("LOG_FORMAT", format)]);
    let port = free_port();
    let (mut cmd, dir) = gateway_command(&env, "servers: []\n", port);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log file"))
        .spawn()
        .expect("gateway starts");
    let mut proc = Proc {
        child,
        log: dir.join("stderr.log"),
    };
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Its own listener: another test's gateway may have taken the port
    // first (this one then retries its bind).
    while !(try_request(&addr, "GET", "/health", &[], "").is_ok_and(|r| r.status == 200)
        && listens_on(proc.child.id(), port))
    {
        assert!(Instant::now() < deadline, "not ready: {}", proc.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    let clients: Vec<_> = (0..BURST_CLIENTS)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let stream = TcpStream::connect(&addr).expect("connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                for i in 0..BURST / BURST_CLIENTS {
                    let id = format!("burst-{c}-{i:04}");
                    let req = raw_keepalive_request(
                        &addr,
                        "GET",
                        "/health",
                        &[("X-Request-Id", &id)],
                        "",
                    );
                    (&stream).write_all(req.as_bytes()).expect("write");
                    let r = read_response(&mut reader).expect("a response");
                    assert_eq!(r.header("x-request-id"), Some(id.as_str()), "{r:?}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client");
    }
    proc.signal(signal);
    while TcpStream::connect(&addr).is_ok() && matches!(proc.child.try_wait(), Ok(None)) {
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "still listening after {signal}: {}",
            proc.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    proc.child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout to its end");
    let status = proc
        .wait_exit(Duration::from_secs(30))
        .expect("the gateway stops");
    assert!(status.success(), "{status}: {}", proc.output());

    // Each id exactly once, each client's in the order it sent them.
    let ids: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("burst-").nth(1))
        .map(|rest| &rest[..6])
        .collect();
    assert_eq!(ids.len(), BURST, "access lines of the burst");
    assert!(out.contains("mcp-gateway stopped"), "{out}");
    for c in 0..BURST_CLIENTS {
        let prefix = format!("{c}-");
        let seen: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| id.starts_with(&prefix))
            .collect();
        let sent: Vec<String> = (0..BURST / BURST_CLIENTS)
            .map(|i| format!("{c}-{i:04}"))
            .collect();
        assert_eq!(seen, sent, "client {c}'s lines, in order");
    }
    out
}

#[test]
fn every_access_line_of_a_burst_is_written_before_the_process_exits() {
    let out = burst_then_stop("text", "-TERM");
    let burst_lines = out.lines().filter(|l| l.contains("request_id=burst-"));
    for line in burst_lines {
        assert!(
            line.starts_with("time=")
                && line.contains(" path=/health ")
                && line.contains(" status=200 "),
            "{line}"
        );
    }
}

/// Under concurrent requests every line of a JSON run, the gateway's
/// other messages included, is one whole JSON object; and SIGINT, which
/// ends the process at once, loses no line either.
#[test]
fn every_line_of_a_json_burst_is_one_json_object() {
    let out = burst_then_stop("json", "-INT");
    let mut access = 0;
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.is_object() && v.get("time").is_some(), "{line}");
        if v["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("burst-"))
        {
            assert_eq!(
                (v["path"].as_str(), v["status"].as_u64()),
                (Some("/health"), Some(200))
            );
            access += 1;
        }
    }
    assert_eq!(access, BURST);
}
