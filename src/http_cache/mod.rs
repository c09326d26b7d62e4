//! Pure caching decisions: no I/O, not async, and `now` is always a parameter.
//!
//! [`freshness`] decides the state of a stored index document (fresh, stale within
//! its grace period, expired); [`conditional`] answers a client's own conditional
//! request. Both are table-tested at the bottom of their files.

pub mod conditional;
pub mod freshness;

pub use conditional::if_none_match_hits;
pub use freshness::{Freshness, FreshnessPolicy, Lifetimes};

/// The upstream's validators for a stored document, kept only to revalidate upstream
/// (RFC 9110 §8.8). Clients get our own ETag, a hash of the bytes we serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}
