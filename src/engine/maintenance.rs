//! Keeping the blob store bounded and sound: batched access times, least-recently-used
//! eviction beyond `storage.max_size`, garbage collection of orphans, verification.
//!
//! Access times are recorded in memory on every hit and written in one transaction
//! every few seconds, never one write per hit. One task per process evicts: it runs
//! every few seconds and whenever a fill asks for it, so a burst of fills costs one
//! pass, not one each. Bytes in fills' temporary files count against the bound.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tracing::{info, warn};

use super::artifact::ArtifactCache;
use super::ProxyError;
use crate::storage::Digest;

/// How often access times are written and the size bound is enforced.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);

/// What an eviction pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EvictionReport {
    pub evicted_blobs: u64,
    pub freed_bytes: u64,
    /// Candidates skipped because a response was serving them.
    pub skipped_in_use: u64,
    pub stored_bytes_after: u64,
}

/// What garbage collection did besides eviction.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blob files no row points at, removed.
    pub orphan_blobs: u64,
    pub orphan_bytes: u64,
    /// Rows whose blob is gone, removed.
    pub dangling_rows: u64,
    pub eviction: EvictionReport,
}

/// How far a pass over every blob has come (`granary gc` and `granary verify`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub blobs_done: u64,
    pub blobs_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// What verification found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub checked: u64,
    pub corrupt: Vec<Digest>,
    /// Corrupt blobs removed (with `--repair`).
    pub removed: u64,
}

impl ArtifactCache {
    /// Writes pending access times.
    ///
    /// # Errors
    /// When the metadata store fails; the times are then lost, which only makes
    /// eviction slightly less precise.
    pub async fn flush_accesses(&self) -> Result<(), ProxyError> {
        let accesses = self.access_log().drain();
        if !accesses.is_empty() {
            self.metadata().touch_artifacts(&accesses).await?;
        }
        Ok(())
    }

