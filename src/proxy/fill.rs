//! Immutable artifacts: one fill per key, many streaming readers.
//!
//! ```text
//! fill:    upstream body ─► hasher ─► temp file ─► watermark (bytes written so far)
//! readers: read the temp file up to the watermark, wait for it to move, repeat
//! done:    verify digests ─► fsync ─► rename into the blob store ─► record the row ─► Done
//! failure: Failed(reason) ─► every reader's stream ends with an error ─► temp file removed
//! ```
//!
//! Readers read from the file with positional reads, never from a channel of chunks,
//! so a slow reader never slows the fill and the first client is just a reader like
//! any other. Until the fill is verified, readers hold back the final byte: a client
//! never sees a complete body whose hash turned out wrong.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use url::Url;

use super::cross_replica::{Acquired, CrossReplicaLock, HeldLock};
use super::digest::{DigestAlgorithm, ExpectedDigest, StreamHasher};
use super::hot_artifacts::{HotArtifact, HotArtifacts, MAX_HOT_ARTIFACT_BYTES};
use super::leases::{BlobLease, BlobLeases};
use super::maintenance::AccessLog;
use super::tee::RecentChunks;
use super::upstream::{display_url, RequestKind};
use super::{CacheKey, CacheStatus, ProxyError, UpstreamClient, UpstreamError};
use crate::clock::Clock;
use crate::http_cache::Validators;
use crate::metadata::{ArtifactRecord, MetadataStore};
use crate::metrics::{Metrics, RepoLabels};
use crate::storage::{BlobStore, Digest, StoredBlob};
use futures::future::{BoxFuture, Shared};

/// How long a request that joins a verified fill waits for it to be published.
const PUBLISH_WAIT: Duration = Duration::from_secs(5);
/// Bytes read per step by a reader. Below glibc's default mmap threshold (128 KiB),
/// so each chunk's buffer comes from the heap rather than an mmap/munmap pair: with
/// hundreds of readers that difference dominated time to first byte (bench/run).
const READ_CHUNK: usize = 64 * 1024;
/// The watermark moves at least this often while bytes arrive...
const PUBLISH_INTERVAL: Duration = Duration::from_millis(5);
/// ...or after this many bytes, whichever comes first.
const PUBLISH_BYTES: u64 = 256 * 1024;

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

#[derive(Debug, Clone)]
enum FillState {
    Connecting,
    Streaming {
        written: u64,
        content_length: Option<u64>,
    },
    /// Every byte is written and every digest matched: readers may deliver it all.
    /// Publishing (fsync, rename, row) follows without holding clients up.
    Verified {
        size: u64,
    },
    Done {
        size: u64,
    },
    Failed(Arc<ProxyError>),
}

#[derive(Debug)]
pub(super) struct Fill {
    key: String,
    /// Opened once on the temp file; positional reads keep working after the rename.
    file: Arc<std::fs::File>,
    /// The newest bytes, shared zero-copy with readers that keep up.
    recent: Arc<RecentChunks>,
    state: watch::Receiver<FillState>,
}

