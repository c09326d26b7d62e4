//! Index documents: project pages, project lists, and remembered upstream 404s.
//!
//! For each request the stored entry is looked up in the in-process tier (bounded by
//! bytes), then the metadata store. Its [`Freshness`] decides:
//!
//! | state | answer | upstream |
//! |---|---|---|
//! | fresh | HIT | none |
//! | stale (grace period) | STALE at once | one background refresh, behind the refresh lock |
//! | expired or absent | wait for the refresh (single flight) | conditional GET |
//! | upstream failing | last good copy, STALE + `Warning` (offline mode) | retried after the lock's time |
//!
//! The protocol supplies an [`IndexSource`]: how to fetch the document, and how to
//! render the forms served to clients from the stored canonical body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use moka::future::Cache;
use tracing::{debug, warn};

pub mod document;
pub mod shared;

pub use self::document::{
    sized_work, tight, IndexDocument, Parsed, Rendition, StoredParts, BASE_MARKER_SERIALIZED,
    BASE_MARKER_TEXT, OFFLOAD_BYTES,
};
use self::shared::SharedIndex;
use super::coordination::{LocalRefreshLock, RefreshLock, Role, SingleFlight};
use super::redis::new_token;
use super::{CacheKey, CacheStatus, ProxyError, UpstreamError};
use crate::clock::Clock;
use crate::http_cache::{Freshness, FreshnessPolicy, Lifetimes, Validators};
use crate::metadata::IndexRecord;
use crate::metrics::Metrics;

/// What the upstream answered.
#[derive(Debug)]
pub enum Fetched {
    Document {
        canonical: Bytes,
        validators: Validators,
        /// This document's own time to live, when it has one shorter than the
        /// repository's (a cached response's `max-age`); absent: the policy's TTL.
        ttl: Option<Duration>,
        /// The protocol's parsed form of `canonical`, when the fetch made it (it
        /// becomes the document's derived form: a miss parses once).
        parsed: Option<Parsed>,
    },
    /// A document that must not be stored or shared (a response with
    /// `Set-Cookie`): handed to the request whose flight fetched it only; requests
    /// that joined the flight get [`ProxyError::NotShareable`] and fetch their own.
    Uncacheable {
        canonical: Bytes,
        parsed: Option<Parsed>,
    },
    NotModified {
        validators: Validators,
    },
    NotFound,
}

/// The protocol's side of an index document.
#[async_trait]
pub trait IndexSource: Send + Sync {
    /// Fetches the document; conditionally when `validators` are not empty.
    async fn fetch(&self, validators: &Validators) -> Result<Fetched, UpstreamError>;
    /// Reads a canonical body from the shared tiers (written by this or another
    /// replica): checks that it can be served and returns its parsed form, if the
    /// protocol has one, to become the document's derived form.
    ///
    /// # Errors
    /// A description of why the body cannot be read.
    fn check(&self, canonical: &Bytes) -> Result<Option<Parsed>, String>;
    /// The names of the forms served to clients (e.g. PEP 691 JSON and PEP 503 HTML).
    fn forms(&self) -> &'static [&'static str];
    /// Builds the form `form` of a found document, from its canonical body or its
    /// derived form. Called once per form per stored document, when first asked for.
    ///
    /// # Errors
    /// A description of why the document cannot be rendered.
    fn render(&self, document: &IndexDocument, form: &str) -> Result<Bytes, String>;
    /// Version of the canonical form; stored entries of another version are refetched.
    fn format_version(&self) -> u32;
}

/// A request for one index document.
#[derive(Clone)]
pub struct IndexRequest {
    pub key: CacheKey,
    pub policy: FreshnessPolicy,
    /// Lifetime of a remembered upstream 404.
    pub negative_ttl: Duration,
    pub source: Arc<dyn IndexSource>,
}

