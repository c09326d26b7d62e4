//! The metadata store: small rows (keys, digests, lifetimes, validators) and the
//! serialized index documents. Blobs live in [`crate::storage`].
//!
//! [`MetadataStore`] is the seam; [`SqliteMetadataStore`] (embedded, in `data_dir`) is
//! the embedded default; [`PostgresMetadataStore`] is shared by replicas. Both run
//! the same queries and the same conformance suite (`tests/it/conformance.rs`).

mod guarded;
mod postgres;
mod sql;
mod sqlite;

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::http_cache::{Lifetimes, Validators};
use crate::protocols::dependencies::Extraction;
use crate::storage::Digest;

pub use guarded::GuardedMetadataStore;
pub use postgres::{PostgresMetadataStore, PostgresOptions};
pub use sqlite::SqliteMetadataStore;

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("metadata migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    #[error("metadata row `{key}` is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
}

/// A stored index document or negative result.
#[derive(Debug, Clone)]
pub struct IndexRecord {
    pub key: String,
    /// Version of `body`'s serialized form.
    pub format_version: u32,
    /// `false` for a remembered upstream 404.
    pub found: bool,
    pub body: Bytes,
    pub validators: Validators,
    pub stored_at: SystemTime,
    pub lifetimes: Lifetimes,
}

/// A stored artifact: which blob a key resolves to.
#[derive(Debug, Clone)]
pub struct ArtifactRecord {
    pub key: String,
    pub repo: String,
    pub digest: Digest,
    pub size: u64,
    pub content_type: String,
    pub stored_at: SystemTime,
}

/// A resolution answer kept whole, with the index documents it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolutionRecord {
    /// A hash of everything that decides the answer but the documents.
    pub key: String,
    /// The answer (a graph, JSON).
    pub body: Bytes,
    /// JSON object: project → fingerprint of the document read (`null`: none).
    pub documents: String,
    pub stored_at: SystemTime,
}

/// An API token: its hash (never the token), whose it is, and until when.
#[derive(Debug, Clone)]
pub struct ApiTokenRecord {
    /// SHA-256 of the token, hex.
    pub hash: String,
    pub user: String,
    pub created_at: SystemTime,
    pub expires_at: Option<SystemTime>,
}

impl ApiTokenRecord {
    #[must_use]
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// A connection pool's state.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PoolStatus {
    pub open: u32,
    pub idle: u32,
    pub in_use: u32,
    pub max: u32,
}

/// A stored blob's size and last access, for eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUsage {
    pub digest: Digest,
    pub size: u64,
    pub last_access: SystemTime,
}

/// Durable rows behind the cache.
#[async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    async fn index_entry(&self, key: &str) -> Result<Option<IndexRecord>, MetadataError>;
    /// The API token with this hash, if any.
    async fn api_token(&self, hash: &str) -> Result<Option<ApiTokenRecord>, MetadataError>;
    /// Records a new API token.
    async fn put_api_token(&self, record: &ApiTokenRecord) -> Result<(), MetadataError>;
    /// Inserts or replaces the entry.
    async fn put_index_entry(&self, record: &IndexRecord) -> Result<(), MetadataError>;
    /// Moves an entry's lifetimes forward after a `304 Not Modified`.
    async fn renew_index_entry(
        &self,
        key: &str,
        stored_at: SystemTime,
        lifetimes: Lifetimes,
        validators: &Validators,
    ) -> Result<(), MetadataError>;
    async fn artifact(&self, key: &str) -> Result<Option<ArtifactRecord>, MetadataError>;
    /// Records an artifact; a second record for the same key keeps the first.
    async fn put_artifact(&self, record: &ArtifactRecord) -> Result<(), MetadataError>;
    async fn delete_artifact(&self, key: &str) -> Result<(), MetadataError>;
    /// Deletes one index entry; returns how many rows went (0 or 1).
    async fn delete_index_entry(&self, key: &str) -> Result<u64, MetadataError>;
    /// Deletes index entries whose key starts with `prefix` (admin invalidation).
    async fn delete_index_entries(&self, prefix: &str) -> Result<u64, MetadataError>;
    /// Records last-access times of many artifacts in one transaction.
    async fn touch_artifacts(&self, accesses: &[(String, SystemTime)])
        -> Result<(), MetadataError>;
    /// Bytes of distinct stored blobs.
    async fn stored_bytes(&self) -> Result<u64, MetadataError>;
    /// How many distinct blobs are stored.
    async fn stored_blobs(&self) -> Result<u64, MetadataError>;
    /// Up to `limit` distinct blobs, least recently accessed first.
    async fn least_recently_used(&self, limit: u32) -> Result<Vec<BlobUsage>, MetadataError>;
    /// Every distinct digest referenced by an artifact row.
    async fn referenced_digests(&self) -> Result<Vec<Digest>, MetadataError>;
    /// Deletes every artifact row pointing at `digest`; returns how many.
    async fn delete_artifacts_with_digest(&self, digest: &Digest) -> Result<u64, MetadataError>;
    /// Records what an artifact declares, in one statement (PostgreSQL) or one
    /// transaction of two (SQLite): never a statement per dependency. A digest
    /// already recorded keeps its first record (it is immutable).
    async fn put_extraction(&self, extraction: &Extraction) -> Result<(), MetadataError>;
    /// The resolution answer kept under `key`, if any.
    async fn resolution(&self, key: &str) -> Result<Option<ResolutionRecord>, MetadataError>;
    /// Keeps a resolution answer (replacing one under the same key).
    async fn put_resolution(&self, record: &ResolutionRecord) -> Result<(), MetadataError>;
    /// Deletes answers stored before `before`; says how many.
    async fn delete_resolutions_before(&self, before: SystemTime) -> Result<u64, MetadataError>;
    /// Whether the artifact with this digest was extracted already.
    async fn has_extraction(&self, digest: &str) -> Result<bool, MetadataError>;
    /// What the artifacts of one release declare, by file name.
    async fn extractions_of(
        &self,
        repo: &str,
        project: &str,
        version: &str,
    ) -> Result<Vec<Extraction>, MetadataError>;
    /// The connection pool: open, idle, and the most it opens; for `/-/ready`.
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }
    /// `sqlite` or `postgres`, for `/-/ready`.
    fn kind(&self) -> &'static str;
    /// A trivial query; for `/-/ready`.
    async fn check(&self) -> Result<(), MetadataError>;
}
