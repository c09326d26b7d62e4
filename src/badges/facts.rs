//! The facts cache: what a project's badges say, looked up once per project and
//! stage through the engine, kept in memory and in the Redis tier when configured.
//!
//! Each badge kind has its own freshness (a version 5 minutes, a licence an hour;
//! "not found" a minute). A stale entry is answered at once while one refresh runs
//! (single flight), so a badge answers in microseconds once granary has seen the
//! project, even while the upstream is slow or down.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{from_unix_millis, to_unix_millis, Clock};
use crate::engine::coordination::SingleFlight;
use crate::engine::redis::RedisTier;
use crate::engine::{CacheEngine, ProxyError};
use crate::metrics::{Metrics, StageLabels};
use crate::protocols::badges::{BadgeKind, Fact, Facts, Stage};
use crate::protocols::{Protocol, RequestError};
use crate::storage::BlobStore;

/// How long "this project does not exist" is believed.
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(60);
/// How long a failed lookup of a project granary knows nothing of is remembered, so
/// that a popular badge of an unreachable project does not send every view upstream.
pub const UNAVAILABLE_TTL: Duration = Duration::from_secs(10);
/// How long an entry is kept at all (stale entries answer while a refresh runs, and
/// when the upstream is down).
const KEPT_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// Projects' stages kept in memory.
const MEMORY_ENTRIES: u64 = 100_000;

/// One lookup's result, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredFacts {
    /// When it was looked up (Unix milliseconds, comparable across replicas).
    pub fetched_at: i64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Outcome {
    Found(Facts),
    /// The project does not exist upstream (the reason, for the log and JSON).
    NotFound(String),
    /// Nothing was known and the lookup failed; kept in memory only, briefly.
    Unavailable(String),
}

/// Why there are no facts to show.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The request named something invalid (a bad project name).
    BadRequest(String),
    /// Nothing stored and the lookup failed (the upstream is down or broken).
    Unavailable(String),
}

/// What a badge is drawn from.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The fact, and whether it is past its freshness (a refresh is running).
    Fact {
        fact: Fact,
        stale: bool,
    },
    NotFound(String),
    Unavailable(String),
}

/// What a lookup needs: the repository and where it reads from.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub protocol: Arc<dyn Protocol>,
    pub engine: CacheEngine,
    pub blobs: Arc<dyn BlobStore>,
    /// The project as the caller named it.
    pub project: String,
}

type FlightResult = Result<Arc<StoredFacts>, Failure>;

/// The facts cache; cheap to clone.
#[derive(Debug, Clone)]
pub struct FactCache {
    memory: moka::sync::Cache<String, Arc<StoredFacts>>,
    flights: Arc<SingleFlight<FlightResult>>,
    redis: Option<Arc<RedisTier>>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

impl FactCache {
    #[must_use]
    pub fn new(redis: Option<Arc<RedisTier>>, clock: Arc<dyn Clock>, metrics: Metrics) -> Self {
        Self {
            memory: moka::sync::Cache::builder()
                .max_capacity(MEMORY_ENTRIES)
                .time_to_live(KEPT_FOR)
                .build(),
            flights: Arc::new(SingleFlight::default()),
            redis,
            clock,
            metrics,
        }
    }

    /// The fact behind the badge `kind` of the project `project_key` (a key naming
    /// it unambiguously: normalized names share one entry) in repository `repo`;
    /// `lookup` is called only when the facts must be looked up.
    ///
    /// # Errors
    /// A bad request (the protocol refused the project name).
    pub async fn fact(
        &self,
        repo: &str,
        project_key: &str,
        kind: &BadgeKind,
        lookup: impl FnOnce() -> Lookup,
    ) -> Result<Answer, String> {
        let key = format!("{repo}/{}/{project_key}", kind.stage.as_str());
        let known = match self.memory.get(&key) {
            Some(entry) => Some(entry),
            None => self.shared_copy(&key).await,
        };
        if let Some(entry) = &known {
            let ttl = match entry.outcome {
                Outcome::Found(_) => kind.ttl,
                Outcome::NotFound(_) => NOT_FOUND_TTL,
                Outcome::Unavailable(_) => UNAVAILABLE_TTL,
            };
            if self.age(entry) <= ttl {
                return Ok(answer(entry, kind, false));
            }
            if let Outcome::Found(_) = entry.outcome {
                // Stale: answered now; one refresh runs behind it.
                let (cache, lookup, key, stage) = (self.clone(), lookup(), key.clone(), kind.stage);
                tokio::spawn(async move { cache.load(&lookup, &key, stage).await });
                return Ok(answer(entry, kind, true));
            }
        }
        match self.load(&lookup(), &key, kind.stage).await {
            Ok(entry) => Ok(answer(&entry, kind, false)),
            Err(Failure::Unavailable(reason)) => match known {
                // A stale "not found" is better than nothing while the upstream is down.
                Some(entry) if !matches!(entry.outcome, Outcome::Unavailable(_)) => {
                    Ok(answer(&entry, kind, true))
                }
                _ => {
                    let entry = Arc::new(StoredFacts {
                        fetched_at: to_unix_millis(self.clock.now()),
                        outcome: Outcome::Unavailable(reason),
                    });
                    self.memory.insert(key, Arc::clone(&entry));
                    Ok(answer(&entry, kind, false))
                }
            },
            Err(Failure::BadRequest(reason)) => Err(reason),
        }
    }

