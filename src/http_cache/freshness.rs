//! Freshness of index documents (pages, packuments, index files, `maven-metadata.xml`).
//!
//! The rule is the classic dogpile one: an entry is *fresh* for its TTL, then *stale*
//! for a grace period of `2 × update_time` during which it is served at once while a
//! single background refresh (guarded by a lock that lives `update_time`) replaces it.
//! After that it is *expired*: the request waits for a refresh. When the upstream is
//! failing, offline mode may still serve an expired entry up to `max_staleness`
//! (RFC 5861 `stale-if-error`).

use std::time::{Duration, SystemTime};

/// How long documents of one category stay fresh, and how the grace period is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessPolicy {
    /// Time an entry is served without asking the upstream.
    pub ttl: Duration,
    /// Time one refresh may take; the refresh lock lives this long and the grace
    /// period is twice this.
    pub update_time: Duration,
    /// How long past its grace period an entry may still be served while the
    /// upstream fails. `None`: no limit.
    pub max_staleness: Option<Duration>,
}

/// The two instants that bound an entry's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub fresh_until: SystemTime,
    pub stale_until: SystemTime,
}

/// The state of a stored entry at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it; ask nobody.
    Fresh,
    /// Serve it at once; one background refresh may start.
    Stale,
    /// Do not serve it to a healthy upstream's client; wait for a refresh.
    Expired,
}

impl FreshnessPolicy {
    /// Lifetimes for an entry stored (or revalidated) at `now`.
    #[must_use]
    pub fn lifetimes(&self, now: SystemTime) -> Lifetimes {
        let fresh_until = now + self.ttl;
        Lifetimes {
            fresh_until,
            stale_until: fresh_until + self.update_time * 2,
        }
    }

    /// Whether an entry may be served because the upstream failed (offline mode).
    #[must_use]
    pub fn serves_on_error(&self, lifetimes: Lifetimes, now: SystemTime) -> bool {
        match self.max_staleness {
            None => true,
            Some(limit) => now
                .duration_since(lifetimes.stale_until)
                .map_or(true, |past| past <= limit),
        }
    }
}

impl Lifetimes {
    /// The state of the entry at `now`.
    #[must_use]
    pub fn freshness(&self, now: SystemTime) -> Freshness {
        if now < self.fresh_until {
            Freshness::Fresh
        } else if now < self.stale_until {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn policy(max_staleness: Option<Duration>) -> FreshnessPolicy {
        FreshnessPolicy {
            ttl: 5 * MIN,
            update_time: MIN,
            max_staleness,
        }
    }

    fn check(age: Duration, expected: Freshness) {
        let stored = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let lifetimes = policy(None).lifetimes(stored);
        assert_eq!(lifetimes.freshness(stored + age), expected, "age {age:?}");
    }

    #[test]
    fn states_follow_ttl_plus_twice_update_time() {
        check(Duration::ZERO, Freshness::Fresh);
        check(Duration::from_millis(5 * 60_000 - 1), Freshness::Fresh);
        check(5 * MIN, Freshness::Stale);
        check(Duration::from_millis(7 * 60_000 - 1), Freshness::Stale);
        check(7 * MIN, Freshness::Expired);
        check(700 * MIN, Freshness::Expired);
    }

    #[test]
    fn offline_mode_respects_max_staleness() {
        let stored = SystemTime::UNIX_EPOCH;
        let unlimited = policy(None);
        let lifetimes = unlimited.lifetimes(stored);
        assert!(unlimited.serves_on_error(lifetimes, stored + 10_000 * MIN));

        let limited = policy(Some(10 * MIN));
        let lifetimes = limited.lifetimes(stored);
        assert!(limited.serves_on_error(lifetimes, stored + 6 * MIN));
        assert!(limited.serves_on_error(lifetimes, stored + 17 * MIN));
        assert!(!limited.serves_on_error(lifetimes, stored + 17 * MIN + Duration::from_secs(1)));
    }
}
