//! Traffic per repository in one-minute buckets, held in memory for a day: requests,
//! what the cache did, bytes served, and which projects were asked for (bounded).
//! Recording is a short lock on one repository's ring; reading sums buckets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Minutes kept (a day).
pub const MINUTES: usize = 24 * 60;
/// Distinct projects counted per repository per minute, at most (the rest are
/// counted as requests, not by name).
const MAX_PROJECTS_PER_MINUTE: usize = 2_000;

/// What happened in one minute.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    /// Served from the cache: fresh, stale or revalidated.
    pub hits: u64,
    pub misses: u64,
    /// Passed through, never cached.
    pub bypassed: u64,
    /// Answered with a 4xx or 5xx.
    pub errors: u64,
    /// Response bytes of requests served from the cache.
    pub bytes_from_cache: u64,
    /// Response bytes of all requests.
    pub bytes_served: u64,
}

impl Counts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.hits += other.hits;
        self.misses += other.misses;
        self.bypassed += other.bypassed;
        self.errors += other.errors;
        self.bytes_from_cache += other.bytes_from_cache;
        self.bytes_served += other.bytes_served;
    }

    /// Hits over hits and misses (requests that could be cached), if any.
    #[must_use]
    pub fn hit_ratio(&self) -> Option<f64> {
        let cacheable = self.hits + self.misses;
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        (cacheable > 0).then(|| self.hits as f64 / cacheable as f64)
    }
}

#[derive(Debug, Default)]
struct Bucket {
    /// Minutes since the epoch this bucket holds; another value means it is stale.
    minute: u64,
    counts: Counts,
    projects: HashMap<String, u64>,
}

#[derive(Debug)]
struct Ring {
    buckets: Vec<Bucket>,
}

impl Ring {
    fn new() -> Self {
        Self {
            buckets: (0..MINUTES).map(|_| Bucket::default()).collect(),
        }
    }

    fn bucket(&mut self, minute: u64) -> &mut Bucket {
        let slot = usize::try_from(minute % MINUTES as u64).unwrap_or(0);
        let bucket = &mut self.buckets[slot];
        if bucket.minute != minute {
            *bucket = Bucket {
                minute,
                ..Bucket::default()
            };
        }
        bucket
    }
}

/// One request, as the request layer saw it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// `HIT`, `MISS`, `STALE`, `REVALIDATED`, `BYPASS`, or none.
    pub cache_status: Option<&'a str>,
    pub status: u16,
    pub bytes: u64,
    pub project: Option<&'a str>,
}

/// Traffic of every repository.
#[derive(Debug, Default)]
pub struct Traffic {
    repos: Mutex<BTreeMap<&'static str, Ring>>,
    /// Counts not yet added to the shared (Redis) totals, by repository and minute.
    unshared: Mutex<HashMap<(&'static str, u64), Counts>>,
}

impl Counts {
    /// The fields as `(name, value)`, for the shared totals.
    #[must_use]
    pub fn fields(&self) -> Vec<(&'static str, u64)> {
        [
            ("requests", self.requests),
            ("hits", self.hits),
            ("misses", self.misses),
            ("bypassed", self.bypassed),
            ("errors", self.errors),
            ("bytes_from_cache", self.bytes_from_cache),
            ("bytes_served", self.bytes_served),
        ]
        .into_iter()
        .filter(|(_, value)| *value > 0)
        .collect()
    }

    /// Counts from the shared totals' fields.
    #[must_use]
    pub fn from_fields(fields: &HashMap<String, u64>) -> Self {
        let get = |name: &str| fields.get(name).copied().unwrap_or(0);
        Self {
            requests: get("requests"),
            hits: get("hits"),
            misses: get("misses"),
            bypassed: get("bypassed"),
            errors: get("errors"),
            bytes_from_cache: get("bytes_from_cache"),
            bytes_served: get("bytes_served"),
        }
    }
}

/// The minute `at` falls in.
#[must_use]
pub fn minute_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 60
}

