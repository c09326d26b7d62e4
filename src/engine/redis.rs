//! The shared tier: Redis holds index documents for every replica (second tier behind
//! each replica's in-process cache) and the cross-replica locks.
//!
//! Locks are `SET granary:lock:{key} <token> NX PX <ttl>`, renewed and released by
//! scripts that act only while the value is still the caller's token, so a replica
//! can never release (or extend) a lock it lost.
//!
//! Redis being unavailable degrades, never fails: every operation is bounded by a
//! timeout, errors are counted and reported on `/-/ready`, and callers fall back to
//! their own tiers and local single flight. The connection manager reconnects on its
//! own when Redis returns.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Releases the lock only if the caller still owns it.
const UNLOCK: &str = r#"if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end"#;
/// Extends the lock only if the caller still owns it.
const EXTEND: &str = r#"if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end"#;
/// How often a replica retries connecting while Redis is down.
const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// A Redis that may be down.
pub struct RedisTier {
    client: redis::Client,
    /// The connection, once made. A plain mutex held for a clone only: connecting
    /// happens outside it, so operations never queue behind a reconnect.
    manager: std::sync::Mutex<Option<ConnectionManager>>,
    /// Set while one task connects; other operations fail fast meanwhile.
    connecting: AtomicBool,
    last_attempt: std::sync::Mutex<Option<Instant>>,
    /// After a failure, operations fail fast until then (a circuit breaker), so an
    /// outage costs requests nothing rather than one timeout each.
    down_until: std::sync::Mutex<Option<Instant>>,
    timeout: Duration,
    healthy: AtomicBool,
    errors: AtomicU64,
    metrics: Metrics,
    unlock: Script,
    extend: Script,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("healthy", &self.healthy.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Why a Redis operation did not happen; callers fall back.
#[derive(Debug, thiserror::Error)]
#[error("redis unavailable: {0}")]
pub struct RedisUnavailable(pub String);

impl RedisTier {
    /// Prepares the client; the first connection is made on first use, so a replica
    /// starts (degraded) even while Redis is down.
    ///
    /// # Errors
    /// A malformed URL.
    pub fn new(
        url: &str,
        timeout: Duration,
        metrics: Metrics,
    ) -> Result<Arc<Self>, redis::RedisError> {
        Ok(Arc::new(Self {
            client: redis::Client::open(url)?,
            manager: std::sync::Mutex::new(None),
            connecting: AtomicBool::new(false),
            last_attempt: std::sync::Mutex::new(None),
            down_until: std::sync::Mutex::new(None),
            timeout,
            healthy: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            metrics,
            unlock: Script::new(UNLOCK),
            extend: Script::new(EXTEND),
        }))
    }

    /// Whether the last operation succeeded.
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Operations that failed since start.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    async fn connection(&self) -> Result<ConnectionManager, RedisUnavailable> {
        if let Some(connection) = self
            .manager
            .lock()
            .expect("connection slot is never poisoned")
            .as_ref()
        {
            return Ok(connection.clone());
        }
        if self.connecting.swap(true, Ordering::AcqRel) {
            return Err(RedisUnavailable(
                "connecting; not waiting for it".to_owned(),
            ));
        }
        let result = self.connect().await;
        self.connecting.store(false, Ordering::Release);
        result
    }

    async fn connect(&self) -> Result<ConnectionManager, RedisUnavailable> {
        {
            let mut last = self
                .last_attempt
                .lock()
                .expect("attempt clock is never poisoned");
            if last.is_some_and(|at| at.elapsed() < RECONNECT_INTERVAL) {
                return Err(RedisUnavailable(
                    "not connected; retrying shortly".to_owned(),
                ));
            }
            *last = Some(Instant::now());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        match tokio::time::timeout(
            self.timeout * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        {
            Ok(Ok(connection)) => {
                info!("connected to redis");
                *self
                    .manager
                    .lock()
                    .expect("connection slot is never poisoned") = Some(connection.clone());
                Ok(connection)
            }
            Ok(Err(error)) => Err(self.failed(&error.to_string())),
            Err(_) => Err(self.failed("connect timed out")),
        }
    }

    fn failed(&self, reason: &str) -> RedisUnavailable {
        *self.down_until.lock().expect("breaker is never poisoned") =
            Some(Instant::now() + RECONNECT_INTERVAL);
        if self.healthy.swap(false, Ordering::Relaxed) {
            warn!(%reason, "redis unavailable; falling back to this replica's own tiers");
        }
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.metrics.redis_errors.inc();
        self.metrics.redis_up.set(0);
        RedisUnavailable(reason.to_owned())
    }

    fn succeeded(&self) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            info!("redis available");
        }
        self.metrics.redis_up.set(1);
    }

    /// Runs one operation with the timeout, recording the outcome.
    async fn run<T, F>(
        &self,
        operation: impl FnOnce(ConnectionManager) -> F,
    ) -> Result<T, RedisUnavailable>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self
            .down_until
            .lock()
            .expect("breaker is never poisoned")
            .is_some_and(|until| Instant::now() < until)
        {
            self.errors.fetch_add(1, Ordering::Relaxed);
            self.metrics.redis_errors.inc();
            return Err(RedisUnavailable("unavailable; retrying shortly".to_owned()));
        }
        let connection = self.connection().await?;
        match tokio::time::timeout(self.timeout, operation(connection)).await {
            Ok(Ok(value)) => {
                self.succeeded();
                Ok(value)
            }
            Ok(Err(error)) => Err(self.failed(&error.to_string())),
            Err(_) => Err(self.failed("operation timed out")),
        }
    }

    /// The value at `key`, if any.
    ///
    /// # Errors
    /// When Redis is unavailable.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisUnavailable> {
        self.run(|mut c| async move { c.get::<_, Option<Vec<u8>>>(key).await })
            .await
    }

