//! One fill per key: the download every concurrent reader of an artifact streams from.
//!
//! ```text
//! fill:    upstream body ─► hasher ─► temp file ─► watermark (bytes written so far)
//! readers: read the temp file up to the watermark, wait for it to move, repeat
//! done:    verify digests ─► lease the digest ─► fsync, rename ─► record the row ─► Done
//! failure: Failed(reason) ─► every reader's stream ends with an error ─► temp file removed
//! ```
//!
//! Until the fill is verified, readers hold back the final byte: a client never sees a
//! complete body whose hash turned out wrong. The fill's entry in the fill map, its
//! temporary file, its share of the temporary bytes and its cross-replica lock are all
//! guards: whatever ends the fill (success, error, shutdown, a panic) releases them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::tee::RecentChunks;
use super::{ArtifactCache, ArtifactRequest};
use crate::engine::coordination::HeldDownloadLock;
use crate::engine::digest::{Computed, StreamHasher};
use crate::engine::events::Published;
use crate::engine::upstream::{display_url, RequestKind};
use crate::engine::{ProxyError, UpstreamError};
use crate::http_cache::Validators;
use crate::metadata::ArtifactRecord;
use crate::metrics::RepoLabels;
use crate::storage::Digest;

/// How long a request that joins a verified fill waits for it to be published.
pub(super) const PUBLISH_WAIT: Duration = Duration::from_secs(5);
/// The watermark moves at least this often while bytes arrive...
const PUBLISH_INTERVAL: Duration = Duration::from_millis(5);
/// ...or after this many bytes, whichever comes first.
const PUBLISH_BYTES: u64 = 256 * 1024;
/// How long publishing waits for an eviction of the same digest to finish.
const EVICTION_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub(super) enum FillState {
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
pub(crate) struct Fill {
    pub(super) key: String,
    /// Opened once on the temp file; positional reads keep working after the rename.
    pub(super) file: Arc<std::fs::File>,
    /// The newest bytes, shared zero-copy with readers that keep up.
    pub(super) recent: Arc<RecentChunks>,
    pub(super) state: watch::Receiver<FillState>,
    pub(super) started: Instant,
    /// Clients following the fill right now.
    pub(super) readers: std::sync::atomic::AtomicUsize,
    /// Streamed from the replica that downloads it, not stored here.
    pub(super) from_replica: bool,
    /// Every digest of the bytes, set once they are verified.
    pub(super) digests: std::sync::OnceLock<Computed>,
}

/// Where a fill's bytes come from.
#[derive(Debug)]
pub(super) enum FillSource {
    Upstream,
    /// The replica downloading the same artifact, already answering `200`.
    Replica(reqwest::Response),
}

/// A fill in progress, for the status page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FillProgress {
    pub key: String,
    pub written: u64,
    /// The announced (or listed) length, when known.
    pub total: Option<u64>,
    pub seconds: f64,
    pub bytes_per_second: f64,
    pub readers: usize,
}

impl Fill {
    pub(super) fn progress(&self) -> FillProgress {
        let (written, total) = match &*self.state.borrow() {
            FillState::Connecting | FillState::Failed(_) => (0, None),
            FillState::Streaming {
                written,
                content_length,
            } => (*written, *content_length),
            FillState::Verified { size } | FillState::Done { size } => (*size, Some(*size)),
        };
        let seconds = self.started.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // byte counts far below 2^52
        let bytes_per_second = if seconds > 0.0 {
            written as f64 / seconds
        } else {
            0.0
        };
        FillProgress {
            key: self.key.clone(),
            written,
            total,
            seconds,
            bytes_per_second,
            readers: self.readers.load(Ordering::Relaxed),
        }
    }
}

