//! Everything that knows an ecosystem: how it names things, which URLs it serves,
//! what its cache keys are and how its index documents are rewritten.
//!
//! A protocol turns a parsed request into a [`Reply`]; only [`crate::server`] turns a
//! reply into an HTTP response. Code below this module sees keys and bytes only.

pub mod badges;
pub mod cargo;
pub mod contents;
pub mod dependencies;
pub mod maven;
pub mod npm;
pub mod path;
pub mod pypi;
pub mod resolution;
pub mod verbatim;
pub mod warm;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::config::Format;
use crate::engine::{
    ArtifactLookup, ArtifactRequest, CacheEngine, CacheKey, CacheStatus, ExpectedDigest,
    IndexLookup, IndexRequest, IndexSource, ProxyError, Rendition, UpstreamClient, UpstreamError,
};
use crate::http_cache::FreshnessPolicy;
use crate::storage::BlobStore;

/// The one interface between the server and a protocol. The server finds the
/// repository by the first path segment and hands the rest to [`Protocol::handle`];
/// it names no ecosystem.
#[async_trait]
pub trait Protocol: Send + Sync + std::fmt::Debug {
    /// What every repository has: name, label, upstream, freshness rules.
    fn settings(&self) -> &RepoSettings;

    /// The format's name in cache keys and metrics (`pypi`, `npm`, ...).
    fn format(&self) -> &'static str;

    /// Splits and decodes the path below the mount point; `.`, `..`, separators and
    /// control characters are rejected here.
    ///
    /// # Errors
    /// A malformed path.
    fn segments(&self, rest: &str) -> Result<Vec<String>, RequestError> {
        path::segments(rest)
    }

    /// The `WWW-Authenticate` value of a 401 from this repository, in the form its
    /// clients act on (default: HTTP Basic, which pip, uv, npm and Maven answer).
    fn challenge(&self, _context: &RequestContext<'_>) -> String {
        format!("Basic realm=\"granary {}\"", self.settings().name)
    }

    /// The largest request body accepted with `method`; `None` (the default): only
    /// `GET` and `HEAD` are served.
    fn max_body(&self, _method: &Method) -> Option<usize> {
        None
    }

    /// A low-cardinality route label for metrics and logs, from the raw path below
    /// the mount point.
    fn route_label(&self, rest: &str) -> &'static str;

    /// The project a path is about (for the status page's top projects), from the raw
    /// path below the mount point; `None` when it is about no one project.
    fn project_of(&self, _rest: &str) -> Option<String> {
        None
    }

    /// The index key of one project (a PyPI project, an npm package, a crate, a
    /// Maven `group:artifact`), for purging.
    ///
    /// # Errors
    /// When the name is invalid for the format.
    fn project_index_key(&self, project: &str) -> Result<CacheKey, RequestError>;

    /// Answers one request.
    ///
    /// # Errors
    /// Bad input, unknown paths, upstream failures.
    async fn handle(
        &self,
        context: &RequestContext<'_>,
        request: ProtocolRequest,
    ) -> Result<Reply, RequestError>;

    /// The project's canonical name (normalized where the format normalizes), as
    /// extracted dependencies are stored under it.
    ///
    /// # Errors
    /// When the name is invalid for the format.
    fn canonical_project(&self, project: &str) -> Result<String, RequestError> {
        self.project_index_key(project).map(|_| project.to_owned())
    }

    /// The dependencies `published` declares, read off the request path; `None` for
    /// an artifact that declares none by nature (a checksum file, a signature).
    async fn extract_dependencies(
        &self,
        _engine: &CacheEngine,
        _blobs: &Arc<dyn BlobStore>,
        _published: &crate::engine::Published,
    ) -> Option<dependencies::Extraction> {
        None
    }

    /// The transitive dependencies of `project` `version`, resolved as the format's
    /// client would, reading index documents through the engine (cache first, single
    /// flight, offline mode).
    ///
    /// # Errors
    /// An unknown project or version, a bad name or target, or a format that does not
    /// resolve (the default).
    async fn resolve(
        &self,
        _engine: &CacheEngine,
        _blobs: &std::sync::Arc<dyn crate::storage::BlobStore>,
        _project: &str,
        _version: &str,
        _options: &resolution::ResolveOptions,
    ) -> Result<resolution::Graph, RequestError> {
        Err(RequestError::NotFound(format!(
            "repository `{}` does not resolve dependencies yet",
            self.settings().name
        )))
    }