/// Options of the artifact engine.
#[derive(Debug, Clone, Default)]
pub struct ArtifactCacheOptions {
    /// `storage.max_size`.
    pub max_stored_bytes: Option<u64>,
    /// The cross-replica download lock (with Redis).
    pub cross_replica: Option<CrossReplicaLock>,
    /// Bytes of small hot artifacts kept in memory.
    pub hot_capacity_bytes: u64,
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
    leases: Arc<BlobLeases>,
    /// Small hot artifacts, whole, bounded in bytes.
    hot: HotArtifacts,
    access_log: AccessLog,
    /// `storage.max_size`: evict beyond this many stored bytes.
    max_stored_bytes: Option<u64>,
    /// One download per artifact across replicas, when Redis is configured.
    cross_replica: Option<CrossReplicaLock>,
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
                leases: Arc::new(BlobLeases::default()),
                hot: HotArtifacts::new(options.hot_capacity_bytes),
                access_log: AccessLog::default(),
                max_stored_bytes: options.max_stored_bytes,
                cross_replica: options.cross_replica,
                clock,
                metrics,
            }),
        }
    }

    pub(super) fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.inner.metadata
    }

    pub(super) fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.inner.blobs
    }

    pub(super) fn hot(&self) -> &HotArtifacts {
        &self.inner.hot
    }

    pub(super) fn leases(&self) -> &Arc<BlobLeases> {
        &self.inner.leases
    }

    pub(super) fn access_log(&self) -> &AccessLog {
        &self.inner.access_log
    }

    pub(super) fn downgrade(&self) -> WeakArtifactCache {
        WeakArtifactCache(Arc::downgrade(&self.inner))
    }

    pub(super) fn upgrade(weak: &WeakArtifactCache) -> Option<Self> {
        weak.0.upgrade().map(|inner| Self { inner })
    }

    /// The configured bound on stored bytes.
    #[must_use]
    pub fn max_stored_bytes(&self) -> Option<u64> {
        self.inner.max_stored_bytes
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
        let Some(record) = self.inner.metadata.artifact(key.as_str()).await? else {
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
            match &self.inner.cross_replica {
                None => self.join_or_start(request, None).await.map_err(Arc::new)?,
                Some(lock) => match self.acquire_across_replicas(&request, lock).await? {
                    Acquired::Stored(lookup) => return Ok(lookup),
                    Acquired::Fill(fill) => fill,
                },
            }
        };
        let mut reader = FillReader {
            fill,
            offset: 0,
            content_length: None,
        };
        // Joining a fill whose bytes are all verified: it is only being published.
        // Wait the few milliseconds that takes and serve the stored blob (with its
        // ETag and Range support). A fill this request just started is still
        // connecting here, so this never mistakes a miss for a hit.
        if reader.is_verified() {
            reader.wait_published(PUBLISH_WAIT).await;
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
    pub(super) fn local_fill(&self, key: &CacheKey) -> Option<Arc<Fill>> {
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

    pub(super) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(super) async fn join_or_start(
        &self,
        request: ArtifactRequest,
        held: Option<HeldLock>,
    ) -> Result<Arc<Fill>, ProxyError> {
        let key = request.key.as_str().to_owned();
        if let Some(fill) = self.local_fill(&request.key) {
            if let Some(held) = held {
                held.release().await;
            }
            return Ok(fill);
        }
        // Create the temp file outside the lock, then race to register it.
        let temp_path = self
            .inner
            .blobs
            .temp_dir()
            .join(format!("fill-{:016x}", rand::random::<u64>()));
        let write_file = tokio::fs::File::create(&temp_path)
            .await
            .map_err(|source| ProxyError::TempFile {
                key: key.clone(),
                source,
            })?;
        let read_file = std::fs::File::open(&temp_path).map_err(|source| ProxyError::TempFile {
            key: key.clone(),
            source,
        })?;
        let guard = TempFileGuard(Some(temp_path.clone()));
        let (state_tx, state_rx) = watch::channel(FillState::Connecting);
        let recent = Arc::new(RecentChunks::default());
        let fill = Arc::new(Fill {
            key: key.clone(),
            file: Arc::new(read_file),
            recent: Arc::clone(&recent),
            state: state_rx,
        });
        {
            let mut fills = self.inner.fills.lock().expect("fill map is never poisoned");
            if let Some(existing) = fills.get(&key) {
                // Lost the race; our temp file is removed by the guard.
                self.inner
                    .metrics
                    .record_coalesced("artifact", request.key.format());
                return Ok(Arc::clone(existing));
            }
            fills.insert(key.clone(), Arc::clone(&fill));
        }
        let this = self.clone();
        tokio::spawn(async move {
            let outcome = this
                .run_fill(&request, write_file, guard, &recent, &state_tx)
                .await;
            if let Some(held) = held {
                held.release().await;
            }
            match outcome {
                Ok(size) => {
                    info!(key = %request.key, size, "artifact stored");
                    state_tx.send_replace(FillState::Done { size });
                    if let Some(max_bytes) = this.inner.max_stored_bytes {
                        let cache = this.clone();
                        tokio::spawn(async move {
                            if let Err(error) = cache.evict_to(max_bytes).await {
                                warn!(%error, "eviction after a fill failed");
                            }
                        });
                    }
                }
                Err(error) => {
                    if matches!(
                        error,
                        ProxyError::Integrity { .. } | ProxyError::SizeMismatch { .. }
                    ) {
                        this.inner
                            .metrics
                            .integrity_failures
                            .get_or_create(&RepoLabels {
                                repo: request.repo.clone(),
                            })
                            .inc();
                    }
                    if matches!(*state_tx.borrow(), FillState::Verified { .. }) {
                        // The bytes were verified; readers finish from their open
                        // handle. Only storing failed: the next request fetches again.
                        warn!(key = %request.key, %error, "verified artifact could not be stored");
                    } else {
                        warn!(key = %request.key, %error, "artifact fill failed; nothing stored");
                        state_tx.send_replace(FillState::Failed(Arc::new(error)));
                    }
                }
            }
            this.inner
                .fills
                .lock()
                .expect("fill map is never poisoned")
                .remove(&key);
        });
        Ok(fill)
    }

    async fn run_fill(
        &self,
        request: &ArtifactRequest,
        mut file: tokio::fs::File,
        mut guard: TempFileGuard,
        recent: &RecentChunks,
        state: &watch::Sender<FillState>,
    ) -> Result<u64, ProxyError> {
        let key = request.key.as_str();
        let response = request
            .upstream
            .get(
                &request.url,
                RequestKind::Artifact,
                None,
                &Validators::default(),
            )
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(ProxyError::UpstreamNotFound {
                key: key.to_owned(),
            });
        }
        if !status.is_success() {
            return Err(UpstreamError::Status {
                upstream: display_url(&request.url),
                status: status.as_u16(),
            }
            .into());
        }
        // Published digests are looked up while the body downloads, once the upstream
        // has said it has the file (a miss costs one request, not one per checksum).
        let published_lookup = request
            .published
            .as_ref()
            .map(|published| tokio::spawn(published.lookup.clone()));
        let content_length = response.content_length();
        let expected_size = request.expected_size.or(content_length);
        if let (Some(announced), Some(listed)) = (content_length, request.expected_size) {
            if announced != listed {
                return Err(ProxyError::SizeMismatch {
                    key: key.to_owned(),
                    expected: listed,
                    received: announced,
                });
            }
        }
        state.send_replace(FillState::Streaming {
            written: 0,
            content_length: expected_size,
        });

        let mut hasher = StreamHasher::new(
            request.expected.iter().map(|e| e.algorithm).chain(
                request
                    .published
                    .iter()
                    .flat_map(|p| p.algorithms.iter().copied()),
            ),
        );
        let mut written: u64 = 0;
        let mut published: u64 = 0;
        let mut last_publish = Instant::now();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| request.upstream.body_error(&request.url, &e))?;
            written += chunk.len() as u64;
            if let Some(limit) = expected_size {
                if written > limit {
                    return Err(ProxyError::SizeMismatch {
                        key: key.to_owned(),
                        expected: limit,
                        received: written,
                    });
                }
            }
            hasher.update(&chunk);
            recent.push(written - chunk.len() as u64, chunk.clone());
            file.write_all(&chunk)
                .await
                .map_err(|source| ProxyError::TempFile {
                    key: key.to_owned(),
                    source,
                })?;
            if written - published >= PUBLISH_BYTES || last_publish.elapsed() >= PUBLISH_INTERVAL {
                // tokio's File hands writes to a blocking thread; flush so readers' reads see them.
                file.flush().await.map_err(|source| ProxyError::TempFile {
                    key: key.to_owned(),
                    source,
                })?;
                published = written;
                last_publish = Instant::now();
                state.send_replace(FillState::Streaming {
                    written,
                    content_length: expected_size,
                });
            }
        }
        file.flush().await.map_err(|source| ProxyError::TempFile {
            key: key.to_owned(),
            source,
        })?;
        state.send_replace(FillState::Streaming {
            written,
            content_length: expected_size,
        });
        if let Some(expected) = expected_size {
            if written != expected {
                return Err(ProxyError::SizeMismatch {
                    key: key.to_owned(),
                    expected,
                    received: written,
                });
            }
        }
        let mut expected = request.expected.clone();
        if let Some(lookup) = published_lookup {
            let found = lookup.await.map_err(|_| ProxyError::FillAborted {
                key: key.to_owned(),
            })?;
            expected.extend(found.map_err(|error| ProxyError::PublishedDigests {
                key: key.to_owned(),
                reason: error.to_string(),
            })?);
        }
        let sha256 = hasher
            .finish(&expected)
            .map_err(|mismatch| ProxyError::Integrity {
                key: key.to_owned(),
                algorithm: mismatch.algorithm.as_str(),
                expected: mismatch.expected,
                actual: mismatch.actual,
            })?;
        let digest = Digest::from_hex(&sha256).expect("hex::encode of a sha256 is a valid digest");
        drop(file);
        state.send_replace(FillState::Verified { size: written });
        let temp_path = guard
            .0
            .clone()
            .expect("the guard holds the path until publish");
        self.inner.blobs.publish(&temp_path, &digest).await?;
        guard.disarm();
        self.inner
            .metadata
            .put_artifact(&ArtifactRecord {
                key: key.to_owned(),
                repo: request.repo.clone(),
                digest,
                size: written,
                content_type: request.content_type.clone(),
                stored_at: self.inner.clock.now(),
            })
            .await?;
        debug!(%key, written, "fill complete");
        Ok(written)
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

/// Removes a temporary file unless it was published (also on task cancellation, e.g.
/// at shutdown).
#[derive(Debug)]
struct TempFileGuard(Option<PathBuf>);

impl TempFileGuard {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for TempFileGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            if let Err(error) = std::fs::remove_file(&path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    warn!(path = %path.display(), %error, "could not remove temporary file");
                }
            }
        }
    }
}

