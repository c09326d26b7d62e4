//! The protocol-agnostic cache engine.
//!
//! Protocols hand it a [`CacheKey`] and a way to fetch; it decides whether to serve,
//! wait, refresh or fail:
//! - [`index_cache`]: index documents with TTL, stale-while-revalidate, conditional
//!   revalidation, negative entries and offline mode.
//! - [`fill`]: immutable artifacts; one upstream download per key, streamed to every
//!   concurrent reader while it is hashed, verified and published.
//! - [`single_flight`]: at most one in-flight computation per key.
//! - [`upstream`]: the only module that makes outbound HTTP requests.

mod cross_replica;
pub mod digest;
mod error;
pub mod fill;
pub mod hot_artifacts;
pub mod index_cache;
mod keys;
pub mod leases;
pub mod maintenance;
pub mod redis_tier;
pub mod refresh_lock;
pub mod shared_index;
pub mod single_flight;
mod tee;
pub mod upstream;

pub use cross_replica::CrossReplicaLock;
pub use digest::{DigestAlgorithm, ExpectedDigest};
pub use error::ProxyError;
pub use fill::{
    ArtifactBody, ArtifactCache, ArtifactCacheOptions, ArtifactLookup, ArtifactRequest,
    PublishedDigests, PublishedLookup,
};
pub use index_cache::{
    Fetched, IndexCache, IndexDocument, IndexLookup, IndexRequest, IndexSource, Rendition,
};
pub use keys::{CacheKey, CacheStatus, Category};
pub use maintenance::{EvictionReport, GcReport, VerifyReport};
pub use shared_index::SharedIndex;
pub use upstream::{
    UpstreamAuth, UpstreamClient, UpstreamDocument, UpstreamError, UpstreamOptions,
};

/// The two halves of the engine, shared by every protocol.
#[derive(Debug, Clone)]
pub struct CacheEngine {
    pub index: IndexCache,
    pub artifacts: ArtifactCache,
}
