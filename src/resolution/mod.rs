//! Cached resolutions (the design's dependency-resolution category): the answer to
//! `GET /-/api/REPO/PROJECT/VERSION/resolve` is kept whole, keyed by everything that
//! decides it but the index documents — resolver version, repository, root,
//! `max_depth`, `include_optional`, target — and holds while every index document it
//! read is still the same fresh copy (its fingerprint). A document refreshed with
//! other content or expired makes the next request resolve again. One resolution per
//! key runs at a time on a replica (single flight).
//!
//! Tiers: memory (checked against the documents in memory, without I/O), then Redis
//! and the metadata store, which every replica and a restarted process share (checked
//! against each document's fresh copy in memory, else in the shared tiers). A new
//! answer is written to every tier.
//!
//! Knows no ecosystem: resolving is `Protocol::resolve`; the documents are checked
//! through `Protocol::project_index_key`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tracing::warn;

use crate::engine::coordination::SingleFlight;
use crate::engine::redis::RedisTier;
use crate::engine::CacheEngine;
use crate::metadata::{MetadataStore, ResolutionRecord};
use crate::protocols::resolution::{ResolveOptions, RESOLVER_VERSION};
use crate::protocols::{Protocol, RequestError};

/// Bytes of cached resolutions kept in memory.
const MEMORY_BYTES: u64 = 64 * 1024 * 1024;

/// One cached answer.
#[derive(Debug)]
pub struct Resolved {
    /// The graph as JSON.
    pub body: Bytes,
    /// Project → fingerprint of the index document read.
    documents: BTreeMap<String, Option<String>>,
}

/// Whether the answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
}

impl Outcome {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
        }
    }
}

/// Why there is no answer.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The resolver's own answer (unknown project, bad target, …).
    Refused(Arc<RequestError>),
    /// The resolution panicked (a bug): nothing is cached.
    Panicked,
}

type Flight = Result<(Arc<Resolved>, Outcome), Arc<RequestError>>;

/// What is asked of [`ResolutionCache::resolve`].
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub repo_name: &'a str,
    pub repo: &'a Arc<dyn Protocol>,
    pub project: &'a str,
    pub version: &'a str,
    pub options: &'a ResolveOptions,
    /// Make it anew, whatever is cached.
    pub refresh: bool,
    /// Where artifacts' bytes are (a resolver may read core metadata).
    pub blobs: &'a Arc<dyn crate::storage::BlobStore>,
    /// A requirements file to resolve instead of `project` `version` (which are then
    /// ignored): keyed by its digest.
    pub file: Option<&'a str>,
}

/// The cache of resolutions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ResolutionCache {
    memory: moka::future::Cache<String, Arc<Resolved>>,
    flights: Arc<SingleFlight<Flight>>,
    shared: SharedResolutions,
}

impl ResolutionCache {
    /// A cache whose answers are also kept in `metadata` and, when configured,
    /// `redis`.
    #[must_use]
    pub fn new(metadata: Arc<dyn MetadataStore>, redis: Option<Arc<RedisTier>>) -> Self {
        Self {
            memory: moka::future::Cache::builder()
                .max_capacity(MEMORY_BYTES)
                .weigher(|key: &String, resolved: &Arc<Resolved>| {
                    u32::try_from(key.len() + resolved.body.len() + 64 * resolved.documents.len())
                        .unwrap_or(u32::MAX)
                })
                .build(),
            flights: Arc::new(SingleFlight::default()),
            shared: SharedResolutions {
                metadata,
                redis,
                pruned_at: Arc::default(),
            },
        }
    }
}