    /// The resolution of a project's own requirements file in this format's terms
    /// (`requirements.txt`, `package.json`, `Cargo.toml`, `pom.xml`):
    /// `POST /-/api/REPO/resolve`.
    ///
    /// A resolver may send the answer's lines to `progress` as they become final
    /// (see [`resolution::GraphBuilder::streaming`]); what it has not sent is sent
    /// from the answer when it ends.
    ///
    /// # Errors
    /// A file that is not one, a bad target, or a format that does not resolve files
    /// (the default).
    async fn resolve_file(
        &self,
        _engine: &CacheEngine,
        _blobs: &std::sync::Arc<dyn crate::storage::BlobStore>,
        _file: &str,
        _options: &resolution::ResolveOptions,
        _progress: &resolution::Progress,
    ) -> Result<resolution::Graph, RequestError> {
        Err(RequestError::NotFound(format!(
            "repository `{}` does not resolve requirement files yet",
            self.settings().name
        )))
    }

    /// The badges this format draws (none by default).
    fn badge_kinds(&self) -> &'static [badges::BadgeKind] {
        &[]
    }

    /// The facts behind every badge of `stage` for `project`, looked up through the
    /// engine (cache first, single flight, offline mode), in one lookup.
    ///
    /// # Errors
    /// An unknown project (`NotFound`), a bad name, or no usable copy and a failing
    /// upstream.
    async fn badge_facts(
        &self,
        _engine: &CacheEngine,
        _blobs: &Arc<dyn BlobStore>,
        _project: &str,
        _stage: badges::Stage,
    ) -> Result<badges::Facts, RequestError> {
        Err(RequestError::NotFound(format!(
            "repository `{}` draws no badges",
            self.settings().name
        )))
    }
}

/// Builds the protocol of a configured repository.
///
/// # Errors
/// A route rule whose `path` is not a valid regex (names the key).
pub fn build(
    name: &str,
    config: &crate::config::RepoConfig,
    settings: RepoSettings,
) -> Result<Arc<dyn Protocol>, String> {
    Ok(match config.format {
        Format::Pypi => Arc::new(pypi::PypiRepo { settings }),
        Format::Npm => Arc::new(npm::NpmRepo { settings }),
        Format::Cargo => Arc::new(cargo::CargoRepo::new(settings)),
        Format::Maven => Arc::new(maven::MavenRepo::new(settings)),
        Format::Http => {
            let rules = config
                .rules
                .iter()
                .enumerate()
                .map(|(index, rule)| {
                    Ok(web::Rule {
                        path: regex::Regex::new(&rule.path)
                            .map_err(|e| format!("`repos.{name}.rules[{index}].path`: {e}"))?,
                        ttl: rule.ttl.into(),
                        stale_while_revalidate: rule.stale_while_revalidate.into(),
                        vary: rule
                            .vary
                            .iter()
                            .map(|header| {
                                http::header::HeaderName::from_bytes(header.as_bytes()).map_err(
                                    |e| {
                                        format!(
                                            "`repos.{name}.rules[{index}].vary`: `{header}`: {e}"
                                        )
                                    },
                                )
                            })
                            .collect::<Result<_, String>>()?,
                        max_body: usize::try_from(rule.max_body.as_u64()).unwrap_or(usize::MAX),
                        not_found_ttl: rule.not_found_ttl.map(Into::into),
                        respect_upstream: rule.respect_upstream,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Arc::new(web::HttpRepo::new(
                settings,
                rules,
                config.bypass_cookies.clone(),
            ))
        }
    })
}

/// What warming from one file fetches, or why that file cannot be read.
pub type WarmPlan = Result<Vec<warm::WarmFetch>, String>;

/// What to fetch for the file `file_name` (its base name decides how it is read)
/// with contents `text`, on a repository of `format`.
///
/// # Errors
/// A file this format does not read, or one that does not parse (with where).
pub fn warm_plan(format: Format, file_name: &str, text: &str) -> WarmPlan {
    match format {
        Format::Pypi => pypi::lockfile::plan(file_name, text),
        Format::Npm => npm::lockfile::plan(file_name, text),
        Format::Cargo => cargo::lockfile::plan(file_name, text),
        Format::Maven => maven::lockfile::plan(file_name, text),
        Format::Http => Err(format!(
            "`granary warm` reads no files for a {format:?} repository"
        )),
    }
}

/// Whether granary resolves `file_name` (text `text`) before warming from it:
/// unpinned requirements, a project's `pom.xml`. What to fetch then comes from
/// [`warm_plan_of_pins`].
#[must_use]
pub fn warm_needs_resolution(format: Format, file_name: &str, text: &str) -> bool {
    match format {
        Format::Pypi => pypi::lockfile::needs_resolution(text),
        Format::Maven => maven::lockfile::needs_resolution(file_name),
        Format::Npm | Format::Cargo | Format::Http => false,
    }
}

/// What warming fetches for the `(name, version)` pins a resolution chose.
///
/// # Errors
/// A pin the format cannot name, or a format that warms from no resolution.
pub fn warm_plan_of_pins(format: Format, pins: &[(String, String)]) -> WarmPlan {
    match format {
        Format::Pypi => {
            pypi::lockfile::plan("requirements.txt", &pypi::lockfile::pinned_file(pins))
        }
        Format::Maven => maven::lockfile::plan_of_pins(pins),
        Format::Npm | Format::Cargo | Format::Http => Err(format!(
            "a {format:?} repository is not warmed from resolutions"
        )),
    }
}

pub use crate::access::Identity;

/// What a protocol may use to answer a request besides the request itself.
#[derive(Debug)]
pub struct RequestContext<'a> {
    pub engine: &'a CacheEngine,
    pub blobs: &'a Arc<dyn BlobStore>,
    pub identity: &'a Identity,
    /// `public_url`, when configured.
    pub public_url: Option<&'a str>,
    /// The request's headers (for the `Host` when `public_url` is not set).
    pub headers: &'a HeaderMap,
}

impl RequestContext<'_> {
    /// The base URL clients reach granary at: `public_url`, else the request's `Host`
    /// (only when it is a plain host[:port], so nothing odd is echoed into URLs).
    #[must_use]
    pub fn base_url(&self) -> String {
        if let Some(url) = self.public_url {
            return url.to_owned();
        }
        let host = self
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 255
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            })
            .unwrap_or("localhost");
        format!("http://{host}")
    }
}