/// The answer to an [`IndexRequest`].
#[derive(Debug, Clone)]
pub struct IndexLookup {
    pub document: Arc<IndexDocument>,
    pub status: CacheStatus,
    /// Set when a stale copy is served because the upstream failed (RFC 9111 §5.5's
    /// `Warning: 111`).
    pub warning: Option<String>,
}

type RefreshResult = Result<(Arc<IndexDocument>, CacheStatus), Arc<ProxyError>>;

/// With a copy in memory, how long a request waits for the shared tiers to say
/// whether another replica has a fresher one; past it, the memory copy is used (the
/// shared load goes on and fills memory for the next request).
const SHARED_CONSULT_DEADLINE: Duration = Duration::from_millis(200);
/// With shared tiers, how long a refresh waits for its write to them before
/// answering, so another replica asking a moment later finds the page there; a
/// slower store is written behind the response.
const SHARED_PERSIST_WAIT: Duration = Duration::from_millis(250);

/// Checks a stored body (parsing it, on the blocking pool when it is large).
async fn check(source: &Arc<dyn IndexSource>, canonical: &Bytes) -> Result<Option<Parsed>, String> {
    let (source, canonical) = (Arc::clone(source), canonical.clone());
    sized_work(canonical.len(), move || source.check(&canonical)).await
}

/// The engine for index documents. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IndexCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    memory: Cache<String, Arc<IndexDocument>>,
    shared: SharedIndex,
    flights: SingleFlight<RefreshResult>,
    /// One load (read and render) from the shared tiers per key at a time.
    loads: SingleFlight<Option<Arc<IndexDocument>>>,
    refresh_lock: Arc<dyn RefreshLock>,
    /// Keys whose last refresh failed, until when: during this back-off an expired
    /// entry is served stale at once instead of every request waiting for the failing
    /// upstream again.
    failing_until: Mutex<HashMap<String, SystemTime>>,
    /// Held shared by every write to the shared tiers in flight (they run behind
    /// the response), exclusively by a purge: a purge waits for writes begun
    /// before it, so none lands after it and brings a purged entry back.
    persists: Arc<tokio::sync::RwLock<()>>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

/// How long a purge waits for writes in flight before it goes ahead anyway.
const PURGE_WAIT: Duration = Duration::from_secs(10);

