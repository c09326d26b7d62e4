//! A deadline and a circuit breaker around any [`MetadataStore`], as the Redis tier
//! has: every operation is bounded by `metadata.timeout`, and for a second after a
//! failure operations fail at once. A stalled database (a saturated pool, a paused
//! server) then costs requests that memory can answer nothing, and the others a
//! bounded wait, never the pool's 30-second acquire timeout each.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use super::{ApiTokenRecord, ArtifactRecord, BlobUsage, IndexRecord, MetadataError, MetadataStore};
use crate::http_cache::{Lifetimes, Validators};
use crate::storage::Digest;

/// How long operations fail fast after one failed.
const BREAKER_OPEN_FOR: Duration = Duration::from_secs(1);

/// A [`MetadataStore`] whose operations are bounded and fail fast while it is down.
#[derive(Debug)]
pub struct GuardedMetadataStore<S> {
    inner: S,
    timeout: Duration,
    down_until: Mutex<Option<Instant>>,
}

impl<S: MetadataStore> GuardedMetadataStore<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            down_until: Mutex::new(None),
        }
    }

    async fn guarded<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, MetadataError>>,
    ) -> Result<T, MetadataError> {
        if let Some(until) = *self.down_until.lock().expect("breaker is never poisoned") {
            if Instant::now() < until {
                return Err(MetadataError::Unavailable(format!(
                    "{operation}: the metadata store failed moments ago; retrying shortly"
                )));
            }
        }
        let result = match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(MetadataError::Unavailable(format!(
                "{operation}: no answer within {:?} (setting `metadata.timeout`)",
                self.timeout
            ))),
        };
        let failed = matches!(
            result,
            Err(MetadataError::Unavailable(_) | MetadataError::Database(_))
        );
        *self.down_until.lock().expect("breaker is never poisoned") =
            failed.then(|| Instant::now() + BREAKER_OPEN_FOR);
        result
    }
}

#[async_trait]
impl<S: MetadataStore> MetadataStore for GuardedMetadataStore<S> {
    async fn index_entry(&self, key: &str) -> Result<Option<IndexRecord>, MetadataError> {
        self.guarded("index_entry", self.inner.index_entry(key))
            .await
    }
    async fn api_token(&self, hash: &str) -> Result<Option<ApiTokenRecord>, MetadataError> {
        self.guarded("api_token", self.inner.api_token(hash)).await
    }
    async fn put_extraction(
        &self,
        extraction: &crate::protocols::dependencies::Extraction,
    ) -> Result<(), MetadataError> {
        self.guarded("put_extraction", self.inner.put_extraction(extraction))
            .await
    }
    async fn resolution(
        &self,
        key: &str,
    ) -> Result<Option<super::ResolutionRecord>, MetadataError> {
        self.guarded("resolution", self.inner.resolution(key)).await
    }
    async fn put_resolution(&self, record: &super::ResolutionRecord) -> Result<(), MetadataError> {
        self.guarded("put_resolution", self.inner.put_resolution(record))
            .await
    }
    async fn delete_resolutions_before(
        &self,
        before: std::time::SystemTime,
    ) -> Result<u64, MetadataError> {
        self.guarded(
            "delete_resolutions_before",
            self.inner.delete_resolutions_before(before),
        )
        .await
    }
    async fn has_extraction(&self, digest: &str) -> Result<bool, MetadataError> {
        self.guarded("has_extraction", self.inner.has_extraction(digest))
            .await
    }
    async fn extractions_of(
        &self,
        repo: &str,
        project: &str,
        version: &str,
    ) -> Result<Vec<crate::protocols::dependencies::Extraction>, MetadataError> {
        self.guarded(
            "extractions_of",
            self.inner.extractions_of(repo, project, version),
        )
        .await
    }
    async fn put_api_token(&self, record: &ApiTokenRecord) -> Result<(), MetadataError> {
        self.guarded("put_api_token", self.inner.put_api_token(record))
            .await
    }
    async fn put_index_entry(&self, record: &IndexRecord) -> Result<(), MetadataError> {
        self.guarded("put_index_entry", self.inner.put_index_entry(record))
            .await
    }
    async fn renew_index_entry(
        &self,
        key: &str,
        stored_at: SystemTime,
        lifetimes: Lifetimes,
        validators: &Validators,
    ) -> Result<(), MetadataError> {
        self.guarded(
            "renew_index_entry",
            self.inner
                .renew_index_entry(key, stored_at, lifetimes, validators),
        )
        .await
    }
    async fn artifact(&self, key: &str) -> Result<Option<ArtifactRecord>, MetadataError> {
        self.guarded("artifact", self.inner.artifact(key)).await
    }
    async fn put_artifact(&self, record: &ArtifactRecord) -> Result<(), MetadataError> {
        self.guarded("put_artifact", self.inner.put_artifact(record))
            .await
    }
    async fn delete_artifact(&self, key: &str) -> Result<(), MetadataError> {
        self.guarded("delete_artifact", self.inner.delete_artifact(key))
            .await
    }
    async fn delete_index_entry(&self, key: &str) -> Result<u64, MetadataError> {
        self.guarded("delete_index_entry", self.inner.delete_index_entry(key))
            .await
    }
    async fn delete_index_entries(&self, prefix: &str) -> Result<u64, MetadataError> {
        self.guarded(
            "delete_index_entries",
            self.inner.delete_index_entries(prefix),
        )
        .await
    }
    async fn touch_artifacts(
        &self,
        accesses: &[(String, SystemTime)],
    ) -> Result<(), MetadataError> {
        self.guarded("touch_artifacts", self.inner.touch_artifacts(accesses))
            .await
    }
    async fn stored_bytes(&self) -> Result<u64, MetadataError> {
        self.guarded("stored_bytes", self.inner.stored_bytes())
            .await
    }
    async fn stored_blobs(&self) -> Result<u64, MetadataError> {
        self.guarded("stored_blobs", self.inner.stored_blobs())
            .await
    }
    async fn least_recently_used(&self, limit: u32) -> Result<Vec<BlobUsage>, MetadataError> {
        self.guarded("least_recently_used", self.inner.least_recently_used(limit))
            .await
    }
    async fn referenced_digests(&self) -> Result<Vec<Digest>, MetadataError> {
        self.guarded("referenced_digests", self.inner.referenced_digests())
            .await
    }
    async fn delete_artifacts_with_digest(&self, digest: &Digest) -> Result<u64, MetadataError> {
        self.guarded(
            "delete_artifacts_with_digest",
            self.inner.delete_artifacts_with_digest(digest),
        )
        .await
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn pool_status(&self) -> Option<super::PoolStatus> {
        self.inner.pool_status()
    }
    async fn check(&self) -> Result<(), MetadataError> {
        self.guarded("check", self.inner.check()).await
    }
}
