//! One upstream download per artifact across replicas.
//!
//! Before filling, a replica takes `granary:lock:{key}` in Redis (`SET NX PX`). The
//! holder renews it every third of its lifetime while downloading and releases it
//! when done; a holder killed mid-download stops renewing, so the lock expires after
//! at most `artifact_lock_ttl` and another replica takes over. Replicas that find the
//! lock taken poll the shared metadata store for the published blob with a bounded
//! back-off, and give up after `artifact_wait`. If Redis is down, each replica falls
//! back to its own single flight (at most one fetch per replica).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::fill::{ArtifactCache, ArtifactLookup, ArtifactRequest, Fill};
use super::redis_tier::{new_token, RedisTier};
use super::ProxyError;

/// Settings of the cross-replica artifact lock.
#[derive(Debug, Clone)]
pub struct CrossReplicaLock {
    pub redis: Arc<RedisTier>,
    pub ttl: Duration,
    pub wait: Duration,
}

/// A lock this replica holds while it fills.
#[derive(Debug)]
pub(super) struct HeldLock {
    redis: Arc<RedisTier>,
    key: String,
    token: String,
    renewal: JoinHandle<()>,
}

impl HeldLock {
    fn start(redis: Arc<RedisTier>, key: String, token: String, ttl: Duration) -> Self {
        let renewal = {
            let (redis, key, token) = (Arc::clone(&redis), key.clone(), token.clone());
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(ttl / 3);
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    // Redis down (`Err`): keep downloading; the lock expires on its own.
                    if let Ok(false) = redis.extend_lock(&key, &token, ttl).await {
                        warn!(%key, "lost the artifact lock while downloading; another replica may fetch too");
                        break;
                    }
                }
            })
        };
        Self {
            redis,
            key,
            token,
            renewal,
        }
    }

    /// Stops renewing and releases the lock.
    pub(super) async fn release(self) {
        self.renewal.abort();
        let _ = self.redis.unlock(&self.key, &self.token).await;
    }
}

/// What waiting for the lock produced.
pub(super) enum Acquired {
    /// Another replica published it meanwhile.
    Stored(ArtifactLookup),
    /// This replica fills (or joins its own fill).
    Fill(Arc<Fill>),
}

impl ArtifactCache {
    /// Joins a local fill, or takes the cross-replica lock and starts one, or waits
    /// for another replica to publish the artifact.
    pub(super) async fn acquire_across_replicas(
        &self,
        request: &ArtifactRequest,
        lock: &CrossReplicaLock,
    ) -> Result<Acquired, Arc<ProxyError>> {
        let key = request.key.as_str();
        let deadline = Instant::now() + lock.wait;
        let mut backoff = Duration::from_millis(50);
        let mut waited = false;
        loop {
            if let Some(fill) = self.local_fill(&request.key) {
                return Ok(Acquired::Fill(fill));
            }
            let token = new_token();
            match lock.redis.try_lock(key, &token, lock.ttl).await {
                Ok(true) => {
                    // Someone may have published just before we got the lock.
                    if let Some(stored) = self.stored(&request.key).await.map_err(Arc::new)? {
                        let _ = lock.redis.unlock(key, &token).await;
                        return Ok(Acquired::Stored(stored));
                    }
                    let held =
                        HeldLock::start(Arc::clone(&lock.redis), key.to_owned(), token, lock.ttl);
                    let fill = self
                        .join_or_start(request.clone(), Some(held))
                        .await
                        .map_err(Arc::new)?;
                    return Ok(Acquired::Fill(fill));
                }
                Ok(false) => {
                    if !waited {
                        waited = true;
                        self.metrics().cross_replica_waits.inc();
                        debug!(%key, "another replica is downloading; waiting for it");
                    }
                    if Instant::now() >= deadline {
                        return Err(Arc::new(ProxyError::CrossReplicaWait {
                            key: key.to_owned(),
                            waited: lock.wait,
                        }));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    if let Some(stored) = self.stored(&request.key).await.map_err(Arc::new)? {
                        return Ok(Acquired::Stored(stored));
                    }
                }
                // Redis down: fall back to this replica's own single flight.
                Err(_) => {
                    let fill = self
                        .join_or_start(request.clone(), None)
                        .await
                        .map_err(Arc::new)?;
                    return Ok(Acquired::Fill(fill));
                }
            }
        }
    }
}