impl IndexCache {
    #[must_use]
    pub fn new(
        memory_capacity_bytes: u64,
        shared: SharedIndex,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Self {
        let memory = Cache::builder()
            .max_capacity(memory_capacity_bytes)
            .support_invalidation_closures()
            .weigher(|key: &String, document: &Arc<IndexDocument>| {
                document
                    .weight()
                    .saturating_add(u32::try_from(key.len()).unwrap_or(u32::MAX))
            })
            .build();
        Self {
            inner: Arc::new(Inner {
                persists: Arc::new(tokio::sync::RwLock::new(())),
                memory,
                shared,
                flights: SingleFlight::default(),
                loads: SingleFlight::default(),
                refresh_lock: Arc::new(LocalRefreshLock::default()),
                failing_until: Mutex::new(HashMap::new()),
                clock,
                metrics,
            }),
        }
    }

    /// Serves the document for `request`, refreshing it as its freshness requires.
    ///
    /// # Errors
    /// Only when nothing servable is stored and the upstream fails.
    pub async fn lookup(&self, request: IndexRequest) -> Result<IndexLookup, Arc<ProxyError>> {
        let now = self.inner.clock.now();
        let cached = self.load(&request).await;
        let lookup = match cached.as_ref().map(|d| (d, d.lifetimes.freshness(now))) {
            Some((document, Freshness::Fresh)) => IndexLookup {
                document: Arc::clone(document),
                status: CacheStatus::Hit,
                warning: None,
            },
            Some((document, Freshness::Stale)) => {
                self.refresh_in_background(&request, Arc::clone(document), now);
                IndexLookup {
                    document: Arc::clone(document),
                    status: CacheStatus::Stale,
                    warning: None,
                }
            }
            Some((document, Freshness::Expired))
                if self.in_failure_backoff(&request, document, now) =>
            {
                IndexLookup {
                    document: Arc::clone(document),
                    status: CacheStatus::Stale,
                    warning: Some(format!(
                        "111 granary \"Revalidation Failed: upstream failing, next attempt within {:?}\"",
                        request.policy.update_time
                    )),
                }
            }
            Some((_, Freshness::Expired)) | None => {
                self.refresh_and_wait(&request, cached, now).await?
            }
        };
        let category = if lookup.document.found {
            "index"
        } else {
            "negative"
        };
        self.inner
            .metrics
            .record_cache(category, request.key.format(), lookup.status.as_str());
        Ok(lookup)
    }

    /// Forgets every index entry whose key starts with `prefix`, in both tiers, so the
    /// next request fetches it from the upstream. Returns the stored entries removed.
    ///
    /// # Errors
    /// When the metadata store fails.
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, ProxyError> {
        let _quiet = self.writes_settled().await;
        let owned = prefix.to_owned();
        self.inner
            .memory
            .invalidate_entries_if(move |key, _| key.starts_with(&owned))
            .expect("the memory tier is built with invalidation closures");
        self.inner
            .failing_until
            .lock()
            .expect("backoff map is never poisoned")
            .retain(|key, _| !key.starts_with(prefix));
        let removed = self
            .inner
            .shared
            .metadata
            .delete_index_entries(prefix)
            .await?;
        if let Some(redis) = &self.inner.shared.redis {
            let _ = redis.delete_prefix(prefix).await;
        }
        Ok(removed)
    }

    /// Forgets one index entry, in both tiers. Returns the stored entries removed.
    ///
    /// # Errors
    /// When the metadata store fails.
    pub async fn invalidate_key(&self, key: &str) -> Result<u64, ProxyError> {
        let _quiet = self.writes_settled().await;
        self.inner.memory.invalidate(key).await;
        self.inner
            .failing_until
            .lock()
            .expect("backoff map is never poisoned")
            .remove(key);
        self.inner.shared.forget(&[key.to_owned()]).await;
        Ok(self.inner.shared.metadata.delete_index_entry(key).await?)
    }

    /// Waits (at most [`PURGE_WAIT`]) for the shared-tier writes in flight, and keeps
    /// new ones waiting while the guard lives: a purge, or a process about to exit
    /// (`granary warm --in-process`), waits for them so.
    pub async fn writes_settled(&self) -> Option<tokio::sync::RwLockWriteGuard<'_, ()>> {
        let guard = tokio::time::timeout(PURGE_WAIT, self.inner.persists.write())
            .await
            .ok();
        if guard.is_none() {
            tracing::warn!("purging while index writes are still in flight");
        }
        guard
    }

    /// Refreshes (upstream fetches of index documents) in progress.
    #[must_use]
    pub fn refreshes_in_flight(&self) -> usize {
        self.inner.flights.in_flight()
    }

    /// Keys under `prefix` whose upstream failed at their last refresh and that are
    /// served stale meanwhile (offline mode).
    #[must_use]
    pub fn failing_keys(&self, prefix: &str) -> usize {
        let now = self.inner.clock.now();
        self.inner
            .failing_until
            .lock()
            .expect("backoff map is never poisoned")
            .iter()
            .filter(|(key, until)| key.starts_with(prefix) && now < **until)
            .count()
    }

    /// The in-process copy of `key` if it is fresh: what a result derived from it (a
    /// cached resolution) is checked against, without I/O and without refreshing.
    pub async fn fresh_in_memory(&self, key: &str) -> Option<Arc<IndexDocument>> {
        let document = self.inner.memory.get(key).await?;
        matches!(
            document.lifetimes.freshness(self.inner.clock.now()),
            Freshness::Fresh
        )
        .then_some(document)
    }

