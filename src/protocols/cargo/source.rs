//! Fetching `config.json` and index files from the upstream sparse index, for the
//! index cache. Both are stored as the upstream sent them, after checking their shape.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::index;
use crate::engine::index::{tight, Parsed};
use crate::engine::{Fetched, IndexDocument, IndexSource, UpstreamClient, UpstreamError};
use crate::http_cache::Validators;
use crate::protocols::verbatim;

/// Version of the canonical forms (the upstream's bytes as they are).
const FORMAT_VERSION: u32 = 1;
/// Largest index file accepted; the largest public ones are a few MiB.
const MAX_INDEX_FILE_BYTES: usize = 32 * 1024 * 1024;
const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// The repository's `config.json`.
pub struct ConfigSource {
    pub upstream: Arc<UpstreamClient>,
    pub repo: String,
    /// The repository is private: cargo must send its token.
    pub auth_required: bool,
}

/// One crate's index file.
pub struct IndexFileSource {
    pub upstream: Arc<UpstreamClient>,
    pub name: String,
}

#[async_trait]
impl IndexSource for ConfigSource {
    async fn fetch(&self, validators: &Validators) -> Result<Fetched, UpstreamError> {
        verbatim::fetch_checked(
            &self.upstream,
            "config.json",
            None,
            validators,
            MAX_CONFIG_BYTES,
            |body| index::parse_config(body).map(|_| None),
        )
        .await
    }

    fn check(&self, canonical: &Bytes) -> Result<Option<Parsed>, String> {
        index::parse_config(canonical).map(|_| None)
    }

    fn forms(&self) -> &'static [&'static str] {
        verbatim::FORMS
    }

    fn render(&self, document: &IndexDocument, _form: &str) -> Result<Bytes, String> {
        let config = index::parse_config(&document.canonical)?;
        Ok(tight(index::rewrite_config(
            &config,
            &self.repo,
            self.auth_required,
        )))
    }

    fn format_version(&self) -> u32 {
        FORMAT_VERSION
    }
}

#[async_trait]
impl IndexSource for IndexFileSource {
    async fn fetch(&self, validators: &Validators) -> Result<Fetched, UpstreamError> {
        verbatim::fetch_checked(
            &self.upstream,
            &index::index_path(&self.name),
            None,
            validators,
            MAX_INDEX_FILE_BYTES,
            {
                let name = self.name.clone();
                move |body| index::parse_index_file(body, &name).map(|_| None)
            },
        )
        .await
    }

    /// The parsed form (entries and resolution candidates) is made on first use.
    fn check(&self, canonical: &Bytes) -> Result<Option<Parsed>, String> {
        index::parse_index_file(canonical, &self.name).map(|_| None)
    }

    fn forms(&self) -> &'static [&'static str] {
        verbatim::FORMS
    }

    /// Index files hold no URLs: served byte for byte.
    fn render(&self, document: &IndexDocument, _form: &str) -> Result<Bytes, String> {
        Ok(verbatim::render(document))
    }

    fn format_version(&self) -> u32 {
        FORMAT_VERSION
    }
}
