//! Throwaway certificate authorities and certificates, made with the
//! `openssl` CLI in a test's own directory, and `curl` as the TLS client
//! (HTTP/1.1 and HTTP/2 by ALPN; the harness's raw sockets speak plain HTTP).

use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A directory holding one CA (`<ca>.pem`, `<ca>.key`) and what it issues.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(label: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("mcp-gw-pki-{}-{label}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pki dir");
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir
            .join(file)
            .to_str()
            .expect("utf-8 path")
            .to_string()
    }

    /// A self-signed CA named `name`: `name.pem`, `name.key`.
    pub fn ca(&self, name: &str) -> &Self {
        let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &key,
                "-out",
                &pem,
            ],
        );
        self
    }

    /// A certificate `name.pem`/`name.key` for CN `cn` with these
    /// subjectAltName entries (`DNS:x`, `IP:y`), signed by CA `ca`.
    pub fn issue(&self, ca: &str, name: &str, cn: &str, sans: &[&str]) -> &Self {
        let (pem, key, csr, ext) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        let mut ext_text = String::new();
        if !sans.is_empty() {
            ext_text = format!("subjectAltName={}\n", sans.join(","));
        }
        std::fs::write(self.dir.join(&ext), ext_text).expect("ext file");
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
        self
    }
}

/// What curl got: the HTTP version, status, headers and body; or curl's
/// exit code and message when there was no HTTP response.
#[derive(Debug)]
pub struct CurlResult {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl CurlResult {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `curl -i` with these arguments; `Err` holds curl's exit code and stderr.
pub fn curl(args: &[&str]) -> Result<CurlResult, (i32, String)> {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs");
    if !out.status.success() {
        return Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default().to_string();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(CurlResult {
        version,
        status,
        headers,
        body: body.to_string(),
    })
}
