//! Fetching Maven documents for the index cache: `maven-metadata.xml`, non-unique
//! snapshot files, and the upstream's checksum files of immutable files. Each is
//! stored as the upstream sent it, after its check.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::check;
use crate::engine::index::Parsed;
use crate::engine::{
    DigestAlgorithm, Fetched, IndexDocument, IndexSource, UpstreamClient, UpstreamError,
};
use crate::http_cache::Validators;
use crate::protocols::verbatim;

/// Version of the canonical form (the upstream's bytes as they are).
const FORMAT_VERSION: u32 = 1;
/// Largest metadata or checksum file accepted.
const MAX_METADATA_BYTES: usize = 16 * 1024 * 1024;
/// Largest non-unique snapshot file kept as a document.
const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;

/// What a document must look like to be stored.
#[derive(Debug, Clone, Copy)]
pub enum DocumentCheck {
    MetadataXml,
    /// Snapshot files and the prefix list: any bytes (their checksums are computed
    /// from what is served).
    AnyBytes,
    /// An upstream checksum file of this algorithm.
    Checksum(DigestAlgorithm),
}

impl DocumentCheck {
    /// Whether `body` is a document of this kind.
    fn check(self, body: &[u8]) -> Result<(), String> {
        match self {
            Self::MetadataXml => check::metadata_xml(body),
            Self::Checksum(algorithm) => check::checksum_file(body, algorithm).map(drop),
            Self::AnyBytes => Ok(()),
        }
    }
}

/// One file below the upstream root, fetched as a document.
pub struct MavenFileSource {
    pub upstream: Arc<UpstreamClient>,
    /// Relative to the upstream root; segments already checked by the layout.
    pub path: String,
    pub check: DocumentCheck,
}

#[async_trait]
impl IndexSource for MavenFileSource {
    async fn fetch(&self, validators: &Validators) -> Result<Fetched, UpstreamError> {
        let wanted = self.check;
        let max_bytes = match wanted {
            DocumentCheck::AnyBytes => MAX_SNAPSHOT_BYTES,
            DocumentCheck::MetadataXml | DocumentCheck::Checksum(_) => MAX_METADATA_BYTES,
        };
        verbatim::fetch_checked(
            &self.upstream,
            &self.path,
            None,
            validators,
            max_bytes,
            move |body| wanted.check(body).map(|()| None),
        )
        .await
    }

    fn check(&self, canonical: &Bytes) -> Result<Option<Parsed>, String> {
        self.check.check(canonical).map(|()| None)
    }

    fn forms(&self) -> &'static [&'static str] {
        verbatim::FORMS
    }

    /// Served byte for byte: Maven documents hold no URLs.
    fn render(&self, document: &IndexDocument, _form: &str) -> Result<Bytes, String> {
        Ok(verbatim::render(document))
    }

    fn format_version(&self) -> u32 {
        FORMAT_VERSION
    }
}
