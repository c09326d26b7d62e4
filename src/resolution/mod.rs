//! Cached resolutions (the design's dependency-resolution category): the answer to
//! `GET /-/api/REPO/PROJECT/VERSION/resolve` is kept whole, keyed by everything that
//! decides it but the index documents — resolver version, repository, root,
//! `max_depth`, `include_optional`, target — and holds while every index document it
//! read is still the same fresh copy (its fingerprint, checked in memory, without
//! I/O). A document refreshed with other content, expired, or evicted makes the next
//! request resolve again. One resolution per key runs at a time (single flight).
//!
//! Knows no ecosystem: resolving is `Protocol::resolve`; the documents are checked
//! through `Protocol::project_index_key`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::engine::coordination::SingleFlight;
use crate::engine::CacheEngine;
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

type Flight = Result<Arc<Resolved>, Arc<RequestError>>;

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
}

impl Default for ResolutionCache {
    fn default() -> Self {
        Self {
            memory: moka::future::Cache::builder()
                .max_capacity(MEMORY_BYTES)
                .weigher(|key: &String, resolved: &Arc<Resolved>| {
                    u32::try_from(key.len() + resolved.body.len() + 64 * resolved.documents.len())
                        .unwrap_or(u32::MAX)
                })
                .build(),
            flights: Arc::new(SingleFlight::default()),
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
                if still_holds(engine, repo, &cached).await {
                    return Ok((cached, Outcome::Hit));
                }
            }
        }
        let (engine, repo, project, version, options, memory, stored_key) = (
            engine.clone(),
            Arc::clone(repo),
            project.to_owned(),
            version.to_owned(),
            options.clone(),
            self.memory.clone(),
            key.clone(),
        );
        let blobs = Arc::clone(blobs);
        let file = file.map(str::to_owned);
        let (result, _) = self
            .flights
            .run(&key, move || async move {
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
                let resolved = Arc::new(Resolved {
                    body,
                    documents: graph.documents,
                });
                memory.insert(stored_key, Arc::clone(&resolved)).await;
                Ok(resolved)
            })
            .await;
        match result {
            Some(Ok(resolved)) => Ok((resolved, Outcome::Miss)),
            Some(Err(refused)) => Err(Failure::Refused(refused)),
            None => Err(Failure::Panicked),
        }
    }
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

/// Whether every document `cached` read is still the fresh copy it read.
async fn still_holds(engine: &CacheEngine, repo: &Arc<dyn Protocol>, cached: &Resolved) -> bool {
    for (project, fingerprint) in &cached.documents {
        let Ok(key) = repo.project_index_key(project) else {
            return false;
        };
        match engine.index.fresh_in_memory(key.as_str()).await {
            Some(document)
                if crate::protocols::resolution::fingerprint(&document) == *fingerprint => {}
            _ => return false,
        }
    }
    true
}
