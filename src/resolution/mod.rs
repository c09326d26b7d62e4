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
//! A requirements file's resolution streams: its flight keeps the lines made so far
//! in a live log (`live.rs`) that every `POST …/resolve` caller of that key follows
//! from the first line ([`ResolutionCache::resolve_lines`]).
//!
//! Knows no ecosystem: resolving is `Protocol::resolve`; the documents are checked
//! through `Protocol::project_index_key`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use sha2::{Digest, Sha256};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tracing::warn;

use crate::engine::coordination::SingleFlight;
use crate::engine::redis::RedisTier;
use crate::engine::CacheEngine;
use crate::metadata::{MetadataStore, ResolutionRecord};
use crate::protocols::resolution::{Progress, ResolveOptions, RESOLVER_VERSION};
use crate::protocols::{Protocol, RequestError};

mod live;

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
    /// The lines of requirements-file resolutions in flight, for `POST …/resolve`
    /// callers to follow.
    lives: live::Lives,
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
            lives: live::Lives::default(),
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

/// A resolution begun: answered from memory, or a flight to await (and, for a
/// requirements file, follow).
enum Begun {
    Cached(Arc<Resolved>),
    Flight {
        result: futures::future::BoxFuture<'static, Option<Flight>>,
        key: String,
    },
}

/// An answer for a caller that reads lines as they come.
pub enum Lines {
    /// The whole answer is here (cached, or made before any line was ready).
    Whole(Arc<Resolved>, Outcome),
    /// A resolution running (a `MISS`): its NDJSON lines as they become final, up to
    /// `done` or `error`.
    Streaming(futures::stream::BoxStream<'static, Bytes>),
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
        match self.begin(engine, request).await {
            Begun::Cached(cached) => Ok((cached, Outcome::Hit)),
            Begun::Flight { result, .. } => landed(result.await),
        }
    }

    /// As [`ResolutionCache::resolve`], for a caller that sends lines as they come:
    /// a requirements file's resolution in flight is followed from its first line
    /// (whoever started it).
    ///
    /// # Errors
    /// What the protocol's resolver says, when it says it before any line.
    pub async fn resolve_lines(
        &self,
        engine: &CacheEngine,
        request: Request<'_>,
    ) -> Result<Lines, Failure> {
        let (result, key) = match self.begin(engine, request).await {
            Begun::Cached(cached) => return Ok(Lines::Whole(cached, Outcome::Hit)),
            Begun::Flight { result, key } => (result, key),
        };
        if let Some(live) = self.lives.get(&key) {
            if let Some(lines) = live.follow().await {
                return Ok(Lines::Streaming(Box::pin(lines)));
            }
        }
        let (resolved, outcome) = landed(result.await)?;
        Ok(Lines::Whole(resolved, outcome))
    }

    /// Answers from memory, or begins (or joins) the flight that makes the answer.
    async fn begin(&self, engine: &CacheEngine, request: Request<'_>) -> Begun {
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
                    return Begun::Cached(cached);
                }
            }
        }
        let work = Work {
            engine: engine.clone(),
            repo: Arc::clone(repo),
            project: project.to_owned(),
            version: version.to_owned(),
            options: options.clone(),
            refresh,
            blobs: Arc::clone(blobs),
            file: file.map(str::to_owned),
            memory: self.memory.clone(),
            key: key.clone(),
            shared: self.shared.clone(),
        };
        let lives = self.lives.clone();
        let (result, _) = self.flights.begin(&key, move || {
            // A requirements file's lines can be followed while it resolves.
            let closing = work.file.is_some().then(|| {
                let live = Arc::new(live::Live::default());
                lives.insert(&work.key, &live);
                live::Closing {
                    lives,
                    key: work.key.clone(),
                    live,
                }
            });
            work.run(closing)
        });
        Begun::Flight {
            result: result.boxed(),
            key,
        }
    }
}

/// A flight's result as the caller's.
fn landed(result: Option<Flight>) -> Result<(Arc<Resolved>, Outcome), Failure> {
    match result {
        Some(Ok(answer)) => Ok(answer),
        Some(Err(refused)) => Err(Failure::Refused(refused)),
        None => Err(Failure::Panicked),
    }
}

