//! The gateway listener's TLS: certificate and key (from `listener_certs`,
//! at each handshake), ALPN h2 + http/1.1, and with `CLIENT_CA_FILE`
//! required, verified client certificates whose names are read once per
//! connection for the proxy-header trust decision.

use crate::listener_certs::ListenerCerts;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{TlsAccept, ALPN};
use pingora::protocols::tls::TlsRef;
use pingora::protocols::Digest;
use pingora_core::tls::nid::Nid;
use pingora_core::tls::ssl::SslVerifyMode;
use pingora_core::tls::x509::X509Ref;
use std::any::Any;
use std::sync::Arc;

/// The names of a connection's verified client certificate, lower-cased:
/// its DNS SANs, then its subject CNs. Stored in the TLS digest of the
/// connection at the end of the handshake.
#[derive(Debug, Default)]
pub struct ClientCertNames(pub Vec<String>);

/// DNS subject alternative names and subject common names of `cert`.
pub fn cert_names(cert: &X509Ref) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject_alt_names()
        .into_iter()
        .flatten()
        .filter_map(|name| name.dnsname().and_then(|n| usable_name(n.as_bytes())))
        .collect();
    names.extend(
        cert.subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .filter_map(|e| usable_name(e.data().as_slice())),
    );
    names
}

/// A name as configuration can list it: visible ASCII. Anything else (an
/// embedded NUL, `proxy.internal\0.evil`, or another encoding) can match
/// no configured name and is dropped rather than truncated or converted.
fn usable_name(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty() && bytes.iter().all(u8::is_ascii_graphic))
        .then(|| String::from_utf8_lossy(bytes).to_ascii_lowercase())
}

/// The verified client certificate's names of the connection `digest`
/// describes; `None` without TLS or without a client certificate.
pub fn client_cert_names(digest: Option<&Digest>) -> Option<&[String]> {
    digest?
        .ssl_digest
        .as_ref()?
        .extension
        .get::<ClientCertNames>()
        .map(|n| n.0.as_slice())
}

/// The listener's handshake hooks: the certificate in use (see
/// `listener_certs`, replaced on SIGHUP) and, with client certificates
/// required, their names for the trust decision.
struct ListenerCallbacks {
    certs: Arc<ListenerCerts>,
}

#[async_trait]
impl TlsAccept for ListenerCallbacks {
    /// One `ArcSwap` load per handshake: a reload never waits for, nor
    /// disturbs, a handshake in progress.
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        if let Err(e) = self.certs.current().serve(ssl) {
            // The handshake fails without a certificate; the set was
            // checked when it was loaded, so this is OpenSSL refusing it.
            log::error!("TLS handshake: the listener certificate was not accepted: {e}");
        }
    }

    /// The handshake only completes with a certificate the CA verified
    /// (`FAIL_IF_NO_PEER_CERT`), so the one present here is verified.
    async fn handshake_complete_callback(
        &self,
        ssl: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        if !self.certs.verifies_clients() {
            return None;
        }
        let cert = ssl.peer_certificate()?;
        Some(Arc::new(ClientCertNames(cert_names(&cert))))
    }
}

/// Pingora's TLS settings for the listener: certificates from `certs` at
/// each handshake, ALPN h2 then http/1.1.
pub fn listener_settings(certs: Arc<ListenerCerts>) -> Result<TlsSettings, String> {
    let verifies_clients = certs.verifies_clients();
    let mut settings = TlsSettings::with_callbacks(Box::new(ListenerCallbacks { certs }))
        .map_err(|e| format!("TLS: cannot create the acceptor: {e}"))?;
    if verifies_clients {
        settings.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    settings.set_alpn(ALPN::H2H1);
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_core::tls::hash::MessageDigest;
    use pingora_core::tls::pkey::PKey;
    use pingora_core::tls::x509::extension::SubjectAlternativeName;
    use pingora_core::tls::x509::{X509NameBuilder, X509};

    fn cert(cn: &str, sans: &[&str]) -> X509 {
        let key = PKey::generate_ed25519().unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        if !sans.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for s in sans {
                san.dns(s);
            }
            let ext = san.build(&b.x509v3_context(None, None)).unwrap();
            b.append_extension(ext).unwrap();
        }
        b.sign(&key, MessageDigest::null()).unwrap();
        b.build()
    }

    #[test]
    fn names_are_the_dns_sans_then_the_cn_lower_cased() {
        let c = cert("Auth-Proxy", &["Proxy.Example.com", "alt.example.com"]);
        assert_eq!(
            cert_names(&c),
            ["proxy.example.com", "alt.example.com", "auth-proxy"]
        );
        assert_eq!(cert_names(&cert("only-cn", &[])), ["only-cn"]);
        assert_eq!(usable_name(b"proxy.internal\0.evil"), None);
        assert_eq!(usable_name(b""), None);
    }

    #[test]
    fn no_digest_no_names() {
        assert!(client_cert_names(None).is_none());
    }
}