/// A request as a protocol sees it: the path below the mount point, decoded.
#[derive(Debug)]
pub struct ProtocolRequest {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Option<String>,
    pub accept: Option<String>,
    /// Empty unless [`Protocol::max_body`] allowed one.
    pub body: Bytes,
}

/// What every repository has, whatever its format.
#[derive(Debug, Clone)]
pub struct RepoSettings {
    pub name: String,
    /// `name`, interned once per configured repository (a small, fixed set), so
    /// metrics labels cost no allocation per request.
    pub label: &'static str,
    pub upstream: Arc<UpstreamClient>,
    pub policy: FreshnessPolicy,
    /// Lifetime of a remembered upstream 404.
    pub negative_ttl: Duration,
    /// Who may read this repository.
    pub access: crate::access::Access,
}

impl RepoSettings {
    /// A fetch of the artifact `key` from `url` on this repository's upstream, checked
    /// against `expected`; callers add a size or published digests where they have them.
    #[must_use]
    pub fn artifact_request(
        &self,
        key: CacheKey,
        url: url::Url,
        expected: Vec<ExpectedDigest>,
        content_type: &str,
    ) -> ArtifactRequest {
        ArtifactRequest {
            key,
            repo: self.name.clone(),
            upstream: Arc::clone(&self.upstream),
            url,
            expected,
            published: None,
            expected_size: None,
            content_type: content_type.to_owned(),
        }
    }

    /// Looks up the index document `key` under this repository's freshness rules,
    /// fetching it from `source` when the engine needs to.
    ///
    /// # Errors
    /// When there is no usable copy and the upstream fails.
    pub async fn lookup_index(
        &self,
        engine: &CacheEngine,
        key: CacheKey,
        source: impl IndexSource + 'static,
    ) -> Result<IndexLookup, RequestError> {
        Ok(engine
            .index
            .lookup(IndexRequest {
                key,
                policy: self.policy,
                negative_ttl: self.negative_ttl,
                source: Arc::new(source),
            })
            .await?)
    }
}

/// Lets a repository type read its [`RepoSettings`] fields as its own.
macro_rules! derefs_to_settings {
    ($repo:ty) => {
        impl std::ops::Deref for $repo {
            type Target = $crate::protocols::RepoSettings;
            fn deref(&self) -> &Self::Target {
                &self.settings
            }
        }
    };
}
pub(crate) use derefs_to_settings;

