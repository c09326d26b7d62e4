//! Immutable artifacts: stored blobs served with a lease, small hot ones from memory,
//! and misses through one fill per key that every concurrent reader streams from.
//!
//! | part | what |
//! |---|---|
//! | [`ArtifactCache::get_or_fetch`] | the one pipeline: stored? → locate (protocol) → fetch |
//! | `fill` | one download per key: upstream → hasher → temp file, verify, publish |
//! | `reader` | one client's view of a fill |
//! | `tee` | the newest chunks of a fill, shared zero-copy with readers that keep up |
//! | `hot` | small hot artifacts, whole, in memory |
//! | `leases` | blobs being served or published are never evicted |
//! | `across_replicas` | one download per key across replicas, waiters woken by Redis |
//! | `from_replica` | a replica's clients follow another replica's download as it arrives |
//! | `access` | batched last-access times |

mod access;
mod across_replicas;
mod fill;
mod from_replica;
pub mod hot;
pub mod leases;
mod reader;
mod tee;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use futures::future::{BoxFuture, Shared};
use futures::StreamExt;
use tokio::sync::{broadcast, Notify};
use tracing::warn;
use url::Url;

pub(crate) use access::AccessLog;
use fill::Fill;
pub use fill::FillProgress;
pub use from_replica::{ReplicaStreams, REPLICA_FILL_PATH};
use hot::{HotArtifact, HotArtifacts, MAX_HOT_ARTIFACT_BYTES};
use leases::{BlobLease, BlobLeases};
pub use reader::FillReader;

use super::coordination::{DownloadLocks, SingleFlight};
use super::digest::{DigestAlgorithm, ExpectedDigest};
use super::events::Published;
use super::{CacheKey, CacheStatus, ProxyError, UpstreamClient};
use crate::clock::Clock;
use crate::metadata::{ArtifactRecord, MetadataError, MetadataStore};
use crate::metrics::Metrics;
use crate::storage::{BlobStore, Digest, StoredBlob};

/// How many published-artifact events wait for slow subscribers before the oldest
/// are dropped (a subscriber is told how many it missed).
const PUBLISHED_EVENTS_CAPACITY: usize = 1024;

/// Everything needed to fetch one artifact. The URL comes from a cached index
/// document, never from the client.
#[derive(Debug, Clone)]
pub struct ArtifactRequest {
    pub key: CacheKey,
    pub repo: String,
    pub upstream: Arc<UpstreamClient>,
    pub url: Url,
    /// Digests known before the download (from the index).
    pub expected: Vec<ExpectedDigest>,
    /// Digests the upstream publishes beside the artifact, looked up while it downloads.
    pub published: Option<PublishedDigests>,
    pub expected_size: Option<u64>,
    pub content_type: String,
}

/// The outcome of looking up an artifact's published digests.
pub type PublishedLookup = Shared<BoxFuture<'static, Result<Vec<ExpectedDigest>, Arc<ProxyError>>>>;

/// Digests the upstream publishes beside an artifact (Maven's `.sha1` files): looked up
/// while the body downloads, so a cold miss costs no extra round trip before its first
/// byte. The body is hashed with every algorithm in `algorithms`, and checked against
/// whatever `lookup` finds before anything is released or stored.
#[derive(Clone)]
pub struct PublishedDigests {
    pub algorithms: Vec<DigestAlgorithm>,
    pub lookup: PublishedLookup,
}

impl std::fmt::Debug for PublishedDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedDigests")
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// Where an artifact's bytes come from for this response.
#[derive(Debug)]
pub enum ArtifactBody {
    /// Stored and verified; the lease keeps eviction away while it is served.
    Stored {
        record: ArtifactRecord,
        blob: StoredBlob,
        lease: BlobLease,
    },
    /// Small and hot: the whole artifact in memory.
    Memory(Arc<HotArtifact>),
    /// Being fetched; follow the fill.
    Filling(FillReader),
}

/// The answer to an artifact request.
#[derive(Debug)]
pub struct ArtifactLookup {
    pub body: ArtifactBody,
    pub status: CacheStatus,
}

/// Options of the artifact engine.
#[derive(Debug, Clone, Default)]
pub struct ArtifactCacheOptions {
    /// `storage.max_size`.
    pub max_stored_bytes: Option<u64>,
    /// The cross-replica download lock (with Redis).
    pub download_locks: Option<DownloadLocks>,
    /// Bytes of small hot artifacts kept in memory.
    pub hot_capacity_bytes: u64,
    /// Streaming downloads in flight between replicas (with the download lock).
    pub replica_streams: Option<ReplicaStreams>,
}