impl ArtifactCache {
    /// Joins this replica's fill of the request's key, or starts one. `held` is the
    /// cross-replica lock, released when the fill ends (or right away if this call
    /// does not start the fill).
    pub(super) async fn join_or_start(
        &self,
        request: ArtifactRequest,
        held: Option<HeldDownloadLock>,
        source: FillSource,
    ) -> Result<Arc<Fill>, ProxyError> {
        let from_replica = matches!(source, FillSource::Replica(_));
        let key = request.key.as_str().to_owned();
        if let Some(fill) = self.local_fill(&request.key) {
            return Ok(fill);
        }
        // Create the temp file outside the map's lock (and off the async workers),
        // then race to register it.
        let temp_path = self
            .inner
            .blobs
            .temp_dir()
            .join(format!("fill-{:016x}", rand::random::<u64>()));
        let (write_file, read_file) = {
            let path = temp_path.clone();
            tokio::task::spawn_blocking(move || {
                let write = std::fs::File::create(&path)?;
                let read = std::fs::File::open(&path)?;
                Ok::<_, std::io::Error>((write, read))
            })
            .await
            .map_err(|_| ProxyError::FillAborted { key: key.clone() })?
            .map_err(|source| ProxyError::TempFile {
                key: key.clone(),
                source,
            })?
        };
        let guard = TempFileGuard(Some(temp_path));
        let (state_tx, state_rx) = watch::channel(FillState::Connecting);
        let fill = Arc::new(Fill {
            key: key.clone(),
            file: Arc::new(read_file),
            recent: Arc::new(RecentChunks::default()),
            state: state_rx,
            started: Instant::now(),
            readers: std::sync::atomic::AtomicUsize::new(0),
            from_replica,
            digests: std::sync::OnceLock::new(),
        });
        {
            let mut fills = self.inner.fills.lock().expect("fill map is never poisoned");
            if let Some(existing) = fills.get(&key) {
                // Lost the race; the guards remove our temp file and release the lock.
                self.inner
                    .metrics
                    .record_coalesced("artifact", request.key.format());
                return Ok(Arc::clone(existing));
            }
            fills.insert(key.clone(), Arc::clone(&fill));
        }
        let registration = Registration {
            cache: self.clone(),
            fill: Arc::clone(&fill),
        };
        let this = self.clone();
        let write_file = tokio::fs::File::from_std(write_file);
        tokio::spawn(async move {
            let filled = Arc::clone(&registration.fill);
            let _registration = registration;
            let outcome = this
                .run_fill(&request, source, write_file, guard, &filled, &state_tx)
                .await;
            if let Some(held) = held {
                held.release().await;
            }
            match outcome {
                Ok(size) if from_replica => {
                    debug!(key = %request.key, size, "artifact streamed from another replica");
                    state_tx.send_replace(FillState::Done { size });
                }
                Ok(size) => {
                    info!(key = %request.key, size, "artifact stored");
                    state_tx.send_replace(FillState::Done { size });
                    if this.inner.max_stored_bytes.is_some() {
                        this.inner.eviction_wanted.notify_one();
                    }
                    if let Some(locks) = &this.inner.download_locks {
                        locks.announce_published(request.key.as_str()).await;
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
        });
        Ok(fill)
    }

    #[allow(clippy::too_many_lines)] // one pipeline, read top to bottom
    async fn run_fill(
        &self,
        request: &ArtifactRequest,
        source: FillSource,
        mut file: tokio::fs::File,
        mut guard: TempFileGuard,
        filling: &Fill,
        state: &watch::Sender<FillState>,
    ) -> Result<u64, ProxyError> {
        let recent = &filling.recent;
        let key = request.key.as_str();
        // The replica streamed from, if the bytes come from one (for messages).
        let mut replica = None;
        let (response, _permit) = match source {
            FillSource::Upstream => {
                // At most `max_concurrent_fills` downloads per upstream; the rest queue
                // here.
                let permit = request.upstream.fill_permit().await;
                let response = request
                    .upstream
                    .get(
                        &request.url,
                        RequestKind::Artifact,
                        None,
                        &Validators::default(),
                    )
                    .await?;
                (response, Some(permit))
            }
            FillSource::Replica(response) => {
                replica = Some(display_url(response.url()));
                (response, None)
            }
        };
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
        let mut watermark = Watermark {
            state,
            content_length: expected_size,
            shown: 0,
            at: Instant::now(),
        };
        watermark
            .show(&mut file, 0)
            .await
            .map_err(|source| ProxyError::TempFile {
                key: key.to_owned(),
                source,
            })?;

        let mut hasher = StreamHasher::new(
            request.expected.iter().map(|e| e.algorithm).chain(
                request
                    .published
                    .iter()
                    .flat_map(|p| p.algorithms.iter().copied()),
            ),
        );
        let temp_bytes = TempBytes {
            total: &self.inner.temp_bytes,
            mine: 0,
        };
        let mut temp_bytes = temp_bytes;
        let mut written: u64 = 0;
        let mut body = response.bytes_stream();
        let temp_error = |source| ProxyError::TempFile {
            key: key.to_owned(),
            source,
        };
        loop {
            // Bytes written but not yet shown to readers are shown as soon as the
            // source pauses, not when its next chunk comes (an upstream that stalls
            // mid-body would otherwise keep readers up to 256 KiB behind).
            let next = if written > watermark.shown {
                if let Ok(next) = tokio::time::timeout(PUBLISH_INTERVAL, body.next()).await {
                    next
                } else {
                    watermark
                        .show(&mut file, written)
                        .await
                        .map_err(temp_error)?;
                    continue;
                }
            } else {
                body.next().await
            };
            let Some(chunk) = next else {
                break;
            };
            let chunk = chunk.map_err(|error| match &replica {
                Some(replica) => UpstreamError::Body {
                    upstream: format!("the replica downloading it ({replica})"),
                    reason: error.to_string(),
                },
                None => request.upstream.body_error(&request.url, &error),
            })?;
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
            temp_bytes.add(chunk.len() as u64);
            if replica.is_none() {
                request.upstream.record_bytes(chunk.len() as u64);
            }
            recent.push(written - chunk.len() as u64, chunk.clone());
            file.write_all(&chunk).await.map_err(temp_error)?;
            if watermark.due(written) {
                watermark
                    .show(&mut file, written)
                    .await
                    .map_err(temp_error)?;
            }
        }
        watermark
            .show(&mut file, written)
            .await
            .map_err(temp_error)?;
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
        let computed = hasher
            .finish_all(&expected)
            .map_err(|mismatch| ProxyError::Integrity {
                key: key.to_owned(),
                algorithm: mismatch.algorithm.as_str(),
                expected: mismatch.expected,
                actual: mismatch.actual,
            })?;
        let digest =
            Digest::from_hex(&computed.sha256).expect("hex::encode of a sha256 is a valid digest");
        drop(file);
        // Before `Verified`: whoever sees the fill verified finds its digests.
        let _ = filling.digests.set(computed);
        state.send_replace(FillState::Verified { size: written });
        if replica.is_some() {
            // The replica that downloaded it stores it.
            return Ok(written);
        }
        // Hold a lease on the digest from before the blob is published until its row
        // is written, so an eviction of the same content cannot interleave and leave
        // a row without its blob.
        let _lease = self
            .inner
            .leases
            .acquire_waiting(&digest, EVICTION_WAIT)
            .await
            .ok_or_else(|| ProxyError::FillAborted {
                key: key.to_owned(),
            })?;
        let temp_path = guard
            .0
            .clone()
            .expect("the guard holds the path until publish");
        let blob = self.inner.blobs.publish(&temp_path, &digest).await?;
        guard.disarm();
        drop(temp_bytes);
        self.inner
            .metadata
            .put_artifact(&ArtifactRecord {
                key: key.to_owned(),
                repo: request.repo.clone(),
                digest: digest.clone(),
                size: written,
                content_type: request.content_type.clone(),
                stored_at: self.inner.clock.now(),
            })
            .await?;
        // Nobody listening is fine: the event is for features that want it.
        self.inner
            .published_count
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let _ = self.inner.published.send(Published {
            key: request.key.clone(),
            repo: request.repo.clone(),
            digest,
            size: written,
            content_type: request.content_type.clone(),
            path: blob.path,
        });
        debug!(%key, written, "fill complete");
        Ok(written)
    }
}

/// How far a fill's readers may read: moved only after the bytes before it are
/// flushed to the temporary file.
struct Watermark<'a> {
    state: &'a watch::Sender<FillState>,
    content_length: Option<u64>,
    shown: u64,
    at: Instant,
}

impl Watermark<'_> {
    fn due(&self, written: u64) -> bool {
        written - self.shown >= PUBLISH_BYTES || self.at.elapsed() >= PUBLISH_INTERVAL
    }

    async fn show(&mut self, file: &mut tokio::fs::File, written: u64) -> std::io::Result<()> {
        // tokio's File hands writes to a blocking thread; flush so readers' reads see
        // them.
        file.flush().await?;
        self.shown = written;
        self.at = Instant::now();
        self.state.send_replace(FillState::Streaming {
            written,
            content_length: self.content_length,
        });
        Ok(())
    }
}

/// Removes the fill from the fill map when its task ends, however it ends.
struct Registration {
    cache: ArtifactCache,
    fill: Arc<Fill>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut fills) = self.cache.inner.fills.lock() {
            if fills
                .get(&self.fill.key)
                .is_some_and(|current| Arc::ptr_eq(current, &self.fill))
            {
                // Before the removal, under the map's lock: a request that no longer
                // finds this fill also sees the count moved, and does not join a row
                // lookup begun before this fill's row was written.
                self.cache.inner.fills_ended.fetch_add(1, Ordering::SeqCst);
                fills.remove(&self.fill.key);
            }
        }
    }
}

/// A fill's share of the temporary bytes, returned when the fill ends.
struct TempBytes<'a> {
    total: &'a AtomicU64,
    mine: u64,
}

impl TempBytes<'_> {
    fn add(&mut self, bytes: u64) {
        self.mine += bytes;
        self.total.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Drop for TempBytes<'_> {
    fn drop(&mut self) {
        self.total.fetch_sub(self.mine, Ordering::Relaxed);
    }
}

/// Removes a temporary file unless it was published (also on task cancellation, e.g.
/// at shutdown, and on a panic).
#[derive(Debug)]
pub(super) struct TempFileGuard(pub(super) Option<PathBuf>);

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