/// What a protocol answers; [`crate::server`] renders it.
#[derive(Debug)]
pub enum Reply {
    /// An index document in the form the client negotiated.
    Document(DocumentReply),
    /// An artifact, stored or streaming.
    Artifact(ArtifactReply),
    /// A permanent redirect to the canonical URL (an absolute path).
    Redirect { location: String },
    /// A small response built for this request (passed through or derived).
    Passthrough(PassthroughReply),
    /// A whole response with its own status and headers (the `http` format), from
    /// the cache or passed through.
    Response(ResponseReply),
}

/// A whole response: status, end-to-end headers and body.
#[derive(Debug)]
pub struct ResponseReply {
    pub status: http::StatusCode,
    /// Shared with the cached entry: a hit copies no header.
    pub headers: Arc<Vec<(http::HeaderName, http::HeaderValue)>>,
    pub body: bytes::Bytes,
    pub cache_status: CacheStatus,
    /// Seconds since it was stored, for `Age`; `None` when it was not cached.
    pub age: Option<u64>,
}

/// A response built for one request: not cached as such.
#[derive(Debug)]
pub struct PassthroughReply {
    pub status: http::StatusCode,
    pub content_type: String,
    pub body: bytes::Bytes,
    pub cache_status: CacheStatus,
}

impl PassthroughReply {
    /// A JSON body.
    #[must_use]
    pub fn json(
        status: http::StatusCode,
        value: &serde_json::Value,
        cache_status: CacheStatus,
    ) -> Self {
        Self {
            status,
            content_type: "application/json".to_owned(),
            body: serde_json::to_vec(value)
                .expect("serializing a JSON value cannot fail")
                .into(),
            cache_status,
        }
    }

    /// What the upstream answered to a forwarded request (JSON unless it said
    /// otherwise), or a JSON `503` when it could not be reached: registry clients
    /// treat these endpoints as advisory and carry on.
    #[must_use]
    pub fn forwarded(
        result: Result<
            (http::StatusCode, Option<String>, bytes::Bytes),
            crate::engine::UpstreamError,
        >,
    ) -> Self {
        match result {
            Ok((status, content_type, body)) => Self {
                status,
                content_type: content_type.unwrap_or_else(|| "application/json".to_owned()),
                body,
                cache_status: CacheStatus::Bypass,
            },
            Err(error) => Self::error(http::StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
        }
    }

    /// A JSON error, as registries answer them.
    #[must_use]
    pub fn error(status: http::StatusCode, message: &str) -> Self {
        Self::json(
            status,
            &serde_json::json!({ "error": message }),
            CacheStatus::Bypass,
        )
    }
}

/// An index document ready to serve.
#[derive(Debug)]
pub struct DocumentReply {
    pub rendition: Rendition,
    pub content_type: &'static str,
    pub status: CacheStatus,
    /// `Warning` header value when a stale copy is served because the upstream failed.
    pub warning: Option<String>,
    /// The base URL to put in the rendition's markers (npm, cargo), if it has any.
    pub base_url: Option<String>,
    /// The upstream's `Last-Modified` for the document, when it sent one.
    pub last_modified: Option<http::HeaderValue>,
}

impl DocumentReply {
    /// The rendition `name` of a found document, rendered if no request has asked
    /// for it before.
    ///
    /// # Errors
    /// When the document cannot be rendered in that form (a stored body no longer
    /// readable): the upstream's document is malformed.
    pub async fn new(
        lookup: IndexLookup,
        name: &str,
        content_type: &'static str,
        base_url: Option<String>,
    ) -> Result<Self, RequestError> {
        let rendition = lookup.document.rendition(name).await.map_err(|reason| {
            RequestError::Proxy(Arc::new(ProxyError::Upstream(UpstreamError::Malformed {
                upstream: format!("the stored `{name}` form"),
                reason,
            })))
        })?;
        Ok(Self {
            rendition,
            content_type,
            status: lookup.status,
            last_modified: lookup
                .document
                .validators
                .last_modified
                .as_deref()
                .and_then(|date| http::HeaderValue::from_str(date).ok()),
            warning: lookup.warning,
            base_url,
        })
    }
}

/// An artifact ready to serve.
#[derive(Debug)]
pub struct ArtifactReply {
    pub lookup: ArtifactLookup,
    pub content_type: String,
}

/// Why a request could not be answered; [`crate::server`] maps each to a status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("none of the media types in `Accept` can be served; available: {0}")]
    NotAcceptable(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Proxy(#[from] Arc<ProxyError>),
}
