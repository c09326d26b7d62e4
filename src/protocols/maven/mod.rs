//! The Maven repository layout, mounted at `/<repo>/` (a mirror in Maven's
//! `settings.xml`, or a `maven { url }` repository in Gradle):
//!
//! | path | what | cached as |
//! |---|---|---|
//! | `…/maven-metadata.xml` | group, artifact and snapshot-version metadata | index page |
//! | `.meta/prefixes.txt` | the repository's group prefixes (Maven 3.9+) | index page |
//! | `…/a/1.0-SNAPSHOT/a-1.0-SNAPSHOT.jar` | a snapshot under its non-unique name | index page |
//! | `…/a/1.0/a-1.0[-classifier].ext` | a release file | immutable artifact |
//! | `…/a/1.0-SNAPSHOT/a-1.0-20250101.120000-3.jar` | one snapshot build | immutable artifact |
//! | any of the above + `.md5` `.sha1` `.sha256` `.sha512` | computed from the bytes granary serves | |
//!
//! Immutable files are verified against the upstream's `.sha512` and `.sha1` files
//! (whichever it publishes) before they are stored. An upstream 404 for one is
//! remembered for the repository's `negative_ttl`: Maven asks every repository in
//! turn, so most of its requests to a proxy are misses.

pub mod badges;
pub mod check;
pub mod dependencies;
pub mod layout;
pub mod lockfile;
pub mod pom;
pub mod resolve;
pub mod source;
pub mod version_range;
pub mod xml_texts;

use std::sync::Arc;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use http::{Method, StatusCode};
use moka::future::Cache;

use super::{
    verbatim, ArtifactReply, PassthroughReply, Protocol, ProtocolRequest, Reply, RepoSettings,
    RequestContext, RequestError,
};
use crate::engine::{
    ArtifactBody, ArtifactLookup, ArtifactRequest, CacheEngine, CacheKey, DigestAlgorithm,
    ExpectedDigest, IndexLookup, ProxyError, PublishedDigests,
};
use crate::storage::BlobStore;
use layout::{FileKind, MavenPath};
use source::{DocumentCheck, MavenFileSource};

/// Upstream 404s remembered at once, at most.
const MAX_REMEMBERED_MISSES: u64 = 100_000;
/// Computed checksums of stored files kept, at most.
const MAX_COMPUTED_CHECKSUMS: u64 = 100_000;

/// The upstream checksum files an immutable file is verified against, strongest
/// first; those the upstream publishes are all checked.
const VERIFIED_WITH: [DigestAlgorithm; 2] = [DigestAlgorithm::Sha512, DigestAlgorithm::Sha1];

/// One Maven repository.
#[derive(Debug, Clone)]
pub struct MavenRepo {
    pub settings: RepoSettings,
    /// Immutable files the upstream does not have, by key, for `negative_ttl`.
    missing: Cache<String, ()>,
    /// Checksums of stored files, by `sha256/algorithm`: a blob never changes.
    computed: Cache<String, String>,
}

super::derefs_to_settings!(MavenRepo);

#[async_trait]
impl Protocol for MavenRepo {
    fn settings(&self) -> &RepoSettings {
        &self.settings
    }

    fn format(&self) -> &'static str {
        layout::FORMAT
    }

    fn route_label(&self, rest: &str) -> &'static str {
        let name = rest.rsplit('/').next().unwrap_or("");
        if name.starts_with("maven-metadata.xml") {
            "metadata"
        } else if [".sha1", ".md5", ".sha256", ".sha512"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
        {
            "checksum"
        } else {
            "file"
        }
    }

    /// `group:artifact` of a file path (`…/group/artifact/version/file`), or of a
    /// metadata path (`…/group/artifact/maven-metadata.xml`).
    fn project_of(&self, rest: &str) -> Option<String> {
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        let file = parts.last()?;
        let artifact_at = if file.starts_with("maven-metadata.xml") {
            parts.len().checked_sub(2)?
        } else {
            parts.len().checked_sub(3)?
        };
        let group = parts.get(..artifact_at)?.join(".");
        (!group.is_empty()).then(|| format!("{group}:{}", parts[artifact_at]))
    }

    /// The artifact-level metadata key of `group:artifact`.
    fn project_index_key(&self, coordinates: &str) -> Result<CacheKey, RequestError> {
        let path = layout::metadata_path_of(coordinates).map_err(RequestError::BadRequest)?;
        Ok(layout::document_key(&self.name, &path))
    }

    async fn extract_dependencies(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        published: &crate::engine::Published,
    ) -> Option<super::dependencies::Extraction> {
        self.extract(engine, blobs, published).await
    }

    async fn resolve(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        project: &str,
        version: &str,
        options: &super::resolution::ResolveOptions,
    ) -> Result<super::resolution::Graph, RequestError> {
        resolve::Resolver::check_target(options.target.as_deref())?;
        resolve::Resolver::new(self, engine, blobs, super::resolution::Progress::none())
            .artifact(project, version, options)
            .await
    }

    /// A project's `pom.xml`.
    async fn resolve_file(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        file: &str,
        options: &super::resolution::ResolveOptions,
        progress: &super::resolution::Progress,
    ) -> Result<super::resolution::Graph, RequestError> {
        resolve::Resolver::check_target(options.target.as_deref())?;
        resolve::Resolver::new(self, engine, blobs, progress.clone())
            .project(file, options)
            .await
    }

    fn badge_kinds(&self) -> &'static [super::badges::BadgeKind] {
        badges::KINDS
    }

    async fn badge_facts(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        project: &str,
        stage: super::badges::Stage,
    ) -> Result<super::badges::Facts, RequestError> {
        self.facts(engine, blobs, project, stage).await
    }

    async fn handle(
        &self,
        context: &RequestContext<'_>,
        request: ProtocolRequest,
    ) -> Result<Reply, RequestError> {
        self.answer(
            context.engine,
            context.blobs,
            &request.segments,
            &request.method,
        )
        .await
    }
}

