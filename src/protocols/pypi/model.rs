//! Granary's canonical form of Simple API documents: what is stored, with the
//! upstream's absolute URLs; both client forms are rendered from it.
//!
//! The serialized form carries [`FORMAT_VERSION`] in the metadata store; fields are
//! only ever added, as optional.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the serialized form below.
pub const FORMAT_VERSION: u32 = 1;

/// A project's page (PEP 503 / PEP 691).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectPage {
    pub name: String,
    /// The upstream's `api-version` / `pypi:repository-version`.
    pub api_version: String,
    pub files: Vec<DistFile>,
    /// PEP 700 `versions`, when the upstream gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<String>>,
}

/// One file of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistFile {
    pub filename: String,
    /// The upstream's absolute URL, without fragment. Never shown to clients.
    pub url: String,
    /// Algorithm name → lowercase hex.
    #[serde(default)]
    pub hashes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_python: Option<String>,
    #[serde(default)]
    pub yanked: Yanked,
    #[serde(default)]
    pub core_metadata: CoreMetadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpg_sig: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_time: Option<String>,
}

/// PEP 592 yanking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "lowercase")]
pub enum Yanked {
    #[default]
    No,
    Yes(Option<String>),
}

/// PEP 658 / PEP 714 core metadata availability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "hashes", rename_all = "lowercase")]
pub enum CoreMetadata {
    #[default]
    Absent,
    /// Available; the hashes may be empty (`data-core-metadata="true"`).
    Available(BTreeMap<String, String>),
}

/// The project list (`/simple/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectList {
    pub api_version: String,
    /// Project names as the upstream spelled them.
    pub projects: Vec<String>,
}

impl ProjectPage {
    /// The file named `filename`, if listed.
    #[must_use]
    pub fn file(&self, filename: &str) -> Option<&DistFile> {
        self.files.iter().find(|f| f.filename == filename)
    }
}
