//! Fetching Simple API documents from the upstream, for the index cache.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use url::Url;

use super::model::{ProjectList, ProjectPage, FORMAT_VERSION};
use super::{parse, rewrite};
use crate::engine::upstream::display_url;
use crate::engine::{
    Fetched, IndexSource, Rendition, UpstreamClient, UpstreamDocument, UpstreamError,
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
        raw.into_fetched(|body, json, base| {
            let page = parse::project_page(body, json, base, &self.project)?;
            Ok(serde_json::to_vec(&page).expect("serializing the model cannot fail"))
        })
    }

    fn render(&self, canonical: &Bytes) -> Result<Vec<Rendition>, String> {
        let page: ProjectPage = serde_json::from_slice(canonical).map_err(|e| e.to_string())?;
        Ok(vec![
            Rendition::new(JSON, rewrite::project_json(&page, &self.project).into()),
            Rendition::new(HTML, rewrite::project_html(&page, &self.project).into()),
        ])
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
            Ok(serde_json::to_vec(&list).expect("serializing the model cannot fail"))
        })
    }

    fn render(&self, canonical: &Bytes) -> Result<Vec<Rendition>, String> {
        let list: ProjectList = serde_json::from_slice(canonical).map_err(|e| e.to_string())?;
        Ok(vec![
            Rendition::new(JSON, rewrite::list_json(&list).into()),
            Rendition::new(HTML, rewrite::list_html(&list).into()),
        ])
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

impl RawDocument {
    fn into_fetched(
        self,
        canonicalize: impl FnOnce(&[u8], bool, &Url) -> Result<Vec<u8>, String>,
    ) -> Result<Fetched, UpstreamError> {
        match self {
            Self::Body {
                bytes,
                json,
                base,
                validators,
                upstream,
            } => {
                let canonical = canonicalize(&bytes, json, &base)
                    .map_err(|reason| UpstreamError::Malformed { upstream, reason })?;
                Ok(Fetched::Document {
                    canonical: canonical.into(),
                    validators,
                    ttl: None,
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
