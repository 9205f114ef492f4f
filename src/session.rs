//! MCP session affinity without shared state. The client's `Mcp-Session-Id`
//! is a MAC-signed token naming the backend, the upstream's own session id
//! and an expiry, bound to the server and the principal. Any gateway replica
//! with the same secret routes it to the same backend; a token that is
//! forged, expired, or presented by another principal does not open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
/// version + backend id + expiry.
const HEADER_LEN: usize = 1 + 8 + 8;
/// Upstream session ids longer than this are not wrapped (the spec's ids are short).
pub const MAX_UPSTREAM_ID: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    Malformed,
    BadSignature,
    Expired,
}

impl SessionError {
    pub fn message(self) -> &'static str {
        match self {
            SessionError::Malformed | SessionError::BadSignature => "unknown session",
            SessionError::Expired => "session expired",
        }
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTarget {
    pub backend: u64,
    pub upstream_id: String,
}

/// The signing key, keyed once; cloning a keyed MAC skips re-hashing the key.
#[derive(Clone)]
pub struct SessionKeys {
    mac: HmacSha256,
}

impl SessionKeys {
    pub fn new(secret: &[u8]) -> Self {
        SessionKeys {
            mac: HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length"),
        }
    }

    /// `SESSION_SECRET`, else a key derived from `JWT_SECRET_KEY` (so a JWT
    /// can't be replayed as a session token or the reverse), else random.
    pub fn from_secrets(session_secret: Option<&str>, jwt_secret: Option<&str>) -> Self {
        match (session_secret, jwt_secret) {
            (Some(s), _) => Self::new(s.as_bytes()),
            (None, Some(j)) => {
                let mut derive =
                    HmacSha256::new_from_slice(j.as_bytes()).expect("HMAC accepts any key length");
                derive.update(b"mcp-gateway session key v1");
                Self::new(&derive.finalize().into_bytes())
            }
            (None, None) => {
                let mut key = [0u8; 32];
                fill_random(&mut key);
                Self::new(&key)
            }
        }
    }

    fn tag(&self, payload: &[u8], server: &str, principal: &str) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(payload);
        mac.update(&[0]);
        mac.update(server.as_bytes());
        mac.update(&[0]);
        mac.update(principal.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Wraps an upstream session id; `None` if it is too long to carry.
    pub fn seal(
        &self,
        server: &str,
        principal: &str,
        target: &SessionTarget,
        expires_at: u64,
    ) -> Option<String> {
        if target.upstream_id.len() > MAX_UPSTREAM_ID {
            return None;
        }
        let mut buf = Vec::with_capacity(HEADER_LEN + target.upstream_id.len() + MAC_LEN);
        buf.push(VERSION);
        buf.extend_from_slice(&target.backend.to_be_bytes());
        buf.extend_from_slice(&expires_at.to_be_bytes());
        buf.extend_from_slice(target.upstream_id.as_bytes());
        let tag = self.tag(&buf, server, principal);
        buf.extend_from_slice(&tag);
        Some(B64.encode(buf))
    }

    pub fn open(
        &self,
        server: &str,
        principal: &str,
        token: &str,
        now: u64,
    ) -> Result<SessionTarget, SessionError> {
        if token.len() > (HEADER_LEN + MAX_UPSTREAM_ID + MAC_LEN) * 4 / 3 + 4 {
            return Err(SessionError::Malformed);
        }
        let raw = B64.decode(token).map_err(|_| SessionError::Malformed)?;
        if raw.len() < HEADER_LEN + MAC_LEN || raw[0] != VERSION {
            return Err(SessionError::Malformed);
        }
        let (payload, tag) = raw.split_at(raw.len() - MAC_LEN);
        let expected = self.tag(payload, server, principal);
        if !bool::from(expected.ct_eq(tag)) {
            return Err(SessionError::BadSignature);
        }
        let backend = u64::from_be_bytes(
            payload[1..9]
                .try_into()
                .map_err(|_| SessionError::Malformed)?,
        );
        let expires = u64::from_be_bytes(
            payload[9..17]
                .try_into()
                .map_err(|_| SessionError::Malformed)?,
        );
        if now >= expires {
            return Err(SessionError::Expired);
        }
        let upstream_id = String::from_utf8(payload[HEADER_LEN..].to_vec())
            .map_err(|_| SessionError::Malformed)?;
        Ok(SessionTarget {
            backend,
            upstream_id,
        })
    }
}

fn fill_random(buf: &mut [u8]) {
    use std::io::Read;
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok();
    if !ok {
        // No /dev/urandom: fall back to the std hasher's per-process random keys.
        use std::hash::{BuildHasher, Hasher};
        for chunk in buf.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            let bytes = h.finish().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SessionTarget {
        SessionTarget {
            backend: 0xfeed_beef,
            upstream_id: "c0ffee-42".into(),
        }
    }

    #[test]
    fn round_trip() {
        let k = SessionKeys::new(b"k");
        let t = k.seal("github", "alice", &target(), 2000).unwrap();
        assert!(t.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(k.open("github", "alice", &t, 1000), Ok(target()));
    }

    #[test]
    fn refuses_another_principal_server_or_key() {
        let k = SessionKeys::new(b"k");
        let t = k.seal("github", "alice", &target(), 2000).unwrap();
        assert_eq!(
            k.open("github", "bob", &t, 1000),
            Err(SessionError::BadSignature)
        );
        assert_eq!(
            k.open("jira", "alice", &t, 1000),
            Err(SessionError::BadSignature)
        );
        let other = SessionKeys::new(b"other");
        assert_eq!(
            other.open("github", "alice", &t, 1000),
            Err(SessionError::BadSignature)
        );
    }

    #[test]
    fn refuses_expired_and_tampered_tokens() {
        let k = SessionKeys::new(b"k");
        let t = k.seal("s", "p", &target(), 2000).unwrap();
        assert_eq!(k.open("s", "p", &t, 2000), Err(SessionError::Expired));
        let mut raw = B64.decode(&t).unwrap();
        raw[3] ^= 1;
        assert_eq!(
            k.open("s", "p", &B64.encode(raw), 1000),
            Err(SessionError::BadSignature)
        );
        assert_eq!(
            k.open("s", "p", "not base64!", 1000),
            Err(SessionError::Malformed)
        );
        assert_eq!(k.open("s", "p", "", 1000), Err(SessionError::Malformed));
        assert_eq!(
            k.open("s", "p", &"A".repeat(5000), 1000),
            Err(SessionError::Malformed)
        );
    }

    #[test]
    fn derived_keys_depend_on_the_secret() {
        let a = SessionKeys::from_secrets(None, Some("jwt-a"));
        let b = SessionKeys::from_secrets(None, Some("jwt-b"));
        let t = a.seal("s", "p", &target(), 2000).unwrap();
        assert!(a.open("s", "p", &t, 1).is_ok());
        assert!(b.open("s", "p", &t, 1).is_err());
        let direct = SessionKeys::from_secrets(Some("jwt-a"), None);
        assert!(direct.open("s", "p", &t, 1).is_err());
    }

    #[test]
    fn too_long_upstream_ids_are_not_wrapped() {
        let k = SessionKeys::new(b"k");
        let t = SessionTarget {
            backend: 1,
            upstream_id: "x".repeat(MAX_UPSTREAM_ID + 1),
        };
        assert!(k.seal("s", "p", &t, 2).is_none());
    }
}
