//! Dependencies of PyPI distributions, from their core metadata: a wheel's
//! `METADATA` (or its PEP 658 file, keyed by the wheel's digest from the project
//! page), an sdist's `PKG-INFO` only where PEP 643 makes it binding (Metadata-Version
//! 2.2 or later, `Requires-Dist` not `Dynamic`). Nothing is ever built.

use std::str::FromStr;
use std::sync::Arc;

use pep508_rs::Requirement;
use serde_json::json;

use super::badges::version_of;
use super::core_metadata::{self, CoreMetadataFields};
use super::{keys, PypiRepo, METADATA_SUFFIX};
use crate::engine::{CacheEngine, CacheKey, Category, Published};
use crate::protocols::contents::published_bytes;
use crate::protocols::dependencies::{Dependency, Extraction, ExtractionStatus, EXTRACTOR_VERSION};
use crate::storage::BlobStore;

/// Largest distribution opened for its metadata.
const MAX_DISTRIBUTION: u64 = 512 * 1024 * 1024;

/// The core metadata inside a wheel or an sdist named `name`.
fn metadata_inside(
    archive: impl std::io::Read + std::io::Seek,
    name: &str,
) -> Result<String, String> {
    if name.ends_with(".whl") {
        core_metadata::from_wheel(archive)
    } else {
        core_metadata::from_sdist(archive, name)
    }
}

/// A PEP 508 requirement. `pep508_rs` 0.9.2 panics on some malformed names (a name
/// ending in `.` followed by a character it does not expect, e.g. `3. x`; found by
/// fuzzing core metadata): that panic is caught and reported as the parse error it
/// is, so an upstream's bad `METADATA` cannot take the extractor down.
///
/// # Errors
/// What is malformed.
pub fn parse_requirement(line: &str) -> Result<Requirement<pep508_rs::VerbatimUrl>, String> {
    // What it panics on is refused first (the catch below stays as a second line;
    // libFuzzer aborts on any panic, caught or not): non-ASCII text, which it slices
    // inside characters (`fuzz/corpus/core_metadata/crash-33da…`), and names ending
    // in a separator.
    if !line.is_ascii() {
        return Err(
            "not a PEP 508 requirement this parser reads: it has non-ASCII characters".to_owned(),
        );
    }
    let name: String = line
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(format!(
            "not a PEP 508 requirement: `{name}` is not a name (letters and digits, with `-`, `_` or `.` inside)"
        ));
    }
    std::panic::catch_unwind(|| Requirement::<pep508_rs::VerbatimUrl>::from_str(line))
        .map_err(|_| {
            "not a PEP 508 requirement (its name does not end in a letter or digit)".to_owned()
        })?
        .map_err(|error| error.to_string())
}

/// The dependencies and attributes core metadata declares; `sdist` applies PEP 643.
#[must_use]
pub fn from_core_metadata(
    fields: &CoreMetadataFields,
    sdist: bool,
) -> (
    ExtractionStatus,
    Option<String>,
    Vec<Dependency>,
    serde_json::Value,
) {
    let attributes = json!({
        "metadata_version": fields.get("Metadata-Version"),
        "requires_python": fields.get("Requires-Python"),
        "provides_extra": fields.all("Provides-Extra").collect::<Vec<_>>(),
    });
    if sdist {
        let metadata_version = fields
            .get("Metadata-Version")
            .and_then(|v| pep440_rs::Version::from_str(v).ok());
        let binding = metadata_version.is_some_and(|v| v >= pep440_rs::Version::new([2, 2]));
        if !binding {
            return (
                ExtractionStatus::Unknown,
                Some(
                    "sdist metadata before 2.2 is not binding (PEP 643); nothing is built"
                        .to_owned(),
                ),
                Vec::new(),
                attributes,
            );
        }
        if fields
            .all("Dynamic")
            .any(|field| field.eq_ignore_ascii_case("Requires-Dist"))
        {
            return (
                ExtractionStatus::Unknown,
                Some("`Requires-Dist` is dynamic in this sdist; nothing is built".to_owned()),
                Vec::new(),
                attributes,
            );
        }
    }
    let mut dependencies = Vec::new();
    let mut unreadable = Vec::new();
    for line in fields.all("Requires-Dist") {
        match parse_requirement(line) {
            Ok(requirement) => {
                let marker = requirement.marker.try_to_string();
                let extra = marker.as_deref().and_then(extra_of);
                let requirement_text = requirement
                    .version_or_url
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let extras: Vec<String> =
                    requirement.extras.iter().map(ToString::to_string).collect();
                dependencies.push(Dependency {
                    name: requirement.name.to_string(),
                    requirement: requirement_text,
                    kind: if extra.is_some() { "extra" } else { "runtime" }.to_owned(),
                    optional: extra.is_some(),
                    details: if extras.is_empty() && extra.is_none() {
                        serde_json::Value::Null
                    } else {
                        json!({"extras": extras, "extra": extra})
                    },
                    marker,
                });
            }
            Err(error) => unreadable.push(format!("`{line}`: {error}")),
        }
    }
    if unreadable.is_empty() {
        (ExtractionStatus::Complete, None, dependencies, attributes)
    } else {
        (
            ExtractionStatus::Partial,
            Some(format!(
                "unreadable Requires-Dist: {}",
                unreadable.join("; ")
            )),
            dependencies,
            attributes,
        )
    }
}

