//! The npm registry API, mounted at `/<repo>/` (point npm, pnpm or yarn's registry
//! there):
//!
//! | path | what |
//! |---|---|
//! | `<name>`, `@scope/<name>`, `@scope%2f<name>` | packument, full or abbreviated by `Accept` |
//! | `<name>/<version>`, `<name>/<dist-tag>` | one version's document |
//! | `<name>/-/<file>.tgz` | a tarball, resolved through the cached packument |
//! | `-/package/<name>/dist-tags` | dist-tags |
//! | `-/ping`, `-/v1/search`, `-/npm/v1/security/*` | passed through, never cached |
//!
//! Tarball URLs name an entry of a cached packument, never an upstream URL.

pub mod badges;
pub mod dependencies;
pub mod keys;
pub mod lockfile;
pub mod resolve;
pub mod rewrite;
pub mod source;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use super::{
    path, ArtifactReply, DocumentReply, PassthroughReply, Protocol, ProtocolRequest, Reply,
    RepoSettings, RequestContext, RequestError,
};
use crate::engine::index::BASE_MARKER_SERIALIZED;
use crate::engine::{CacheEngine, DigestAlgorithm, ExpectedDigest, IndexLookup};
use keys::is_valid_package_name;
use source::PackumentSource;

/// The abbreviated ("corgi") media type.
pub const ABBREVIATED_TYPE: &str = "application/vnd.npm.install-v1+json";
const FULL_TYPE: &str = "application/json";
/// Bound on passthrough requests: advisory endpoints must fail fast.
const PASSTHROUGH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request body passed through (audit reports).
pub const MAX_PASSTHROUGH_BODY: usize = 16 * 1024 * 1024;

/// One npm repository.
#[derive(Debug, Clone)]
pub struct NpmRepo {
    pub settings: RepoSettings,
}

super::derefs_to_settings!(NpmRepo);

/// What an npm request carries besides its path.
#[derive(Debug)]
struct NpmRequest<'a> {
    method: &'a Method,
    accept: Option<&'a str>,
    query: Option<&'a str>,
    body: Bytes,
    /// `scheme://host[:port]` clients reach granary at (for absolute tarball URLs).
    base_url: &'a str,
}

#[async_trait]
impl Protocol for NpmRepo {
    fn settings(&self) -> &RepoSettings {
        &self.settings
    }

    fn format(&self) -> &'static str {
        keys::FORMAT
    }

    /// `@scope%2fname` is how clients spell a scoped package in one segment.
    fn segments(&self, rest: &str) -> Result<Vec<String>, RequestError> {
        path::segments(&path::decode_scope_slash(rest))
    }

    /// Audit reports come as `POST` bodies (and are passed through).
    fn max_body(&self, method: &Method) -> Option<usize> {
        (method == Method::POST).then_some(MAX_PASSTHROUGH_BODY)
    }

    fn route_label(&self, rest: &str) -> &'static str {
        if rest.starts_with("-/") {
            "registry"
        } else if rest.contains("/-/") {
            "tarball"
        } else {
            "packument"
        }
    }

    fn project_of(&self, rest: &str) -> Option<String> {
        let decoded = path::decode_scope_slash(rest);
        let parts: Vec<&str> = decoded.split('/').collect();
        match parts.as_slice() {
            ["-", ..] | [] => None,
            [scope, name, ..] if scope.starts_with('@') => Some(format!("{scope}/{name}")),
            [name, ..] if !name.is_empty() => Some((*name).to_owned()),
            _ => None,
        }
    }

    fn project_index_key(&self, project: &str) -> Result<crate::engine::CacheKey, RequestError> {
        if is_valid_package_name(project) {
            Ok(keys::packument_key(&self.name, project))
        } else {
            Err(RequestError::BadRequest(format!(
                "`{project}` is not a valid npm package name"
            )))
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
        let mut registry = resolve::EnginePackuments::new(self, engine);
        let mut graph = resolve::resolve(&mut registry, project, version, options)
            .await
            .map_err(RequestError::NotFound)?;
        graph.documents = registry.documents;
        Ok(graph)
    }

    /// Nothing is streamed before the end: a package placed again deeper in the
    /// simulated tree (beside a conflicting copy) can add edges to a node already
    /// visited until the walk ends.
    async fn resolve_file(
        &self,
        engine: &CacheEngine,
        _blobs: &Arc<dyn crate::storage::BlobStore>,
        file: &str,
        options: &super::resolution::ResolveOptions,
        _progress: &super::resolution::Progress,
    ) -> Result<super::resolution::Graph, RequestError> {
        resolve::check_target(options.target.as_deref()).map_err(RequestError::BadRequest)?;
        let mut registry = resolve::EnginePackuments::new(self, engine);
        let mut graph = resolve::resolve_package_json(&mut registry, file, options)
            .await
            .map_err(RequestError::BadRequest)?;
        graph.documents = registry.documents;
        Ok(graph)
    }

    fn badge_kinds(&self) -> &'static [super::badges::BadgeKind] {
        badges::KINDS
    }

    async fn badge_facts(
        &self,
        engine: &CacheEngine,
        _blobs: &Arc<dyn crate::storage::BlobStore>,
        project: &str,
        _stage: super::badges::Stage,
    ) -> Result<super::badges::Facts, RequestError> {
        if !is_valid_package_name(project) {
            return Err(RequestError::BadRequest(format!(
                "`{project}` is not a valid npm package name"
            )));
        }
        let lookup = self.lookup(engine, project).await?;
        let packument = found_packument(&lookup, project)?;
        Ok(badges::facts(&packument))
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
            NpmRequest {
                method: &request.method,
                accept: request.accept.as_deref(),
                query: request.query.as_deref(),
                body: request.body,
                base_url: &base_url,
            },
        )
        .await
    }
}

