//! Upstream credentials at rest: AES-256-GCM under a key derived from
//! `AUTH_ENCRYPTION_SECRET`, a random nonce per write, and the server's name
//! as associated data, so a ciphertext copied to another row does not open.

use crate::config::{Secret, UpstreamCredential};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use http::HeaderName;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The reference's default; a deployment that keeps it encrypts with a key
/// anyone can read in the reference's documentation.
pub const DEFAULT_ENCRYPTION_SECRET: &str = "my-test-salt";

/// First byte of every sealed value, so a later format can be told apart.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// What the key check in the database's meta row seals.
const KEY_CHECK_NAME: &str = "\0key-check";

/// Seals and opens credentials. Cheap to clone.
#[derive(Clone)]
pub struct CredentialCipher {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for CredentialCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialCipher(<key>)")
    }
}

/// The credential as sealed: its plaintext form, never stored as such.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Plain {
    Bearer { token: String },
    Basic { username: String, password: String },
    Headers { headers: Vec<(String, String)> },
}

impl CredentialCipher {
    pub fn new(secret: &Secret) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"mcp-gateway registry"), secret.expose().as_bytes());
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
        hk.expand(b"upstream credentials v1", &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        CredentialCipher {
            cipher: Aes256Gcm::new(&key.into()),
        }
    }

    /// `None` for no credential: nothing to store.
    pub fn seal(&self, server: &str, credential: &UpstreamCredential) -> Option<Vec<u8>> {
        let plain = match credential {
            UpstreamCredential::None => return None,
            UpstreamCredential::Bearer(token) => Plain::Bearer {
                token: token.expose().to_string(),
            },
            UpstreamCredential::Basic { username, password } => Plain::Basic {
                username: username.clone(),
                password: password.expose().to_string(),
            },
            UpstreamCredential::Headers(headers) => Plain::Headers {
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_string(), v.expose().to_string()))
                    .collect(),
            },
        };
        let json = serde_json::to_vec(&plain).expect("a credential serialises");
        Some(self.seal_bytes(server, &json))
    }

    pub fn open(&self, server: &str, sealed: Option<&[u8]>) -> Result<UpstreamCredential, String> {
        let Some(sealed) = sealed else {
            return Ok(UpstreamCredential::None);
        };
        let json = self.open_bytes(server, sealed)?;
        let plain: Plain = serde_json::from_slice(&json)
            .map_err(|e| format!("the stored credential is not readable: {e}"))?;
        Ok(match plain {
            Plain::Bearer { token } => UpstreamCredential::Bearer(Secret::new(token)),
            Plain::Basic { username, password } => UpstreamCredential::Basic {
                username,
                password: Secret::new(password),
            },
            Plain::Headers { headers } => UpstreamCredential::Headers(
                headers
                    .into_iter()
                    .map(|(n, v)| {
                        HeaderName::from_bytes(n.as_bytes())
                            .map(|n| (n, Secret::new(v)))
                            .map_err(|_| format!("stored header name {n:?} is invalid"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// A value sealed once per database: if it does not open, this process
    /// has another `AUTH_ENCRYPTION_SECRET` than the one that wrote it.
    pub fn key_check(&self) -> Vec<u8> {
        self.seal_bytes(KEY_CHECK_NAME, b"mcp-gateway")
    }

    pub fn verify_key_check(&self, sealed: &[u8]) -> bool {
        self.open_bytes(KEY_CHECK_NAME, sealed).is_ok()
    }

    fn seal_bytes(&self, server: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source works");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                server.as_bytes(),
                &mut out[1 + NONCE_LEN..],
            )
            .expect("AES-GCM encrypts any message below 64 GiB");
        out.extend_from_slice(&tag);
        out
    }

    fn open_bytes(&self, server: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let undecryptable = || {
            format!(
                "the upstream credential of server {server:?} does not decrypt: \
                 AUTH_ENCRYPTION_SECRET differs from the one it was written with"
            )
        };
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != FORMAT_V1 {
            return Err(undecryptable());
        }
        let (nonce, rest) = sealed[1..].split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plain = body.to_vec();
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                server.as_bytes(),
                &mut plain,
                Tag::from_slice(tag),
            )
            .map(|()| plain)
            .map_err(|_| undecryptable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(secret: &str) -> CredentialCipher {
        CredentialCipher::new(&Secret::new(secret))
    }

    #[test]
    fn credentials_round_trip_and_never_appear_in_the_ciphertext() {
        let c = cipher("s3cret");
        let cases = [
            UpstreamCredential::Bearer(Secret::new("tok-123456")),
            UpstreamCredential::Basic {
                username: "bob".into(),
                password: Secret::new("pw-123456"),
            },
            UpstreamCredential::Headers(vec![(
                HeaderName::from_static("x-api-key"),
                Secret::new("key-123456"),
            )]),
        ];
        for cred in cases {
            let sealed = c.seal("github", &cred).unwrap();
            assert!(!sealed.windows(6).any(|w| w == b"123456"));
            assert_eq!(c.open("github", Some(&sealed)).unwrap(), cred);
        }
        assert_eq!(c.seal("github", &UpstreamCredential::None), None);
        assert_eq!(c.open("github", None).unwrap(), UpstreamCredential::None);
    }

    #[test]
    fn nonces_differ_per_write() {
        let c = cipher("s3cret");
        let cred = UpstreamCredential::Bearer(Secret::new("t"));
        assert_ne!(c.seal("a", &cred), c.seal("a", &cred));
    }

    #[test]
    fn another_row_or_another_secret_does_not_open() {
        let cred = UpstreamCredential::Bearer(Secret::new("t"));
        let sealed = cipher("one").seal("github", &cred).unwrap();
        let moved = cipher("one").open("gitlab", Some(&sealed)).unwrap_err();
        assert!(moved.contains("gitlab"), "{moved}");
        let e = cipher("two").open("github", Some(&sealed)).unwrap_err();
        assert!(e.contains("AUTH_ENCRYPTION_SECRET"), "{e}");
        assert!(cipher("one").open("github", Some(&sealed[..5])).is_err());
        assert!(cipher("one").verify_key_check(&cipher("one").key_check()));
        assert!(!cipher("two").verify_key_check(&cipher("one").key_check()));
    }
}
