//! Fetching packuments from the upstream registry, for the index cache. The stored
//! canonical form is the upstream's own JSON, unchanged.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use super::keys::upstream_path;
use super::rewrite;
use crate::engine::{Fetched, IndexSource, Rendition, UpstreamClient, UpstreamError};
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
            |body| parse(body).map(drop),
        )
        .await
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
