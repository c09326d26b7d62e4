//! Cargo's sparse registry protocol, mounted at `/<repo>/` (point cargo at
//! `sparse+http://<granary>/<repo>/`):
//!
//! | path | what |
//! |---|---|
//! | `config.json` | the upstream's, with `dl` and `api` pointing at granary |
//! | `1/a`, `2/ab`, `3/a/abc`, `ab/cd/abcd…` | index files, as index pages |
//! | `api/v1/crates/<crate>/<version>/download` | a `.crate`, resolved through its index entry |
//! | `api/v1/crates?q=…` | search, passed through, never cached |
//!
//! A download names an entry of a cached index file, never an upstream URL: the
//! upstream URL comes from the upstream's own `dl` template, and the bytes are
//! verified against the entry's `cksum` before anything is stored.

pub mod badges;
pub mod dependencies;
pub mod index;
pub mod lockfile;
pub mod resolve;
pub mod source;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::Method;
use serde_json::Value;

use super::{
    verbatim, ArtifactReply, PassthroughReply, Protocol, ProtocolRequest, Reply, RepoSettings,
    RequestContext, RequestError,
};
use crate::engine::upstream::display_url;
use crate::engine::{
    CacheEngine, CacheKey, DigestAlgorithm, ExpectedDigest, IndexLookup, ProxyError, UpstreamError,
};
use index::IndexEntry;
use source::{ConfigSource, IndexFileSource};

/// Index files are newline-separated JSON, served as text like registries do.
const INDEX_FILE_TYPE: &str = "text/plain; charset=utf-8";
const CONFIG_TYPE: &str = "application/json";
const CRATE_TYPE: &str = "application/gzip";
/// Bound on search requests: an unreachable upstream must fail fast.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One cargo (sparse index) repository.
#[derive(Debug, Clone)]
pub struct CargoRepo {
    pub settings: RepoSettings,
}

super::derefs_to_settings!(CargoRepo);

/// What a cargo request carries besides its path.
#[derive(Debug)]
struct CargoRequest<'a> {
    method: &'a Method,
    query: Option<&'a str>,
    /// `scheme://host[:port]` clients reach granary at (for `config.json`).
    base_url: &'a str,
}

#[async_trait]
impl Protocol for CargoRepo {
    fn settings(&self) -> &RepoSettings {
        &self.settings
    }

    fn format(&self) -> &'static str {
        index::FORMAT
    }

    /// Cargo's own challenge (RFC 3139): with it, `cargo login` knows where to go,
    /// and a private registry's 401 is understood as "send your token".
    fn challenge(&self, context: &RequestContext<'_>) -> String {
        format!("Cargo login_url=\"{}/{}/\"", context.base_url(), self.name)
    }

    fn route_label(&self, rest: &str) -> &'static str {
        match rest.split('/').next() {
            Some("config.json") => "config",
            Some("api") if rest.ends_with("/download") => "crate",
            Some("api") => "api",
            _ => "index_file",
        }
    }

    fn project_of(&self, rest: &str) -> Option<String> {
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["config.json"] | ["api", "v1", "crates"] => None,
            ["api", "v1", "crates", name, ..] => Some((*name).to_owned()),
            [.., name] if index::is_valid_crate_name(name) => Some(name.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn project_index_key(&self, name: &str) -> Result<CacheKey, RequestError> {
        if index::is_valid_crate_name(name) {
            Ok(index::index_key(&self.name, name))
        } else {
            Err(invalid_name(name))
        }
    }

    async fn extract_dependencies(
        &self,
        engine: &CacheEngine,
        _blobs: &Arc<dyn crate::storage::BlobStore>,
        published: &crate::engine::Published,
    ) -> Option<super::dependencies::Extraction> {
        self.extract(engine, published).await
    }

    async fn resolve(
        &self,
        engine: &CacheEngine,
        _blobs: &Arc<dyn crate::storage::BlobStore>,
        project: &str,
        version: &str,
        options: &super::resolution::ResolveOptions,
    ) -> Result<super::resolution::Graph, RequestError> {
        self.project_index_key(project)?;
        resolve::check_target(options.target.as_deref()).map_err(RequestError::BadRequest)?;
        let mut index = resolve::EngineIndex::new(self, engine);
        let mut graph = resolve::resolve(&mut index, project, version, options)
            .await
            .map_err(RequestError::NotFound)?;
        graph.documents = index.documents;
        Ok(graph)
    }

    /// Nothing is streamed before the end: a conflict starts the resolution again,
    /// and unifying features can switch on an optional dependency of a node already
    /// visited, until the last round ends.
    async fn resolve_file(
        &self,
        engine: &CacheEngine,
        _blobs: &Arc<dyn crate::storage::BlobStore>,
        file: &str,
        options: &super::resolution::ResolveOptions,
        _progress: &super::resolution::Progress,
    ) -> Result<super::resolution::Graph, RequestError> {
        resolve::check_target(options.target.as_deref()).map_err(RequestError::BadRequest)?;
        let mut index = resolve::EngineIndex::new(self, engine);
        let mut graph = resolve::resolve_manifest(&mut index, file, options)
            .await
            .map_err(RequestError::BadRequest)?;
        graph.documents = index.documents;
        Ok(graph)
    }

    fn badge_kinds(&self) -> &'static [super::badges::BadgeKind] {
        badges::KINDS
    }

    async fn badge_facts(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn crate::storage::BlobStore>,
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
        let base_url = context.base_url();
        self.answer(
            context.engine,
            &request.segments,
            CargoRequest {
                method: &request.method,
                query: request.query.as_deref(),
                base_url: &base_url,
            },
        )
        .await
    }
}