/// Everything that decides a resolution but the documents it reads.
fn key(repo: &str, project: &str, version: &str, options: &ResolveOptions) -> String {
    let mut hash = Sha256::new();
    for part in [
        RESOLVER_VERSION.to_string().as_str(),
        repo,
        project,
        version,
        &options
            .max_depth
            .map_or_else(|| "all".to_owned(), |d| d.to_string()),
        if options.include_optional {
            "optional"
        } else {
            "required"
        },
        options.target.as_deref().unwrap_or(""),
    ] {
        hash.update(part.len().to_le_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(hash.finalize())
}

impl ResolutionCache {
    /// The resolution of `project` `version` on `repo`: cached while its documents
    /// are unchanged, else made (once for concurrent callers); `refresh` makes it
    /// anew regardless.
    ///
    /// # Errors
    /// What the protocol's resolver says.
    pub async fn resolve(
        &self,
        engine: &CacheEngine,
        request: Request<'_>,
    ) -> Result<(Arc<Resolved>, Outcome), Failure> {
        let Request {
            repo_name,
            repo,
            project,
            version,
            options,
            refresh,
            blobs,
            file,
        } = request;
        let file_digest = file.map(|text| hex::encode(Sha256::digest(text.as_bytes())));
        let key = match &file_digest {
            Some(digest) => key(repo_name, "\0file", digest, options),
            None => key(repo_name, project, version, options),
        };
        if !refresh {
            if let Some(cached) = self.memory.get(&key).await {
                if holds(engine, repo, &cached, Reach::Memory).await {
                    return Ok((cached, Outcome::Hit));
                }
            }
        }
        let (engine, repo, project, version, options, memory, stored_key, shared) = (
            engine.clone(),
            Arc::clone(repo),
            project.to_owned(),
            version.to_owned(),
            options.clone(),
            self.memory.clone(),
            key.clone(),
            self.shared.clone(),
        );
        let blobs = Arc::clone(blobs);
        let file = file.map(str::to_owned);
        let (result, _) = self
            .flights
            .run(&key, move || async move {
                if !refresh {
                    if let Some(kept) = shared.load(&stored_key).await {
                        if holds(&engine, &repo, &kept, Reach::Shared).await {
                            let kept = Arc::new(kept);
                            memory.insert(stored_key, Arc::clone(&kept)).await;
                            return Ok((kept, Outcome::Hit));
                        }
                    }
                }
                let graph = match &file {
                    Some(file) => repo.resolve_file(&engine, &blobs, file, &options).await,
                    None => {
                        repo.resolve(&engine, &blobs, &project, &version, &options)
                            .await
                    }
                }
                .map_err(Arc::new)?;
                let body = Bytes::from(
                    serde_json::to_vec(&graph).expect("serializing a graph cannot fail"),
                );
                let clean = graph.errors.is_empty();
                let resolved = Arc::new(Resolved {
                    body,
                    documents: graph.documents,
                });
                memory
                    .insert(stored_key.clone(), Arc::clone(&resolved))
                    .await;
                // Every tier, unless the answer has errors (some may be passing: an
                // upstream that failed; this replica keeps it while its documents
                // hold). A failing tier is logged. The answer waits for the writes a
                // little (so the next request anywhere finds it), not for a hanging
                // tier.
                if clean {
                    let kept = Arc::clone(&resolved);
                    let writing =
                        tokio::spawn(async move { shared.store(&stored_key, &kept).await });
                    let _ = tokio::time::timeout(SHARED_WRITE_WAIT, writing).await;
                }
                Ok((resolved, Outcome::Miss))
            })
            .await;
        match result {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(refused)) => Err(Failure::Refused(refused)),
            None => Err(Failure::Panicked),
        }
    }
}

/// Redis (when configured) and the metadata store.
#[derive(Debug, Clone)]
struct SharedResolutions {
    metadata: Arc<dyn MetadataStore>,
    redis: Option<Arc<RedisTier>>,
    /// When this process last pruned old answers from the metadata store (Unix
    /// seconds).
    pruned_at: Arc<AtomicU64>,
}

/// Answers not written again for this long leave the metadata store (they are made
/// anew when asked for).
const KEEP_IN_METADATA: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How often a process prunes them (on a write, at most this often).
const PRUNE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// How long a new answer waits for its writes to the shared tiers.
const SHARED_WRITE_WAIT: Duration = Duration::from_secs(1);

/// How long Redis keeps an answer (the metadata store keeps it until replaced).
const REDIS_TTL: Duration = Duration::from_secs(24 * 60 * 60);

fn redis_key(key: &str) -> String {
    format!("granary:resolution:{key}")
}

impl SharedResolutions {
    /// The answer under `key` from Redis, else the metadata store; failures read as
    /// absent.
    async fn load(&self, key: &str) -> Option<Resolved> {
        if let Some(redis) = &self.redis {
            if let Ok(Some(value)) = redis.get(&redis_key(key)).await {
                if let Some(resolved) = decode(&value) {
                    return Some(resolved);
                }
            }
        }
        match self.metadata.resolution(key).await {
            Ok(Some(record)) => Some(Resolved {
                documents: serde_json::from_str(&record.documents).ok()?,
                body: record.body,
            }),
            Ok(None) => None,
            Err(error) => {
                warn!(%key, %error, "metadata store unavailable; resolving anew");
                None
            }
        }
    }

    /// Writes the answer to every tier at once.
    async fn store(&self, key: &str, resolved: &Resolved) {
        let documents =
            serde_json::to_string(&resolved.documents).expect("a map of strings is JSON");
        let database = async {
            let record = ResolutionRecord {
                key: key.to_owned(),
                body: resolved.body.clone(),
                documents: documents.clone(),
                stored_at: SystemTime::now(),
            };
            if let Err(error) = self.metadata.put_resolution(&record).await {
                warn!(%key, %error, "cannot keep a resolution in the metadata store");
            }
            self.prune(record.stored_at).await;
        };
        let redis = async {
            if let Some(redis) = &self.redis {
                let mut value = Vec::with_capacity(documents.len() + 1 + resolved.body.len());
                value.extend_from_slice(documents.as_bytes());
                value.push(b'\n');
                value.extend_from_slice(&resolved.body);
                if let Err(error) = redis.set(&redis_key(key), &value, REDIS_TTL).await {
                    warn!(%key, %error, "cannot keep a resolution in Redis");
                }
            }
        };
        tokio::join!(database, redis);
    }

    /// Deletes answers older than [`KEEP_IN_METADATA`], once per
    /// [`PRUNE_INTERVAL`] per process.
    async fn prune(&self, now: SystemTime) {
        let seconds = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let last = self.pruned_at.load(Ordering::Acquire);
        if seconds < last + PRUNE_INTERVAL.as_secs()
            || self
                .pruned_at
                .compare_exchange(last, seconds, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        match self
            .metadata
            .delete_resolutions_before(
                now.checked_sub(KEEP_IN_METADATA)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            )
            .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned old resolutions"),
            Err(error) => warn!(%error, "cannot prune old resolutions"),
        }
    }
}

/// `documents` JSON, a newline, the answer.
fn decode(value: &[u8]) -> Option<Resolved> {
    let split = value.iter().position(|b| *b == b'\n')?;
    Some(Resolved {
        documents: serde_json::from_slice(&value[..split]).ok()?,
        body: Bytes::copy_from_slice(&value[split + 1..]),
    })
}

/// A resolution's JSON answer as NDJSON: a `node` line per node, an `edge` line per
/// edge, then `done` with the totals, the target and the errors.
#[must_use]
pub fn ndjson(graph_json: &[u8]) -> Vec<u8> {
    let graph: serde_json::Value =
        serde_json::from_slice(graph_json).expect("a cached resolution is JSON");
    let mut out = Vec::with_capacity(graph_json.len() + 1024);
    let mut line = |kind: &str, fields: &serde_json::Value| {
        let mut object = serde_json::Map::new();
        object.insert("type".to_owned(), kind.into());
        if let Some(fields) = fields.as_object() {
            object.extend(fields.clone());
        }
        serde_json::to_writer(&mut out, &object).expect("writing to memory");
        out.push(b'\n');
    };
    let list = |name: &str| graph[name].as_array().cloned().unwrap_or_default();
    let (nodes, edges) = (list("nodes"), list("edges"));
    for node in &nodes {
        line("node", node);
    }
    for edge in &edges {
        line("edge", edge);
    }
    line(
        "done",
        &serde_json::json!({
            "resolver": graph["resolver"],
            "target": graph["target"],
            "nodes": nodes.len(),
            "edges": edges.len(),
            "errors": graph["errors"],
        }),
    );
    out
}

/// Where [`holds`] looks for the documents' fresh copies.
#[derive(Debug, Clone, Copy)]
enum Reach {
    /// In memory only: no I/O.
    Memory,
    /// In memory, else in the shared tiers.
    Shared,
}

/// Whether every document `resolved` read is still the fresh copy it read.
async fn holds(
    engine: &CacheEngine,
    repo: &Arc<dyn Protocol>,
    resolved: &Resolved,
    reach: Reach,
) -> bool {
    for (project, fingerprint) in &resolved.documents {
        let Ok(key) = repo.project_index_key(project) else {
            return false;
        };
        let current = match reach {
            Reach::Memory => engine
                .index
                .fresh_in_memory(key.as_str())
                .await
                .map(|document| crate::protocols::resolution::fingerprint(&document)),
            Reach::Shared => engine.index.fresh_fingerprint(key.as_str()).await,
        };
        if current.as_ref() != Some(fingerprint) {
            return false;
        }
    }
    true
}
