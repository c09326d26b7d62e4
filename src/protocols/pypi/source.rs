//! Fetching Simple API documents from the upstream, for the index cache.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use url::Url;

use super::model::{ProjectList, ProjectPage, FORMAT_VERSION};
use super::{parse, rewrite};
use crate::engine::index::{sized_work, tight, Parsed};
use crate::engine::upstream::display_url;
use crate::engine::{
    Fetched, IndexDocument, IndexSource, UpstreamClient, UpstreamDocument, UpstreamError,
};
use crate::http_cache::Validators;

/// What granary asks the upstream for: JSON when it can, HTML otherwise.
const UPSTREAM_ACCEPT: &str =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";
/// Largest index document accepted from an upstream; the biggest real project pages
/// are a few MiB.
const MAX_INDEX_BYTES: usize = 64 * 1024 * 1024;

/// Rendition names.
pub const JSON: &str = "json";
pub const HTML: &str = "html";

/// A project's page.
pub struct ProjectSource {
    pub upstream: Arc<UpstreamClient>,
    pub project: String,
}

/// The project list.
pub struct ListSource {
    pub upstream: Arc<UpstreamClient>,
}

#[async_trait]
impl IndexSource for ProjectSource {
    async fn fetch(&self, validators: &Validators) -> Result<Fetched, UpstreamError> {
        let url = self
            .upstream
            .root()
            .join(&format!("{}/", self.project))
            .map_err(|e| malformed(self.upstream.root(), &e.to_string()))?;
        let raw = fetch_raw(&self.upstream, &url, validators).await?;
        let project = self.project.clone();
        raw.into_fetched(move |body, json, base| {
            let page = parse::project_page(body, json, base, &project)?;
            let canonical = serde_json::to_vec(&page).expect("serializing the model cannot fail");
            Ok((canonical, Some(Arc::new(page) as Parsed)))
        })
        .await
    }

    fn check(&self, canonical: &Bytes) -> Result<Option<Parsed>, String> {
        let page: ProjectPage = serde_json::from_slice(canonical).map_err(|e| e.to_string())?;
        Ok(Some(Arc::new(page)))
    }

    fn forms(&self) -> &'static [&'static str] {
        &[JSON, HTML]
    }

    fn render(&self, document: &IndexDocument, form: &str) -> Result<Bytes, String> {
        let page = page_of(document);
        Ok(tight(if form == JSON {
            rewrite::project_json(&page, &self.project)
        } else {
            rewrite::project_html(&page, &self.project)
        }))
    }

    fn format_version(&self) -> u32 {
        FORMAT_VERSION
    }
}

#[async_trait]
impl IndexSource for ListSource {
    async fn fetch(&self, validators: &Validators) -> Result<Fetched, UpstreamError> {
        let url = self.upstream.root().clone();
        let raw = fetch_raw(&self.upstream, &url, validators).await?;
        raw.into_fetched(|body, json, _| {
            let list = parse::project_list(body, json)?;
            let canonical = serde_json::to_vec(&list).expect("serializing the model cannot fail");
            Ok((canonical, Some(Arc::new(list) as Parsed)))
        })
        .await
    }

    fn check(&self, canonical: &Bytes) -> Result<Option<Parsed>, String> {
        let list: ProjectList = serde_json::from_slice(canonical).map_err(|e| e.to_string())?;
        Ok(Some(Arc::new(list)))
    }

    fn forms(&self) -> &'static [&'static str] {
        &[JSON, HTML]
    }

    fn render(&self, document: &IndexDocument, form: &str) -> Result<Bytes, String> {
        let list = document.derived(|canonical| {
            serde_json::from_slice::<ProjectList>(canonical)
                .expect("a stored project list was checked when it was fetched or loaded")
        });
        Ok(tight(if form == JSON {
            rewrite::list_json(&list)
        } else {
            rewrite::list_html(&list)
        }))
    }

    fn format_version(&self) -> u32 {
        FORMAT_VERSION
    }
}

enum RawDocument {
    Body {
        bytes: Bytes,
        json: bool,
        base: Url,
        validators: Validators,
        upstream: String,
    },
    NotModified(Validators),
    NotFound,
}

/// A project page's parsed form, as every reader of a stored page shares it.
#[must_use]
pub fn page_of(document: &IndexDocument) -> Arc<ProjectPage> {
    document.derived(|canonical| {
        serde_json::from_slice::<ProjectPage>(canonical)
            .expect("a stored page was checked when it was fetched or loaded")
    })
}

impl RawDocument {
    /// Reads the upstream's body into the canonical form and its parsed form; a
    /// large body is read on the blocking pool, not on an async worker.
    async fn into_fetched(
        self,
        canonicalize: impl FnOnce(&[u8], bool, &Url) -> Result<(Vec<u8>, Option<Parsed>), String>
            + Send
            + 'static,
    ) -> Result<Fetched, UpstreamError> {
        match self {
            Self::Body {
                bytes,
                json,
                base,
                validators,
                upstream,
            } => {
                let read = sized_work(bytes.len(), move || canonicalize(&bytes, json, &base)).await;
                let (canonical, parsed) =
                    read.map_err(|reason| UpstreamError::Malformed { upstream, reason })?;
                Ok(Fetched::Document {
                    canonical: tight(canonical),
                    validators,
                    ttl: None,
                    parsed,
                })
            }
            Self::NotModified(validators) => Ok(Fetched::NotModified { validators }),
            Self::NotFound => Ok(Fetched::NotFound),
        }
    }
}

fn malformed(url: &Url, reason: &str) -> UpstreamError {
    UpstreamError::Malformed {
        upstream: display_url(url),
        reason: reason.to_owned(),
    }
}

async fn fetch_raw(
    upstream: &UpstreamClient,
    url: &Url,
    validators: &Validators,
) -> Result<RawDocument, UpstreamError> {
    let document = upstream
        .get_document(url, Some(UPSTREAM_ACCEPT), validators, MAX_INDEX_BYTES)
        .await?;
    Ok(match document {
        UpstreamDocument::Body {
            body,
            content_type,
            final_url,
            validators,
        } => RawDocument::Body {
            bytes: body,
            json: parse::is_json(content_type.as_deref()),
            base: final_url,
            validators,
            upstream: display_url(url),
        },
        UpstreamDocument::NotModified(validators) => RawDocument::NotModified(validators),
        UpstreamDocument::NotFound => RawDocument::NotFound,
    })
}