impl NpmRepo {
    /// Answers a request for `segments` below the mount point.
    async fn answer(
        &self,
        engine: &CacheEngine,
        segments: &[String],
        request: NpmRequest<'_>,
    ) -> Result<Reply, RequestError> {
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        if parts.first() == Some(&"-") {
            return self.special(engine, &parts[1..], request).await;
        }
        if request.method != Method::GET && request.method != Method::HEAD {
            return Err(RequestError::MethodNotAllowed);
        }
        let (name, rest) = split_name(&parts)?;
        match rest {
            [] | [""] => self.packument(engine, &name, &request).await,
            ["-", filename] => self.tarball(engine, &name, filename).await,
            [version] => self.version(engine, &name, version, &request).await,
            _ => Err(RequestError::NotFound(format!(
                "no such path for package `{name}`"
            ))),
        }
    }

    async fn special(
        &self,
        engine: &CacheEngine,
        parts: &[&str],
        request: NpmRequest<'_>,
    ) -> Result<Reply, RequestError> {
        match parts {
            ["ping"] | ["v1", "search"]
                if request.method == Method::GET || request.method == Method::HEAD =>
            {
                Ok(self.pass_through(&parts.join("/"), request).await)
            }
            ["npm", "v1", "security", "advisories", "bulk"]
            | ["npm", "v1", "security", "audits", "quick"]
                if request.method == Method::POST =>
            {
                Ok(self.pass_through(&parts.join("/"), request).await)
            }
            ["package", name @ .., "dist-tags"] if request.method == Method::GET => {
                let (name, rest) = split_name(name)?;
                if !rest.is_empty() {
                    return Err(RequestError::NotFound("no such path".to_owned()));
                }
                let lookup = self.lookup(engine, &name).await?;
                let packument = found_packument(&lookup, &name)?;
                let tags = packument.get("dist-tags").cloned().unwrap_or(Value::Null);
                Ok(Reply::Passthrough(PassthroughReply::json(
                    StatusCode::OK,
                    &tags,
                    lookup.status,
                )))
            }
            _ if request.method != Method::GET && request.method != Method::HEAD => {
                Err(RequestError::MethodNotAllowed)
            }
            _ => Err(RequestError::NotFound(format!(
                "no such registry endpoint `-/{}`",
                parts.join("/")
            ))),
        }
    }

    /// Forwards an endpoint that must not be cached; an unreachable upstream is a quick
    /// 503 with a JSON error, so `npm install` carries on (audit is advisory).
    async fn pass_through(&self, path: &str, request: NpmRequest<'_>) -> Reply {
        let mut url = match self.upstream.root().join(&format!("-/{path}")) {
            Ok(url) => url,
            Err(error) => {
                return Reply::Passthrough(PassthroughReply::error(
                    StatusCode::BAD_GATEWAY,
                    &error.to_string(),
                ))
            }
        };
        url.set_query(request.query);
        let forwarded = self
            .upstream
            .forward(
                request.method.clone(),
                &url,
                request.body,
                PASSTHROUGH_TIMEOUT,
            )
            .await;
        Reply::Passthrough(PassthroughReply::forwarded(forwarded))
    }