/// One client's view of a fill.
#[derive(Debug)]
pub struct FillReader {
    fill: Arc<Fill>,
    offset: u64,
    content_length: Option<u64>,
}

impl FillReader {
    /// The length the upstream announced (or the index listed), once known.
    #[must_use]
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Waits until the fill is published (or failed to be), at most `limit`.
    async fn wait_published(&self, limit: Duration) {
        let mut state = self.fill.state.clone();
        let _ = tokio::time::timeout(limit, async {
            loop {
                if matches!(
                    *state.borrow_and_update(),
                    FillState::Done { .. } | FillState::Failed(_)
                ) {
                    return;
                }
                if state.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    fn is_verified(&self) -> bool {
        matches!(
            *self.fill.state.borrow(),
            FillState::Verified { .. } | FillState::Done { .. }
        )
    }

    async fn wait_for_headers(&mut self) -> Result<(), Arc<ProxyError>> {
        let mut state = self.fill.state.clone();
        loop {
            let current = state.borrow_and_update().clone();
            match current {
                FillState::Connecting => {}
                FillState::Streaming { content_length, .. } => {
                    self.content_length = content_length;
                    return Ok(());
                }
                FillState::Verified { size } | FillState::Done { size } => {
                    self.content_length = Some(size);
                    return Ok(());
                }
                FillState::Failed(error) => return Err(error),
            }
            if state.changed().await.is_err() {
                return Err(Arc::new(ProxyError::FillAborted {
                    key: self.fill.key.clone(),
                }));
            }
        }
    }

    /// The body as a stream; it ends with an error if the fill fails.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let state = self.fill.state.clone();
        futures::stream::unfold((self, state), |(mut reader, mut state)| async move {
            match reader.next_chunk(&mut state).await {
                Ok(Some(chunk)) => Some((Ok(chunk), (reader, state))),
                Ok(None) => None,
                Err(error) => {
                    // End the stream after the error.
                    reader.offset = u64::MAX;
                    Some((Err(error), (reader, state)))
                }
            }
        })
    }

    async fn next_chunk(
        &mut self,
        state: &mut watch::Receiver<FillState>,
    ) -> Result<Option<Bytes>, std::io::Error> {
        if self.offset == u64::MAX {
            return Ok(None);
        }
        loop {
            let readable = match &*state.borrow_and_update() {
                FillState::Connecting => 0,
                // Hold back the final byte until the fill is verified.
                FillState::Streaming { written, .. } => written.saturating_sub(1),
                FillState::Verified { size } | FillState::Done { size } => {
                    if self.offset >= *size {
                        return Ok(None);
                    }
                    *size
                }
                FillState::Failed(error) => {
                    return Err(std::io::Error::other(error.to_string()));
                }
            };
            if self.offset < readable {
                if let Some(chunk) = self.fill.recent.slice(self.offset, readable) {
                    self.offset += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                let length = usize::try_from(readable - self.offset)
                    .unwrap_or(usize::MAX)
                    .min(READ_CHUNK);
                // Behind the tee's window: the bytes were written moments ago, so
                // they are in the page cache and a positional read is a memory copy;
                // reading inline avoids a blocking-pool hop per chunk per reader.
                let mut buffer = vec![0; length];
                self.fill.file.read_exact_at(&mut buffer, self.offset)?;
                let chunk = Bytes::from(buffer);
                self.offset += chunk.len() as u64;
                return Ok(Some(chunk));
            }
            if state.changed().await.is_err() {
                return Err(std::io::Error::other(format!(
                    "fill of `{}` stopped unexpectedly",
                    self.fill.key
                )));
            }
        }
    }
}