/// What a flight needs, owned.
struct Work {
    engine: CacheEngine,
    repo: Arc<dyn Protocol>,
    project: String,
    version: String,
    options: ResolveOptions,
    refresh: bool,
    blobs: Arc<dyn crate::storage::BlobStore>,
    file: Option<String>,
    memory: moka::future::Cache<String, Arc<Resolved>>,
    key: String,
    shared: SharedResolutions,
}

impl Work {
    /// The shared tiers' answer when it holds, else a new one, kept in every tier;
    /// `live`: where its lines go as they are made.
    async fn run(self, live: Option<live::Closing>) -> Flight {
        let Self {
            engine,
            repo,
            project,
            version,
            options,
            refresh,
            blobs,
            file,
            memory,
            key,
            shared,
        } = self;
        let end = |last: Vec<u8>| {
            if let Some(closing) = &live {
                closing.live.end(Bytes::from(last));
            }
        };
        if !refresh {
            if let Some(kept) = shared.load(&key).await {
                if holds(&engine, &repo, &kept, Reach::Shared).await {
                    let kept = Arc::new(kept);
                    memory.insert(key, Arc::clone(&kept)).await;
                    end(Vec::new());
                    return Ok((kept, Outcome::Hit));
                }
            }
        }
        let graph = match &file {
            Some(file) => {
                let progress = live.as_ref().map_or_else(Progress::none, |closing| {
                    let live = Arc::clone(&closing.live);
                    Progress::to(move |lines| live.push(lines))
                });
                repo.resolve_file(&engine, &blobs, file, &options, &progress)
                    .await
            }
            None => {
                repo.resolve(&engine, &blobs, &project, &version, &options)
                    .await
            }
        };
        let graph = match graph {
            Ok(graph) => graph,
            Err(refused) => {
                end(crate::protocols::resolution::ndjson_line(
                    "error",
                    &serde_json::json!({ "message": refused.to_string() }),
                ));
                return Err(Arc::new(refused));
            }
        };
        let body =
            Bytes::from(serde_json::to_vec(&graph).expect("serializing a graph cannot fail"));
        let clean = graph.errors.is_empty();
        let last = live.is_some().then(|| graph.remaining_lines());
        let resolved = Arc::new(Resolved {
            body,
            documents: graph.documents,
        });
        memory.insert(key.clone(), Arc::clone(&resolved)).await;
        // Every tier, unless the answer has errors (some may be passing: an upstream
        // that failed; this replica keeps it while its documents hold). A failing
        // tier is logged. The answer waits for the writes a little (so the next
        // request anywhere finds it), not for a hanging tier.
        if clean {
            let kept = Arc::clone(&resolved);
            let writing = tokio::spawn(async move { shared.store(&key, &kept).await });
            let _ = tokio::time::timeout(SHARED_WRITE_WAIT, writing).await;
        }
        if let Some(last) = last {
            end(last);
        }
        Ok((resolved, Outcome::Miss))
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
/// edge, then `done` with the totals, the target and the errors (the lines a
/// streamed resolution sends, in this order).
#[must_use]
pub fn ndjson(graph_json: &[u8]) -> Vec<u8> {
    use crate::protocols::resolution::{done_line, ndjson_line};
    let graph: serde_json::Value =
        serde_json::from_slice(graph_json).expect("a cached resolution is JSON");
    let mut out = Vec::with_capacity(graph_json.len() + 1024);
    let list = |name: &str| graph[name].as_array().cloned().unwrap_or_default();
    let (nodes, edges) = (list("nodes"), list("edges"));
    for node in &nodes {
        out.extend_from_slice(&ndjson_line("node", node));
    }
    for edge in &edges {
        out.extend_from_slice(&ndjson_line("edge", edge));
    }
    out.extend_from_slice(&done_line(
        &graph["resolver"],
        &graph["target"],
        nodes.len(),
        edges.len(),
        &graph["errors"],
    ));
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
