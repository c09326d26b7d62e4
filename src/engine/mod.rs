//! The protocol-agnostic cache engine.
//!
//! Protocols hand it a [`CacheKey`] and a way to fetch; it decides whether to serve,
//! wait, refresh or fail. Its parts:
//!
//! | part | what |
//! |---|---|
//! | [`index`] | index documents: TTL, stale-while-revalidate, conditional revalidation, negative entries, offline mode; in-process tier over the shared tiers |
//! | [`artifact`] | immutable artifacts: one pipeline, one fill per key streamed to every reader, verified, published, hot tier, leases |
//! | [`coordination`] | single flight, refresh lock, cross-replica download lock (all released by drop) |
//! | [`maintenance`] | access times, eviction, garbage collection, verification |
//! | [`upstream`] | the only module that makes outbound HTTP requests |
//! | [`redis`] | the optional shared tier and lock service |
//! | [`events`] | what the engine announces to features (artifact published) |
//!
//! Dependencies point one way: `index`, `artifact` → `coordination` → `redis`;
//! `maintenance` → `artifact`; everything → `keys`, `error`, `upstream`.

pub mod artifact;
pub mod coordination;
pub mod digest;
mod error;
pub mod events;
pub mod host_policy;
pub mod index;
mod keys;
pub mod maintenance;
pub mod redis;
pub mod upstream;

pub use artifact::{
    ArtifactBody, ArtifactCache, ArtifactCacheOptions, ArtifactLookup, ArtifactRequest,
    PublishedDigests, PublishedLookup,
};
pub use coordination::DownloadLocks;
pub use digest::{DigestAlgorithm, ExpectedDigest};
pub use error::ProxyError;
pub use events::Published;
pub use index::shared::SharedIndex;
pub use index::{
    Fetched, IndexCache, IndexDocument, IndexLookup, IndexRequest, IndexSource, Rendition,
};
pub use keys::{CacheKey, CacheStatus, Category};
pub use maintenance::{EvictionReport, GcReport, Progress, VerifyReport};
pub use upstream::{
    UpstreamAuth, UpstreamClient, UpstreamDocument, UpstreamError, UpstreamOptions,
};

/// The two halves of the engine, shared by every protocol.
#[derive(Debug, Clone)]
pub struct CacheEngine {
    pub index: IndexCache,
    pub artifacts: ArtifactCache,
}
