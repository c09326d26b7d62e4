//! Fetching packuments from the upstream registry, for the index cache. The stored
//! canonical form is the upstream's own JSON, unchanged.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use super::keys::upstream_path;
use super::rewrite;
use crate::http_cache::Validators;
use crate::proxy::upstream::display_url;
use crate::proxy::{
    Fetched, IndexSource, Rendition, UpstreamClient, UpstreamDocument, UpstreamError,
};

/// Version of the canonical form (the upstream's JSON as is).
pub const FORMAT_VERSION: u32 = 1;
/// Largest packument accepted; the largest public ones are tens of MiB.
const MAX_PACKUMENT_BYTES: usize = 128 * 1024 * 1024;

/// Rendition names.
pub const FULL: &str = "full";
pub const ABBREVIATED: &str = "abbreviated";

/// One package's packument.
pub struct PackumentSource {
    pub upstream: Arc<UpstreamClient>,
    pub repo: String,
    pub name: String,
}

/// Parses a packument, checking the shape granary relies on.
///
/// # Errors
/// A description of what is malformed.
pub fn parse(body: &[u8]) -> Result<Value, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("packument JSON: {e}"))?;
    if !value.get("versions").is_some_and(Value::is_object) {
        return Err("packument has no `versions` object".to_owned());
    }
    Ok(value)
}

#[async_trait]
impl IndexSource for PackumentSource {
    async fn fetch(&self, validators: &Validators) -> Result<Fetched, UpstreamError> {
        let url = self
            .upstream
            .root()
            .join(&upstream_path(&self.name))
            .map_err(|e| UpstreamError::Malformed {
                upstream: display_url(self.upstream.root()),
                reason: e.to_string(),
            })?;
        // The full document: both forms are served from it.
        let (body, validators) = match self
            .upstream
            .get_document(
                &url,
                Some("application/json"),
                validators,
                MAX_PACKUMENT_BYTES,
            )
            .await?
        {
            UpstreamDocument::Body {
                body, validators, ..
            } => (body, validators),
            UpstreamDocument::NotModified(validators) => {
                return Ok(Fetched::NotModified { validators })
            }
            UpstreamDocument::NotFound => return Ok(Fetched::NotFound),
        };
        parse(&body).map_err(|reason| UpstreamError::Malformed {
            upstream: display_url(&url),
            reason,
        })?;
        Ok(Fetched::Document {
            canonical: body,
            validators,
        })
    }

    fn render(&self, canonical: &Bytes) -> Result<Vec<Rendition>, String> {
        let packument = parse(canonical)?;
        Ok(vec![
            Rendition::new(
                FULL,
                rewrite::full(&packument, &self.repo, &self.name).into(),
            ),
            Rendition::new(
                ABBREVIATED,
                rewrite::abbreviated(&packument, &self.repo, &self.name).into(),
            ),
        ])
    }

    fn format_version(&self) -> u32 {
        FORMAT_VERSION
    }
}