    /// The fingerprint of `key`'s fresh copy (`Some(None)`: a fresh "does not
    /// exist"), in memory or else in the shared tiers (read, not kept: there is no
    /// source here to render it); `None` when no copy is fresh.
    pub async fn fresh_fingerprint(&self, key: &str) -> Option<Option<String>> {
        if let Some(document) = self.fresh_in_memory(key).await {
            return Some(document.found.then(|| document.fingerprint().to_owned()));
        }
        let record = self.inner.shared.load(key).await?;
        (record.lifetimes.freshness(self.inner.clock.now()) == Freshness::Fresh)
            .then(|| record.found.then(|| document::fingerprint_of(&record.body)))
    }

    /// How old `document` is, in whole seconds (the `Age` of a cached response).
    #[must_use]
    pub fn age_of(&self, document: &IndexDocument) -> u64 {
        self.inner
            .clock
            .now()
            .duration_since(document.stored_at)
            .unwrap_or_default()
            .as_secs()
    }

    /// Bytes held by the in-process tier (approximate, by the weigher).
    #[must_use]
    pub fn memory_bytes(&self) -> u64 {
        self.inner.memory.weighted_size()
    }

    fn in_failure_backoff(
        &self,
        request: &IndexRequest,
        document: &IndexDocument,
        now: SystemTime,
    ) -> bool {
        let failing = self
            .inner
            .failing_until
            .lock()
            .expect("backoff map is never poisoned");
        failing
            .get(request.key.as_str())
            .is_some_and(|until| now < *until)
            && request.policy.serves_on_error(document.lifetimes, now)
    }

    fn record_refresh_outcome(&self, request: &IndexRequest, succeeded: bool) {
        let mut failing = self
            .inner
            .failing_until
            .lock()
            .expect("backoff map is never poisoned");
        if succeeded {
            failing.remove(request.key.as_str());
        } else {
            let now = self.inner.clock.now();
            note_failure(
                &mut failing,
                request.key.as_str(),
                now + request.policy.update_time,
                now,
            );
        }
    }

    async fn load(&self, request: &IndexRequest) -> Option<Arc<IndexDocument>> {
        let key = request.key.as_str();
        let memory = self.inner.memory.get(key).await;
        let consult_shared = match &memory {
            None => true,
            // Another replica may have refreshed it since.
            Some(document) => {
                self.inner.shared.is_shared
                    && document.lifetimes.freshness(self.inner.clock.now()) != Freshness::Fresh
            }
        };
        if !consult_shared {
            return memory;
        }
        let load = self.shared_load(request, memory.clone());
        if memory.is_none() {
            return load.await;
        }
        // A copy is in memory: a slow shared tier must not hold this request up.
        match tokio::time::timeout(SHARED_CONSULT_DEADLINE, load).await {
            Ok(Some(document)) => Some(document),
            _ => memory,
        }
    }

    /// [`IndexCache::load_shared`], one per key at a time, however many requests
    /// miss at once (a caller finding one in flight joins it).
    async fn shared_load(
        &self,
        request: &IndexRequest,
        memory: Option<Arc<IndexDocument>>,
    ) -> Option<Arc<IndexDocument>> {
        let (this, shared_request) = (self.clone(), request.clone());
        let (loaded, _) = self
            .inner
            .loads
            .run(request.key.as_str(), || async move {
                this.load_shared(&shared_request, memory).await
            })
            .await;
        loaded.flatten()
    }

    /// The entry from the shared tiers if it is newer than `memory`, rendered and put
    /// in memory; else `memory`.
    async fn load_shared(
        &self,
        request: &IndexRequest,
        memory: Option<Arc<IndexDocument>>,
    ) -> Option<Arc<IndexDocument>> {
        let key = request.key.as_str();
        let Some(record) = self.inner.shared.load(key).await else {
            return memory;
        };
        if let Some(document) = &memory {
            if record.lifetimes.fresh_until <= document.lifetimes.fresh_until {
                return memory;
            }
        }
        if record.format_version != request.source.format_version() {
            debug!(%key, "stored index entry has an older format; refetching");
            return memory;
        }
        match self.remember(request, record).await {
            Ok(document) => Some(document),
            Err(reason) => {
                warn!(%key, %reason, "stored index entry cannot be rendered; refetching");
                memory
            }
        }
    }

