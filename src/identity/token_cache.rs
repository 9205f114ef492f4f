//! Verified bearer tokens, remembered until they expire: an MCP client sends
//! the same JWT on every call, and verifying it (base64, HMAC, JSON) costs
//! more than the rest of the request path together.
//!
//! The key is the whole token, signature included, so a token that differs
//! in one byte is never a hit; the expiry is checked on every hit.
//!
//! Reads take no lock: the map is split into shards, each an immutable
//! `HashMap` behind an `ArcSwap`, and a hit clones the shared user name (a
//! reference count). An insert copies one shard and swaps it in; a shard
//! holds at most `capacity / 256` entries (40 for 10,000), so a flood of
//! distinct tokens costs each insert a copy of at most 40 entries (20 on
//! average), never of the whole cache. Copying keeps the hash table's layout
//! (no rehash) and the entries are reference-counted, so a copy is a memcpy
//! plus two increments per entry.
//! A full shard first drops its expired entries; if none has expired it
//! starts empty again (a new generation): a flood evicts its own entries as
//! much as anyone's, and an evicted token is simply verified again.

use crate::identity::UserName;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;

/// A power of two, so a shard is picked with a mask.
const MAX_SHARDS: usize = 256;
/// Fewer, fuller shards for small caches (tests): a shard of 32 entries
/// copies in well under a microsecond.
const MIN_SHARD_LEN: usize = 32;

#[derive(Clone)]
struct Entry {
    user: UserName,
    expires: u64,
}

type Shard = HashMap<Arc<str>, Entry>;

pub struct TokenCache {
    shards: Box<[ArcSwap<Shard>]>,
    shard_capacity: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        let shards = (capacity / MIN_SHARD_LEN)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two();
        let shard_capacity = capacity.div_ceil(shards);
        TokenCache {
            shards: (0..shards)
                .map(|_| ArcSwap::from_pointee(Shard::with_capacity(shard_capacity)))
                .collect(),
            shard_capacity,
        }
    }

    /// The shard of a token, from the bytes just before its end: those are
    /// the signature, HMAC output, uniform and not choosable without the key,
    /// and only verified tokens are ever inserted. The last character is
    /// skipped because it carries padding bits. Costs nothing next to hashing
    /// the whole token twice.
    fn shard(&self, token: &str) -> &ArcSwap<Shard> {
        let bytes = token.as_bytes();
        let tail = &bytes[bytes.len().saturating_sub(9)..bytes.len().saturating_sub(1)];
        let mix = tail
            .iter()
            .fold(0u32, |h, &b| h.rotate_left(5) ^ u32::from(b));
        &self.shards[mix as usize & (self.shards.len() - 1)]
    }

    /// The user of a verified, unexpired token.
    pub fn get(&self, token: &str, now: u64) -> Option<UserName> {
        let shard = self.shard(token).load();
        let entry = shard.get(token)?;
        (now < entry.expires).then(|| entry.user.clone())
    }

    pub fn insert(&self, token: &str, user: &UserName, expires: u64, now: u64) {
        if self.shard_capacity == 0 || expires <= now {
            return;
        }
        let key: Arc<str> = token.into();
        let entry = Entry {
            user: user.clone(),
            expires,
        };
        // Compare-and-swap, retried if another insert swapped the shard first.
        self.shard(token).rcu(|current| {
            let full = current.len() >= self.shard_capacity && !current.contains_key(token);
            let mut next = if !full {
                (**current).clone()
            } else if current.values().any(|e| e.expires <= now) {
                let mut live = Shard::with_capacity(self.shard_capacity);
                live.extend(
                    current
                        .iter()
                        .filter(|(_, e)| now < e.expires)
                        .map(|(k, e)| (k.clone(), e.clone())),
                );
                live
            } else {
                // Decided before copying: a flood's full shard is not copied
                // only to be thrown away.
                Shard::with_capacity(self.shard_capacity)
            };
            next.insert(key.clone(), entry.clone());
            next
        });
    }

    #[cfg(test)]
    fn shard_lens(&self) -> Vec<usize> {
        self.shards.iter().map(|s| s.load().len()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> UserName {
        UserName::from(s)
    }

    #[test]
    fn hits_until_expiry_only() {
        let c = TokenCache::new(10);
        c.insert("t", &name("alice"), 100, 0);
        assert_eq!(c.get("t", 99), Some(name("alice")));
        assert_eq!(c.get("t", 100), None);
        assert_eq!(c.get("t2", 1), None);
        c.insert("gone", &name("bob"), 5, 5);
        assert_eq!(c.get("gone", 0), None, "already expired: not remembered");
    }

    #[test]
    fn hits_share_the_remembered_name() {
        let c = TokenCache::new(10);
        c.insert("t", &name("alice"), 100, 0);
        let (a, b) = (c.get("t", 1).unwrap(), c.get("t", 1).unwrap());
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }

    #[test]
    fn stays_bounded_per_shard() {
        let c = TokenCache::new(3);
        for i in 0..10 {
            c.insert(&format!("t{i}"), &name("u"), 100, 0);
            assert!(c.shard_lens().iter().all(|&n| n <= 3));
        }
        assert_eq!(c.get("t9", 1), Some(name("u")));
    }

    #[test]
    fn a_flood_copies_small_shards_and_keeps_the_total_bounded() {
        let c = TokenCache::new(10_000);
        assert_eq!(c.shards.len(), MAX_SHARDS);
        assert!(c.shard_capacity <= 40);
        // Token-like keys: the tail varies the way a signature does.
        for i in 0..50_000u32 {
            let token = format!(
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.{:016x}A",
                u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            );
            c.insert(&token, &name("u"), 100, 0);
        }
        let lens = c.shard_lens();
        assert!(lens.iter().all(|&n| n <= c.shard_capacity), "{lens:?}");
        assert!(lens.iter().sum::<usize>() <= 10_240);
        // Spread: no shard is left unused by such a flood.
        assert!(lens.iter().all(|&n| n > 0), "{lens:?}");
    }

    #[test]
    fn a_full_shard_drops_expired_entries_first() {
        let c = TokenCache::new(2);
        c.insert("old", &name("a"), 10, 0);
        c.insert("live", &name("b"), 100, 0);
        c.insert("new", &name("c"), 100, 50);
        assert_eq!(c.get("live", 50), Some(name("b")));
        assert_eq!(c.get("new", 50), Some(name("c")));
    }
}
