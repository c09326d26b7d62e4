//! The PyPI Simple repository API (PEP 503 HTML, PEP 691 JSON), mounted at `/<repo>/`:
//!
//! | path | what |
//! |---|---|
//! | `simple/` | project list |
//! | `simple/<project>/` | project page (non-normalized names redirect) |
//! | `files/<project>/<filename>` | a distribution, resolved through the cached page |
//! | `files/<project>/<filename>.metadata` | its PEP 658 core metadata |
//!
//! A file URL names an entry of a cached project page, never an upstream URL: the
//! upstream URL comes from the stored page (DESIGN-NOTES §4).

pub mod badges;
pub mod core_metadata;
pub mod dependencies;
pub mod keys;
pub mod lockfile;
pub mod model;
pub mod negotiate;
pub mod parse;
pub mod resolve;
pub mod rewrite;
pub mod source;

use std::sync::Arc;

use async_trait::async_trait;

use crate::engine::{ArtifactRequest, CacheEngine, DigestAlgorithm, ExpectedDigest, IndexLookup};

use super::{
    ArtifactReply, DocumentReply, Protocol, ProtocolRequest, Reply, RepoSettings, RequestContext,
    RequestError,
};
pub use keys::{is_valid_project_name, normalize};
use model::CoreMetadata;
use negotiate::{negotiate, SimpleFormat};
use source::{ListSource, ProjectSource};

/// Suffix of PEP 658 metadata files.
const METADATA_SUFFIX: &str = ".metadata";

/// One PyPI repository.
#[derive(Debug, Clone)]
pub struct PypiRepo {
    pub settings: RepoSettings,
}

super::derefs_to_settings!(PypiRepo);

#[async_trait]
impl Protocol for PypiRepo {
    fn settings(&self) -> &RepoSettings {
        &self.settings
    }

    fn format(&self) -> &'static str {
        keys::FORMAT
    }

    fn route_label(&self, rest: &str) -> &'static str {
        let mut segments = rest.split('/');
        match (segments.next(), segments.next()) {
            (Some("simple"), None | Some("")) => "project_list",
            (Some("simple"), Some(_)) => "project",
            (Some("files"), _) => "file",
            _ => "other",
        }
    }

    fn project_of(&self, rest: &str) -> Option<String> {
        let mut segments = rest.split('/');
        match (segments.next(), segments.next()) {
            (Some("simple" | "files"), Some(project)) if is_valid_project_name(project) => {
                Some(normalize(project))
            }
            _ => None,
        }
    }

    fn project_index_key(&self, project: &str) -> Result<crate::engine::CacheKey, RequestError> {
        Ok(keys::project_key(
            &self.name,
            &Self::checked_project(project)?,
        ))
    }

    async fn handle(
        &self,
        context: &RequestContext<'_>,
        request: ProtocolRequest,
    ) -> Result<Reply, RequestError> {
        self.answer(context.engine, &request.segments, request.accept.as_deref())
            .await
    }

    fn canonical_project(&self, project: &str) -> Result<String, RequestError> {
        Self::checked_project(project)
    }

    async fn extract_dependencies(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn crate::storage::BlobStore>,
        published: &crate::engine::Published,
    ) -> Option<super::dependencies::Extraction> {
        self.extract(engine, blobs, published).await
    }

    async fn resolve(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn crate::storage::BlobStore>,
        project: &str,
        version: &str,
        options: &super::resolution::ResolveOptions,
    ) -> Result<super::resolution::Graph, RequestError> {
        self.resolve_tree(engine, blobs, project, version, options)
            .await
    }

    /// Nothing is streamed before the end: the solver may backtrack from any choice
    /// until it ends.
    async fn resolve_file(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn crate::storage::BlobStore>,
        file: &str,
        options: &super::resolution::ResolveOptions,
        _progress: &super::resolution::Progress,
    ) -> Result<super::resolution::Graph, RequestError> {
        self.resolve_requirements(engine, blobs, file, options)
            .await
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
}

impl PypiRepo {
    /// Answers a GET (or HEAD) for `segments` below the mount point.
    ///
    /// # Errors
    /// Bad names, unknown paths and files, and upstream failures.
    async fn answer(
        &self,
        engine: &CacheEngine,
        segments: &[String],
        accept: Option<&str>,
    ) -> Result<Reply, RequestError> {
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        match parts.as_slice() {
            [] | ["" | "simple"] => Ok(self.redirect("simple/")),
            ["simple", ""] => self.project_list(engine, accept).await,
            ["simple", project] => self.project_redirect(project),
            ["simple", project, ""] => {
                let normalized = Self::checked_project(project)?;
                if normalized == *project {
                    self.project_page(engine, project, accept).await
                } else {
                    Ok(self.redirect(&format!("simple/{normalized}/")))
                }
            }
            ["files", project, filename] => self.file(engine, project, filename).await,
            _ => Err(RequestError::NotFound(format!(
                "no such path in PyPI repository `{}`",
                self.name
            ))),
        }
    }

    fn redirect(&self, path: &str) -> Reply {
        Reply::Redirect {
            location: format!("/{}/{path}", self.name),
        }
    }