    /// A record from the shared tiers as a served document, rendered and kept in
    /// memory.
    async fn remember(
        &self,
        request: &IndexRequest,
        record: IndexRecord,
    ) -> Result<Arc<IndexDocument>, String> {
        let parsed = if record.found {
            check(&request.source, &record.body).await?
        } else {
            None
        };
        let document = Arc::new(IndexDocument::new(
            StoredParts {
                found: record.found,
                canonical: record.body,
                validators: record.validators,
                stored_at: record.stored_at,
                lifetimes: record.lifetimes,
            },
            Some(Arc::clone(&request.source)),
            parsed,
        ));
        self.inner
            .memory
            .insert(request.key.as_str().to_owned(), Arc::clone(&document))
            .await;
        Ok(document)
    }

    fn refresh_in_background(
        &self,
        request: &IndexRequest,
        cached: Arc<IndexDocument>,
        now: SystemTime,
    ) {
        let key = request.key.as_str().to_owned();
        let update_time = request.policy.update_time;
        let Some(token) = self.inner.refresh_lock.try_acquire(&key, update_time, now) else {
            return;
        };
        let this = self.clone();
        let request = request.clone();
        tokio::spawn(async move {
            // Across replicas: one refresh per key behind `SET NX PX` (if Redis is down,
            // the local lock taken above is the fallback).
            let shared_token = new_token();
            let redis = this.inner.shared.redis.clone();
            if let Some(redis) = &redis {
                if let Ok(false) = redis.try_lock(&key, &shared_token, update_time).await {
                    return;
                }
            }
            if this.refreshed_elsewhere(&request, &cached).await {
                if let Some(redis) = &redis {
                    let _ = redis.unlock(&key, &shared_token).await;
                }
                this.inner.refresh_lock.release(&key, &token);
                return;
            }
            let (result, _) = this
                .inner
                .flights
                .run(&key, || {
                    // The shared lock was taken above.
                    this.clone().refresh(request, Some(cached), false)
                })
                .await;
            if let Some(redis) = &redis {
                if matches!(result, Some(Ok(_))) {
                    let _ = redis.unlock(&key, &shared_token).await;
                }
            }
            match result {
                Some(Ok(_)) => this.inner.refresh_lock.release(&key, &token),
                // Keep the lock until it expires: that is the back-off before the next
                // attempt against a failing upstream.
                Some(Err(error)) => warn!(%key, %error, "background refresh failed; serving stale"),
                None => warn!(%key, "background refresh panicked"),
            }
        });
    }

    /// Whether another replica has stored a fresh copy newer than `cached` (taking it
    /// into memory if so): a request that served `cached` stale because the shared
    /// tiers answered slowly, or that read them just before another replica's refresh
    /// landed, must not fetch the page again. Joins the shared load in flight for the
    /// key if there is one.
    async fn refreshed_elsewhere(
        &self,
        request: &IndexRequest,
        cached: &Arc<IndexDocument>,
    ) -> bool {
        if !self.inner.shared.is_shared {
            return false;
        }
        let loaded = self.shared_load(request, Some(Arc::clone(cached))).await;
        loaded.is_some_and(|document| {
            !Arc::ptr_eq(&document, cached)
                && document.lifetimes.freshness(self.inner.clock.now()) == Freshness::Fresh
        })
    }

