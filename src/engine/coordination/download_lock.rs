//! One upstream download per artifact across replicas.
//!
//! Before filling, a replica takes `granary:lock:{key}` in Redis (`SET NX PX`). The
//! holder renews it every third of its lifetime while downloading. The lock is a
//! guard: dropping it, on any path (success, error, a lost race, a cancelled request,
//! a panic), stops the renewal and releases the lock, so no replica can hold it for
//! ever. A holder killed mid-download stops renewing, so the lock expires after at
//! most `artifact_lock_ttl` and another replica takes over.
//!
//! A replica that publishes an artifact announces it on the Redis channel
//! [`PUBLISHED_CHANNEL`]; replicas waiting for that key are woken at once, and poll
//! the metadata store only as a fallback (a lost message, Redis restarting).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::engine::redis::{new_token, RedisTier};

/// The Redis channel on which replicas announce published artifacts (the key).
pub const PUBLISHED_CHANNEL: &str = "granary:published";

/// Settings and shared state of the cross-replica artifact lock.
#[derive(Debug, Clone)]
pub struct DownloadLocks {
    pub redis: Arc<RedisTier>,
    /// Lifetime of a lock that is not renewed.
    pub ttl: Duration,
    /// How long a replica waits for another replica's download.
    pub wait: Duration,
    wakers: Arc<Wakers>,
    /// Where other replicas can stream this replica's downloads from, once known (set
    /// when the listener is bound); written into the lock's value after the token.
    advertised: Arc<OnceLock<String>>,
}

/// Per key, the [`Notify`] of this replica's waiter, if one waits.
#[derive(Debug, Default)]
struct Wakers {
    by_key: Mutex<HashMap<String, Weak<Notify>>>,
}

impl Wakers {
    fn waker(&self, key: &str) -> Arc<Notify> {
        let mut by_key = self.by_key.lock().expect("waker map is never poisoned");
        if let Some(notify) = by_key.get(key).and_then(Weak::upgrade) {
            return notify;
        }
        by_key.retain(|_, weak| weak.strong_count() > 0);
        let notify = Arc::new(Notify::new());
        by_key.insert(key.to_owned(), Arc::downgrade(&notify));
        notify
    }

    fn wake(&self, key: &str) {
        let notify = self
            .by_key
            .lock()
            .expect("waker map is never poisoned")
            .get(key)
            .and_then(Weak::upgrade);
        if let Some(notify) = notify {
            notify.notify_waiters();
            notify.notify_one();
        }
    }
}

/// What trying the lock produced.
#[derive(Debug)]
pub enum TryLock {
    /// This replica holds it until the guard is dropped.
    Held(HeldDownloadLock),
    /// Another replica holds it.
    Taken,
    /// Redis did not answer: fall back to this replica's own single flight.
    Unavailable,
}

impl DownloadLocks {
    /// The lock settings; starts the task that listens for published artifacts.
    #[must_use]
    pub fn new(redis: Arc<RedisTier>, ttl: Duration, wait: Duration) -> Self {
        let wakers = Arc::new(Wakers::default());
        tokio::spawn(listen_for_published(
            Arc::clone(&redis),
            Arc::downgrade(&wakers),
        ));
        Self {
            redis,
            ttl,
            wait,
            wakers,
            advertised: Arc::default(),
        }
    }

    /// Tells the other replicas, through the locks this replica takes from now on,
    /// where to stream its downloads from. Set once; later calls are ignored.
    pub fn advertise(&self, url: &str) {
        let _ = self.advertised.set(url.trim_end_matches('/').to_owned());
    }

    /// Where the replica holding `key`'s lock can be streamed from, if it said so:
    /// `(the lock's value, the URL)`; the value tells one holding apart from the next.
    pub async fn holder(&self, key: &str) -> Option<(String, String)> {
        let value = self
            .redis
            .get(&crate::engine::redis::lock_key(key))
            .await
            .ok()??;
        let value = String::from_utf8(value).ok()?;
        let url = value.split_once(' ').map(|(_, url)| url.to_owned())?;
        (!url.is_empty()).then_some((value, url))
    }

    /// Takes the lock on `key` if nobody holds it.
    pub async fn try_lock(&self, key: &str) -> TryLock {
        let token = match self.advertised.get() {
            Some(url) => format!("{} {url}", new_token()),
            None => new_token(),
        };
        match self.redis.try_lock(key, &token, self.ttl).await {
            Ok(true) => TryLock::Held(HeldDownloadLock::start(
                Arc::clone(&self.redis),
                key.to_owned(),
                token,
                self.ttl,
            )),
            Ok(false) => TryLock::Taken,
            Err(_) => TryLock::Unavailable,
        }
    }

    /// Notified when any replica announces that `key` was published. Hold the
    /// returned handle while waiting.
    #[must_use]
    pub fn published_waker(&self, key: &str) -> Arc<Notify> {
        self.wakers.waker(key)
    }

    /// Announces to every replica that `key` is published (best effort: waiters poll).
    pub async fn announce_published(&self, key: &str) {
        if let Err(error) = self.redis.publish(PUBLISHED_CHANNEL, key).await {
            debug!(%key, %error, "could not announce a published artifact");
        }
    }
}

/// Subscribes to [`PUBLISHED_CHANNEL`] and wakes local waiters; reconnects after
/// Redis fails, and stops when the locks are dropped.
async fn listen_for_published(redis: Arc<RedisTier>, wakers: Weak<Wakers>) {
    loop {
        if wakers.strong_count() == 0 {
            return;
        }
        match redis.subscribe(PUBLISHED_CHANNEL).await {
            Ok(mut messages) => {
                while let Some(key) = messages.next().await {
                    let Some(wakers) = wakers.upgrade() else {
                        return;
                    };
                    wakers.wake(&key);
                }
            }
            Err(error) => debug!(%error, "cannot subscribe to published artifacts; polling"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A lock this replica holds while it fills. Dropping it stops the renewal and
/// releases the lock.
#[derive(Debug)]
pub struct HeldDownloadLock {
    redis: Arc<RedisTier>,
    key: String,
    token: String,
    renewal: JoinHandle<()>,
    released: bool,
}

impl HeldDownloadLock {
    fn start(redis: Arc<RedisTier>, key: String, token: String, ttl: Duration) -> Self {
        let renewal = {
            let (redis, key, token) = (Arc::clone(&redis), key.clone(), token.clone());
            tokio::spawn(async move {
                // Configuration guarantees a ttl of at least a millisecond; the floor
                // keeps `interval` from panicking whatever it is given.
                let mut ticker = tokio::time::interval((ttl / 3).max(Duration::from_millis(1)));
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
            released: false,
        }
    }

    /// Stops renewing and releases the lock, waiting for Redis to confirm.
    pub async fn release(mut self) {
        self.renewal.abort();
        self.released = true;
        let _ = self.redis.unlock(&self.key, &self.token).await;
    }
}

impl Drop for HeldDownloadLock {
    fn drop(&mut self) {
        self.renewal.abort();
        if self.released {
            return;
        }
        // Dropped without `release` (an error path, a cancelled request): unlock in
        // the background; if there is no runtime any more, the lock expires on its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (redis, key, token) = (
                Arc::clone(&self.redis),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.token),
            );
            runtime.spawn(async move {
                let _ = redis.unlock(&key, &token).await;
            });
        }
    }
}
