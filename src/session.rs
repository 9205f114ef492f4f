//! MCP session affinity without shared state. The client's session id is a
//! token sealed with AES-256-GCM: the replica, the upstream's own session id
//! and an expiry are encrypted (a client cannot read or change them), and
//! the token's kind, the server and the principal are bound as associated
//! data. Any gateway replica with the same key routes it to the same
//! backend; a token that is forged, expired, of the other transport, or
//! presented to another server or by another principal does not open.
//!
//! Layout (then base64url, no padding):
//! `version (1) | nonce (12) | AES-GCM( replica (8) | expiry (4) | upstream id ) | tag (16)`,
//! 41 bytes plus the upstream id: 98 characters for a 32-character id.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use smallvec::SmallVec;

type HmacSha256 = Hmac<Sha256>;

/// Only the version is readable without the key, so the format can change.
const VERSION: u8 = 2;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// Backend id and expiry, ahead of the upstream id in the plaintext.
const FIXED_LEN: usize = 8 + 4;
/// Upstream session ids longer than this are not wrapped (the spec's ids are short).
pub const MAX_UPSTREAM_ID: usize = 1024;
const MAX_RAW: usize = HEADER_LEN + FIXED_LEN + MAX_UPSTREAM_ID + TAG_LEN;
const MAX_TOKEN: usize = (MAX_RAW * 4).div_ceil(3);

/// Which transport a token was issued for. A token used with the other one
/// would hand the upstream a message path as a session id, or a session id
/// as a request path, so the kind is part of what the tag authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Streamable HTTP `Mcp-Session-Id`: wraps the upstream's session id.
    Streamable = 1,
    /// Legacy HTTP+SSE `sessionId` query parameter: wraps the upstream's message path.
    LegacySse = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    Malformed,
    /// Wrong key, kind, server or principal, or tampered with.
    DoesNotOpen,
    Expired,
    /// The token opened but its backend is gone or refuses connections.
    BackendGone,
}

impl SessionError {
    pub fn message(self) -> &'static str {
        match self {
            SessionError::Malformed | SessionError::DoesNotOpen => "unknown session",
            SessionError::Expired => "session expired",
            SessionError::BackendGone => {
                "session's backend is unavailable; initialize a new session"
            }
        }
    }
}

#[derive(Debug)]
pub enum SealError {
    TooLong,
    NoRandomness(getrandom::Error),
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::TooLong => write!(f, "upstream session id too long to wrap"),
            SealError::NoRandomness(e) => write!(f, "no nonce from the OS random source: {e}"),
        }
    }
}

/// The OS random source failed while making the key: without it, tokens
/// could be forged, so the gateway must not start.
#[derive(Debug)]
pub struct KeyError(pub getrandom::Error);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot make a random session key (the OS random source failed: {}); \
             set SESSION_SECRET or JWT_SECRET_KEY, or fix the OS random source",
            self.0
        )
    }
}

impl std::error::Error for KeyError {}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedSession {
    /// The replica the session lives on (`upstream::replica_id`).
    pub replica: u64,
    pub upstream_id: String,
}

/// What to send the client when the upstream names its session on a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The client's token already names this session: send it back as it came.
    Keep,
    /// A session the request did not carry: seal a new token.
    Issue,
}

/// Issue a token once per upstream session: re-sealing on every response
/// would show the client a new id each time (and cost a seal per response).
pub fn reply_for(carried: Option<&PinnedSession>, upstream_id: &str) -> Reply {
    match carried {
        Some(t) if t.upstream_id == upstream_id => Reply::Keep,
        _ => Reply::Issue,
    }
}

/// The sealing key, expanded once.
#[derive(Clone)]
pub struct SessionKeys {
    cipher: Aes256Gcm,
}

