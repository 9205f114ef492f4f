//! The listener's certificate, key and client-certificate CA as the TLS
//! handshake uses them: read from `CERT_FILE`, `KEY_FILE` and
//! `CLIENT_CA_FILE` at start-up and again on SIGHUP. A new set replaces the
//! one in use only when it loads whole and the key belongs to the
//! certificate; otherwise the reason is logged and the old set keeps
//! serving. Connections already open keep the certificate they shook hands
//! with.

use crate::config::tls::{key_matches, read_certificates, read_private_key};
use crate::config::ListenerTls;
use arc_swap::ArcSwap;
use pingora_core::tls::error::ErrorStack;
use pingora_core::tls::ext;
use pingora_core::tls::pkey::{PKey, Private};
use pingora_core::tls::ssl::SslRef;
use pingora_core::tls::x509::store::{X509Store, X509StoreBuilder};
use pingora_core::tls::x509::X509;
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::sync::Arc;

/// One loaded set: what a handshake hands to OpenSSL.
pub struct CertSet {
    /// Leaf first, then its intermediates.
    chain: Vec<X509>,
    key: PKey<Private>,
    client_ca: Option<ClientCa>,
    /// SHA-256 over every certificate's DER: a reload that reads the same
    /// certificates again is no change.
    fingerprint: [u8; 32],
}

/// `CLIENT_CA_FILE`: the store client certificates are verified against,
/// and the certificates whose names the server advertises.
struct ClientCa {
    certs: Vec<X509>,
    store: X509Store,
}

impl CertSet {
    /// Reads and checks the files `files` names; errors name the variable.
    pub fn load(files: &ListenerTls) -> Result<CertSet, String> {
        let chain = read_certificates(&files.cert_file).map_err(named("CERT_FILE"))?;
        let key = read_private_key(&files.key_file).map_err(named("KEY_FILE"))?;
        key_matches(&chain, &key).map_err(named("KEY_FILE"))?;
        let client_ca = match &files.client_ca_file {
            None => None,
            Some(path) => {
                let certs = read_certificates(path).map_err(named("CLIENT_CA_FILE"))?;
                Some(ClientCa {
                    store: trust_store(&certs)
                        .map_err(|e| format!("CLIENT_CA_FILE: {path:?} is unusable: {e}"))?,
                    certs,
                })
            }
        };
        let mut digest = Sha256::new();
        let ca_certs = client_ca.iter().flat_map(|ca| ca.certs.iter());
        for cert in chain.iter().chain(ca_certs) {
            let der = cert
                .to_der()
                .map_err(|e| format!("CERT_FILE: a certificate has no DER form: {e}"))?;
            digest.update(&der);
        }
        Ok(CertSet {
            chain,
            key,
            client_ca,
            fingerprint: digest.finalize().into(),
        })
    }

    /// Gives this set to one connection's handshake (OpenSSL's certificate
    /// callback, before the server's certificate and certificate request
    /// are sent).
    pub fn serve(&self, ssl: &mut SslRef) -> Result<(), ErrorStack> {
        let (leaf, intermediates) = self.chain.split_first().ok_or_else(ErrorStack::get)?;
        ext::ssl_use_certificate(ssl, leaf)?;
        ext::ssl_use_private_key(ssl, &self.key)?;
        for cert in intermediates {
            ext::ssl_add_chain_cert(ssl, cert)?;
        }
        if let Some(ca) = &self.client_ca {
            ext::ssl_set_verify_cert_store(ssl, &ca.store)?;
            for cert in &ca.certs {
                ssl.add_client_ca(cert)?;
            }
        }
        Ok(())
    }

    /// The leaf certificate as an operator checks it: serial, subject,
    /// expiry and a short fingerprint. No key material.
    pub fn describe(&self) -> String {
        let Some(leaf) = self.chain.first() else {
            return "no certificate".into();
        };
        let serial = leaf
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_hex_str().map(|s| s.to_string()))
            .unwrap_or_else(|_| "?".into());
        let subject: Vec<String> = leaf
            .subject_name()
            .entries()
            .filter_map(|e| {
                let value = String::from_utf8_lossy(e.data().as_slice());
                Some(format!("{}={value}", e.object().nid().short_name().ok()?))
            })
            .collect();
        let short: String = self.fingerprint[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // Written, not `format!`ed: a time OpenSSL cannot print is an
        // error of `Display`, which `format!` turns into a panic.
        let mut expires = String::new();
        if write!(expires, "{}", leaf.not_after()).is_err() {
            expires = "?".into();
        }
        format!(
            "serial {serial}, subject {}, expires {expires}, sha256 {short}…",
            subject.join(",")
        )
    }
}

/// Prefixes an error with the variable that names the file.
fn named(var: &'static str) -> impl Fn(String) -> String {
    move |e| format!("{var}: {e}")
}

fn trust_store(certs: &[X509]) -> Result<X509Store, ErrorStack> {
    let mut builder = X509StoreBuilder::new()?;
    for cert in certs {
        builder.add_cert(cert.clone())?;
    }
    Ok(builder.build())
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The files hold the certificates in use.
    Unchanged,
    /// New connections get the new set (described).
    Replaced(String),
    /// The files did not load; the set in use stays.
    Refused(String),
}

/// The set new handshakes use, and the files it is read from.
pub struct ListenerCerts {
    files: ListenerTls,
    current: ArcSwap<CertSet>,
}

impl ListenerCerts {
    /// The start-up load: an error stops the gateway.
    pub fn load(files: ListenerTls) -> Result<ListenerCerts, String> {
        let set = CertSet::load(&files)?;
        Ok(ListenerCerts {
            current: ArcSwap::from_pointee(set),
            files,
        })
    }

