//! One upstream download per artifact across replicas, and one waiter per key on
//! each replica while another replica downloads it.
//!
//! A request that finds no local fill and no stored blob joins this replica's waiter
//! for the key (a single flight): it alone tries the Redis lock, and while another
//! replica holds it, waits to be woken by that replica's "published" announcement,
//! polling the metadata store with a bounded back-off only as the fallback. However
//! many clients wait, a replica makes one Redis call and one database query per step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::fill::{Fill, FillSource};
use super::{ArtifactCache, ArtifactLookup, ArtifactRequest};
use crate::engine::coordination::{DownloadLocks, Role, TryLock};
use crate::engine::ProxyError;

/// The longest pause between two looks at the metadata store while waiting.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What waiting for the lock produced, for every request on this replica.
#[derive(Debug, Clone)]
pub(super) enum WaitOutcome {
    /// Another replica published it: serve it from the store.
    Published,
    /// This replica fills it.
    Fill(Arc<Fill>),
    Failed(Arc<ProxyError>),
}

/// What a request gets.
pub(super) enum Acquired {
    Stored(ArtifactLookup),
    Fill(Arc<Fill>),
}

impl ArtifactCache {
    /// Joins a local fill, or takes the cross-replica lock and starts one, or waits
    /// (one waiter per key on this replica) for another replica to publish it.
    pub(super) async fn fill_across_replicas(
        &self,
        request: &ArtifactRequest,
        locks: &DownloadLocks,
    ) -> Result<Acquired, Arc<ProxyError>> {
        let key = request.key.as_str();
        let (outcome, role) = self
            .inner
            .cross_replica_waits
            .run(key, || {
                self.clone().wait_for_key(request.clone(), locks.clone())
            })
            .await;
        if role == Role::Joined {
            self.metrics()
                .record_coalesced("artifact", request.key.format());
        }
        match outcome {
            Some(WaitOutcome::Fill(fill)) => Ok(Acquired::Fill(fill)),
            Some(WaitOutcome::Published) => {
                match self.stored(&request.key).await.map_err(Arc::new)? {
                    Some(stored) => Ok(Acquired::Stored(stored)),
                    // Published, then gone (evicted meanwhile): fetch it here.
                    None => Ok(Acquired::Fill(
                        self.join_or_start(request.clone(), None, FillSource::Upstream)
                            .await
                            .map_err(Arc::new)?,
                    )),
                }
            }
            Some(WaitOutcome::Failed(error)) => Err(error),
            None => Err(Arc::new(ProxyError::FillAborted {
                key: key.to_owned(),
            })),
        }
    }

    async fn wait_for_key(self, request: ArtifactRequest, locks: DownloadLocks) -> WaitOutcome {
        let key = request.key.as_str().to_owned();
        let deadline = Instant::now() + locks.wait;
        let mut backoff = Duration::from_millis(50);
        let mut waited = false;
        let mut asked = None;
        // Registered before the first look, so an announcement in between is not lost.
        let published = locks.published_waker(&key);
        loop {
            if let Some(fill) = self.local_fill(&request.key) {
                return WaitOutcome::Fill(fill);
            }
            match locks.try_lock(&key).await {
                TryLock::Held(held) => {
                    // Someone may have published just before we got the lock; the
                    // guard releases the lock when it is dropped.
                    return match self.metadata().artifact(&key).await {
                        Ok(Some(_)) => WaitOutcome::Published,
                        Ok(None) => match self
                            .join_or_start(request.clone(), Some(held), FillSource::Upstream)
                            .await
                        {
                            Ok(fill) => WaitOutcome::Fill(fill),
                            Err(error) => WaitOutcome::Failed(Arc::new(error)),
                        },
                        Err(error) => WaitOutcome::Failed(Arc::new(error.into())),
                    };
                }
                TryLock::Taken => {
                    if !waited {
                        waited = true;
                        self.metrics().cross_replica_waits.inc();
                        debug!(%key, "another replica is downloading; waiting for it");
                    }
                    // Follow its download as it arrives, when it shares it (asking each
                    // holder once: one that said no is not asked again every step).
                    if let Some(response) = self.open_from_holder(&key, &mut asked).await {
                        return match self
                            .join_or_start(request.clone(), None, FillSource::Replica(response))
                            .await
                        {
                            Ok(fill) => WaitOutcome::Fill(fill),
                            Err(error) => WaitOutcome::Failed(Arc::new(error)),
                        };
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return WaitOutcome::Failed(Arc::new(ProxyError::CrossReplicaWait {
                            key,
                            waited: locks.wait,
                        }));
                    }
                    let pause = backoff.min(deadline - now);
                    tokio::select! {
                        () = published.notified() => {}
                        () = tokio::time::sleep(pause) => {
                            backoff = (backoff * 2).min(MAX_POLL_INTERVAL);
                        }
                    }
                    match self.metadata().artifact(&key).await {
                        Ok(Some(_)) => return WaitOutcome::Published,
                        Ok(None) => {}
                        Err(error) => return WaitOutcome::Failed(Arc::new(error.into())),
                    }
                }
                // Redis down: fall back to this replica's own single flight.
                TryLock::Unavailable => {
                    return match self
                        .join_or_start(request.clone(), None, FillSource::Upstream)
                        .await
                    {
                        Ok(fill) => WaitOutcome::Fill(fill),
                        Err(error) => WaitOutcome::Failed(Arc::new(error)),
                    };
                }
            }
        }
    }
}
