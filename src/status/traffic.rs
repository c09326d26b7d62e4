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
    fn add(&mut self, other: &Self) {
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
}

/// The minute `at` falls in.
#[must_use]
pub fn minute_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 60
}

impl Traffic {
    /// Records one request to `repo` at `now`.
    pub fn record(&self, repo: &'static str, now: SystemTime, observed: Observed<'_>) {
        let mut repos = self.repos.lock().expect("traffic is never poisoned");
        let bucket = repos
            .entry(repo)
            .or_insert_with(Ring::new)
            .bucket(minute_of(now));
        let counts = &mut bucket.counts;
        counts.requests += 1;
        counts.bytes_served += observed.bytes;
        match observed.cache_status {
            Some("HIT" | "STALE" | "REVALIDATED") => {
                counts.hits += 1;
                counts.bytes_from_cache += observed.bytes;
            }
            Some("MISS") => counts.misses += 1,
            Some("BYPASS") => counts.bypassed += 1,
            _ => {}
        }
        if observed.status >= 400 {
            counts.errors += 1;
        }
        if let Some(project) = observed.project {
            if let Some(count) = bucket.projects.get_mut(project) {
                *count += 1;
            } else if bucket.projects.len() < MAX_PROJECTS_PER_MINUTE {
                bucket.projects.insert(project.to_owned(), 1);
            }
        }
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
