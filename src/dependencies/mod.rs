//! Dependencies extracted from every stored artifact, off the request path: one task
//! follows the engine's `Published` events, asks the artifact's protocol what it
//! declares ([`crate::protocols::Protocol::extract_dependencies`]) and records it in
//! the metadata store, keyed by the artifact's SHA-256: immutable, so extracted once.
//!
//! Resolution, the resolution cache and warming from lockfiles build on these rows
//! (issue #13, later parts).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use crate::engine::{CacheEngine, Published};
use crate::metadata::MetadataStore;
use crate::metrics::{Metrics, OutcomeLabels};
use crate::protocols::Protocol;
use crate::storage::BlobStore;

/// Artifacts extracted at once.
pub const PARALLEL_EXTRACTIONS: usize = 4;

/// What the extractor works with.
#[derive(Debug, Clone)]
pub struct Extractor {
    pub engine: CacheEngine,
    pub blobs: Arc<dyn BlobStore>,
    pub metadata: Arc<dyn MetadataStore>,
    pub repos: BTreeMap<String, Arc<dyn Protocol>>,
    pub metrics: Metrics,
    /// Events handled so far (missed ones included): caught up when it equals
    /// [`crate::engine::ArtifactCache::published_count`].
    pub handled: Arc<std::sync::atomic::AtomicU64>,
}

impl Extractor {
    /// Follows published artifacts until the engine goes away, extracting up to
    /// [`PARALLEL_EXTRACTIONS`] at once (an extraction reads a wheel's zip or a
    /// POM's parents, and one at a time fell behind a stampede of fills).
    #[allow(clippy::must_use_candidate)] // the task runs detached; the handle is for tests
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let mut published = self.engine.artifacts.subscribe();
        let permits = Arc::new(Semaphore::new(PARALLEL_EXTRACTIONS));
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        tokio::spawn(async move {
            loop {
                match published.recv().await {
                    Ok(event) => {
                        let permit = Arc::clone(&permits)
                            .acquire_owned()
                            .await
                            .expect("the semaphore is never closed");
                        let (this, in_flight) = (self.clone(), Arc::clone(&in_flight));
                        tokio::spawn(async move {
                            let _permit = permit;
                            let digest = event.digest.as_str().to_owned();
                            // One extraction per digest at a time (the same file
                            // published under two keys at once).
                            let first = in_flight
                                .lock()
                                .expect("never poisoned")
                                .insert(digest.clone());
                            let outcome = if first {
                                let outcome = this.extract(&event).await;
                                in_flight.lock().expect("never poisoned").remove(&digest);
                                outcome
                            } else {
                                "already"
                            };
                            this.count(outcome, 1);
                            this.handled
                                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                        });
                    }
                    Err(RecvError::Lagged(missed)) => {
                        warn!(
                            missed,
                            "dependency extraction fell behind; artifacts were not extracted"
                        );
                        self.count("missed", missed);
                        self.handled
                            .fetch_add(missed, std::sync::atomic::Ordering::AcqRel);
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    fn count(&self, outcome: &'static str, by: u64) {
        self.metrics
            .dependency_extractions
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(by);
    }

    /// Extracts and records one artifact; says what happened.
    async fn extract(&self, event: &Published) -> &'static str {
        let Some(protocol) = self.repos.get(&event.repo) else {
            return "not_applicable";
        };
        match self.metadata.has_extraction(event.digest.as_str()).await {
            Ok(true) => return "already",
            Ok(false) => {}
            Err(error) => {
                warn!(%error, key = %event.key, "cannot check for an earlier extraction");
                return "failed";
            }
        }
        let Some(extraction) = protocol
            .extract_dependencies(&self.engine, &self.blobs, event)
            .await
        else {
            return "not_applicable";
        };
        // A PEP 658 file speaks for its distribution, which may be recorded already.
        if extraction.digest != event.digest.as_str()
            && matches!(
                self.metadata.has_extraction(&extraction.digest).await,
                Ok(true)
            )
        {
            return "already";
        }
        if let Err(error) = self.metadata.put_extraction(&extraction).await {
            warn!(%error, key = %event.key, "extracted dependencies not recorded");
            return "failed";
        }
        debug!(
            key = %event.key,
            status = extraction.status.as_str(),
            dependencies = extraction.dependencies.len(),
            "dependencies extracted"
        );
        extraction.status.as_str()
    }
}
