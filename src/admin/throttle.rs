//! Failed-login throttling, per client address and per account: after
//! [`FREE_FAILURES`] failures, each further attempt waits a back-off that
//! doubles per failure up to [`MAX_BACKOFF`]; a success clears the key.
//! The policy is the pure [`Failures`] state machine; [`Throttle`] keeps
//! one per key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before the back-off starts.
pub const FREE_FAILURES: u32 = 5;
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A key with no failure for this long starts over.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Keys remembered at most; beyond, the stalest are dropped, so a flood of
/// addresses cannot grow the map without bound.
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub last: Instant,
}

impl Failures {
    /// How long an attempt at `now` must still wait, if at all.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        if self.count < FREE_FAILURES {
            return None;
        }
        let doublings = (self.count - FREE_FAILURES).min(16);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF);
        let until = self.last + backoff;
        (until > now).then(|| until - now)
    }

    pub fn record(previous: Option<Failures>, now: Instant) -> Failures {
        match previous {
            Some(f) if now.saturating_duration_since(f.last) < FORGET_AFTER => Failures {
                count: f.count.saturating_add(1),
                last: now,
            },
            _ => Failures {
                count: 1,
                last: now,
            },
        }
    }
}

#[derive(Default)]
pub struct Throttle {
    keys: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    /// The longest wait any of `keys` imposes at `now`.
    #[cfg(test)]
    pub fn wait(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| map.get(k).and_then(|f| f.wait(now)))
            .max()
    }

    /// Checks and, if allowed, counts the attempt as a failure in one
    /// step under the lock: concurrent attempts cannot all pass the check
    /// before any failure is recorded (argon2 takes long enough for
    /// hundreds of guesses to be in flight at once). A success then clears
    /// the keys with [`Throttle::succeed`].
    pub fn attempt(&self, keys: &[String], now: Instant) -> Result<(), Duration> {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let wait = keys
            .iter()
            .filter_map(|k| map.get(k).and_then(|f| f.wait(now)))
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        Self::record(&mut map, keys, now);
        Ok(())
    }

    #[cfg(test)]
    pub fn fail(&self, keys: &[String], now: Instant) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        Self::record(&mut map, keys, now);
    }

    fn record(map: &mut HashMap<String, Failures>, keys: &[String], now: Instant) {
        if map.len() >= MAX_KEYS {
            map.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
            if map.len() >= MAX_KEYS {
                let mut lasts: Vec<Instant> = map.values().map(|f| f.last).collect();
                lasts.sort_unstable();
                let cutoff = lasts[lasts.len() / 2];
                map.retain(|_, f| f.last > cutoff);
            }
        }
        for key in keys {
            let next = Failures::record(map.get(key).copied(), now);
            map.insert(key.clone(), next);
        }
    }

    pub fn succeed(&self, keys: &[String]) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_are_free_then_the_wait_doubles() {
        let t0 = Instant::now();
        let mut f = None;
        for _ in 0..FREE_FAILURES - 1 {
            f = Some(Failures::record(f, t0));
        }
        assert_eq!(f.unwrap().wait(t0), None);
        let fifth = Failures::record(f, t0);
        assert_eq!(fifth.wait(t0), Some(FIRST_BACKOFF));
        assert_eq!(fifth.wait(t0 + FIRST_BACKOFF), None);
        let sixth = Failures::record(Some(fifth), t0);
        assert_eq!(sixth.wait(t0), Some(FIRST_BACKOFF * 2));
        let many = Failures {
            count: 60,
            last: t0,
        };
        assert_eq!(many.wait(t0), Some(MAX_BACKOFF));
    }

    #[test]
    fn an_old_failure_is_forgotten() {
        let t0 = Instant::now();
        let f = Failures { count: 9, last: t0 };
        assert_eq!(Failures::record(Some(f), t0 + FORGET_AFTER).count, 1);
    }

    #[test]
    fn an_attempt_counts_before_its_outcome_is_known() {
        let t = Throttle::default();
        let now = Instant::now();
        let keys = vec!["account:a@b".to_string()];
        // Attempts in flight together: only the free ones get through.
        let admitted = (0..20).filter(|_| t.attempt(&keys, now).is_ok()).count();
        assert_eq!(admitted, FREE_FAILURES as usize);
        t.succeed(&keys);
        assert!(t.attempt(&keys, now).is_ok());
    }

    #[test]
    fn keys_are_independent_and_success_clears() {
        let t = Throttle::default();
        let now = Instant::now();
        let addr = vec!["addr:10.0.0.1".to_string()];
        let both = vec!["addr:10.0.0.1".to_string(), "account:a@b".to_string()];
        for _ in 0..FREE_FAILURES {
            t.fail(&addr, now);
        }
        assert!(t.wait(&both, now).is_some());
        assert!(t.wait(&["account:a@b".to_string()], now).is_none());
        t.succeed(&both);
        assert!(t.wait(&both, now).is_none());
    }
}
