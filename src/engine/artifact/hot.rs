//! The in-process tier for small, hot artifacts: their row and their bytes, bounded
//! in bytes. A hit here touches neither the database nor the disk, which is what
//! decides throughput for small files (npm tarballs, `.metadata` files) where the
//! per-request cost dominates. Large artifacts are never held here.

use std::sync::Arc;

use bytes::Bytes;
use moka::future::Cache;

use crate::metadata::ArtifactRecord;
use crate::storage::Digest;

/// Artifacts up to this size are kept in memory when hot.
pub const MAX_HOT_ARTIFACT_BYTES: u64 = 1024 * 1024;

/// A small stored artifact, whole.
#[derive(Debug)]
pub struct HotArtifact {
    pub record: ArtifactRecord,
    pub bytes: Bytes,
}

/// Small artifacts by cache key, bounded in bytes.
#[derive(Debug, Clone)]
pub struct HotArtifacts {
    cache: Cache<String, Arc<HotArtifact>>,
}

impl HotArtifacts {
    #[must_use]
    pub fn new(capacity_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|key: &String, hot: &Arc<HotArtifact>| {
                u32::try_from(hot.bytes.len() + key.len() + 256).unwrap_or(u32::MAX)
            })
            .support_invalidation_closures()
            .build();
        Self { cache }
    }

    /// Bytes held (approximate, by the weigher).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    pub async fn get(&self, key: &str) -> Option<Arc<HotArtifact>> {
        self.cache.get(key).await
    }

    pub async fn insert(&self, key: &str, hot: HotArtifact) {
        self.cache.insert(key.to_owned(), Arc::new(hot)).await;
    }

    /// Forgets every artifact with this digest (after eviction or repair).
    pub fn forget_digest(&self, digest: &Digest) {
        let digest = digest.clone();
        self.cache
            .invalidate_entries_if(move |_, hot| hot.record.digest == digest)
            .expect("built with invalidation closures");
    }
}