    /// Evicts least recently used blobs until at most `max_bytes` are stored. Blobs a
    /// response is serving are skipped.
    ///
    /// # Errors
    /// When the metadata or blob store fails.
    pub async fn evict_to(&self, max_bytes: u64) -> Result<EvictionReport, ProxyError> {
        self.flush_accesses().await?;
        let mut report = EvictionReport::default();
        // Bytes being downloaded will be stored in a moment: make room for them too.
        let max_bytes = max_bytes.saturating_sub(self.temp_bytes());
        let mut stored = self.metadata().stored_bytes().await?;
        let mut skipped: HashSet<Digest> = HashSet::new();
        while stored > max_bytes {
            let candidates: Vec<_> = self
                .metadata()
                .least_recently_used(256)
                .await?
                .into_iter()
                .filter(|u| !skipped.contains(&u.digest))
                .collect();
            let mut progressed = false;
            for usage in candidates {
                if stored <= max_bytes {
                    break;
                }
                if !self.leases().begin_eviction(&usage.digest) {
                    report.skipped_in_use += 1;
                    skipped.insert(usage.digest);
                    continue;
                }
                let result = async {
                    self.metadata()
                        .delete_artifacts_with_digest(&usage.digest)
                        .await?;
                    self.hot().forget_digest(&usage.digest);
                    self.blobs().delete(&usage.digest).await?;
                    Ok::<(), ProxyError>(())
                }
                .await;
                self.leases().end_eviction(&usage.digest);
                result?;
                stored = stored.saturating_sub(usage.size);
                self.count_eviction(usage.size);
                report.evicted_blobs += 1;
                report.freed_bytes += usage.size;
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        report.stored_bytes_after = stored;
        if report.evicted_blobs > 0 {
            info!(
                evicted = report.evicted_blobs,
                freed_bytes = report.freed_bytes,
                stored_bytes = stored,
                "evicted least recently used artifacts"
            );
        }
        Ok(report)
    }

    /// Removes blobs without rows and rows without blobs, then evicts down to
    /// `max_bytes` if given. Meant for `granary gc`, with the server stopped.
    ///
    /// # Errors
    /// When the metadata or blob store fails.
    pub async fn collect_garbage(&self, max_bytes: Option<u64>) -> Result<GcReport, ProxyError> {
        self.collect_garbage_with(max_bytes, |_| {}).await
    }

    /// [`ArtifactCache::collect_garbage`], telling `progress` after each blob looked at.
    ///
    /// # Errors
    /// When the metadata or blob store fails.
    pub async fn collect_garbage_with(
        &self,
        max_bytes: Option<u64>,
        mut progress: impl FnMut(Progress),
    ) -> Result<GcReport, ProxyError> {
        let mut report = GcReport::default();
        let referenced: HashSet<Digest> = self
            .metadata()
            .referenced_digests()
            .await?
            .into_iter()
            .collect();
        let stored = self.blobs().list().await?;
        let present: HashSet<Digest> = stored.iter().map(|(d, _)| d.clone()).collect();
        let mut step = Progress {
            blobs_total: stored.len() as u64,
            bytes_total: stored.iter().map(|(_, size)| size).sum(),
            ..Progress::default()
        };
        for (digest, size) in &stored {
            step.blobs_done += 1;
            step.bytes_done += size;
            progress(step);
            if !referenced.contains(digest) {
                self.blobs().delete(digest).await?;
                report.orphan_blobs += 1;
                report.orphan_bytes += size;
            }
        }
        for digest in referenced.difference(&present) {
            report.dangling_rows += self.metadata().delete_artifacts_with_digest(digest).await?;
        }
        if let Some(max_bytes) = max_bytes {
            report.eviction = self.evict_to(max_bytes).await?;
        }
        Ok(report)
    }

    /// Re-hashes every blob; with `repair`, removes corrupt ones and their rows.
    ///
    /// # Errors
    /// When a store fails (a corrupt blob is a finding, not an error).
    pub async fn verify(&self, repair: bool) -> Result<VerifyReport, ProxyError> {
        self.verify_with(repair, |_| {}).await
    }

    /// [`ArtifactCache::verify`], telling `progress` after each blob re-hashed.
    ///
    /// # Errors
    /// When a store fails (a corrupt blob is a finding, not an error).
    pub async fn verify_with(
        &self,
        repair: bool,
        mut progress: impl FnMut(Progress),
    ) -> Result<VerifyReport, ProxyError> {
        let mut report = VerifyReport::default();
        let blobs = self.blobs().list().await?;
        let mut step = Progress {
            blobs_total: blobs.len() as u64,
            bytes_total: blobs.iter().map(|(_, size)| size).sum(),
            ..Progress::default()
        };
        for (digest, size) in blobs {
            step.blobs_done += 1;
            step.bytes_done += size;
            let mut stream = self.blobs().read(&digest, None).await?;
            let mut hasher = Sha256::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| ProxyError::TempFile {
                    key: digest.to_string(),
                    source,
                })?;
                hasher.update(&chunk);
            }
            let actual = hex::encode(hasher.finalize());
            report.checked += 1;
            if actual != digest.as_str() {
                warn!(%digest, %actual, "corrupt blob");
                if repair {
                    self.metadata()
                        .delete_artifacts_with_digest(&digest)
                        .await?;
                    self.hot().forget_digest(&digest);
                    self.blobs().delete(&digest).await?;
                    report.removed += 1;
                }
                report.corrupt.push(digest);
            }
            progress(step);
        }
        Ok(report)
    }

    /// Starts the one task that writes access times and enforces the size bound,
    /// every [`MAINTENANCE_INTERVAL`] and whenever a fill asks for an eviction pass.
    /// It stops when the cache is dropped.
    pub fn spawn_maintenance(&self, max_bytes: Option<u64>) {
        let weak = self.downgrade();
        let wanted = std::sync::Arc::clone(self.eviction_wanted());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(MAINTENANCE_INTERVAL);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = wanted.notified() => {}
                }
                let Some(cache) = ArtifactCache::upgrade(&weak) else {
                    break;
                };
                let result = match max_bytes {
                    Some(max_bytes) => cache.evict_to(max_bytes).await.map(|_| ()),
                    None => cache.flush_accesses().await,
                };
                if let Err(error) = result {
                    warn!(%error, "blob store maintenance failed");
                }
            }
        });
    }
}