/// The engine for immutable artifacts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    metadata: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    fills: Mutex<HashMap<String, Arc<Fill>>>,
    /// Bytes written to temporary files by fills in progress.
    temp_bytes: AtomicU64,
    /// Blobs and bytes evicted since start.
    evicted: (AtomicU64, AtomicU64),
    leases: Arc<BlobLeases>,
    /// Small hot artifacts, whole, bounded in bytes.
    hot: HotArtifacts,
    access_log: AccessLog,
    /// `storage.max_size`: evict beyond this many stored bytes.
    max_stored_bytes: Option<u64>,
    /// Wakes the one eviction task.
    eviction_wanted: Arc<Notify>,
    /// One download per artifact across replicas, when Redis is configured.
    download_locks: Option<DownloadLocks>,
    /// One waiter per key on this replica while another replica downloads it.
    cross_replica_waits: SingleFlight<across_replicas::WaitOutcome>,
    replica_streams: Option<ReplicaStreams>,
    /// Concurrent lookups of one key's row share one query: a stampede on a replica
    /// costs one database connection, not one per request.
    row_lookups: SingleFlight<Result<Option<ArtifactRecord>, Arc<MetadataError>>>,
    /// Fills ended so far; part of a row lookup's flight key (see `artifact_row`).
    fills_ended: AtomicU64,
    published: broadcast::Sender<Published>,
    /// Published events sent so far (for [`ArtifactCache::published_count`]).
    published_count: AtomicU64,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

/// A weak handle, for background tasks that must not keep the cache alive.
#[derive(Debug, Clone)]
pub struct WeakArtifactCache(Weak<Inner>);

