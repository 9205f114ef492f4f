//! Upstream `https://` URLs: certificates are verified, against the system
//! store or `UPSTREAM_CA_FILE`.

use crate::harness::*;
use crate::pki::Pki;
use std::process::{Command, Stdio};

/// A throwaway CA (`ca.pem`) and a certificate for `localhost` signed by
/// it (`srv.pem`, `srv.key`), in the directory of `pki`.
fn make_certs(pki: &Pki) {
    pki.ca("ca")
        .issue("ca", "srv", "localhost", &["DNS:localhost", "IP:127.0.0.1"]);
}

/// A minimal HTTPS JSON-RPC endpoint: enough to prove the TLS hop works.
const TLS_SERVER: &str = r#"
import http.server, ssl, sys, json
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get('content-length', 0)))
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tls": True}}).encode()
        self.send_response(200)
        self.send_header('content-type', 'application/json')
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2] if len(sys.argv) > 2 else 'srv.pem', sys.argv[3] if len(sys.argv) > 3 else 'srv.key')
if len(sys.argv) > 4:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(sys.argv[4])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print('ready', flush=True)
srv.serve_forever()
"#;

#[test]
fn https_upstreams_are_verified() {
    let pki = Pki::new("upstream-verified");
    make_certs(&pki);
    let dir = pki.dir.clone();
    let port = free_port();
    let mut child = Command::new("python3")
        .args(["-c", TLS_SERVER, &port.to_string()])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("ready line");
    let _server = Proc {
        child,
        log: dir.join("none"),
    };

    let yaml = servers_yaml(&[("tls", &[format!("https://localhost:{port}/mcp")])]);
    let env = [
        ("MCP_CLIENT_AUTH_ENABLED", "false"),
        ("TRUST_PROXY_AUTH", "true"),
    ];
    let untrusted = Gateway::start(&env, &yaml);
    let r = untrusted
        .initialize("tls", &[("X-Authenticated-User", "u")])
        .0;
    assert_eq!(
        r.status, 502,
        "a self-signed upstream must not be trusted: {r:?}"
    );

    let ca = dir.join("ca.pem");
    let ca = ca.to_str().expect("utf-8 path");
    let mut env_ca = env.to_vec();
    env_ca.push(("UPSTREAM_CA_FILE", ca));
    let trusted = Gateway::start(&env_ca, &yaml);
    let r = trusted
        .initialize("tls", &[("X-Authenticated-User", "u")])
        .0;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["result"]["tls"], true);
}

/// The TLS test server on a free port: `args` are its certificate, key and
/// optionally the CA its clients' certificates must chain to.
fn tls_upstream(dir: &std::path::Path, args: &[String]) -> (Proc, u16) {
    let port = free_port();
    let mut child = Command::new("python3")
        .args(["-c", TLS_SERVER, &port.to_string()])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("ready line");
    let log = dir.join("none");
    (Proc { child, log }, port)
}

/// Each server's `tls:` block: its own CA, a client certificate, SNI, and
/// `verify: false` (logged); the global default stays the system store.
#[test]
fn each_server_has_its_own_upstream_tls() {
    let pki = Pki::new("upstream");
    pki.ca("ca")
        .issue("ca", "srv", "localhost", &["DNS:localhost", "IP:127.0.0.1"])
        .ca("gwca")
        .issue("gwca", "gateway", "gateway", &["DNS:gateway.internal"]);
    let dir = pki.dir.clone();
    let (_plain, port) = tls_upstream(&dir, &[]);
    let (_mutual, mport) = tls_upstream(
        &dir,
        &[
            pki.path("srv.pem"),
            pki.path("srv.key"),
            pki.path("gwca.pem"),
        ],
    );
    let url = format!("https://localhost:{port}/mcp");
    let murl = format!("https://localhost:{mport}/mcp");
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("gateway.pem"),
        pki.path("gateway.key"),
    );
    let yaml = format!(
        "servers:\n\
         - {{name: own-ca, urls: [{url}], tls: {{ca_file: {ca}}}}}\n\
         - {{name: default-ca, urls: [{url}]}}\n\
         - {{name: wrong-sni, urls: [{url}], tls: {{ca_file: {ca}, sni: elsewhere.example}}}}\n\
         - {{name: unverified, urls: [{url}], tls: {{verify: false}}}}\n\
         - {{name: mutual, urls: [{murl}], tls: {{ca_file: {ca}, client_cert: {cert}, client_key: {key}}}}}\n\
         - {{name: mutual-no-cert, urls: [{murl}], tls: {{ca_file: {ca}}}}}\n"
    );
    let env = [
        ("MCP_CLIENT_AUTH_ENABLED", "false"),
        ("TRUST_PROXY_AUTH", "true"),
    ];
    let gw = Gateway::start(&env, &yaml);
    let status = |server: &str| gw.initialize(server, &ALICE).0.status;
    assert_eq!(status("own-ca"), 200);
    assert_eq!(status("default-ca"), 502, "the server's CA is its own");
    assert_eq!(
        status("wrong-sni"),
        502,
        "the name is checked against the SNI"
    );
    assert_eq!(status("unverified"), 200);
    assert_eq!(status("mutual"), 200);
    assert_eq!(status("mutual-no-cert"), 502);
    // The log line may reach the file just after the response.
    let warning = "server unverified: upstream TLS certificates are not verified";
    let out = gw.proc.output_when(|o| o.contains(warning));
    assert!(out.contains(warning), "{out}");
}