    fn project_redirect(&self, project: &str) -> Result<Reply, RequestError> {
        let normalized = Self::checked_project(project)?;
        Ok(self.redirect(&format!("simple/{normalized}/")))
    }

    fn checked_project(project: &str) -> Result<String, RequestError> {
        if is_valid_project_name(project) {
            Ok(normalize(project))
        } else {
            Err(RequestError::BadRequest(format!(
                "`{project}` is not a valid project name (PEP 508: letters, digits, `.`, `_`, `-`, starting and ending with a letter or digit)"
            )))
        }
    }

    async fn project_list(
        &self,
        engine: &CacheEngine,
        accept: Option<&str>,
    ) -> Result<Reply, RequestError> {
        let format = negotiate(accept).ok_or(RequestError::NotAcceptable(negotiate::AVAILABLE))?;
        let lookup = self
            .lookup_index(
                engine,
                keys::root_key(&self.name),
                ListSource {
                    upstream: Arc::clone(&self.upstream),
                },
            )
            .await?;
        self.document_reply(lookup, format, "project list").await
    }

    async fn project_page(
        &self,
        engine: &CacheEngine,
        project: &str,
        accept: Option<&str>,
    ) -> Result<Reply, RequestError> {
        let format = negotiate(accept).ok_or(RequestError::NotAcceptable(negotiate::AVAILABLE))?;
        let lookup = self.lookup_project(engine, project).await?;
        self.document_reply(lookup, format, project).await
    }

    async fn lookup_project(
        &self,
        engine: &CacheEngine,
        project: &str,
    ) -> Result<IndexLookup, RequestError> {
        self.lookup_index(
            engine,
            keys::project_key(&self.name, project),
            ProjectSource {
                upstream: Arc::clone(&self.upstream),
                project: project.to_owned(),
            },
        )
        .await
    }

    async fn document_reply(
        &self,
        lookup: IndexLookup,
        format: SimpleFormat,
        what: &str,
    ) -> Result<Reply, RequestError> {
        if !lookup.document.found {
            return Err(RequestError::NotFound(format!(
                "`{what}` does not exist upstream of repository `{}`",
                self.name
            )));
        }
        let name = if format == SimpleFormat::Json {
            source::JSON
        } else {
            source::HTML
        };
        Ok(Reply::Document(
            DocumentReply::new(lookup, name, format.content_type(), None).await?,
        ))
    }

    async fn file(
        &self,
        engine: &CacheEngine,
        project: &str,
        filename: &str,
    ) -> Result<Reply, RequestError> {
        if !is_valid_project_name(project) || normalize(project) != project {
            return Err(RequestError::NotFound(format!(
                "`{project}` is not a normalized project name"
            )));
        }
        if !keys::is_valid_filename(filename) {
            return Err(RequestError::BadRequest(format!(
                "`{filename}` is not a valid file name"
            )));
        }
        let key = keys::file_key(&self.name, project, filename);
        let content_type = content_type(filename).to_owned();
        let lookup = engine
            .artifacts
            .get_or_fetch::<RequestError, _>(&key, async {
                let index = self.lookup_project(engine, project).await?;
                if !index.document.found {
                    return Err(RequestError::NotFound(format!(
                        "project `{project}` does not exist upstream"
                    )));
                }
                // Parsed once per stored page, not once per file (pages reach megabytes).
                let page = source::page_of(&index.document);
                let (url, hashes, size) = if let Some(file) = page.file(filename) {
                    (file.url.clone(), &file.hashes, file.size)
                } else {
                    let base = filename
                        .strip_suffix(METADATA_SUFFIX)
                        .and_then(|base| page.file(base))
                        .ok_or_else(|| {
                            RequestError::NotFound(format!(
                                "`{filename}` is not listed for project `{project}`"
                            ))
                        })?;
                    let CoreMetadata::Available(hashes) = &base.core_metadata else {
                        return Err(RequestError::NotFound(format!(
                            "`{filename}`: the index offers no core metadata for it"
                        )));
                    };
                    (format!("{}{METADATA_SUFFIX}", base.url), hashes, None)
                };
                let url = url::Url::parse(&url).map_err(|e| {
                    RequestError::NotFound(format!("`{filename}`: unusable upstream link: {e}"))
                })?;
                let expected = hashes
                    .iter()
                    .filter_map(|(algorithm, hex)| {
                        DigestAlgorithm::from_name(algorithm).map(|a| ExpectedDigest::new(a, hex))
                    })
                    .collect();
                Ok(ArtifactRequest {
                    expected_size: size,
                    ..self.artifact_request(key.clone(), url, expected, &content_type)
                })
            })
            .await?;
        Ok(Reply::Artifact(ArtifactReply {
            lookup,
            content_type,
        }))
    }
}

/// The `Content-Type` for a file, by its name.
fn content_type(filename: &str) -> &'static str {
    if filename.ends_with(METADATA_SUFFIX) {
        "text/plain; charset=utf-8"
    } else if filename.ends_with(".whl") || filename.ends_with(".zip") || filename.ends_with(".egg")
    {
        "application/zip"
    } else if filename.ends_with(".tar.gz") || filename.ends_with(".tgz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    }
}
