//! TLS material: the listener's certificate and client-certificate CA
//! (`SSL`, `CERT_FILE`, `KEY_FILE`, `CLIENT_CA_FILE`,
//! `TRUSTED_PROXY_CERT_NAMES`) and a server's upstream `tls:` block. Files
//! are read and parsed here, once, so a bad one stops start-up with the
//! variable or field that names it, and nothing reads a file per request
//! (`listener_certs` reads the listener's again on SIGHUP, with these
//! functions).

use super::values::parse_bool;
use super::{ConfigError, Source};
use pingora_core::tls::pkey::{PKey, Private};
use pingora_core::tls::x509::X509;
use pingora_core::utils::tls::CertKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// The gateway listener's TLS; `None` in [`super::Settings`] is plain HTTP.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub cert_file: String,
    pub key_file: String,
    /// `CLIENT_CA_FILE`: client certificates are required and verified.
    pub client_ca_file: Option<String>,
}

/// `TRUSTED_PROXY_CERT_NAMES`, lower-cased: DNS SANs or subject CNs a
/// client certificate must carry for the proxy identity header to count.
pub fn trusted_cert_names(src: &Source) -> Result<Vec<String>, ConfigError> {
    src.get("TRUSTED_PROXY_CERT_NAMES", Vec::new(), |raw| {
        raw.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| {
                if n.bytes().all(|b| b.is_ascii_graphic()) {
                    Ok(n.to_ascii_lowercase())
                } else {
                    Err(format!("{n:?} is not a DNS name or CN (visible ASCII)"))
                }
            })
            .collect()
    })
}

/// Reads `SSL`, `CERT_FILE`, `KEY_FILE` and `CLIENT_CA_FILE`; with `SSL`
/// off the files are not looked at (ContextForge's defaults name files a
/// plain-HTTP deployment does not have).
pub fn listener_tls(src: &Source) -> Result<Option<ListenerTls>, ConfigError> {
    let client_ca_file = src.string("CLIENT_CA_FILE");
    if !src.get("SSL", false, parse_bool)? {
        if client_ca_file.is_some() {
            return Err(ConfigError::new(
                "CLIENT_CA_FILE",
                "client certificates need the TLS listener: set SSL=true",
            ));
        }
        return Ok(None);
    }
    let cert_file = src
        .string("CERT_FILE")
        .unwrap_or_else(|| "certs/cert.pem".into());
    let key_file = src
        .string("KEY_FILE")
        .unwrap_or_else(|| "certs/key.pem".into());
    let chain = read_certificates(&cert_file).map_err(|e| ConfigError::new("CERT_FILE", e))?;
    let key = read_private_key(&key_file).map_err(|e| ConfigError::new("KEY_FILE", e))?;
    key_matches(&chain, &key).map_err(|e| ConfigError::new("KEY_FILE", e))?;
    if let Some(ca) = &client_ca_file {
        read_certificates(ca).map_err(|e| ConfigError::new("CLIENT_CA_FILE", e))?;
    }
    Ok(Some(ListenerTls {
        cert_file,
        key_file,
        client_ca_file,
    }))
}

/// Every certificate of a PEM file, at least one.
pub fn read_certificates(path: &str) -> Result<Vec<X509>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    let certs = X509::stack_from_pem(&pem)
        .map_err(|_| format!("{path:?} is not a PEM certificate file"))?;
    if certs.is_empty() {
        return Err(format!("{path:?} holds no PEM certificate"));
    }
    Ok(certs)
}

/// A PEM private key. The error never quotes the file's content.
pub(crate) fn read_private_key(path: &str) -> Result<PKey<Private>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    PKey::private_key_from_pem(&pem).map_err(|_| format!("{path:?} holds no PEM private key"))
}

pub(crate) fn key_matches(chain: &[X509], key: &PKey<Private>) -> Result<(), String> {
    let leaf = chain
        .first()
        .ok_or_else(|| "no certificate to match".to_string())?;
    let public = leaf
        .public_key()
        .map_err(|_| "the certificate's public key is unreadable".to_string())?;
    if public.public_eq(key) {
        Ok(())
    } else {
        Err("the private key does not belong to the certificate".into())
    }
}

/// A server's `tls:` block as written in the YAML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    ca_file: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
    sni: Option<String>,
    verify: Option<bool>,
}

/// How the gateway speaks TLS to one server's `https://` replicas. The
/// default trusts the system store or `UPSTREAM_CA_FILE`, presents no
/// client certificate, sends the URL's host as SNI and verifies.
#[derive(Clone)]
pub struct UpstreamTls {
    /// Replaces the default trust store for this server.
    pub ca: Option<Arc<Box<[X509]>>>,
    pub client_cert: Option<Arc<CertKey>>,
    pub sni: Option<String>,
    pub verify: bool,
    /// File names, for `Debug` and start-up messages.
    files: Vec<String>,
    /// SHA-256 over the certificates' DER: a reload that finds the same
    /// file names with new contents is a change.
    fingerprint: [u8; 32],
}

/// Equal when the files hold the same certificates and the settings match:
/// what decides whether a reload keeps a server's pooled connections.
impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
            && self.files == other.files
            && self.sni == other.sni
            && self.verify == other.verify
    }
}

impl Eq for UpstreamTls {}