    async fn refresh_and_wait(
        &self,
        request: &IndexRequest,
        cached: Option<Arc<IndexDocument>>,
        now: SystemTime,
    ) -> Result<IndexLookup, Arc<ProxyError>> {
        let key = request.key.as_str();
        let (result, role) = self
            .inner
            .flights
            .run(key, || {
                self.clone().refresh(request.clone(), cached.clone(), true)
            })
            .await;
        if role == Role::Joined {
            self.inner
                .metrics
                .record_coalesced("index", request.key.format());
        }
        let result = result.unwrap_or_else(|| {
            Err(Arc::new(ProxyError::FillAborted {
                key: key.to_owned(),
            }))
        });
        // A response fetched for the flight's leader that must not be shared.
        if role == Role::Joined && matches!(&result, Ok((_, CacheStatus::Bypass))) {
            return Err(Arc::new(ProxyError::NotShareable {
                key: key.to_owned(),
            }));
        }
        match result {
            Ok((document, status)) => Ok(IndexLookup {
                document,
                status,
                warning: None,
            }),
            Err(error) => match cached {
                Some(document) if request.policy.serves_on_error(document.lifetimes, now) => {
                    warn!(%key, %error, "upstream failed; serving the last good copy");
                    Ok(IndexLookup {
                        document,
                        status: CacheStatus::Stale,
                        warning: Some(format!("111 granary \"Revalidation Failed: {error}\"")),
                    })
                }
                _ => Err(error),
            },
        }
    }

    /// The flight body: one conditional fetch, stored in both tiers. With
    /// `across_replicas` and Redis, the fetch is also one per key across replicas:
    /// the replica that takes the key's lock fetches, and the others wait for its
    /// copy in the shared tiers.
    async fn refresh(
        self,
        request: IndexRequest,
        cached: Option<Arc<IndexDocument>>,
        across_replicas: bool,
    ) -> RefreshResult {
        // A request that missed memory just before the previous flight for this key
        // stored its document, and started this flight just after that one ended,
        // finds the document here instead of fetching it again.
        if let Some(current) = self.inner.memory.get(request.key.as_str()).await {
            let newer = cached
                .as_ref()
                .is_none_or(|seen| !Arc::ptr_eq(seen, &current));
            if newer && current.lifetimes.freshness(self.inner.clock.now()) == Freshness::Fresh {
                return Ok((current, CacheStatus::Hit));
            }
        }
        let mut shared_lock = None;
        if let (true, Some(redis)) = (across_replicas, self.inner.shared.redis.clone()) {
            let token = new_token();
            let key = request.key.as_str();
            match redis
                .try_lock(key, &token, request.policy.update_time)
                .await
            {
                Ok(true) => shared_lock = Some((redis, token)),
                // Another replica is fetching it: take its copy when it lands.
                Ok(false) => {
                    if let Some(document) = self.wait_for_other_replica(&request, &redis).await {
                        return Ok((document, CacheStatus::Hit));
                    }
                }
                // Redis down: this replica fetches on its own.
                Err(_) => {}
            }
        }
        // Only a key with a copy to serve goes into the failure back-off (offline
        // mode); one that never had a copy just fails again next time.
        let had_copy = cached.as_ref().is_some_and(|document| document.found);
        let result = self.refresh_once(&request, cached).await;
        if let Some((redis, token)) = shared_lock {
            // Stored in the shared tiers by now (or given up on): let others look.
            let _ = redis.unlock(request.key.as_str(), &token).await;
        }
        if result.is_ok() || had_copy {
            self.record_refresh_outcome(&request, result.is_ok());
        }
        result
    }