    async fn lookup(&self, engine: &CacheEngine, name: &str) -> Result<IndexLookup, RequestError> {
        self.lookup_index(
            engine,
            keys::packument_key(&self.name, name),
            PackumentSource {
                upstream: Arc::clone(&self.upstream),
                repo: self.name.clone(),
                name: name.to_owned(),
            },
        )
        .await
    }

    async fn packument(
        &self,
        engine: &CacheEngine,
        name: &str,
        request: &NpmRequest<'_>,
    ) -> Result<Reply, RequestError> {
        let lookup = self.lookup(engine, name).await?;
        if !lookup.document.found {
            return Err(not_found(name));
        }
        let abbreviated = wants_abbreviated(request.accept);
        let (rendition, content_type) = if abbreviated {
            (source::ABBREVIATED, ABBREVIATED_TYPE)
        } else {
            (source::FULL, FULL_TYPE)
        };
        Ok(Reply::Document(
            DocumentReply::new(
                lookup,
                rendition,
                content_type,
                Some(request.base_url.to_owned()),
            )
            .await?,
        ))
    }

    async fn version(
        &self,
        engine: &CacheEngine,
        name: &str,
        wanted: &str,
        request: &NpmRequest<'_>,
    ) -> Result<Reply, RequestError> {
        let lookup = self.lookup(engine, name).await?;
        let packument = found_packument(&lookup, name)?;
        let number = packument
            .pointer(&format!(
                "/dist-tags/{}",
                wanted.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .unwrap_or(wanted)
            .to_owned();
        let body = rewrite::version(&packument, &number, &self.name, name).ok_or_else(|| {
            RequestError::NotFound(format!("package `{name}` has no version or tag `{wanted}`"))
        })?;
        let body = fill_base(&body, request.base_url);
        Ok(Reply::Passthrough(PassthroughReply {
            status: StatusCode::OK,
            content_type: FULL_TYPE.to_owned(),
            body: body.into(),
            cache_status: lookup.status,
        }))
    }

    async fn tarball(
        &self,
        engine: &CacheEngine,
        name: &str,
        filename: &str,
    ) -> Result<Reply, RequestError> {
        if !filename.ends_with(".tgz") || filename.starts_with('.') || filename.len() > 255 {
            return Err(RequestError::BadRequest(format!(
                "`{filename}` is not a tarball name"
            )));
        }
        let key = keys::tarball_key(&self.name, name, filename);
        let content_type = "application/octet-stream".to_owned();
        let lookup = engine
            .artifacts
            .get_or_fetch::<RequestError, _>(&key, async {
                let lookup = self.lookup(engine, name).await?;
                let packument = found_packument(&lookup, name)?;
                let dist = packument
                    .get("versions")
                    .and_then(Value::as_object)
                    .and_then(|versions| {
                        versions
                            .values()
                            .filter_map(|v| v.get("dist"))
                            .find(|dist| {
                                dist.get("tarball")
                                    .and_then(Value::as_str)
                                    .and_then(rewrite::tarball_filename)
                                    == Some(filename)
                            })
                    })
                    .ok_or_else(|| {
                        RequestError::NotFound(format!(
                            "`{filename}` is not a tarball of package `{name}`"
                        ))
                    })?;
                let url = dist
                    .get("tarball")
                    .and_then(Value::as_str)
                    .and_then(|u| url::Url::parse(u).ok())
                    .ok_or_else(|| {
                        RequestError::NotFound(format!(
                            "`{filename}`: unusable upstream tarball URL"
                        ))
                    })?;
                Ok(self.artifact_request(key.clone(), url, expected_digests(dist), &content_type))
            })
            .await?;
        Ok(Reply::Artifact(ArtifactReply {
            lookup,
            content_type,
        }))
    }
}

/// `dist.integrity` (SRI, sha512 preferred) or, failing that, `dist.shasum` (sha1).
fn expected_digests(dist: &Value) -> Vec<ExpectedDigest> {
    let mut expected = Vec::new();
    if let Some(integrity) = dist.get("integrity").and_then(Value::as_str) {
        for entry in integrity.split_whitespace() {
            let Some((algorithm, encoded)) = entry.split_once('-') else {
                continue;
            };
            let algorithm = match algorithm {
                "sha512" => DigestAlgorithm::Sha512,
                "sha256" => DigestAlgorithm::Sha256,
                "sha1" => DigestAlgorithm::Sha1,
                _ => continue,
            };
            let encoded = encoded.split('?').next().unwrap_or(encoded);
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(encoded) {
                expected.push(ExpectedDigest::new(algorithm, &hex::encode(raw)));
            }
        }
    }
    if expected.is_empty() {
        if let Some(shasum) = dist.get("shasum").and_then(Value::as_str) {
            expected.push(ExpectedDigest::new(DigestAlgorithm::Sha1, shasum));
        }
    }
    expected
}

/// Splits `@scope/name/rest…` or `name/rest…` into the package name and the rest.
fn split_name<'a, 'b>(parts: &'b [&'a str]) -> Result<(String, &'b [&'a str]), RequestError> {
    let (name, rest) = match parts {
        [scope, package, rest @ ..] if scope.starts_with('@') => {
            (format!("{scope}/{package}"), rest)
        }
        [name, rest @ ..] => ((*name).to_owned(), rest),
        [] => return Err(RequestError::NotFound("no package named".to_owned())),
    };
    if is_valid_package_name(&name) {
        Ok((name, rest))
    } else {
        Err(RequestError::BadRequest(format!(
            "`{name}` is not a valid npm package name"
        )))
    }
}