/// An index file as read once per stored copy: what serving needs, and what
/// resolving needs. (A document has one derived form, whoever asks first.)
pub(crate) struct ParsedIndexFile {
    pub entries: Arc<Vec<IndexEntry>>,
    pub candidates: Arc<Vec<resolve::Candidate>>,
}

pub(crate) fn parsed(document: &crate::engine::IndexDocument, name: &str) -> Arc<ParsedIndexFile> {
    document.derived(|canonical| ParsedIndexFile {
        entries: Arc::new(
            index::parse_index_file(canonical, name)
                .expect("a stored index file was checked when it was fetched"),
        ),
        candidates: Arc::new(resolve::candidates(canonical)),
    })
}

impl CargoRepo {
    #[must_use]
    pub fn new(settings: RepoSettings) -> Self {
        Self { settings }
    }

    /// Answers a request for `segments` below the mount point.
    async fn answer(
        &self,
        engine: &CacheEngine,
        segments: &[String],
        request: CargoRequest<'_>,
    ) -> Result<Reply, RequestError> {
        if request.method != Method::GET && request.method != Method::HEAD {
            // Publishing, yanking and owners go to the registry itself.
            return Err(RequestError::MethodNotAllowed);
        }
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        match parts.as_slice() {
            ["config.json"] => self.config(engine, request.base_url).await,
            ["api", "v1", "crates"] => self.search(engine, request.query).await,
            ["api", "v1", "crates", name, version, "download"] => {
                self.download(engine, name, version).await
            }
            ["api", ..] => Err(RequestError::NotFound(
                "granary serves crate downloads and search from the registry API; \
                 publish, yank and owner requests go to the registry itself"
                    .to_owned(),
            )),
            [] | [""] => Err(RequestError::NotFound(
                "this is a sparse index: point cargo at `sparse+<this URL>`".to_owned(),
            )),
            path => {
                let name = index::crate_of_index_path(path).map_err(|message| {
                    if path.last().is_some_and(|n| !index::is_valid_crate_name(n)) {
                        RequestError::BadRequest(message)
                    } else {
                        RequestError::NotFound(message)
                    }
                })?;
                self.index_file(engine, &name).await
            }
        }
    }

    async fn config_lookup(&self, engine: &CacheEngine) -> Result<IndexLookup, RequestError> {
        let lookup = self
            .lookup_index(
                engine,
                index::config_key(&self.name),
                ConfigSource {
                    upstream: Arc::clone(&self.upstream),
                    repo: self.name.clone(),
                    auth_required: self.access.is_private(),
                },
            )
            .await?;
        if !lookup.document.found {
            let url = self.upstream.root().join("config.json").ok();
            return Err(RequestError::Proxy(Arc::new(ProxyError::Upstream(
                UpstreamError::Malformed {
                    upstream: url
                        .as_ref()
                        .map_or_else(|| self.upstream.display_root(), display_url),
                    reason: "no config.json there; `upstream` must be the root of a sparse \
                             index (where config.json is)"
                        .to_owned(),
                },
            ))));
        }
        Ok(lookup)
    }

    async fn config(&self, engine: &CacheEngine, base_url: &str) -> Result<Reply, RequestError> {
        let lookup = self.config_lookup(engine).await?;
        verbatim::reply(lookup, CONFIG_TYPE, Some(base_url.to_owned())).await
    }