    fn age(&self, entry: &StoredFacts) -> Duration {
        self.clock
            .now()
            .duration_since(from_unix_millis(entry.fetched_at))
            .unwrap_or_default()
    }

    async fn shared_copy(&self, key: &str) -> Option<Arc<StoredFacts>> {
        let redis = self.redis.as_ref()?;
        let bytes = redis.get(&redis_key(key)).await.ok()??;
        let entry: StoredFacts = serde_json::from_slice(&bytes).ok()?;
        let entry = Arc::new(entry);
        self.memory.insert(key.to_owned(), Arc::clone(&entry));
        Some(entry)
    }

    /// One lookup per key at a time; its result is stored in both tiers.
    async fn load(&self, lookup: &Lookup, key: &str, stage: Stage) -> FlightResult {
        let (cache, lookup, owned_key) = (self.clone(), lookup.clone(), key.to_owned());
        let (result, _) = self
            .flights
            .run(key, move || async move {
                cache
                    .metrics
                    .badge_fact_lookups
                    .get_or_create(&StageLabels {
                        stage: stage.as_str(),
                    })
                    .inc();
                let found = lookup
                    .protocol
                    .badge_facts(&lookup.engine, &lookup.blobs, &lookup.project, stage)
                    .await;
                let outcome = match found {
                    Ok(facts) => Outcome::Found(facts),
                    Err(RequestError::NotFound(reason)) => Outcome::NotFound(reason),
                    Err(RequestError::Proxy(error)) if is_not_found(&error) => {
                        Outcome::NotFound(error.to_string())
                    }
                    Err(RequestError::BadRequest(reason)) => {
                        return Err(Failure::BadRequest(reason));
                    }
                    Err(other) => {
                        tracing::warn!(key = %owned_key, error = %other, "badge facts unavailable");
                        return Err(Failure::Unavailable(other.to_string()));
                    }
                };
                let entry = Arc::new(StoredFacts {
                    fetched_at: to_unix_millis(cache.clock.now()),
                    outcome,
                });
                cache.store(&owned_key, &entry).await;
                Ok(entry)
            })
            .await;
        result.unwrap_or_else(|| Err(Failure::Unavailable("the lookup panicked".to_owned())))
    }

    async fn store(&self, key: &str, entry: &Arc<StoredFacts>) {
        self.memory.insert(key.to_owned(), Arc::clone(entry));
        if let Some(redis) = &self.redis {
            let bytes = serde_json::to_vec(&**entry).expect("facts serialize");
            if let Err(error) = redis.set(&redis_key(key), &bytes, KEPT_FOR).await {
                tracing::debug!(%error, "badge facts not shared through Redis");
            }
        }
    }
}

fn redis_key(key: &str) -> String {
    format!("granary:badge-facts:{key}")
}

fn is_not_found(error: &ProxyError) -> bool {
    matches!(error, ProxyError::UpstreamNotFound { .. })
}

fn answer(entry: &StoredFacts, kind: &BadgeKind, stale: bool) -> Answer {
    match &entry.outcome {
        Outcome::Found(facts) => Answer::Fact {
            fact: facts
                .get(kind.name)
                .cloned()
                .unwrap_or_else(|| Fact::new("unknown", "lightgrey")),
            stale,
        },
        Outcome::NotFound(reason) => Answer::NotFound(reason.clone()),
        Outcome::Unavailable(reason) => Answer::Unavailable(reason.clone()),
    }
}
