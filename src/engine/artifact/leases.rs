//! Which stored blobs are being served right now, so eviction never removes one
//! that a response is streaming, and which are being evicted, so a request that
//! races an eviction treats the blob as absent rather than serving a vanishing file.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::storage::Digest;

#[derive(Debug, Default)]
struct LeaseState {
    in_use: HashMap<Digest, usize>,
    evicting: HashSet<Digest>,
}

/// The registry of blob leases.
#[derive(Debug, Default)]
pub struct BlobLeases {
    state: Mutex<LeaseState>,
}

/// Held while a response serves a stored blob; released on drop.
#[derive(Debug)]
pub struct BlobLease {
    leases: Arc<BlobLeases>,
    digest: Digest,
}

impl BlobLeases {
    /// A lease on `digest`, unless it is being evicted.
    #[must_use]
    pub fn acquire(self: &Arc<Self>, digest: &Digest) -> Option<BlobLease> {
        let mut state = self.state.lock().expect("lease state is never poisoned");
        if state.evicting.contains(digest) {
            return None;
        }
        *state.in_use.entry(digest.clone()).or_default() += 1;
        Some(BlobLease {
            leases: Arc::clone(self),
            digest: digest.clone(),
        })
    }

    /// A lease on `digest`, waiting (up to `limit`) for an eviction of it to finish:
    /// publishing holds one, so the blob it publishes cannot be evicted under it.
    pub async fn acquire_waiting(
        self: &Arc<Self>,
        digest: &Digest,
        limit: std::time::Duration,
    ) -> Option<BlobLease> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(lease) = self.acquire(digest) {
                return Some(lease);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Marks `digest` as being evicted, unless a response is serving it or publishing
    /// it, or another eviction already has it.
    #[must_use]
    pub fn begin_eviction(&self, digest: &Digest) -> bool {
        let mut state = self.state.lock().expect("lease state is never poisoned");
        if state.in_use.contains_key(digest) {
            return false;
        }
        state.evicting.insert(digest.clone())
    }

    pub fn end_eviction(&self, digest: &Digest) {
        self.state
            .lock()
            .expect("lease state is never poisoned")
            .evicting
            .remove(digest);
    }
}

impl Drop for BlobLease {
    fn drop(&mut self) {
        let mut state = self
            .leases
            .state
            .lock()
            .expect("lease state is never poisoned");
        if let Some(count) = state.in_use.get_mut(&self.digest) {
            *count -= 1;
            if *count == 0 {
                state.in_use.remove(&self.digest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leased_blobs_are_not_evicted_and_evicting_blobs_are_not_leased() {
        let leases = Arc::new(BlobLeases::default());
        let digest = Digest::from_hex(&"ab".repeat(32)).expect("hex");
        let lease = leases.acquire(&digest).expect("free");
        assert!(!leases.begin_eviction(&digest), "in use");
        drop(lease);
        assert!(leases.begin_eviction(&digest));
        assert!(leases.acquire(&digest).is_none(), "being evicted");
        leases.end_eviction(&digest);
        assert!(leases.acquire(&digest).is_some());
    }

    #[test]
    fn a_digest_is_evicted_by_one_eviction_at_a_time() {
        let leases = Arc::new(BlobLeases::default());
        let digest = Digest::from_hex(&"cd".repeat(32)).expect("hex");
        assert!(leases.begin_eviction(&digest));
        assert!(
            !leases.begin_eviction(&digest),
            "a second eviction of the same digest is refused"
        );
        leases.end_eviction(&digest);
        assert!(leases.begin_eviction(&digest));
    }
}
