//! `SessionKeys::open` on arbitrary tokens, and `seal` → `open` round trips.
//! Invariants: opening never panics; a sealed token opens back to what was
//! sealed until it expires, then says `Expired`; it never opens for another
//! transport, server or principal.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcp_gateway::session::{
    PinnedSession, SealError, SessionError, SessionKeys, SessionKind, MAX_UPSTREAM_ID,
};

#[derive(Arbitrary, Debug)]
struct Input {
    secret: String,
    legacy: bool,
    server: String,
    principal: String,
    /// Opened as it is: a client's `Mcp-Session-Id` or `sessionId`.
    token: String,
    now: u32,
    backend: u64,
    upstream_id: String,
    expires_at: u32,
    other_server: String,
    other_principal: String,
}

fuzz_target!(|input: Input| {
    let Ok(keys) = SessionKeys::from_secrets(Some(&input.secret), None) else {
        return;
    };
    let (kind, other_kind) = if input.legacy {
        (SessionKind::LegacySse, SessionKind::Streamable)
    } else {
        (SessionKind::Streamable, SessionKind::LegacySse)
    };
    let (now, expires_at) = (u64::from(input.now), u64::from(input.expires_at));
    let _ = keys.open(kind, &input.server, &input.principal, &input.token, now);

    let target = PinnedSession {
        replica: input.backend,
        upstream_id: input.upstream_id.clone(),
    };
    let token = match keys.seal(kind, &input.server, &input.principal, &target, expires_at) {
        Ok(token) => token,
        Err(SealError::TooLong) => {
            assert!(
                input.upstream_id.len() > MAX_UPSTREAM_ID,
                "seal refused a short id"
            );
            return;
        }
        Err(e) => panic!("seal failed: {e}"),
    };
    assert!(
        token.bytes().all(|b| b.is_ascii_graphic()),
        "token not ASCII"
    );
    let opened = keys.open(kind, &input.server, &input.principal, &token, now);
    if now < expires_at {
        assert_eq!(opened, Ok(target), "a sealed token did not open back");
    } else {
        assert_eq!(opened, Err(SessionError::Expired));
    }
    let wrong_kind = keys.open(other_kind, &input.server, &input.principal, &token, 0);
    assert_eq!(
        wrong_kind,
        Err(SessionError::DoesNotOpen),
        "opened as the other kind"
    );
    if (&input.other_server, &input.other_principal) != (&input.server, &input.principal) {
        let foreign = keys.open(kind, &input.other_server, &input.other_principal, &token, 0);
        assert_eq!(
            foreign,
            Err(SessionError::DoesNotOpen),
            "a token opened for another server or principal"
        );
    }
});