impl ArtifactCache {
    #[must_use]
    pub fn new(
        metadata: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        options: ArtifactCacheOptions,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                metadata,
                blobs,
                fills: Mutex::new(HashMap::new()),
                temp_bytes: AtomicU64::new(0),
                evicted: (AtomicU64::new(0), AtomicU64::new(0)),
                leases: Arc::new(BlobLeases::default()),
                hot: HotArtifacts::new(options.hot_capacity_bytes),
                access_log: AccessLog::default(),
                max_stored_bytes: options.max_stored_bytes,
                eviction_wanted: Arc::new(Notify::new()),
                download_locks: options.download_locks,
                cross_replica_waits: SingleFlight::default(),
                replica_streams: options.replica_streams,
                row_lookups: SingleFlight::default(),
                fills_ended: AtomicU64::new(0),
                published: broadcast::channel(PUBLISHED_EVENTS_CAPACITY).0,
                published_count: AtomicU64::new(0),
                clock,
                metrics,
            }),
        }
    }

    pub(crate) fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.inner.metadata
    }

    pub(crate) fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.inner.blobs
    }

    pub(crate) fn hot(&self) -> &HotArtifacts {
        &self.inner.hot
    }

    pub(crate) fn leases(&self) -> &Arc<BlobLeases> {
        &self.inner.leases
    }

    pub(crate) fn access_log(&self) -> &AccessLog {
        &self.inner.access_log
    }

    pub(crate) fn eviction_wanted(&self) -> &Arc<Notify> {
        &self.inner.eviction_wanted
    }

    pub(crate) fn downgrade(&self) -> WeakArtifactCache {
        WeakArtifactCache(Arc::downgrade(&self.inner))
    }

    pub(crate) fn upgrade(weak: &WeakArtifactCache) -> Option<Self> {
        weak.0.upgrade().map(|inner| Self { inner })
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The configured bound on stored bytes.
    #[must_use]
    pub fn max_stored_bytes(&self) -> Option<u64> {
        self.inner.max_stored_bytes
    }

    /// Bytes in temporary files of fills in progress; they count against
    /// Bytes of small artifacts held whole in memory (bounded by
    /// `cache.artifact_memory_capacity`).
    #[must_use]
    pub fn hot_bytes(&self) -> u64 {
        self.inner.hot.bytes()
    }

    /// `storage.max_size` too.
    #[must_use]
    pub fn temp_bytes(&self) -> u64 {
        self.inner
            .temp_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Blobs and bytes evicted since start.
    #[must_use]
    pub fn evicted(&self) -> (u64, u64) {
        (
            self.inner
                .evicted
                .0
                .load(std::sync::atomic::Ordering::Relaxed),
            self.inner
                .evicted
                .1
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    pub(crate) fn count_eviction(&self, bytes: u64) {
        self.inner
            .evicted
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner
            .evicted
            .1
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Every artifact published from now on (key, digest, where the bytes are), for
    /// features that work off the request path. A subscriber that falls more than
    /// [`PUBLISHED_EVENTS_CAPACITY`] events behind is told how many it missed.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.inner.published.subscribe()
    }

    /// The one artifact pipeline every protocol uses: a stored artifact is served
    /// without consulting the index (it is immutable); otherwise `locate` finds it in
    /// the protocol's cached index (the upstream URL and the digests to verify), and
    /// the artifact is fetched once, streamed to every reader, verified and stored.
    ///
    /// # Errors
    /// What `locate` fails with, and fetch failures (converted into `E`).
    pub async fn get_or_fetch<E, L>(&self, key: &CacheKey, locate: L) -> Result<ArtifactLookup, E>
    where
        E: From<Arc<ProxyError>>,
        L: Future<Output = Result<ArtifactRequest, E>>,
    {
        if let Some(lookup) = self.stored(key).await.map_err(Arc::new)? {
            return Ok(lookup);
        }
        let request = locate.await?;
        Ok(self.fetch(request).await?)
    }

    /// The stored artifact for `key`, if any. A row whose blob has vanished is dropped.
    ///
    /// # Errors
    /// When the metadata or blob store fails.
    pub async fn stored(&self, key: &CacheKey) -> Result<Option<ArtifactLookup>, ProxyError> {
        if let Some(hot) = self.inner.hot.get(key.as_str()).await {
            self.record_hit(key);
            return Ok(Some(ArtifactLookup {
                body: ArtifactBody::Memory(hot),
                status: CacheStatus::Hit,
            }));
        }
        let Some(record) = self.artifact_row(key.as_str()).await? else {
            return Ok(None);
        };
        // Lease first, then look: an eviction cannot remove what we are about to serve.
        let Some(lease) = self.inner.leases.acquire(&record.digest) else {
            return Ok(None);
        };
        let Some(blob) = self.inner.blobs.get(&record.digest).await? else {
            warn!(key = %key, digest = %record.digest, "artifact row without its blob; refetching");
            self.inner.metadata.delete_artifact(key.as_str()).await?;
            return Ok(None);
        };
        self.record_hit(key);
        if blob.size <= MAX_HOT_ARTIFACT_BYTES {
            if let Some(bytes) = self.read_small(&record.digest, blob.size).await {
                let hot = Arc::new(HotArtifact { record, bytes });
                self.inner
                    .hot
                    .insert(
                        key.as_str(),
                        HotArtifact {
                            record: hot.record.clone(),
                            bytes: hot.bytes.clone(),
                        },
                    )
                    .await;
                return Ok(Some(ArtifactLookup {
                    body: ArtifactBody::Memory(hot),
                    status: CacheStatus::Hit,
                }));
            }
        }
        Ok(Some(ArtifactLookup {
            body: ArtifactBody::Stored {
                record,
                blob,
                lease,
            },
            status: CacheStatus::Hit,
        }))
    }

    /// The key's artifact row, one query for all concurrent lookups of the key. A
    /// lookup joins only one begun since the last fill ended: a request that missed
    /// a fill in the map because it had just ended must not take a "no row" read
    /// before that fill's row was written (and download the artifact again).
    async fn artifact_row(&self, key: &str) -> Result<Option<ArtifactRecord>, MetadataError> {
        let generation = self
            .inner
            .fills_ended
            .load(std::sync::atomic::Ordering::SeqCst);
        let metadata = Arc::clone(&self.inner.metadata);
        let owned = key.to_owned();
        let (row, _) = self
            .inner
            .row_lookups
            .run(&format!("{generation} {key}"), || async move {
                metadata.artifact(&owned).await.map_err(Arc::new)
            })
            .await;
        match row {
            Some(Ok(row)) => Ok(row),
            Some(Err(error)) => Err(match Arc::try_unwrap(error) {
                Ok(error) => error,
                Err(shared) => match &*shared {
                    MetadataError::Unavailable(reason) => {
                        MetadataError::Unavailable(reason.clone())
                    }
                    other => MetadataError::Unavailable(other.to_string()),
                },
            }),
            None => Err(MetadataError::Unavailable(format!(
                "the lookup of `{key}` stopped"
            ))),
        }
    }

    fn record_hit(&self, key: &CacheKey) {
        self.inner
            .access_log
            .record(key.as_str(), self.inner.clock.now());
        self.inner
            .metrics
            .record_cache("artifact", key.format(), CacheStatus::Hit.as_str());
    }

    /// A small blob's bytes, verified against its digest before they are trusted
    /// from memory; `None` if it cannot be read or does not match (served from the
    /// store instead, where `granary verify` finds it).
    async fn read_small(&self, digest: &Digest, size: u64) -> Option<Bytes> {
        let mut stream = self.inner.blobs.read(digest, None).await.ok()?;
        let mut bytes = Vec::with_capacity(usize::try_from(size).ok()?);
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.ok()?);
        }
        let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        (actual == digest.as_str()).then(|| Bytes::from(bytes))
    }

    /// Serves the artifact from storage, or joins (or starts) its fill.
    ///
    /// # Errors
    /// When the fill fails before its first byte (upstream 404, unreachable, ...).
    pub async fn fetch(&self, request: ArtifactRequest) -> Result<ArtifactLookup, Arc<ProxyError>> {
        let format = request.key.format();
        let request_key = request.key.clone();
        // The fill map first, then the store: a fill leaves the map only after its row
        // is written, so a fill that completes between the two checks is seen by the
        // second, never missed by both (which would start a second download).
        let fill = if let Some(fill) = self.local_fill(&request.key) {
            fill
        } else {
            if let Some(stored) = self.stored(&request.key).await.map_err(Arc::new)? {
                return Ok(stored);
            }
            match &self.inner.download_locks {
                None => self
                    .join_or_start(request, None, fill::FillSource::Upstream)
                    .await
                    .map_err(Arc::new)?,
                Some(locks) => match self.fill_across_replicas(&request, locks).await? {
                    across_replicas::Acquired::Stored(lookup) => return Ok(lookup),
                    across_replicas::Acquired::Fill(fill) => fill,
                },
            }
        };
        let mut reader = FillReader::new(fill);
        // Joining a fill whose bytes are all verified: it is only being published.
        // Wait the few milliseconds that takes and serve the stored blob (with its
        // ETag and Range support). A fill this request just started is still
        // connecting here, so this never mistakes a miss for a hit.
        if reader.is_verified() {
            reader.wait_published(fill::PUBLISH_WAIT).await;
            if let Some(stored) = self.stored(&request_key).await.map_err(Arc::new)? {
                return Ok(stored);
            }
        }
        let status = CacheStatus::Miss;
        reader.wait_for_headers().await?;
        self.inner
            .metrics
            .record_cache("artifact", format, status.as_str());
        Ok(ArtifactLookup {
            body: ArtifactBody::Filling(reader),
            status,
        })
    }

    /// The fill in flight on this replica for `key`, joined (and counted as coalesced).
    fn local_fill(&self, key: &CacheKey) -> Option<Arc<Fill>> {
        let fill = self
            .inner
            .fills
            .lock()
            .expect("fill map is never poisoned")
            .get(key.as_str())
            .cloned()?;
        self.inner
            .metrics
            .record_coalesced("artifact", key.format());
        Some(fill)
    }

    /// The `algorithm` digest of `key`'s bytes while its fill is verified but not yet
    /// stored: a client that asks for a checksum right after the file (as Maven's
    /// does) is answered without waiting for the publish. `None` when no verified
    /// fill computed that digest.
    #[must_use]
    pub fn verified_digest(&self, key: &CacheKey, algorithm: DigestAlgorithm) -> Option<String> {
        let fills = self.inner.fills.lock().expect("fill map is never poisoned");
        let digests = fills.get(key.as_str())?.digests.get()?;
        digests.get(algorithm).map(str::to_owned)
    }

    /// Every fill in progress, with its progress.
    #[must_use]
    pub fn fills_progress(&self) -> Vec<fill::FillProgress> {
        let fills: Vec<Arc<Fill>> = self
            .inner
            .fills
            .lock()
            .expect("fill map is never poisoned")
            .values()
            .cloned()
            .collect();
        fills.iter().map(|fill| fill.progress()).collect()
    }

    /// Published-artifact events sent so far: a subscriber that has handled as many
    /// (counting the ones it missed) has caught up.
    #[must_use]
    pub fn published_count(&self) -> u64 {
        self.inner
            .published_count
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Fills in flight; for `/-/ready` and tests.
    #[must_use]
    pub fn fills_in_flight(&self) -> usize {
        self.inner
            .fills
            .lock()
            .expect("fill map is never poisoned")
            .len()
    }
}