impl MavenRepo {
    #[must_use]
    pub fn new(settings: RepoSettings) -> Self {
        let missing = Cache::builder()
            .max_capacity(MAX_REMEMBERED_MISSES)
            .time_to_live(settings.negative_ttl)
            .build();
        Self {
            settings,
            missing,
            computed: Cache::new(MAX_COMPUTED_CHECKSUMS),
        }
    }

    /// Answers a GET or HEAD for `segments` below the mount point.
    async fn answer(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        segments: &[String],
        method: &Method,
    ) -> Result<Reply, RequestError> {
        if method != Method::GET && method != Method::HEAD {
            // Deploying goes to the repository itself.
            return Err(RequestError::MethodNotAllowed);
        }
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        if parts.last().is_none_or(|last| last.is_empty()) {
            return Err(RequestError::NotFound(
                "directory listings are not served; ask for a file".to_owned(),
            ));
        }
        let path = layout::parse(&parts).map_err(RequestError::BadRequest)?;
        let content_type = layout::content_type(path.file_name());
        match (&path.kind, path.checksum) {
            (FileKind::Metadata | FileKind::SnapshotFile | FileKind::PrefixList, None) => {
                let lookup = self.document(engine, &path).await?;
                verbatim::reply(lookup, content_type, None).await
            }
            (
                FileKind::Metadata | FileKind::SnapshotFile | FileKind::PrefixList,
                Some(algorithm),
            ) => {
                let lookup = self.document(engine, &path).await?;
                let served = &lookup.document.canonical;
                let mut hasher = algorithm.hasher();
                hasher.update(served);
                Ok(checksum_reply(
                    &hex::encode(hasher.finalize()),
                    lookup.status,
                ))
            }
            (FileKind::Immutable, None) => {
                let lookup = self.immutable(engine, &path.file, content_type).await?;
                Ok(Reply::Artifact(ArtifactReply {
                    lookup,
                    content_type: content_type.to_owned(),
                }))
            }
            (FileKind::Immutable, Some(algorithm)) => {
                // Asked right after the file: its fill has the digest, verified.
                let key = layout::artifact_key(&self.name, &path.file);
                if let Some(hex) = engine.artifacts.verified_digest(&key, algorithm) {
                    return Ok(checksum_reply(&hex, crate::engine::CacheStatus::Hit));
                }
                let lookup = self
                    .immutable(engine, &path.file, layout::content_type(&path.file))
                    .await?;
                let status = lookup.status;
                let digest = self
                    .checksum_of(&path.file, lookup, blobs, algorithm)
                    .await?;
                Ok(checksum_reply(&digest, status))
            }
        }
    }

    /// A metadata or snapshot document; 404 when the upstream has none.
    async fn document(
        &self,
        engine: &CacheEngine,
        path: &MavenPath,
    ) -> Result<IndexLookup, RequestError> {
        let check = match path.kind {
            FileKind::Metadata => DocumentCheck::MetadataXml,
            FileKind::SnapshotFile | FileKind::PrefixList | FileKind::Immutable => {
                DocumentCheck::AnyBytes
            }
        };
        let lookup = self.lookup_document(engine, &path.file, check).await?;
        if lookup.document.found {
            Ok(lookup)
        } else {
            Err(not_found(&path.file))
        }
    }

    async fn lookup_document(
        &self,
        engine: &CacheEngine,
        path: &str,
        check: DocumentCheck,
    ) -> Result<IndexLookup, RequestError> {
        self.lookup_index(
            engine,
            layout::document_key(&self.name, path),
            MavenFileSource {
                upstream: Arc::clone(&self.upstream),
                path: path.to_owned(),
                check,
            },
        )
        .await
    }

