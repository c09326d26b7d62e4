//! The facts behind a PyPI project's badges: the index stage reads the project page
//! (versions, files, `requires-python`, upload times); the release stage reads the
//! latest release's core metadata (the PEP 658 file, else the wheel's `METADATA`).

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

use pep440_rs::Version;

use super::core_metadata::{self, CoreMetadataFields};
use super::model::{CoreMetadata, DistFile, ProjectPage, Yanked};
use super::{PypiRepo, METADATA_SUFFIX};
use crate::engine::CacheEngine;
use crate::protocols::badges::{
    date_of, license_fact, version_fact, BadgeKind, Fact, Facts, Stage, SLOW_TTL, VERSION_TTL,
};
use crate::protocols::contents::artifact_bytes;
use crate::protocols::{Reply, RequestError};
use crate::storage::BlobStore;

/// The badges of a PyPI repository.
pub const KINDS: &[BadgeKind] = &[
    kind("version", "pypi", Stage::Index, VERSION_TTL),
    kind("wheel", "wheel", Stage::Index, VERSION_TTL),
    kind("format", "format", Stage::Index, VERSION_TTL),
    kind("requires-python", "python", Stage::Index, VERSION_TTL),
    kind("released", "released", Stage::Index, VERSION_TTL),
    kind("license", "license", Stage::Release, SLOW_TTL),
    kind("python-versions", "python", Stage::Release, SLOW_TTL),
    kind("implementation", "implementation", Stage::Release, SLOW_TTL),
    kind("status", "status", Stage::Release, SLOW_TTL),
];

const fn kind(
    name: &'static str,
    label: &'static str,
    stage: Stage,
    ttl: std::time::Duration,
) -> BadgeKind {
    BadgeKind {
        name,
        label,
        stage,
        ttl,
    }
}

/// Largest PEP 658 file read for badges.
const MAX_METADATA_FILE: u64 = 16 * 1024 * 1024;
/// Largest wheel opened for its `METADATA` when the index offers no PEP 658 file.
const MAX_WHEEL: u64 = 64 * 1024 * 1024;

/// The latest release: the highest version with a file that is not yanked, skipping
/// pre-releases unless there is nothing else.
#[derive(Debug)]
pub struct Latest<'a> {
    pub version: Version,
    pub files: Vec<&'a DistFile>,
}

impl<'a> Latest<'a> {
    #[must_use]
    pub fn of(page: &'a ProjectPage) -> Option<Self> {
        let releases: BTreeSet<Version> = page
            .files
            .iter()
            .filter(|file| file.yanked == Yanked::No)
            .filter_map(|file| version_of(&file.filename))
            .collect();
        let version = releases
            .iter()
            .rev()
            .find(|v| !v.any_prerelease())
            .or_else(|| releases.iter().next_back())?
            .clone();
        let files = page
            .files
            .iter()
            .filter(|file| {
                file.yanked == Yanked::No && version_of(&file.filename).as_ref() == Some(&version)
            })
            .collect();
        Some(Self { version, files })
    }

    fn wheels(&self) -> impl Iterator<Item = &&'a DistFile> {
        self.files.iter().filter(|f| f.filename.ends_with(".whl"))
    }
}