impl Default for UpstreamTls {
    fn default() -> Self {
        UpstreamTls {
            ca: None,
            client_cert: None,
            sni: None,
            verify: true,
            files: Vec::new(),
            fingerprint: [0; 32],
        }
    }
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("files", &self.files)
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .finish()
    }
}

/// Loads a `tls:` block; `field` names its keys in errors.
pub fn upstream_tls(
    raw: RawUpstreamTls,
    field: &dyn Fn(&str) -> String,
) -> Result<UpstreamTls, ConfigError> {
    let mut tls = UpstreamTls {
        verify: raw.verify.unwrap_or(true),
        ..UpstreamTls::default()
    };
    let mut digest = Sha256::new();
    let mut hash = |certs: &[X509]| {
        for cert in certs {
            digest.update(cert.to_der().unwrap_or_default());
        }
    };
    if let Some(path) = raw.ca_file {
        let certs =
            read_certificates(&path).map_err(|e| ConfigError::new(field("tls.ca_file"), e))?;
        hash(&certs);
        tls.ca = Some(Arc::new(certs.into_boxed_slice()));
        tls.files.push(path);
    }
    match (raw.client_cert, raw.client_key) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            let chain = read_certificates(&cert)
                .map_err(|e| ConfigError::new(field("tls.client_cert"), e))?;
            let pkey =
                read_private_key(&key).map_err(|e| ConfigError::new(field("tls.client_key"), e))?;
            key_matches(&chain, &pkey).map_err(|e| ConfigError::new(field("tls.client_key"), e))?;
            hash(&chain);
            tls.client_cert = Some(Arc::new(CertKey::new(chain, pkey)));
            tls.files.push(cert);
        }
        (Some(_), None) => {
            return Err(ConfigError::new(
                field("tls.client_key"),
                "required with tls.client_cert",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                field("tls.client_cert"),
                "required with tls.client_key",
            ))
        }
    }
    if let Some(sni) = raw.sni {
        let sni = sni.trim().to_string();
        if sni.is_empty() || !sni.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                field("tls.sni"),
                "must be a host name (visible ASCII, not empty)",
            ));
        }
        tls.sni = Some(sni);
    }
    tls.fingerprint = digest.finalize().into();
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(pairs: &[(&str, &str)]) -> Source {
        Source::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn tls_off_reads_no_file() {
        assert!(listener_tls(&src(&[])).unwrap().is_none());
        assert!(
            listener_tls(&src(&[("SSL", "false"), ("CERT_FILE", "/nonexistent")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn missing_files_name_the_variable() {
        let e = listener_tls(&src(&[
            ("SSL", "true"),
            ("CERT_FILE", "/nonexistent/c.pem"),
        ]))
        .unwrap_err();
        assert_eq!(e.field, "CERT_FILE");
        let e = listener_tls(&src(&[("CLIENT_CA_FILE", "/x")])).unwrap_err();
        assert_eq!(e.field, "CLIENT_CA_FILE");
        let e = listener_tls(&src(&[("SSL", "maybe")])).unwrap_err();
        assert_eq!(e.field, "SSL");
    }

    #[test]
    fn a_file_that_is_not_pem_is_refused_without_quoting_it() {
        let dir = std::env::temp_dir().join(format!("mcp-gw-cfg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        std::fs::write(&path, "secret-material-not-pem").unwrap();
        let path = path.to_str().unwrap();
        let e = read_private_key(path).unwrap_err();
        assert!(!e.contains("secret-material"), "{e}");
        assert!(read_certificates(path).is_err());
    }

    #[test]
    fn cert_names_need_verified_client_certificates() {
        let e = super::super::Settings::load(
            &src(&[
                ("MCP_CLIENT_AUTH_ENABLED", "false"),
                ("TRUST_PROXY_AUTH", "true"),
                ("TRUSTED_PROXY_CERT_NAMES", "proxy.internal"),
            ]),
            None,
        )
        .unwrap_err();
        assert_eq!(e.field, "TRUSTED_PROXY_CERT_NAMES");
    }

    #[test]
    fn cert_names_are_a_lower_cased_list() {
        assert_eq!(
            trusted_cert_names(&src(&[("TRUSTED_PROXY_CERT_NAMES", "Proxy.Example, b ,")]))
                .unwrap(),
            ["proxy.example", "b"]
        );
        assert!(trusted_cert_names(&src(&[("TRUSTED_PROXY_CERT_NAMES", "a b")])).is_err());
    }

    #[test]
    fn an_upstream_block_needs_both_halves_of_a_client_certificate() {
        let field = |f: &str| format!("s.{f}");
        let raw = RawUpstreamTls {
            client_cert: Some("c.pem".into()),
            ..RawUpstreamTls::default()
        };
        assert_eq!(
            upstream_tls(raw, &field).unwrap_err().field,
            "s.tls.client_key"
        );
        let raw = RawUpstreamTls {
            verify: Some(false),
            sni: Some("backend.internal".into()),
            ..RawUpstreamTls::default()
        };
        let tls = upstream_tls(raw, &field).unwrap();
        assert!(!tls.verify);
        assert_eq!(tls.sni.as_deref(), Some("backend.internal"));
        assert!(UpstreamTls::default().verify);
    }
}
