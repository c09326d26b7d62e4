//! The status page's data: is granary saving anything, is it healthy, and what is it
//! doing now. [`report`] reads the engine's state and the traffic counters (it never
//! touches the stores' rows beyond two totals) and builds a [`StatusReport`], which
//! `/-/status.json` serializes and [`page`] renders as HTML.

pub mod page;
pub mod table;
pub mod traffic;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::engine::artifact::FillProgress;
use crate::engine::redis::RedisTier;
use crate::engine::upstream::HealthReport;
use crate::engine::{CacheEngine, CacheKey, Category};
use crate::metadata::MetadataStore;
use crate::protocols::RepoSettings;
use crate::storage::BlobStore;
pub use traffic::{Counts, Observed, Traffic};

/// How much of the page a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// Everything, project names included (the admin role).
    Full,
    /// Everything but project names and fill keys.
    Summary,
}

/// What [`report`] reads.
pub struct Sources<'a> {
    pub engine: &'a CacheEngine,
    pub metadata: &'a Arc<dyn MetadataStore>,
    pub blobs: &'a Arc<dyn BlobStore>,
    pub redis: Option<&'a Arc<RedisTier>>,
    /// Each repository: its settings and format.
    pub repos: Vec<(&'a RepoSettings, &'static str)>,
    pub traffic: &'a Traffic,
    /// Where every replica's counts are summed (Redis), when configured.
    pub shared_traffic: Option<&'a Arc<RedisTier>>,
    pub max_stored_bytes: Option<u64>,
    pub now: SystemTime,
}

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub view: View,
    /// Seconds since the Unix epoch.
    pub generated_at: u64,
    pub repos: Vec<RepoStatus>,
    pub storage: StorageStatus,
    pub now: Activity,
    pub engines: Vec<EngineStatus>,
}

/// One repository.
#[derive(Debug, Clone, Serialize)]
pub struct RepoStatus {
    pub name: String,
    /// `cluster` (every replica's traffic, summed in Redis) or `replica` (this one's).
    pub scope: &'static str,
    pub format: &'static str,
    pub upstream: String,
    pub last_minute: Counts,
    pub last_hour: Counts,
    pub last_day: Counts,
    pub hit_ratio_hour: Option<f64>,
    pub hit_ratio_day: Option<f64>,
    /// Per minute over the last hour, oldest first: hit ratio (absent: no traffic).
    pub hit_ratio_per_minute: Vec<Option<f64>>,
    /// Per minute over the last hour: bytes served from the cache.
    pub bytes_from_cache_per_minute: Vec<u64>,
    pub upstream_health: HealthReport,
    /// Index documents served stale right now because the upstream fails.
    pub offline_documents: usize,
    /// Project → requests over the last hour (the full view only).
    pub top_projects: Option<Vec<(String, u64)>>,
}

/// The blob store.
#[derive(Debug, Clone, Serialize)]
pub struct StorageStatus {
    pub stored_bytes: Option<u64>,
    pub stored_blobs: Option<u64>,
    pub max_bytes: Option<u64>,
    pub evicted_blobs: u64,
    pub evicted_bytes: u64,
    pub temp_bytes: u64,
}

/// What granary is doing right now.
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub fills: Vec<FillProgress>,
    pub fills_queued: i64,
    pub refreshes: usize,
}