/// The version a distribution's file name carries (wheel, egg or sdist).
#[must_use]
pub fn version_of(filename: &str) -> Option<Version> {
    let text = if let Some(stem) = filename
        .strip_suffix(".whl")
        .or_else(|| filename.strip_suffix(".egg"))
    {
        stem.split('-').nth(1)?
    } else {
        let stem = [".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".zip", ".tar"]
            .iter()
            .find_map(|ext| filename.strip_suffix(ext))?;
        stem.rsplit_once('-')?.1
    };
    Version::from_str(text).ok()
}

/// Index-stage facts, from the project page alone.
#[must_use]
pub fn index_facts(page: &ProjectPage) -> Facts {
    let latest = Latest::of(page);
    let mut facts = Facts::new();
    let shown = latest
        .as_ref()
        .map(|l| (l.version.to_string(), l.version.any_prerelease()));
    facts.insert(
        "version".to_owned(),
        version_fact(shown.as_ref().map(|(v, pre)| (v.as_str(), *pre))),
    );
    let Some(latest) = latest else {
        for name in ["wheel", "format", "requires-python", "released"] {
            facts.insert(name.to_owned(), Fact::missing());
        }
        return facts;
    };
    let has = |suffix: &str| latest.files.iter().any(|f| f.filename.ends_with(suffix));
    facts.insert(
        "wheel".to_owned(),
        if has(".whl") {
            Fact::new("yes", "brightgreen")
        } else {
            Fact::new("no", "red")
        },
    );
    facts.insert(
        "format".to_owned(),
        if has(".whl") {
            Fact::new("wheel", "brightgreen")
        } else if has(".egg") {
            Fact::new("egg", "red")
        } else {
            Fact::new("source", "orange")
        },
    );
    facts.insert(
        "requires-python".to_owned(),
        latest
            .files
            .iter()
            .find_map(|f| f.requires_python.as_deref())
            .map_or_else(Fact::missing, |r| Fact::new(r, "blue")),
    );
    facts.insert(
        "released".to_owned(),
        latest
            .files
            .iter()
            .filter_map(|f| f.upload_time.as_deref().and_then(date_of))
            .min()
            .map_or_else(
                || Fact::new("unknown", "lightgrey"),
                |d| Fact::new(d, "blue"),
            ),
    );
    facts
}

/// Release-stage facts, from the latest release's core metadata (`None`: granary
/// could not read any) and the page.
#[must_use]
pub fn release_facts(page: &ProjectPage, metadata: Option<&CoreMetadataFields>) -> Facts {
    let latest = Latest::of(page);
    let mut facts = Facts::new();
    let classifiers: Vec<&str> = metadata
        .map(|m| m.all("Classifier").collect())
        .unwrap_or_default();
    let unknown = || Fact::new("unknown", "lightgrey");

    facts.insert(
        "license".to_owned(),
        metadata.map_or_else(unknown, |m| license_fact(&licenses(m, &classifiers))),
    );

    let mut versions: Vec<(Vec<u64>, &str)> = classifiers
        .iter()
        .filter_map(|c| c.strip_prefix("Programming Language :: Python :: "))
        .filter(|v| v.contains('.') && v.split('.').all(|p| p.parse::<u64>().is_ok()))
        .map(|v| (v.split('.').filter_map(|p| p.parse().ok()).collect(), v))
        .collect();
    versions.sort();
    versions.dedup();
    facts.insert(
        "python-versions".to_owned(),
        if metadata.is_none() {
            unknown()
        } else if versions.is_empty() {
            Fact::missing()
        } else {
            Fact::new(
                versions
                    .iter()
                    .map(|(_, v)| *v)
                    .collect::<Vec<_>>()
                    .join(" | "),
                "blue",
            )
        },
    );

    let mut implementations: Vec<String> = classifiers
        .iter()
        .filter_map(|c| c.strip_prefix("Programming Language :: Python :: Implementation :: "))
        .map(str::to_ascii_lowercase)
        .collect();
    if implementations.is_empty() {
        if let Some(latest) = &latest {
            implementations = latest
                .wheels()
                .filter_map(|wheel| python_tag(&wheel.filename))
                .flat_map(|tag| tag.split('.'))
                .filter_map(|tag| match tag.get(..2) {
                    Some("cp") => Some("cpython".to_owned()),
                    Some("pp") => Some("pypy".to_owned()),
                    Some("ip") => Some("ironpython".to_owned()),
                    Some("jy") => Some("jython".to_owned()),
                    _ => None,
                })
                .collect();
        }
    }
    implementations.sort();
    implementations.dedup();
    if implementations.is_empty() {
        // What a project that says nothing runs on (the badge services say the same).
        implementations.push("cpython".to_owned());
    }
    facts.insert(
        "implementation".to_owned(),
        Fact::new(implementations.join(" | "), "blue"),
    );

    facts.insert(
        "status".to_owned(),
        if metadata.is_none() {
            unknown()
        } else {
            classifiers
                .iter()
                .find_map(|c| c.strip_prefix("Development Status :: "))
                .map_or_else(Fact::missing, status_fact)
        },
    );
    facts
}

/// `License-Expression`, else a one-line `License`, else the `License ::`
/// classifiers (their last part, with a parenthesised short name preferred).
fn licenses(metadata: &CoreMetadataFields, classifiers: &[&str]) -> Vec<String> {
    if let Some(expression) = metadata.get("License-Expression").filter(|e| !e.is_empty()) {
        return vec![expression.to_owned()];
    }
    if let Some(license) = metadata
        .get("License")
        .filter(|l| !l.is_empty() && !l.contains('\n') && l.len() <= 64 && *l != "UNKNOWN")
    {
        return vec![license.to_owned()];
    }
    let mut found: Vec<String> = classifiers
        .iter()
        .filter_map(|c| c.strip_prefix("License :: "))
        .map(|c| c.strip_prefix("OSI Approved :: ").unwrap_or(c))
        .filter(|c| *c != "OSI Approved")
        .map(|c| {
            let last = c.rsplit(" :: ").next().unwrap_or(c);
            if let Some(short) = last
                .rsplit_once('(')
                .and_then(|(_, rest)| rest.strip_suffix(')'))
            {
                short.to_owned()
            } else {
                last.trim_end_matches(" License")
                    .trim_end_matches(" Software")
                    .to_owned()
            }
        })
        .collect();
    found.dedup();
    found
}

fn status_fact(status: &str) -> Fact {
    // "5 - Production/Stable"
    let name = status.split_once(" - ").map_or(status, |(_, name)| name);
    let (message, color) = match name {
        "Planning" => ("planning", "red"),
        "Pre-Alpha" => ("pre-alpha", "red"),
        "Alpha" => ("alpha", "red"),
        "Beta" => ("beta", "yellow"),
        "Production/Stable" => ("stable", "brightgreen"),
        "Mature" => ("mature", "brightgreen"),
        "Inactive" => ("inactive", "red"),
        _ => return Fact::new(name.to_ascii_lowercase(), "lightgrey"),
    };
    Fact::new(message, color)
}

/// A wheel's python tag (`cp311`, `py2.py3`).
fn python_tag(filename: &str) -> Option<&str> {
    let parts: Vec<&str> = filename.strip_suffix(".whl")?.split('-').collect();
    (parts.len() >= 5).then(|| parts[parts.len() - 3])
}

impl PypiRepo {
    /// The facts of every badge of `stage` for `project`, in one lookup.
    pub(super) async fn facts(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        project: &str,
        stage: Stage,
    ) -> Result<Facts, RequestError> {
        let project = Self::checked_project(project)?;
        let index = self.lookup_project(engine, &project).await?;
        if !index.document.found {
            return Err(RequestError::NotFound(format!(
                "project `{project}` does not exist upstream of repository `{}`",
                self.name
            )));
        }
        let page = super::source::page_of(&index.document);
        match stage {
            Stage::Index => Ok(index_facts(&page)),
            Stage::Release => {
                let text = match Latest::of(&page) {
                    Some(latest) => self.core_metadata(engine, blobs, &project, &latest).await?,
                    None => None,
                };
                let fields = text.as_deref().map(CoreMetadataFields::parse);
                Ok(release_facts(&page, fields.as_ref()))
            }
        }
    }

    /// The latest release's core metadata: its PEP 658 file when the index offers
    /// one, else the `METADATA` of one of its wheels; `None` when it has neither
    /// (an sdist's metadata may be dynamic, and nothing is ever built).
    async fn core_metadata(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        project: &str,
        latest: &Latest<'_>,
    ) -> Result<Option<String>, RequestError> {
        let with_metadata = latest
            .files
            .iter()
            .find(|f| matches!(f.core_metadata, CoreMetadata::Available(_)));
        if let Some(file) = with_metadata {
            let name = format!("{}{METADATA_SUFFIX}", file.filename);
            let bytes = self
                .file_bytes(engine, blobs, project, &name, MAX_METADATA_FILE)
                .await?;
            return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
        }
        let Some(wheel) = latest
            .wheels()
            .find(|w| w.size.is_none_or(|s| s <= MAX_WHEEL))
        else {
            return Ok(None);
        };
        let bytes = self
            .file_bytes(engine, blobs, project, &wheel.filename, MAX_WHEEL)
            .await?;
        match tokio::task::spawn_blocking(move || {
            core_metadata::from_wheel(std::io::Cursor::new(bytes))
        })
        .await
        {
            Ok(Ok(text)) => Ok(Some(text)),
            Ok(Err(reason)) => {
                tracing::warn!(wheel = %wheel.filename, %reason, "no core metadata in the wheel");
                Ok(None)
            }
            Err(panic) => std::panic::resume_unwind(panic.into_panic()),
        }
    }

    pub(super) async fn file_bytes(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        project: &str,
        filename: &str,
        limit: u64,
    ) -> Result<bytes::Bytes, RequestError> {
        match self.file(engine, project, filename).await? {
            Reply::Artifact(artifact) => {
                artifact_bytes(artifact.lookup, blobs, limit, filename).await
            }
            _ => unreachable!("a file request answers with an artifact"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn file(filename: &str, yanked: bool) -> DistFile {
        DistFile {
            filename: filename.to_owned(),
            url: format!("http://127.0.0.1/{filename}"),
            hashes: BTreeMap::new(),
            requires_python: Some(">=3.8".to_owned()),
            yanked: if yanked {
                Yanked::Yes(None)
            } else {
                Yanked::No
            },
            core_metadata: CoreMetadata::Absent,
            gpg_sig: None,
            size: None,
            upload_time: Some(format!("2024-0{}-01T00:00:00Z", filename.len() % 9 + 1)),
        }
    }

    fn page(files: Vec<DistFile>) -> ProjectPage {
        ProjectPage {
            name: "demo".to_owned(),
            api_version: "1.1".to_owned(),
            files,
            versions: None,
        }
    }

    #[test]
    fn latest_skips_yanked_and_pre_releases_by_pep_440_order() {
        let page = page(vec![
            file("demo-1.9.0-py3-none-any.whl", false),
            file("demo-1.10.0.tar.gz", false),
            file("demo-1.11.0-py3-none-any.whl", true),
            file("demo-2.0.0rc1-py3-none-any.whl", false),
        ]);
        let facts = index_facts(&page);
        assert_eq!(facts["version"], Fact::new("v1.10.0", "blue"));
        assert_eq!(facts["wheel"], Fact::new("no", "red"));
        assert_eq!(facts["format"], Fact::new("source", "orange"));
        assert_eq!(facts["requires-python"], Fact::new(">=3.8", "blue"));

        let only_pre = page_of_pre();
        assert_eq!(
            index_facts(&only_pre)["version"],
            Fact::new("v2.0.0rc1", "orange")
        );
    }

    fn page_of_pre() -> ProjectPage {
        page(vec![file("demo-2.0.0rc1-py3-none-any.whl", false)])
    }

    #[test]
    fn licence_precedence_expression_then_license_then_classifiers() {
        let page = page(vec![file("demo-1.0-cp311-cp311-linux_x86_64.whl", false)]);
        let facts_of = |text: &str| {
            release_facts(&page, Some(&CoreMetadataFields::parse(text)))["license"].clone()
        };
        let classifiers = "Classifier: License :: OSI Approved :: MIT License\n";
        assert_eq!(
            facts_of(&format!(
                "License-Expression: Apache-2.0\nLicense: BSD\n{classifiers}"
            ))
            .message,
            "Apache-2.0"
        );
        assert_eq!(
            facts_of(&format!("License: BSD-3-Clause\n{classifiers}")).message,
            "BSD-3-Clause"
        );
        assert_eq!(
            facts_of(&format!(
                "License: long\n  text of a licence\n{classifiers}"
            ))
            .message,
            "MIT"
        );
        assert_eq!(
            facts_of(
                "Classifier: License :: OSI Approved :: GNU General Public License v3 (GPLv3)\n"
            ),
            Fact::new("GPLv3", "orange")
        );
        assert_eq!(facts_of("Name: demo\n"), Fact::new("missing", "red"));
        assert_eq!(
            release_facts(&page, None)["license"],
            Fact::new("unknown", "lightgrey")
        );
    }

    #[test]
    fn classifiers_give_versions_implementations_and_status() {
        let page = page(vec![file(
            "demo-1.0-pp310-pypy310_pp73-linux_x86_64.whl",
            false,
        )]);
        let text = "Classifier: Programming Language :: Python :: 3.10\nClassifier: Programming Language :: Python :: 3\nClassifier: Programming Language :: Python :: 3.9\nClassifier: Development Status :: 4 - Beta\n";
        let facts = release_facts(&page, Some(&CoreMetadataFields::parse(text)));
        assert_eq!(facts["python-versions"].message, "3.9 | 3.10");
        assert_eq!(facts["status"], Fact::new("beta", "yellow"));
        // No implementation classifier: the wheel's tag tells.
        assert_eq!(facts["implementation"].message, "pypy");
    }
}
