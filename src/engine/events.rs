//! Events the engine announces to features that work off the request path
//! (dependency extraction, warm-up reports, the status page). Delivered on a bounded
//! broadcast channel: a slow subscriber misses events (and is told how many); it
//! never slows a fill.

use std::path::PathBuf;

use super::CacheKey;
use crate::storage::Digest;

/// An artifact was verified and stored: its row is written and its blob is visible.
#[derive(Debug, Clone)]
pub struct Published {
    pub key: CacheKey,
    pub repo: String,
    pub digest: Digest,
    pub size: u64,
    pub content_type: String,
    /// A local file with exactly the blob's bytes, when the blob store has one (else
    /// read it from the blob store by `digest`).
    pub path: Option<PathBuf>,
}
