//! The lock that guards a background refresh: held for at most `update_time`, so a
//! refresher that dies is replaced after that long rather than never (the dogpile
//! rule). Today's implementation is in-process; the shape is that of Redis'
//! `SET key token NX PX ttl` with an owner-only release, so a shared one can follow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Proof of holding a lock; releasing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken(u64);

/// An expiring, token-owned lock per key.
pub trait RefreshLock: Send + Sync + std::fmt::Debug {
    /// Takes the lock for `ttl` if nobody holds it (or the holder's time ran out).
    fn try_acquire(&self, key: &str, ttl: Duration, now: SystemTime) -> Option<LockToken>;
    /// Releases the lock if `token` still owns it.
    fn release(&self, key: &str, token: &LockToken);
}

/// [`RefreshLock`] for one process.
#[derive(Debug, Default)]
pub struct LocalRefreshLock {
    held: Mutex<HashMap<String, (LockToken, SystemTime)>>,
}

impl RefreshLock for LocalRefreshLock {
    fn try_acquire(&self, key: &str, ttl: Duration, now: SystemTime) -> Option<LockToken> {
        let mut held = self.held.lock().expect("lock map is never poisoned");
        if let Some((_, expires)) = held.get(key) {
            if now < *expires {
                return None;
            }
        }
        let token = LockToken(rand::random());
        held.insert(key.to_owned(), (token.clone(), now + ttl));
        // Keep the map from growing without bound: drop expired locks now and then.
        if held.len() > 4096 {
            held.retain(|_, (_, expires)| now < *expires);
        }
        Some(token)
    }

    fn release(&self, key: &str, token: &LockToken) {
        let mut held = self.held.lock().expect("lock map is never poisoned");
        if held.get(key).is_some_and(|(owner, _)| owner == token) {
            held.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_expires_and_only_owner_releases() {
        let lock = LocalRefreshLock::default();
        let t0 = SystemTime::UNIX_EPOCH;
        let ttl = Duration::from_secs(30);
        let first = lock.try_acquire("k", ttl, t0).expect("free");
        assert!(lock
            .try_acquire("k", ttl, t0 + Duration::from_secs(29))
            .is_none());
        let second = lock
            .try_acquire("k", ttl, t0 + ttl)
            .expect("expired lock is taken over");
        lock.release("k", &first);
        assert!(
            lock.try_acquire("k", ttl, t0 + ttl).is_none(),
            "stale owner cannot release"
        );
        lock.release("k", &second);
        assert!(lock.try_acquire("k", ttl, t0 + ttl).is_some());
    }
}
