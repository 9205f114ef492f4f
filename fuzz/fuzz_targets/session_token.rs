//! `SessionKeys::open` on arbitrary tokens, and `seal` → `open` round trips.
//! Invariants: opening never panics; a sealed token opens back to what was
//! sealed until it expires, then says `Expired`; it never opens for another
//! server or principal.
//! Written against the session API of issue 7's start (one token kind, HMAC);
//! adapt when the token kinds / AEAD land.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcp_gateway::session::{SessionError, SessionKeys, SessionTarget, MAX_UPSTREAM_ID};

#[derive(Arbitrary, Debug)]
struct Input {
    secret: Vec<u8>,
    server: String,
    principal: String,
    /// Opened as it is: a client's `Mcp-Session-Id`.
    token: String,
    now: u64,
    backend: u64,
    upstream_id: String,
    expires_at: u64,
    other_server: String,
    other_principal: String,
}

fuzz_target!(|input: Input| {
    let keys = SessionKeys::new(&input.secret);
    let _ = keys.open(&input.server, &input.principal, &input.token, input.now);

    let target = SessionTarget {
        backend: input.backend,
        upstream_id: input.upstream_id.clone(),
    };
    let sealed = keys.seal(&input.server, &input.principal, &target, input.expires_at);
    let Some(token) = sealed else {
        assert!(
            input.upstream_id.len() > MAX_UPSTREAM_ID,
            "seal refused a {}-byte upstream id",
            input.upstream_id.len()
        );
        return;
    };
    let opened = keys.open(&input.server, &input.principal, &token, input.now);
    if input.now < input.expires_at {
        assert_eq!(opened, Ok(target), "a sealed token did not open back");
    } else {
        assert_eq!(opened, Err(SessionError::Expired));
    }
    // Server names are [a-z0-9-] and principals are header values or the
    // anonymous one: no NUL, the separator of what the MAC covers.
    let no_nul = |s: &str| !s.contains('\0');
    if no_nul(&input.server)
        && no_nul(&input.principal)
        && no_nul(&input.other_server)
        && no_nul(&input.other_principal)
        && (&input.other_server, &input.other_principal) != (&input.server, &input.principal)
    {
        let foreign = keys.open(&input.other_server, &input.other_principal, &token, 0);
        assert_eq!(
            foreign,
            Err(SessionError::BadSignature),
            "a token opened for another server or principal"
        );
    }
});