    /// An immutable file: stored, or fetched once and verified against the upstream's
    /// checksum files, which are looked up while it downloads.
    async fn immutable(
        &self,
        engine: &CacheEngine,
        file: &str,
        content_type: &str,
    ) -> Result<ArtifactLookup, RequestError> {
        let key = layout::artifact_key(&self.name, file);
        let fetched = engine
            .artifacts
            .get_or_fetch::<RequestError, _>(&key, async {
                if self.missing.contains_key(key.as_str()) {
                    return Err(not_found(file));
                }
                // The upstream's checksum files are looked up while the file downloads.
                let (repo, shared_engine, checksum_of) =
                    (self.clone(), engine.clone(), file.to_owned());
                let lookup = async move {
                    let found = futures::future::try_join_all(VERIFIED_WITH.map(|algorithm| {
                        repo.upstream_checksum(&shared_engine, &checksum_of, algorithm)
                    }))
                    .await
                    .map_err(|error| match error {
                        RequestError::Proxy(error) => error,
                        other => Arc::new(ProxyError::PublishedDigests {
                            key: checksum_of.clone(),
                            reason: other.to_string(),
                        }),
                    })?;
                    Ok(found.into_iter().flatten().collect())
                };
                let url = self.upstream.root().join(file).map_err(|e| {
                    RequestError::BadRequest(format!("`{file}` gives no upstream URL: {e}"))
                })?;
                Ok(ArtifactRequest {
                    published: Some(PublishedDigests {
                        algorithms: VERIFIED_WITH.to_vec(),
                        lookup: lookup.boxed().shared(),
                    }),
                    ..self.artifact_request(key.clone(), url, Vec::new(), content_type)
                })
            })
            .await;
        match fetched {
            Err(RequestError::Proxy(error))
                if matches!(*error, ProxyError::UpstreamNotFound { .. }) =>
            {
                self.missing.insert(key.as_str().to_owned(), ()).await;
                Err(not_found(file))
            }
            other => other,
        }
    }

    /// The upstream's `<file>.<algorithm>`, if it publishes one (cached as a document,
    /// so a stampede on a cold file asks for it once).
    async fn upstream_checksum(
        &self,
        engine: &CacheEngine,
        file: &str,
        algorithm: DigestAlgorithm,
    ) -> Result<Option<ExpectedDigest>, RequestError> {
        let path = format!("{file}{}", layout::checksum_suffix(algorithm));
        let lookup = self
            .lookup_document(engine, &path, DocumentCheck::Checksum(algorithm))
            .await?;
        if !lookup.document.found {
            return Ok(None);
        }
        let hex = check::checksum_file(&lookup.document.canonical, algorithm)
            .expect("a stored checksum file was checked when it was fetched");
        Ok(Some(ExpectedDigest::new(algorithm, &hex)))
    }

    /// The `algorithm` digest of exactly the bytes granary serves for `lookup`.
    async fn checksum_of(
        &self,
        file: &str,
        lookup: ArtifactLookup,
        blobs: &Arc<dyn BlobStore>,
        algorithm: DigestAlgorithm,
    ) -> Result<String, RequestError> {
        let storage_error = |e| RequestError::Proxy(Arc::new(ProxyError::Storage(e)));
        // A stored blob never changes: its digests are computed once, by content.
        let record = match &lookup.body {
            ArtifactBody::Memory(hot) => Some(&hot.record),
            ArtifactBody::Stored { record, .. } => Some(record),
            ArtifactBody::Filling(_) => None,
        };
        if let Some(record) = record.filter(|_| algorithm == DigestAlgorithm::Sha256) {
            return Ok(record.digest.as_str().to_owned());
        }
        let cache_key = record.map(|r| format!("{}/{}", r.digest.as_str(), algorithm.as_str()));
        if let Some(key) = &cache_key {
            if let Some(hex) = self.computed.get(key).await {
                return Ok(hex);
            }
        }
        let mut stream = match lookup.body {
            ArtifactBody::Memory(hot) => {
                futures::stream::once(std::future::ready(Ok(hot.bytes.clone()))).boxed()
            }
            ArtifactBody::Stored { record, .. } => blobs
                .read(&record.digest, None)
                .await
                .map_err(storage_error)?,
            ArtifactBody::Filling(reader) => reader.into_stream().boxed(),
        };
        let mut hasher = algorithm.hasher();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| {
                storage_error(crate::storage::StorageError::Io {
                    path: file.into(),
                    source,
                })
            })?;
            hasher.update(&chunk);
        }
        let hex = hex::encode(hasher.finalize());
        if let Some(key) = cache_key {
            self.computed.insert(key, hex.clone()).await;
        }
        Ok(hex)
    }
}

/// A checksum file: the hex digest alone, as Maven deploys them.
fn checksum_reply(hex: &str, cache_status: crate::engine::CacheStatus) -> Reply {
    Reply::Passthrough(PassthroughReply {
        status: StatusCode::OK,
        content_type: "text/plain".to_owned(),
        body: hex.to_owned().into(),
        cache_status,
    })
}

fn not_found(file: &str) -> RequestError {
    RequestError::NotFound(format!("`{file}` does not exist upstream"))
}