    /// Waits, polling the shared tiers with a bounded back-off for at most
    /// `update_time`, for the copy another replica is fetching; `None` when it does
    /// not come (that replica died or failed), and this one fetches itself.
    async fn wait_for_other_replica(
        &self,
        request: &IndexRequest,
        redis: &super::redis::RedisTier,
    ) -> Option<Arc<IndexDocument>> {
        let deadline = tokio::time::Instant::now() + request.policy.update_time;
        let mut pause = Duration::from_millis(10);
        loop {
            tokio::time::sleep(pause).await;
            let now = self.inner.clock.now();
            if let Some(record) = self.inner.shared.load(request.key.as_str()).await {
                if record.lifetimes.freshness(now) == Freshness::Fresh
                    && record.format_version == request.source.format_version()
                {
                    return self.remember(request, record).await.ok();
                }
            }
            // The other replica is done (it failed, or stored nothing fresh) or gone.
            let lock = super::redis::lock_key(request.key.as_str());
            if !matches!(redis.get(&lock).await, Ok(Some(_))) {
                return None;
            }
            if tokio::time::Instant::now() + pause >= deadline {
                return None;
            }
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    async fn refresh_once(
        &self,
        request: &IndexRequest,
        cached: Option<Arc<IndexDocument>>,
    ) -> RefreshResult {
        let key = request.key.as_str();
        let validators = cached
            .as_ref()
            .filter(|d| d.found)
            .map(|d| d.validators.clone())
            .unwrap_or_default();
        let fetched = request
            .source
            .fetch(&validators)
            .await
            .map_err(|e| Arc::new(ProxyError::from(e)))?;
        let now = self.inner.clock.now();
        let (document, status) = match fetched {
            Fetched::Uncacheable { canonical, parsed } => {
                let document = IndexDocument::new(
                    StoredParts {
                        found: true,
                        canonical,
                        validators: Validators::default(),
                        stored_at: now,
                        lifetimes: Lifetimes {
                            fresh_until: now,
                            stale_until: now,
                        },
                    },
                    Some(Arc::clone(&request.source)),
                    parsed,
                );
                // Neither kept in memory nor written anywhere.
                return Ok((Arc::new(document), CacheStatus::Bypass));
            }
            Fetched::Document {
                canonical,
                validators,
                ttl,
                parsed,
            } => {
                let document = IndexDocument::new(
                    StoredParts {
                        found: true,
                        canonical,
                        validators,
                        stored_at: now,
                        lifetimes: match ttl {
                            Some(ttl) => FreshnessPolicy {
                                ttl: ttl.min(request.policy.ttl),
                                ..request.policy
                            }
                            .lifetimes(now),
                            None => request.policy.lifetimes(now),
                        },
                    },
                    Some(Arc::clone(&request.source)),
                    parsed,
                );
                self.wait_for_shared_write(self.persist(request, &document))
                    .await;
                (document, CacheStatus::Miss)
            }
            Fetched::NotModified { validators } => {
                let Some(cached) = cached.filter(|d| d.found) else {
                    return Err(Arc::new(ProxyError::Upstream(UpstreamError::Malformed {
                        upstream: key.to_owned(),
                        reason: "304 Not Modified to an unconditional request".to_owned(),
                    })));
                };
                let lifetimes = request.policy.lifetimes(now);
                let validators = Validators {
                    etag: validators.etag.or_else(|| cached.validators.etag.clone()),
                    last_modified: validators
                        .last_modified
                        .or_else(|| cached.validators.last_modified.clone()),
                };
                let record = IndexRecord {
                    key: key.to_owned(),
                    format_version: request.source.format_version(),
                    found: true,
                    body: cached.canonical.clone(),
                    validators: validators.clone(),
                    stored_at: now,
                    lifetimes,
                };
                let shared = self.inner.shared.clone();
                self.wait_for_shared_write(tokio::spawn(async move {
                    shared.renew(&record, now).await;
                }))
                .await;
                (
                    cached.renewed(validators, now, lifetimes),
                    CacheStatus::Revalidated,
                )
            }
            Fetched::NotFound => {
                let fresh_until = now + request.negative_ttl;
                let document = IndexDocument::new(
                    StoredParts {
                        found: false,
                        canonical: Bytes::new(),
                        validators: Validators::default(),
                        stored_at: now,
                        lifetimes: Lifetimes {
                            fresh_until,
                            stale_until: fresh_until,
                        },
                    },
                    None,
                    None,
                );
                self.wait_for_shared_write(self.persist(request, &document))
                    .await;
                (document, CacheStatus::Miss)
            }
        };
        let document = Arc::new(document);
        self.inner
            .memory
            .insert(key.to_owned(), Arc::clone(&document))
            .await;
        Ok((document, status))
    }

    /// Waits for a write to the shared tiers when other replicas read them, at most
    /// [`SHARED_PERSIST_WAIT`]: a slow database never holds up a page that is
    /// already in memory. An embedded store is never waited for.
    async fn wait_for_shared_write(&self, write: tokio::task::JoinHandle<()>) {
        if self.inner.shared.is_shared {
            let _ = tokio::time::timeout(SHARED_PERSIST_WAIT, write).await;
        }
    }

    /// Writes the document to the shared tiers on a task of its own, so it completes
    /// whoever waits for it.
    fn persist(
        &self,
        request: &IndexRequest,
        document: &IndexDocument,
    ) -> tokio::task::JoinHandle<()> {
        let record = IndexRecord {
            key: request.key.as_str().to_owned(),
            format_version: request.source.format_version(),
            found: document.found,
            body: document.canonical.clone(),
            validators: document.validators.clone(),
            stored_at: document.stored_at,
            lifetimes: document.lifetimes,
        };
        // Failures are logged by the tiers: the in-process tier still serves it.
        let shared = self.inner.shared.clone();
        // Held from here, not from when the task first runs: a purge that starts in
        // between waits for this write.
        let Ok(writing) = Arc::clone(&self.inner.persists).try_read_owned() else {
            // A purge is under way: this document was fetched before it finished, and
            // must not outlive it in the shared tiers.
            tracing::debug!(key = %record.key, "not persisted: a purge is under way");
            return tokio::spawn(async {});
        };
        tokio::spawn(async move {
            let _writing = writing;
            shared.store(&record, record.stored_at).await;
        })
    }
}

/// Past this many keys, expired back-offs are dropped when another is noted.
const FAILING_KEYS_PRUNED_ABOVE: usize = 4096;

/// Notes that `key`'s refresh failed, backing off until `until`. A key whose failure
/// is never followed by a success (a project asked for once) would otherwise stay
/// for ever: the soak's stream of new projects grew the map without bound.
fn note_failure(
    failing: &mut HashMap<String, SystemTime>,
    key: &str,
    until: SystemTime,
    now: SystemTime,
) {
    if failing.len() >= FAILING_KEYS_PRUNED_ABOVE {
        failing.retain(|_, until| now < *until);
    }
    failing.insert(key.to_owned(), until);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn expired_failure_back_offs_do_not_accumulate() {
        let mut failing = HashMap::new();
        let start = SystemTime::UNIX_EPOCH;
        // A new key fails every second, each backing off for a minute.
        for second in 0..20_000u64 {
            let now = start + Duration::from_secs(second);
            note_failure(
                &mut failing,
                &format!("k{second}"),
                now + Duration::from_secs(60),
                now,
            );
        }
        assert!(
            failing.len() <= FAILING_KEYS_PRUNED_ABOVE + 1,
            "{} back-offs kept",
            failing.len()
        );
        // Those still backing off are all kept.
        assert!(failing.contains_key("k19999") && failing.contains_key("k19941"));
    }

    #[test]
    fn a_derived_form_is_made_once_per_document() {
        let document = IndexDocument::new(
            StoredParts {
                found: true,
                canonical: Bytes::from_static(b"{\"name\":\"x\"}"),
                validators: Validators::default(),
                stored_at: SystemTime::UNIX_EPOCH,
                lifetimes: Lifetimes {
                    fresh_until: SystemTime::UNIX_EPOCH,
                    stale_until: SystemTime::UNIX_EPOCH,
                },
            },
            None,
            None,
        );
        let made = AtomicUsize::new(0);
        for _ in 0..100 {
            let parsed = document.derived(|canonical| {
                made.fetch_add(1, Ordering::SeqCst);
                serde_json::from_slice::<serde_json::Value>(canonical).expect("json")
            });
            assert_eq!(parsed["name"], "x");
        }
        assert_eq!(made.load(Ordering::SeqCst), 1, "parsed once for 100 reads");
    }
}
