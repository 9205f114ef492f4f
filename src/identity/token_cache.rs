//! Verified bearer tokens, remembered until they expire: an MCP client sends
//! the same JWT on every call, and verifying it (base64, HMAC, JSON) costs
//! more than the rest of the request path together.
//!
//! The key is the whole token, signature included, so a token that differs
//! in one byte is never a hit; the expiry is checked on every hit; the map is
//! bounded (cleared when full), so a flood of distinct tokens costs memory
//! for at most `capacity` entries.

use std::collections::HashMap;
use std::sync::RwLock;

pub struct TokenCache {
    map: RwLock<HashMap<Box<str>, (String, u64)>>,
    capacity: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            map: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    /// The user of a verified, unexpired token.
    pub fn get(&self, token: &str, now: u64) -> Option<String> {
        let map = self.map.read().ok()?;
        let (user, expires) = map.get(token)?;
        (now < *expires).then(|| user.clone())
    }

    pub fn insert(&self, token: &str, user: &str, expires: u64) {
        if self.capacity == 0 {
            return;
        }
        if let Ok(mut map) = self.map.write() {
            if map.len() >= self.capacity {
                map.clear();
            }
            map.insert(token.into(), (user.to_string(), expires));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.read().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_until_expiry_only() {
        let c = TokenCache::new(10);
        c.insert("t", "alice", 100);
        assert_eq!(c.get("t", 99).as_deref(), Some("alice"));
        assert_eq!(c.get("t", 100), None);
        assert_eq!(c.get("t2", 1), None);
    }

    #[test]
    fn stays_bounded() {
        let c = TokenCache::new(3);
        for i in 0..10 {
            c.insert(&format!("t{i}"), "u", 100);
            assert!(c.len() <= 3);
        }
        assert_eq!(c.get("t9", 1).as_deref(), Some("u"));
    }
}