    async fn index_lookup(
        &self,
        engine: &CacheEngine,
        name: &str,
    ) -> Result<IndexLookup, RequestError> {
        self.lookup_index(
            engine,
            index::index_key(&self.name, name),
            IndexFileSource {
                upstream: Arc::clone(&self.upstream),
                name: name.to_owned(),
            },
        )
        .await
    }

    async fn index_file(&self, engine: &CacheEngine, name: &str) -> Result<Reply, RequestError> {
        let lookup = self.index_lookup(engine, name).await?;
        if !lookup.document.found {
            return Err(not_found(name));
        }
        verbatim::reply(lookup, INDEX_FILE_TYPE, None).await
    }

    async fn download(
        &self,
        engine: &CacheEngine,
        name: &str,
        version: &str,
    ) -> Result<Reply, RequestError> {
        if !index::is_valid_crate_name(name) {
            return Err(invalid_name(name));
        }
        if !index::is_valid_version(version) {
            return Err(RequestError::BadRequest(format!(
                "`{version}` is not a valid crate version"
            )));
        }
        let key = index::crate_key(&self.name, name, version);
        let content_type = CRATE_TYPE.to_owned();
        let lookup = engine
            .artifacts
            .get_or_fetch::<RequestError, _>(&key, async {
                let entry = self.entry(engine, name, version).await?;
                let config = self.config_lookup(engine).await?;
                let template = index::parse_config(&config.document.canonical)
                    .ok()
                    .and_then(|config| config.get("dl").and_then(Value::as_str).map(str::to_owned))
                    .expect("a stored config.json was checked to have `dl`");
                let url = self
                    .upstream
                    .root()
                    .join(&index::download_url(&template, &entry))
                    .map_err(|e| {
                        RequestError::Proxy(Arc::new(ProxyError::Upstream(
                            UpstreamError::Malformed {
                                upstream: self.upstream.display_root(),
                                reason: format!("config.json `dl` gives no usable URL: {e}"),
                            },
                        )))
                    })?;
                Ok(self.artifact_request(
                    key.clone(),
                    url,
                    vec![ExpectedDigest::new(
                        DigestAlgorithm::Sha256,
                        &entry.checksum,
                    )],
                    &content_type,
                ))
            })
            .await?;
        Ok(Reply::Artifact(ArtifactReply {
            lookup,
            content_type,
        }))
    }

    /// Every entry of the index file of `name` (parsed once per stored file).
    async fn entries(
        &self,
        engine: &CacheEngine,
        name: &str,
    ) -> Result<Arc<Vec<IndexEntry>>, RequestError> {
        if !index::is_valid_crate_name(name) {
            return Err(invalid_name(name));
        }
        let lookup = self.index_lookup(engine, name).await?;
        if !lookup.document.found {
            return Err(not_found(name));
        }
        Ok(Arc::clone(&parsed(&lookup.document, name).entries))
    }

    /// The index entry of `name` at exactly `version`.
    async fn entry(
        &self,
        engine: &CacheEngine,
        name: &str,
        version: &str,
    ) -> Result<IndexEntry, RequestError> {
        self.entries(engine, name)
            .await?
            .iter()
            .find(|entry| entry.version == version)
            .cloned()
            .ok_or_else(|| {
                RequestError::NotFound(format!("crate `{name}` has no version `{version}`"))
            })
    }

    /// Passes a search through to the upstream's API; never cached.
    async fn search(
        &self,
        engine: &CacheEngine,
        query: Option<&str>,
    ) -> Result<Reply, RequestError> {
        let config = self.config_lookup(engine).await?;
        let api = index::parse_config(&config.document.canonical)
            .ok()
            .and_then(|config| config.get("api").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| {
                RequestError::NotFound("the upstream registry has no API to search".to_owned())
            })?;
        let mut url = url::Url::parse(&format!("{}/api/v1/crates", api.trim_end_matches('/')))
            .map_err(|e| {
                RequestError::Proxy(Arc::new(ProxyError::Upstream(UpstreamError::Malformed {
                    upstream: self.upstream.display_root(),
                    reason: format!("config.json `api` is not a URL: {e}"),
                })))
            })?;
        url.set_query(query);
        let forwarded = self
            .upstream
            .forward(Method::GET, &url, bytes::Bytes::new(), SEARCH_TIMEOUT)
            .await;
        Ok(Reply::Passthrough(PassthroughReply::forwarded(forwarded)))
    }
}

fn invalid_name(name: &str) -> RequestError {
    RequestError::BadRequest(format!("`{name}` is not a valid crate name"))
}

fn not_found(name: &str) -> RequestError {
    RequestError::NotFound(format!("crate `{name}` does not exist upstream"))
}