/// One engine (database, Redis, blob store).
#[derive(Debug, Clone, Serialize)]
pub struct EngineStatus {
    pub name: &'static str,
    pub kind: String,
    /// `up`, `degraded`, `down` or `disabled`.
    pub state: &'static str,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

async fn probe<E: std::fmt::Display>(
    name: &'static str,
    kind: String,
    failure_state: &'static str,
    check: impl std::future::Future<Output = Result<(), E>>,
) -> EngineStatus {
    let started = Instant::now();
    let result = check.await;
    let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    match result {
        Ok(()) => EngineStatus {
            name,
            kind,
            state: "up",
            latency_ms,
            error: None,
        },
        Err(error) => EngineStatus {
            name,
            kind,
            state: failure_state,
            latency_ms,
            error: Some(error.to_string()),
        },
    }
}

/// Every replica's counts of `repo` per minute over the last day, oldest first: the
/// shared totals plus this replica's not yet shared. `None` when Redis fails.
async fn cluster_minutes(
    traffic: &Traffic,
    redis: &RedisTier,
    repo: &str,
    now: SystemTime,
) -> Option<Vec<Counts>> {
    let current = traffic::minute_of(now);
    let minutes: Vec<u64> = (0..traffic::MINUTES as u64)
        .rev()
        .map(|back| current.saturating_sub(back))
        .collect();
    let keys: Vec<String> = minutes
        .iter()
        .map(|minute| traffic::shared_key(repo, *minute))
        .collect();
    let shared = redis.hashes(&keys).await.ok()?;
    let unshared = traffic.unshared_of(repo);
    Some(
        minutes
            .iter()
            .zip(shared)
            .map(|(minute, fields)| {
                let mut counts = Counts::from_fields(&fields);
                if let Some(local) = unshared.get(minute) {
                    counts.add(local);
                }
                counts
            })
            .collect(),
    )
}

/// Builds the report for `view`.
pub async fn report(sources: Sources<'_>, view: View) -> StatusReport {
    let now = sources.now;
    let artifacts = &sources.engine.artifacts;
    let mut repos = Vec::new();
    let mut fills_queued = 0;
    for (settings, format) in &sources.repos {
        let traffic = sources.traffic;
        let name = settings.name.as_str();
        let (scope, day_per_minute) = match sources.shared_traffic {
            Some(redis) => match cluster_minutes(traffic, redis, name, now).await {
                Some(minutes) => ("cluster", minutes),
                None => (
                    "replica",
                    traffic.per_minute(name, now, traffic::MINUTES as u64),
                ),
            },
            None => (
                "replica",
                traffic.per_minute(name, now, traffic::MINUTES as u64),
            ),
        };
        let sum = |minutes: &[Counts]| {
            minutes.iter().fold(Counts::default(), |mut total, counts| {
                total.add(counts);
                total
            })
        };
        let per_minute = &day_per_minute[day_per_minute.len().saturating_sub(60)..];
        let hour = sum(per_minute);
        let day = sum(&day_per_minute);
        fills_queued += settings.upstream.fills_queued();
        repos.push(RepoStatus {
            name: settings.name.clone(),
            format,
            upstream: settings.upstream.display_root(),
            scope,
            last_minute: day_per_minute.last().cloned().unwrap_or_default(),
            hit_ratio_hour: hour.hit_ratio(),
            hit_ratio_day: day.hit_ratio(),
            last_hour: hour,
            last_day: day,
            hit_ratio_per_minute: per_minute.iter().map(Counts::hit_ratio).collect(),
            bytes_from_cache_per_minute: per_minute.iter().map(|c| c.bytes_from_cache).collect(),
            upstream_health: settings.upstream.health(),
            offline_documents: sources.engine.index.failing_keys(&CacheKey::repo_prefix(
                Category::Index,
                format,
                name,
            )),
            top_projects: (view == View::Full).then(|| traffic.top_projects(name, now, 60, 10)),
        });
    }
    let (evicted_blobs, evicted_bytes) = artifacts.evicted();
    let storage = StorageStatus {
        stored_bytes: sources.metadata.stored_bytes().await.ok(),
        stored_blobs: sources.metadata.stored_blobs().await.ok(),
        max_bytes: sources.max_stored_bytes,
        evicted_blobs,
        evicted_bytes,
        temp_bytes: artifacts.temp_bytes(),
    };
    let mut fills = artifacts.fills_progress();
    fills.sort_by(|a, b| a.key.cmp(&b.key));
    if view == View::Summary {
        for fill in &mut fills {
            "(hidden)".clone_into(&mut fill.key);
        }
    }
    let mut engines = vec![
        probe(
            "database",
            sources.metadata.kind().to_owned(),
            "down",
            sources.metadata.check(),
        )
        .await,
        probe(
            "blob store",
            sources.blobs.kind().to_owned(),
            "down",
            sources.blobs.check(),
        )
        .await,
    ];
    engines.push(match sources.redis {
        None => EngineStatus {
            name: "redis",
            kind: "none".to_owned(),
            state: "disabled",
            latency_ms: None,
            error: None,
        },
        // Redis down degrades: replicas fall back to their own tiers.
        Some(redis) => probe("redis", "redis".to_owned(), "degraded", redis.ping()).await,
    });
    StatusReport {
        view,
        generated_at: now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        repos,
        storage,
        now: Activity {
            fills,
            fills_queued,
            refreshes: sources.engine.index.refreshes_in_flight(),
        },
        engines,
    }
}
