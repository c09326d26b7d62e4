//! What a protocol extracts from a stored artifact: its declared dependencies, keyed
//! by the artifact's SHA-256 (immutable, so extracted once). Each format's extractor
//! lives beside the format (`<format>/dependencies.rs`); storing and serving them is
//! [`crate::dependencies`].

use serde::{Deserialize, Serialize};

/// Changes whenever an extractor would read the same artifact differently.
pub const EXTRACTOR_VERSION: u32 = 1;

/// How much of an artifact's dependencies are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtractionStatus {
    /// Everything the artifact declares.
    Complete,
    /// Some declarations could not be read (the reason says which).
    Partial,
    /// Not known: never "none" (an sdist whose metadata is dynamic, an unreadable file).
    Unknown,
}

impl ExtractionStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Unknown => "unknown",
        }
    }

    #[must_use]
    pub fn parse(text: &str) -> Self {
        match text {
            "complete" => Self::Complete,
            "partial" => Self::Partial,
            _ => Self::Unknown,
        }
    }
}

/// One declared dependency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// The package depended on, as its ecosystem names it (normalized for PyPI; the
    /// real crate for a renamed cargo dependency).
    pub name: String,
    /// The version requirement as declared (a PEP 440 specifier, an npm range, a
    /// cargo requirement, a Maven version or range); empty for "any".
    pub requirement: String,
    /// `runtime`, `optional`, `peer`, `extra` (PyPI), `normal`, `build`, `dev`
    /// (cargo).
    pub kind: String,
    /// When it applies: a PEP 508 marker, a cargo `cfg()` target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    pub optional: bool,
    /// What else the format says (extras, features, a rename, peer metadata).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// What one artifact declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extraction {
    /// SHA-256 of the artifact, lowercase hex.
    pub digest: String,
    pub repo: String,
    pub format: String,
    /// The project as the format names it canonically (normalized for PyPI).
    pub project: String,
    pub version: String,
    pub filename: String,
    pub status: ExtractionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub extractor_version: u32,
    /// Release-level facts beside the dependencies (`requires_python`, extras,
    /// `engines`, `os`, `cpu`, features).
    #[serde(default)]
    pub attributes: serde_json::Value,
    pub dependencies: Vec<Dependency>,
}