/// The extra a marker makes a dependency conditional on (`extra == "socks"`).
fn extra_of(marker: &str) -> Option<String> {
    let at = marker.find("extra == ")? + "extra == ".len();
    let rest = marker[at..].trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    value.find(quote).map(|end| value[..end].to_owned())
}

impl PypiRepo {
    pub(super) async fn extract(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        published: &Published,
    ) -> Option<Extraction> {
        let prefix = CacheKey::repo_prefix(Category::Artifact, keys::FORMAT, &self.name);
        let (project, filename) = published
            .key
            .as_str()
            .strip_prefix(&prefix)?
            .split_once('/')?;
        let (project, filename) = (project.to_owned(), filename.to_owned());
        // A PEP 658 file speaks for its distribution: keyed by that file's digest.
        let (distribution, digest) = if let Some(base) = filename.strip_suffix(METADATA_SUFFIX) {
            let page = self.lookup_project(engine, &project).await.ok()?;
            if !page.document.found {
                return None;
            }
            let page = super::source::page_of(&page.document);
            let digest = page.file(base)?.hashes.get("sha256")?.to_ascii_lowercase();
            (base.to_owned(), digest)
        } else {
            (filename.clone(), published.digest.as_str().to_owned())
        };
        let sdist = [".tar.gz", ".zip"]
            .iter()
            .any(|ext| distribution.ends_with(ext));
        if !distribution.ends_with(".whl") && !sdist {
            return None;
        }
        let version = version_of(&distribution)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let mut extraction = Extraction {
            digest,
            repo: self.name.clone(),
            format: keys::FORMAT.to_owned(),
            project,
            version,
            filename: distribution.clone(),
            status: ExtractionStatus::Unknown,
            reason: None,
            extractor_version: EXTRACTOR_VERSION,
            attributes: serde_json::Value::Null,
            dependencies: Vec::new(),
        };
        let local = published
            .path
            .clone()
            .filter(|_| published.size <= MAX_DISTRIBUTION);
        let text = if filename.ends_with(METADATA_SUFFIX) {
            published_bytes(published, blobs, MAX_DISTRIBUTION)
                .await
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        } else if let Some(path) = local {
            // Read in place: an archive is never held in memory whole (24 MiB sdists
            // read whole, one after another, left the allocator holding hundreds of
            // MiB in the soak).
            let name = distribution.clone();
            tokio::task::spawn_blocking(move || {
                let file =
                    std::fs::File::open(&path).map_err(|e| format!("`{}`: {e}", path.display()))?;
                metadata_inside(file, &name)
            })
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
        } else {
            match published_bytes(published, blobs, MAX_DISTRIBUTION).await {
                Ok(bytes) => {
                    let name = distribution.clone();
                    tokio::task::spawn_blocking(move || {
                        metadata_inside(std::io::Cursor::new(bytes), &name)
                    })
                    .await
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
                }
                Err(reason) => Err(reason),
            }
        };
        match text {
            Ok(text) => {
                let fields = CoreMetadataFields::parse(&text);
                let (status, reason, dependencies, attributes) = from_core_metadata(&fields, sdist);
                if let Some(version) = fields.get("Version") {
                    version.clone_into(&mut extraction.version);
                }
                extraction.status = status;
                extraction.reason = reason;
                extraction.dependencies = dependencies;
                extraction.attributes = attributes;
            }
            Err(reason) => extraction.reason = Some(reason),
        }
        Some(extraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`fuzz/corpus/core_metadata/crash-3842…`): `pep508_rs` panicked.
    #[test]
    fn a_name_the_pep_508_parser_panics_on_is_a_parse_error() {
        for line in [
            "3.\u{1}f\"",
            "3. x",
            "a. >=1",
            "b; python_version < \"3.\u{fffd}\u{fffd}\"",
            "c[ata-data-Verprovides_",
        ] {
            assert!(parse_requirement(line).is_err(), "{line:?}");
        }
        let fields = CoreMetadataFields::parse(
            "Metadata-Version: 2.4\nName: d\nVersion: 1\nRequires-Dist: 3. x\n",
        );
        assert_eq!(
            from_core_metadata(&fields, false).0,
            ExtractionStatus::Partial
        );
    }

    #[test]
    fn requirements_markers_and_extras() {
        let fields = CoreMetadataFields::parse(
            "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Python: >=3.9\nProvides-Extra: socks\n\
             Requires-Dist: Charset_Normalizer<4,>=2\n\
             Requires-Dist: idna[all] (>=2.5) ; python_version >= \"3.9\"\n\
             Requires-Dist: PySocks!=1.5.7,>=1.5.6; extra == \"socks\"\n\
             Requires-Dist: this is not pep 508\n",
        );
        let (status, reason, dependencies, attributes) = from_core_metadata(&fields, false);
        assert_eq!(status, ExtractionStatus::Partial);
        assert!(reason.expect("a reason").contains("this is not pep 508"));
        assert_eq!(attributes["requires_python"], ">=3.9");
        assert_eq!(dependencies.len(), 3);
        assert_eq!(dependencies[0].name, "charset-normalizer");
        assert_eq!(dependencies[0].requirement, ">=2, <4");
        assert_eq!(dependencies[0].kind, "runtime");
        assert_eq!(dependencies[1].details["extras"][0], "all");
        assert_eq!(
            dependencies[1].marker.as_deref(),
            Some("python_full_version >= '3.9'")
        );
        assert_eq!(dependencies[2].kind, "extra");
        assert!(dependencies[2].optional);
        assert_eq!(dependencies[2].details["extra"], "socks");
    }

    #[test]
    fn sdist_metadata_binds_only_under_pep_643() {
        let old = CoreMetadataFields::parse("Metadata-Version: 2.1\nRequires-Dist: a\n");
        assert_eq!(from_core_metadata(&old, true).0, ExtractionStatus::Unknown);
        let dynamic = CoreMetadataFields::parse(
            "Metadata-Version: 2.2\nDynamic: Requires-Dist\nRequires-Dist: a\n",
        );
        assert_eq!(
            from_core_metadata(&dynamic, true).0,
            ExtractionStatus::Unknown
        );
        let binding = CoreMetadataFields::parse(
            "Metadata-Version: 2.4\nDynamic: Summary\nRequires-Dist: a\n",
        );
        let (status, _, dependencies, _) = from_core_metadata(&binding, true);
        assert_eq!(
            (status, dependencies.len()),
            (ExtractionStatus::Complete, 1)
        );
        // No Requires-Dist at all is "none", known: complete and empty.
        let none = CoreMetadataFields::parse("Metadata-Version: 2.1\nName: leaf\n");
        assert_eq!(
            from_core_metadata(&none, false).0,
            ExtractionStatus::Complete
        );
    }
}