impl SessionKeys {
    fn from_key(key: &[u8; 32]) -> Self {
        SessionKeys {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// A 256-bit key from a secret of any length, separated by its source so
    /// that one string set as both secrets does not give the same key.
    fn derive(secret: &str, label: &[u8]) -> Self {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
            .expect("HMAC accepts any key length");
        mac.update(b"mcp-gateway session token v2 key from ");
        mac.update(label);
        Self::from_key(&mac.finalize().into_bytes().into())
    }

    /// `SESSION_SECRET`, else a key derived from `JWT_SECRET_KEY` (so a JWT
    /// can't be replayed as a session token or the reverse), else random.
    pub fn from_secrets(
        session_secret: Option<&str>,
        jwt_secret: Option<&str>,
    ) -> Result<Self, KeyError> {
        Self::from_secrets_with(session_secret, jwt_secret, getrandom::fill)
    }

    fn from_secrets_with(
        session_secret: Option<&str>,
        jwt_secret: Option<&str>,
        random: impl FnOnce(&mut [u8]) -> Result<(), getrandom::Error>,
    ) -> Result<Self, KeyError> {
        match (session_secret, jwt_secret) {
            (Some(s), _) => Ok(Self::derive(s, b"SESSION_SECRET")),
            (None, Some(j)) => Ok(Self::derive(j, b"JWT_SECRET_KEY")),
            (None, None) => {
                let mut key = [0u8; 32];
                random(&mut key).map_err(KeyError)?;
                Ok(Self::from_key(&key))
            }
        }
    }

    /// Wraps an upstream session id for `server` and `principal`.
    pub fn seal(
        &self,
        kind: SessionKind,
        server: &str,
        principal: &str,
        pinned: &PinnedSession,
        expires_at: u64,
    ) -> Result<String, SealError> {
        self.seal_with(kind, server, principal, pinned, expires_at, getrandom::fill)
    }

    fn seal_with(
        &self,
        kind: SessionKind,
        server: &str,
        principal: &str,
        pinned: &PinnedSession,
        expires_at: u64,
        random: impl FnOnce(&mut [u8]) -> Result<(), getrandom::Error>,
    ) -> Result<String, SealError> {
        let id = pinned.upstream_id.as_bytes();
        if id.len() > MAX_UPSTREAM_ID {
            return Err(SealError::TooLong);
        }
        // A random nonce is safe here: one seal per upstream session keeps
        // the count far below the 2^32 messages AES-GCM allows per key.
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce).map_err(SealError::NoRandomness)?;
        // Seconds since the epoch fit 32 bits until 2106; saturate beyond.
        let expiry = u32::try_from(expires_at).unwrap_or(u32::MAX);
        let mut buf: SmallVec<[u8; 160]> = SmallVec::new();
        buf.push(VERSION);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(&pinned.replica.to_be_bytes());
        buf.extend_from_slice(&expiry.to_be_bytes());
        buf.extend_from_slice(id);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &associated_data(kind, server, principal),
                &mut buf[HEADER_LEN..],
            )
            // Only fails beyond 2^36 bytes of plaintext.
            .map_err(|_| SealError::TooLong)?;
        buf.extend_from_slice(&tag);
        Ok(B64.encode(&buf))
    }

    pub fn open(
        &self,
        kind: SessionKind,
        server: &str,
        principal: &str,
        token: &str,
        now: u64,
    ) -> Result<PinnedSession, SessionError> {
        if token.len() > MAX_TOKEN {
            return Err(SessionError::Malformed);
        }
        let mut raw = B64.decode(token).map_err(|_| SessionError::Malformed)?;
        if raw.len() < HEADER_LEN + FIXED_LEN + TAG_LEN || raw[0] != VERSION {
            return Err(SessionError::Malformed);
        }
        let tag_at = raw.len() - TAG_LEN;
        let (head, rest) = raw.split_at_mut(HEADER_LEN);
        let (body, tag) = rest.split_at_mut(tag_at - HEADER_LEN);
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&head[1..]),
                &associated_data(kind, server, principal),
                body,
                Tag::from_slice(tag),
            )
            .map_err(|_| SessionError::DoesNotOpen)?;
        let mut replica = [0u8; 8];
        replica.copy_from_slice(&body[..8]);
        let mut expiry = [0u8; 4];
        expiry.copy_from_slice(&body[8..FIXED_LEN]);
        if now >= u64::from(u32::from_be_bytes(expiry)) {
            return Err(SessionError::Expired);
        }
        // Reuse the decoded buffer as the id's storage: one allocation per open.
        raw.truncate(tag_at);
        raw.drain(..HEADER_LEN + FIXED_LEN);
        let upstream_id = String::from_utf8(raw).map_err(|_| SessionError::Malformed)?;
        Ok(PinnedSession {
            replica: u64::from_be_bytes(replica),
            upstream_id,
        })
    }
}