fn not_found(name: &str) -> RequestError {
    RequestError::NotFound(format!("package `{name}` does not exist upstream"))
}

/// The parsed packument: parsed once per stored document, not once per request (a
/// packument reaches tens of MB).
fn found_packument(lookup: &IndexLookup, name: &str) -> Result<Arc<Value>, RequestError> {
    if !lookup.document.found {
        return Err(not_found(name));
    }
    Ok(source::packument_of(&lookup.document))
}

/// Whether the client prefers the abbreviated form (npm, pnpm and yarn send it first).
fn wants_abbreviated(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let quality = |wanted: &str| {
        accept.split(',').find_map(|range| {
            let mut parts = range.split(';');
            let media = parts.next()?.trim();
            if !media.eq_ignore_ascii_case(wanted) {
                return None;
            }
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            Some(q)
        })
    };
    let abbreviated = quality(ABBREVIATED_TYPE).unwrap_or(0.0);
    let full = quality(FULL_TYPE).unwrap_or(0.0);
    abbreviated > 0.0 && abbreviated >= full
}

/// Puts the base URL in place of the marker in a small, per-request document.
fn fill_base(body: &[u8], base_url: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + base_url.len() * 2);
    let mut rest = body;
    while let Some(at) = find(rest, BASE_MARKER_SERIALIZED) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(base_url.as_bytes());
        rest = &rest[at + BASE_MARKER_SERIALIZED.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_what_npm_pnpm_and_yarn_ask_for() {
        let npm = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*";
        assert!(wants_abbreviated(Some(npm)));
        assert!(!wants_abbreviated(Some("application/json")));
        assert!(!wants_abbreviated(None));
        assert!(!wants_abbreviated(Some(
            "application/json, application/vnd.npm.install-v1+json;q=0.5"
        )));
    }

    #[test]
    fn integrity_prefers_sri_and_falls_back_to_shasum() {
        let sri = serde_json::json!({"integrity": "sha512-AAEC", "shasum": "ff"});
        assert_eq!(
            expected_digests(&sri),
            vec![ExpectedDigest::new(DigestAlgorithm::Sha512, "000102")]
        );
        let old = serde_json::json!({"shasum": "ABCD"});
        assert_eq!(
            expected_digests(&old),
            vec![ExpectedDigest::new(DigestAlgorithm::Sha1, "abcd")]
        );
    }

    #[test]
    fn names_split_scoped_and_plain() {
        assert_eq!(
            split_name(&["@s", "n", "-", "n-1.tgz"]).expect("scoped").0,
            "@s/n"
        );
        assert_eq!(
            split_name(&["plain", "1.0.0"]).expect("plain").1,
            &["1.0.0"]
        );
        assert!(split_name(&["@s"]).is_err());
        assert!(split_name(&["bad name"]).is_err());
    }
}