    /// The set a handshake starting now uses.
    pub fn current(&self) -> Arc<CertSet> {
        self.current.load_full()
    }

    /// Whether client certificates are required (fixed at start-up).
    pub fn verifies_clients(&self) -> bool {
        self.files.client_ca_file.is_some()
    }

    /// Reads the same files again and swaps in what they now hold.
    pub fn reload(&self) -> Reloaded {
        let next = CertSet::load(&self.files);
        let outcome = decide(&self.current.load(), &next);
        if let (Reloaded::Replaced(_), Ok(set)) = (&outcome, next) {
            self.current.store(Arc::new(set));
        }
        outcome
    }

    /// [`Self::reload`], logged once.
    pub fn reload_and_log(&self) {
        match self.reload() {
            Reloaded::Unchanged => {
                log::info!("listener certificate: reloaded, unchanged")
            }
            Reloaded::Replaced(what) => {
                log::info!("listener certificate: replaced, new connections get {what}")
            }
            Reloaded::Refused(why) => log::error!(
                "listener certificate: reload refused, the current one stays ({}): {why}",
                self.current().describe()
            ),
        }
    }
}

/// Whether a freshly loaded set (or why it did not load) replaces `current`.
fn decide(current: &CertSet, next: &Result<CertSet, String>) -> Reloaded {
    match next {
        Err(why) => Reloaded::Refused(why.clone()),
        Ok(set) if set.fingerprint == current.fingerprint => Reloaded::Unchanged,
        Ok(set) => Reloaded::Replaced(set.describe()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A self-signed certificate and its key, as PEM, from the `openssl`
    /// CLI (the crate's builder cannot set validity dates from here).
    fn pair(cn: &str, serial: u32) -> (Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ed25519", "-nodes", "-days", "1"])
            .args([
                "-subj",
                &format!("/CN={cn}"),
                "-set_serial",
                &serial.to_string(),
            ])
            .args(["-keyout", "key.pem", "-out", "cert.pem"])
            .current_dir(dir.path())
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "{out:?}");
        let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
        (read("cert.pem"), read("key.pem"))
    }

    struct Files {
        dir: PathBuf,
        tls: ListenerTls,
    }

    impl Files {
        fn new(label: &str) -> Files {
            let dir = std::env::temp_dir().join(format!(
                "mcp-gw-listener-certs-{}-{label}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let path = |f: &str| dir.join(f).to_str().unwrap().to_string();
            let tls = ListenerTls {
                cert_file: path("cert.pem"),
                key_file: path("key.pem"),
                client_ca_file: None,
            };
            Files { dir, tls }
        }

        fn write(&self, (cert, key): &(Vec<u8>, Vec<u8>)) {
            std::fs::write(&self.tls.cert_file, cert).unwrap();
            std::fs::write(&self.tls.key_file, key).unwrap();
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_new_pair_replaces_the_old_and_the_same_pair_is_no_change() {
        let files = Files::new("replace");
        files.write(&pair("gateway-a", 0xa1));
        let certs = ListenerCerts::load(files.tls.clone()).unwrap();
        assert!(certs
            .current()
            .describe()
            .contains("serial A1, subject CN=gateway-a"));
        assert_eq!(certs.reload(), Reloaded::Unchanged);

        files.write(&pair("gateway-b", 0xb2));
        match certs.reload() {
            Reloaded::Replaced(what) => {
                assert!(what.contains("serial B2, subject CN=gateway-b"), "{what}")
            }
            other => panic!("{other:?}"),
        }
        assert!(certs.current().describe().contains("CN=gateway-b"));
    }

    #[test]
    fn a_broken_or_foreign_key_is_refused_and_the_old_pair_stays() {
        let files = Files::new("refuse");
        files.write(&pair("gateway-a", 0xa1));
        let certs = ListenerCerts::load(files.tls.clone()).unwrap();

        std::fs::write(&files.tls.key_file, "not a key").unwrap();
        match certs.reload() {
            Reloaded::Refused(why) => {
                assert!(
                    why.starts_with("KEY_FILE: ") && !why.contains("not a key"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A key of another certificate.
        let (cert_b, _) = pair("gateway-b", 0xb2);
        let (_, key_c) = pair("gateway-c", 3);
        files.write(&(cert_b, key_c));
        match certs.reload() {
            Reloaded::Refused(why) => assert!(why.contains("does not belong"), "{why}"),
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(&files.tls.cert_file).unwrap();
        match certs.reload() {
            Reloaded::Refused(why) => assert!(why.starts_with("CERT_FILE: "), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(certs.current().describe().contains("CN=gateway-a"));
    }

    #[test]
    fn the_client_ca_counts_in_the_fingerprint() {
        let files = Files::new("ca");
        files.write(&pair("gateway", 1));
        let ca_path = files.dir.join("ca.pem").to_str().unwrap().to_string();
        std::fs::write(&ca_path, pair("ca-1", 10).0).unwrap();
        let mut tls = files.tls.clone();
        tls.client_ca_file = Some(ca_path.clone());
        let certs = ListenerCerts::load(tls).unwrap();
        assert!(certs.verifies_clients());
        std::fs::write(&ca_path, pair("ca-2", 11).0).unwrap();
        assert!(matches!(certs.reload(), Reloaded::Replaced(_)));
        std::fs::write(&ca_path, "garbage").unwrap();
        match certs.reload() {
            Reloaded::Refused(why) => assert!(why.starts_with("CLIENT_CA_FILE: "), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