impl Traffic {
    /// Records one request to `repo` at `now`.
    pub fn record(&self, repo: &'static str, now: SystemTime, observed: Observed<'_>) {
        let minute = minute_of(now);
        let mut one = Counts {
            requests: 1,
            bytes_served: observed.bytes,
            ..Counts::default()
        };
        match observed.cache_status {
            Some("HIT" | "STALE" | "REVALIDATED") => {
                one.hits = 1;
                one.bytes_from_cache = observed.bytes;
            }
            Some("MISS") => one.misses = 1,
            Some("BYPASS") => one.bypassed = 1,
            _ => {}
        }
        if observed.status >= 400 {
            one.errors = 1;
        }
        self.unshared
            .lock()
            .expect("traffic is never poisoned")
            .entry((repo, minute))
            .or_default()
            .add(&one);
        let mut repos = self.repos.lock().expect("traffic is never poisoned");
        let bucket = repos.entry(repo).or_insert_with(Ring::new).bucket(minute);
        bucket.counts.add(&one);
        if let Some(project) = observed.project {
            if let Some(count) = bucket.projects.get_mut(project) {
                *count += 1;
            } else if bucket.projects.len() < MAX_PROJECTS_PER_MINUTE {
                bucket.projects.insert(project.to_owned(), 1);
            }
        }
    }