/// What the tag binds besides the plaintext. The server's length comes
/// first so that no (server, principal) pair encodes like another.
fn associated_data(kind: SessionKind, server: &str, principal: &str) -> SmallVec<[u8; 128]> {
    let mut ad = SmallVec::new();
    ad.push(VERSION);
    ad.push(kind as u8);
    ad.extend_from_slice(&(server.len() as u64).to_be_bytes());
    ad.extend_from_slice(server.as_bytes());
    ad.extend_from_slice(principal.as_bytes());
    ad
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionKind::{LegacySse, Streamable};

    fn keys() -> SessionKeys {
        SessionKeys::from_secrets(Some("k"), None).unwrap()
    }

    fn pinned() -> PinnedSession {
        PinnedSession {
            replica: 0xfeed_beef,
            upstream_id: "c0ffee-42".into(),
        }
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let t = k
            .seal(Streamable, "github", "alice", &pinned(), 2000)
            .unwrap();
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(
            k.open(Streamable, "github", "alice", &t, 1000),
            Ok(pinned())
        );
        let legacy = k
            .seal(LegacySse, "github", "alice", &pinned(), 2000)
            .unwrap();
        assert_eq!(
            k.open(LegacySse, "github", "alice", &legacy, 1000),
            Ok(pinned())
        );
    }

    #[test]
    fn the_payload_is_not_readable() {
        let k = keys();
        let t = PinnedSession {
            replica: 0x0102_0304_0506_0708,
            upstream_id: "upstream-session-secret".into(),
        };
        let raw = B64
            .decode(k.seal(Streamable, "s", "p", &t, 2000).unwrap())
            .unwrap();
        let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(b"upstream-session"));
        assert!(!contains(&t.replica.to_be_bytes()));
        assert!(!contains(&2000u32.to_be_bytes()));
        assert_eq!(raw.len(), 41 + t.upstream_id.len());
    }

    #[test]
    fn tokens_of_one_session_differ_but_each_opens() {
        let k = keys();
        let a = k.seal(Streamable, "s", "p", &pinned(), 2000).unwrap();
        let b = k.seal(Streamable, "s", "p", &pinned(), 2000).unwrap();
        assert_ne!(a, b, "a fresh nonce per seal");
        assert_eq!(k.open(Streamable, "s", "p", &b, 1), Ok(pinned()));
    }

    #[test]
    fn refuses_another_kind_principal_server_or_key() {
        let k = keys();
        let t = k
            .seal(Streamable, "github", "alice", &pinned(), 2000)
            .unwrap();
        let refused = Err(SessionError::DoesNotOpen);
        assert_eq!(k.open(LegacySse, "github", "alice", &t, 1000), refused);
        assert_eq!(k.open(Streamable, "github", "bob", &t, 1000), refused);
        assert_eq!(k.open(Streamable, "jira", "alice", &t, 1000), refused);
        // The server/principal boundary is not ambiguous.
        assert_eq!(k.open(Streamable, "githu", "balice", &t, 1000), refused);
        let legacy = k
            .seal(LegacySse, "github", "alice", &pinned(), 2000)
            .unwrap();
        assert_eq!(
            k.open(Streamable, "github", "alice", &legacy, 1000),
            refused
        );
        let other = SessionKeys::from_secrets(Some("other"), None).unwrap();
        assert_eq!(other.open(Streamable, "github", "alice", &t, 1000), refused);
    }

    #[test]
    fn refuses_expired_and_tampered_tokens() {
        let k = keys();
        let t = k.seal(Streamable, "s", "p", &pinned(), 2000).unwrap();
        assert_eq!(
            k.open(Streamable, "s", "p", &t, 2000),
            Err(SessionError::Expired)
        );
        let raw = B64.decode(&t).unwrap();
        for at in [1, HEADER_LEN, HEADER_LEN + 9, raw.len() - 1] {
            let mut bad = raw.clone();
            bad[at] ^= 1;
            assert_eq!(
                k.open(Streamable, "s", "p", &B64.encode(bad), 1000),
                Err(SessionError::DoesNotOpen),
                "byte {at} flipped"
            );
        }
        let mut old = raw.clone();
        old[0] = 1;
        let malformed = Err(SessionError::Malformed);
        assert_eq!(k.open(Streamable, "s", "p", &B64.encode(old), 1), malformed);
        assert_eq!(k.open(Streamable, "s", "p", "not base64!", 1000), malformed);
        assert_eq!(k.open(Streamable, "s", "p", "", 1000), malformed);
        assert_eq!(
            k.open(Streamable, "s", "p", &B64.encode(&raw[..40]), 1),
            malformed
        );
        assert_eq!(
            k.open(Streamable, "s", "p", &"A".repeat(5000), 1000),
            malformed
        );
    }

    #[test]
    fn keys_depend_on_the_secret_and_its_source() {
        let a = SessionKeys::from_secrets(None, Some("jwt-a")).unwrap();
        let b = SessionKeys::from_secrets(None, Some("jwt-b")).unwrap();
        let t = a.seal(Streamable, "s", "p", &pinned(), 2000).unwrap();
        assert!(a.open(Streamable, "s", "p", &t, 1).is_ok());
        assert!(b.open(Streamable, "s", "p", &t, 1).is_err());
        let direct = SessionKeys::from_secrets(Some("jwt-a"), None).unwrap();
        assert!(direct.open(Streamable, "s", "p", &t, 1).is_err());
        let again = SessionKeys::from_secrets(None, Some("jwt-a")).unwrap();
        assert!(again.open(Streamable, "s", "p", &t, 1).is_ok());
    }

    #[test]
    fn a_failing_os_random_source_is_an_error_not_a_weak_key() {
        let fail = |_: &mut [u8]| Err(getrandom::Error::UNSUPPORTED);
        assert!(SessionKeys::from_secrets_with(None, None, fail).is_err());
        // The secrets need no randomness.
        assert!(SessionKeys::from_secrets_with(Some("s"), None, fail).is_ok());
        assert!(SessionKeys::from_secrets_with(None, Some("j"), fail).is_ok());
        let k = keys();
        assert!(matches!(
            k.seal_with(Streamable, "s", "p", &pinned(), 2, fail),
            Err(SealError::NoRandomness(_))
        ));
    }

    #[test]
    fn too_long_upstream_ids_are_not_wrapped() {
        let t = PinnedSession {
            replica: 1,
            upstream_id: "x".repeat(MAX_UPSTREAM_ID + 1),
        };
        assert!(matches!(
            keys().seal(Streamable, "s", "p", &t, 2),
            Err(SealError::TooLong)
        ));
        let longest = PinnedSession {
            replica: 1,
            upstream_id: "x".repeat(MAX_UPSTREAM_ID),
        };
        let token = keys().seal(Streamable, "s", "p", &longest, 2).unwrap();
        assert_eq!(keys().open(Streamable, "s", "p", &token, 1), Ok(longest));
    }

    #[test]
    fn a_token_is_issued_once_per_upstream_session() {
        let t = pinned();
        assert_eq!(reply_for(None, "c0ffee-42"), Reply::Issue);
        assert_eq!(reply_for(Some(&t), "c0ffee-42"), Reply::Keep);
        assert_eq!(reply_for(Some(&t), "another"), Reply::Issue);
    }
}