    /// Stores `value` at `key` for `ttl`.
    ///
    /// # Errors
    /// When Redis is unavailable.
    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), RedisUnavailable> {
        let millis = lock_millis(ttl);
        self.run(|mut c| async move { c.pset_ex::<_, _, ()>(key, value, millis).await })
            .await
    }

    /// Deletes keys.
    ///
    /// # Errors
    /// When Redis is unavailable.
    pub async fn delete(&self, keys: &[String]) -> Result<(), RedisUnavailable> {
        if keys.is_empty() {
            return Ok(());
        }
        self.run(|mut c| async move { c.del::<_, ()>(keys).await })
            .await
    }

    /// Deletes every key starting with `prefix` (admin invalidation; SCAN, not KEYS).
    ///
    /// # Errors
    /// When Redis is unavailable.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), RedisUnavailable> {
        let pattern = scan_pattern(prefix);
        let keys: Vec<String> = self
            .run(|mut c| async move {
                let mut iter = c.scan_match::<_, String>(&pattern).await?;
                let mut keys = Vec::new();
                while let Some(key) = futures::StreamExt::next(&mut iter).await {
                    keys.push(key);
                }
                Ok(keys)
            })
            .await?;
        self.delete(&keys).await
    }

    /// Takes `granary:lock:{key}` for `ttl` if nobody holds it.
    ///
    /// # Errors
    /// When Redis is unavailable (the caller falls back to a local lock).
    pub async fn try_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, RedisUnavailable> {
        let lock_key = lock_key(key);
        let millis = lock_millis(ttl);
        self.run(|mut c| async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(&lock_key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(millis)
                .query_async(&mut c)
                .await?;
            Ok(set.is_some())
        })
        .await
    }

    /// Extends the caller's lock; `false` when it no longer owns it.
    ///
    /// # Errors
    /// When Redis is unavailable.
    pub async fn extend_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, RedisUnavailable> {
        let lock_key = lock_key(key);
        let millis = lock_millis(ttl);
        self.run(|mut c| async move {
            let extended: i64 = self
                .extend
                .key(&lock_key)
                .arg(token)
                .arg(millis)
                .invoke_async(&mut c)
                .await?;
            Ok(extended == 1)
        })
        .await
    }

    /// Releases the caller's lock (a no-op if it expired and someone else holds it).
    ///
    /// # Errors
    /// When Redis is unavailable (the lock then expires on its own).
    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), RedisUnavailable> {
        let lock_key = lock_key(key);
        self.run(|mut c| async move {
            let _: i64 = self
                .unlock
                .key(&lock_key)
                .arg(token)
                .invoke_async(&mut c)
                .await?;
            Ok(())
        })
        .await
    }

    /// Publishes `message` on `channel`.
    ///
    /// # Errors
    /// When Redis is unavailable.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), RedisUnavailable> {
        self.run(|mut c| async move { c.publish::<_, _, ()>(channel, message).await })
            .await
    }

    /// The messages on `channel`, on a connection of their own; the stream ends when
    /// that connection fails.
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn subscribe(
        &self,
        channel: &str,
    ) -> Result<BoxStream<'static, String>, RedisUnavailable> {
        let subscribe = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = match tokio::time::timeout(self.timeout * 2, subscribe).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(error)) => return Err(RedisUnavailable(error.to_string())),
            Err(_) => return Err(RedisUnavailable("subscribe timed out".to_owned())),
        };
        Ok(pubsub
            .into_on_message()
            .filter_map(|message| async move { message.get_payload::<String>().ok() })
            .boxed())
    }

    /// Adds `increments` to the fields of the hashes at their keys, and sets each
    /// key's lifetime to `ttl`, in one pipeline.
    ///
    /// # Errors
    /// When Redis is unavailable.
    pub async fn increment_hashes(
        &self,
        increments: &[(String, Vec<(&'static str, u64)>)],
        ttl: Duration,
    ) -> Result<(), RedisUnavailable> {
        if increments.is_empty() {
            return Ok(());
        }
        let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        self.run(|mut c| async move {
            let mut pipe = redis::pipe();
            for (key, fields) in increments {
                for (field, by) in fields {
                    pipe.hincr(key, *field, *by).ignore();
                }
                pipe.expire(key, seconds).ignore();
            }
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    /// The hashes at `keys` (absent ones empty), in one pipeline.
    ///
    /// # Errors
    /// When Redis is unavailable.
    pub async fn hashes(
        &self,
        keys: &[String],
    ) -> Result<Vec<std::collections::HashMap<String, u64>>, RedisUnavailable> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|mut c| async move {
            let mut pipe = redis::pipe();
            for key in keys {
                pipe.hgetall(key);
            }
            pipe.query_async(&mut c).await
        })
        .await
    }

    /// A round trip; for `/-/ready`.
    ///
    /// # Errors
    /// When Redis is unavailable.
    pub async fn ping(&self) -> Result<(), RedisUnavailable> {
        self.run(|mut c| async move {
            redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .map(|_| ())
        })
        .await
    }
}

/// A `SCAN MATCH` pattern for keys starting with `prefix`: the glob characters in
/// it are escaped with a backslash, so they match themselves.
fn scan_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

/// A lock's lifetime in Redis's `PX` milliseconds (at least 1: 0 is an error there).
fn lock_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `granary:lock:{key}`.
#[must_use]
pub fn lock_key(key: &str) -> String {
    format!("granary:lock:{key}")
}

/// A random lock token.
#[must_use]
pub fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every operation used to queue behind a tokio mutex held while one task
    // connected, so a Redis that accepted connections and did not answer held up
    // every request for the whole connect timeout.
    #[tokio::test]
    async fn operations_fail_fast_while_another_task_connects() {
        // A "Redis" that accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let held = tokio::spawn(async move {
            let mut sockets = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                sockets.push(socket);
            }
        });
        let tier = RedisTier::new(
            &format!("redis://127.0.0.1:{port}"),
            Duration::from_secs(2),
            Metrics::new(),
        )
        .expect("client");
        let connecting = tokio::spawn({
            let tier = Arc::clone(&tier);
            async move { tier.get("first").await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = tier.get("second").await;
        assert!(second.is_err(), "no connection: the operation fails");
        assert!(
            !connecting.is_finished(),
            "the second operation failed at once instead of waiting behind the connect"
        );
        assert!(connecting.await.expect("task").is_err());
        held.abort();
    }

    #[test]
    fn scan_patterns_escape_glob_characters() {
        assert_eq!(scan_pattern("granary:index:x:"), "granary:index:x:*");
        assert_eq!(scan_pattern("a*b?c[d]"), "a\\*b\\?c\\[d\\]*");
        assert_eq!(scan_pattern("a\\b"), "a\\\\b*");
    }
}