    /// Takes the counts not yet shared with other replicas.
    pub fn take_unshared(&self) -> Vec<((&'static str, u64), Counts)> {
        self.unshared
            .lock()
            .expect("traffic is never poisoned")
            .drain()
            .collect()
    }

    /// Puts back counts that could not be shared (Redis down), to try again later.
    pub fn restore_unshared(&self, counts: Vec<((&'static str, u64), Counts)>) {
        let mut unshared = self.unshared.lock().expect("traffic is never poisoned");
        for (key, value) in counts {
            unshared.entry(key).or_default().add(&value);
        }
    }

    /// This replica's counts of `repo` not yet shared, per minute.
    #[must_use]
    pub fn unshared_of(&self, repo: &str) -> HashMap<u64, Counts> {
        self.unshared
            .lock()
            .expect("traffic is never poisoned")
            .iter()
            .filter(|((name, _), _)| *name == repo)
            .map(|((_, minute), counts)| (*minute, counts.clone()))
            .collect()
    }

    /// The repositories seen so far.
    #[must_use]
    pub fn repos(&self) -> Vec<&'static str> {
        self.repos
            .lock()
            .expect("traffic is never poisoned")
            .keys()
            .copied()
            .collect()
    }

    /// `repo`'s counts summed over the `minutes` minutes up to and including `now`'s.
    #[must_use]
    pub fn window(&self, repo: &str, now: SystemTime, minutes: u64) -> Counts {
        self.per_minute(repo, now, minutes)
            .iter()
            .fold(Counts::default(), |mut total, counts| {
                total.add(counts);
                total
            })
    }

    /// `repo`'s counts for each of the `minutes` minutes up to `now`'s, oldest first.
    #[must_use]
    pub fn per_minute(&self, repo: &str, now: SystemTime, minutes: u64) -> Vec<Counts> {
        let repos = self.repos.lock().expect("traffic is never poisoned");
        let current = minute_of(now);
        let minutes = minutes.min(MINUTES as u64);
        (0..minutes)
            .rev()
            .map(|back| {
                let minute = current.saturating_sub(back);
                repos
                    .get(repo)
                    .map(|ring| {
                        &ring.buckets[usize::try_from(minute % MINUTES as u64).unwrap_or(0)]
                    })
                    .filter(|bucket| bucket.minute == minute)
                    .map(|bucket| bucket.counts.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The `limit` projects asked for most over the last `minutes`, with counts.
    #[must_use]
    pub fn top_projects(
        &self,
        repo: &str,
        now: SystemTime,
        minutes: u64,
        limit: usize,
    ) -> Vec<(String, u64)> {
        let repos = self.repos.lock().expect("traffic is never poisoned");
        let Some(ring) = repos.get(repo) else {
            return Vec::new();
        };
        let current = minute_of(now);
        let mut totals: HashMap<&str, u64> = HashMap::new();
        for back in 0..minutes.min(MINUTES as u64) {
            let minute = current.saturating_sub(back);
            let bucket = &ring.buckets[usize::try_from(minute % MINUTES as u64).unwrap_or(0)];
            if bucket.minute == minute {
                for (project, count) in &bucket.projects {
                    *totals.entry(project).or_default() += count;
                }
            }
        }
        let mut top: Vec<(String, u64)> = totals
            .into_iter()
            .map(|(project, count)| (project.to_owned(), count))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(limit);
        top
    }
}

/// The Redis key of one repository's shared counts for one minute.
#[must_use]
pub fn shared_key(repo: &str, minute: u64) -> String {
    format!("granary:traffic:{repo}:{minute}")
}

/// How long shared counts are kept: a day and an hour.
pub const SHARED_RETENTION: std::time::Duration = std::time::Duration::from_secs(25 * 3600);

/// Adds this replica's new counts to the shared totals in Redis every `interval`,
/// so every replica's status page shows the whole cluster's traffic. Counts that
/// cannot be written (Redis down) are kept and written later.
pub fn share_periodically(
    traffic: &std::sync::Arc<Traffic>,
    redis: std::sync::Arc<crate::engine::redis::RedisTier>,
    interval: std::time::Duration,
) {
    let traffic = std::sync::Arc::downgrade(traffic);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(traffic) = traffic.upgrade() else {
                return;
            };
            share_now(&traffic, &redis).await;
        }
    });
}

/// Writes this replica's unshared counts to Redis now.
pub async fn share_now(traffic: &Traffic, redis: &crate::engine::redis::RedisTier) {
    let pending = traffic.take_unshared();
    if pending.is_empty() {
        return;
    }
    let increments: Vec<(String, Vec<(&'static str, u64)>)> = pending
        .iter()
        .map(|((repo, minute), counts)| (shared_key(repo, *minute), counts.fields()))
        .collect();
    if redis
        .increment_hashes(&increments, SHARED_RETENTION)
        .await
        .is_err()
    {
        traffic.restore_unshared(pending);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn windows_sum_minutes_and_old_minutes_fall_out() {
        let traffic = Traffic::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000 * 60);
        let hit = Observed {
            cache_status: Some("HIT"),
            status: 200,
            bytes: 100,
            project: Some("alpha"),
        };
        let miss = Observed {
            cache_status: Some("MISS"),
            project: Some("beta"),
            ..hit
        };
        traffic.record("pypi", t0, hit);
        traffic.record("pypi", t0, miss);
        traffic.record("pypi", t0 + Duration::from_secs(60), hit);
        let now = t0 + Duration::from_secs(60);
        let hour = traffic.window("pypi", now, 60);
        assert_eq!((hour.requests, hour.hits, hour.misses), (3, 2, 1));
        assert_eq!((hour.bytes_served, hour.bytes_from_cache), (300, 200));
        assert_eq!(traffic.window("pypi", now, 1).requests, 1);
        assert_eq!(
            traffic.top_projects("pypi", now, 60, 10),
            vec![("alpha".to_owned(), 2), ("beta".to_owned(), 1)]
        );
        // A day later the old minutes are gone, even though their slots are reused.
        let later = t0 + Duration::from_secs(60 * MINUTES as u64);
        traffic.record("pypi", later, hit);
        assert_eq!(traffic.window("pypi", later, MINUTES as u64).requests, 2);
        assert_eq!(traffic.window("other", later, 60).requests, 0);
    }
}
