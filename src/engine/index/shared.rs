//! The tiers of index documents below the in-process cache: Redis (optional, shared
//! by replicas, with TTLs) and the metadata store (the truth, kept for offline mode).
//!
//! In Redis a record is one value: a JSON header line (version 1; fields are only
//! ever added) followed by the raw canonical body.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::clock::{from_unix_millis, to_unix_millis};
use crate::engine::redis::RedisTier;
use crate::http_cache::{Lifetimes, Validators};
use crate::metadata::{IndexRecord, MetadataStore};

/// How long Redis keeps an entry past its grace period; the metadata store keeps it
/// for ever (offline mode reads it from there).
const REDIS_RETENTION: Duration = Duration::from_secs(600);

/// Index documents' shared tiers.
#[derive(Debug, Clone)]
pub struct SharedIndex {
    pub metadata: Arc<dyn MetadataStore>,
    pub redis: Option<Arc<RedisTier>>,
    /// Whether other replicas write to these tiers (Redis or a shared database), so a
    /// copy that is not fresh here may be fresher there.
    pub is_shared: bool,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    format_version: u32,
    found: bool,
    etag: Option<String>,
    last_modified: Option<String>,
    stored_at: i64,
    fresh_until: i64,
    stale_until: i64,
}

fn encode(record: &IndexRecord) -> Vec<u8> {
    let header = Envelope {
        v: 1,
        format_version: record.format_version,
        found: record.found,
        etag: record.validators.etag.clone(),
        last_modified: record.validators.last_modified.clone(),
        stored_at: to_unix_millis(record.stored_at),
        fresh_until: to_unix_millis(record.lifetimes.fresh_until),
        stale_until: to_unix_millis(record.lifetimes.stale_until),
    };
    let mut value = serde_json::to_vec(&header).expect("serializing a plain struct cannot fail");
    value.push(b'\n');
    value.extend_from_slice(&record.body);
    value
}

fn decode(key: &str, value: &[u8]) -> Option<IndexRecord> {
    let split = value.iter().position(|b| *b == b'\n')?;
    let header: Envelope = serde_json::from_slice(&value[..split]).ok()?;
    (header.v == 1).then(|| IndexRecord {
        key: key.to_owned(),
        format_version: header.format_version,
        found: header.found,
        body: Bytes::copy_from_slice(&value[split + 1..]),
        validators: Validators {
            etag: header.etag,
            last_modified: header.last_modified,
        },
        stored_at: from_unix_millis(header.stored_at),
        lifetimes: Lifetimes {
            fresh_until: from_unix_millis(header.fresh_until),
            stale_until: from_unix_millis(header.stale_until),
        },
    })
}

impl SharedIndex {
    /// The record from Redis, else the metadata store. Failures read as absent.
    pub async fn load(&self, key: &str) -> Option<IndexRecord> {
        if let Some(redis) = &self.redis {
            if let Ok(Some(value)) = redis.get(key).await {
                if let Some(record) = decode(key, &value) {
                    return Some(record);
                }
            }
        }
        match self.metadata.index_entry(key).await {
            Ok(record) => record,
            Err(error) => {
                warn!(%key, %error, "metadata store unavailable; treating index entry as absent");
                None
            }
        }
    }

    /// Writes the record to every tier at once; a failing tier is logged, not fatal.
    /// Redis, where other replicas look first, is never queued behind a busy
    /// database.
    pub async fn store(&self, record: &IndexRecord, now: SystemTime) {
        let database = async {
            if let Err(error) = self.metadata.put_index_entry(record).await {
                warn!(key = %record.key, %error, "could not store index entry in the metadata store");
            }
        };
        tokio::join!(database, self.store_redis(record, now));
    }

    /// After a `304`: new lifetimes in every tier, at once.
    pub async fn renew(&self, record: &IndexRecord, now: SystemTime) {
        let database = async {
            if let Err(error) = self
                .metadata
                .renew_index_entry(
                    &record.key,
                    record.stored_at,
                    record.lifetimes,
                    &record.validators,
                )
                .await
            {
                warn!(key = %record.key, %error, "could not renew index entry in the metadata store");
            }
        };
        tokio::join!(database, self.store_redis(record, now));
    }

    async fn store_redis(&self, record: &IndexRecord, now: SystemTime) {
        if let Some(redis) = &self.redis {
            let ttl = record
                .lifetimes
                .stale_until
                .duration_since(now)
                .unwrap_or_default()
                + REDIS_RETENTION;
            // A failure was counted by the tier; this replica still has the entry.
            let _ = redis.set(&record.key, &encode(record), ttl).await;
        }
    }

    /// Forgets keys in Redis (the metadata store is purged by the caller).
    pub async fn forget(&self, keys: &[String]) {
        if let Some(redis) = &self.redis {
            let _ = redis.delete(keys).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips() {
        let record = IndexRecord {
            key: "granary:index:pypi:p:x".into(),
            format_version: 1,
            found: true,
            body: Bytes::from_static(b"{\"a\":\n1}"),
            validators: Validators {
                etag: Some("\"e\"".into()),
                last_modified: None,
            },
            stored_at: from_unix_millis(1_000),
            lifetimes: Lifetimes {
                fresh_until: from_unix_millis(2_000),
                stale_until: from_unix_millis(3_000),
            },
        };
        let decoded = decode(&record.key, &encode(&record)).expect("decodes");
        assert_eq!(decoded.body, record.body);
        assert_eq!(decoded.lifetimes, record.lifetimes);
        assert_eq!(decoded.validators, record.validators);
        assert!(decode("k", b"garbage").is_none());
    }
}
