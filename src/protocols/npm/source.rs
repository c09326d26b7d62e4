//! Fetching packuments from the upstream registry, for the index cache. The stored
//! canonical form is the upstream's own JSON, unchanged.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use super::keys::upstream_path;
use super::rewrite;
use crate::engine::index::{tight, Parsed};
use crate::engine::{Fetched, IndexDocument, IndexSource, UpstreamClient, UpstreamError};
use crate::http_cache::Validators;
use crate::protocols::verbatim;

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

/// A packument's parsed form, as every reader of a stored packument shares it.
#[must_use]
pub fn packument_of(document: &IndexDocument) -> Arc<Value> {
    document.derived(|canonical| {
        parse(canonical).expect("a stored packument was checked when it was fetched or loaded")
    })
}

#[async_trait]
impl IndexSource for PackumentSource {
    async fn fetch(&self, validators: &Validators) -> Result<Fetched, UpstreamError> {
        // The full document: both forms are served from it.
        verbatim::fetch_checked(
            &self.upstream,
            &upstream_path(&self.name),
            Some("application/json"),
            validators,
            MAX_PACKUMENT_BYTES,
            |body| parse(body).map(|value| Some(Arc::new(value) as Parsed)),
        )
        .await
    }

    fn check(&self, canonical: &Bytes) -> Result<Option<Parsed>, String> {
        parse(canonical).map(|value| Some(Arc::new(value) as Parsed))
    }

    fn forms(&self) -> &'static [&'static str] {
        &[FULL, ABBREVIATED]
    }

    fn render(&self, document: &IndexDocument, form: &str) -> Result<Bytes, String> {
        let packument = packument_of(document);
        Ok(tight(if form == FULL {
            rewrite::full(&packument, &self.repo, &self.name)
        } else {
            rewrite::abbreviated(&packument, &self.repo, &self.name)
        }))
    }

    fn format_version(&self) -> u32 {
        FORMAT_VERSION
    }
}
