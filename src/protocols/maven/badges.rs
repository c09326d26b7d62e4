//! The facts behind a Maven artifact's badges (`groupId:artifactId`): the index stage
//! reads its `maven-metadata.xml`; the release stage reads the released version's
//! POM, following `<parent>` POMs until one names a licence.

use std::sync::Arc;

use super::layout;
use super::source::DocumentCheck;
use super::xml_texts::XmlTexts;
use super::MavenRepo;
use crate::engine::CacheEngine;
use crate::protocols::badges::{
    license_fact, version_fact, BadgeKind, Facts, Stage, SLOW_TTL, VERSION_TTL,
};
use crate::protocols::contents::artifact_bytes;
use crate::protocols::RequestError;
use crate::storage::BlobStore;

/// The badges of a Maven repository.
pub const KINDS: &[BadgeKind] = &[
    BadgeKind {
        name: "version",
        label: "maven",
        stage: Stage::Index,
        ttl: VERSION_TTL,
    },
    BadgeKind {
        name: "license",
        label: "license",
        stage: Stage::Release,
        ttl: SLOW_TTL,
    },
];

/// Parents followed looking for a licence (real chains are two or three deep).
const MAX_PARENTS: usize = 8;
/// Largest POM read.
const MAX_POM: u64 = 4 * 1024 * 1024;

/// The version `maven-metadata.xml` says is released: `<release>`, else `<latest>`,
/// else the last listed.
#[must_use]
pub fn released_version(metadata: &XmlTexts) -> Option<String> {
    metadata
        .first("metadata/versioning/release")
        .or_else(|| metadata.first("metadata/versioning/latest"))
        .or_else(|| metadata.all("metadata/versioning/versions/version").last())
        .map(str::to_owned)
}

/// Whether a Maven version is a snapshot or a milestone, alpha, beta or candidate.
#[must_use]
pub fn is_pre_release(version: &str) -> bool {
    let lower = version.to_ascii_lowercase();
    lower.ends_with("-snapshot")
        || ["alpha", "beta", "-rc", ".rc", "-cr", "-m"]
            .iter()
            .any(|marker| {
                lower.match_indices(marker).any(|(at, m)| {
                    // `-m1`, `-rc2`: a marker followed by a digit, the end, or a separator.
                    lower[at + m.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| c.is_ascii_digit() || c == '-' || c == '.')
                })
            })
}

/// The POM's coordinates: group, artifact, version.
struct Coordinates {
    group: String,
    artifact: String,
    version: String,
}

impl Coordinates {
    fn pom_path(&self) -> String {
        format!(
            "{}/{artifact}/{version}/{artifact}-{version}.pom",
            self.group.replace('.', "/"),
            artifact = self.artifact,
            version = self.version
        )
    }
}

impl MavenRepo {
    /// The facts of every badge of `stage` for `group:artifact`, in one lookup.
    pub(super) async fn facts(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        coordinates: &str,
        stage: Stage,
    ) -> Result<Facts, RequestError> {
        let path = layout::metadata_path_of(coordinates).map_err(RequestError::BadRequest)?;
        let lookup = self
            .lookup_document(engine, &path, DocumentCheck::MetadataXml)
            .await?;
        if !lookup.document.found {
            return Err(RequestError::NotFound(format!(
                "`{coordinates}` does not exist upstream of repository `{}`",
                self.name
            )));
        }
        let metadata = XmlTexts::parse(&lookup.document.canonical)
            .map_err(|e| RequestError::NotFound(format!("`{path}`: {e}")))?;
        let version = released_version(&metadata);
        let mut facts = Facts::new();
        match stage {
            Stage::Index => {
                let shown = version.as_deref().map(|v| (v, is_pre_release(v)));
                facts.insert("version".to_owned(), version_fact(shown));
            }
            Stage::Release => {
                let licenses = match version {
                    Some(version) => {
                        let (group, artifact) = coordinates
                            .split_once(':')
                            .expect("metadata_path_of checked the coordinates");
                        self.licenses(
                            engine,
                            blobs,
                            Coordinates {
                                group: group.to_owned(),
                                artifact: artifact.to_owned(),
                                version,
                            },
                        )
                        .await?
                    }
                    None => Vec::new(),
                };
                facts.insert("license".to_owned(), license_fact(&licenses));
            }
        }
        Ok(facts)
    }

    /// The licences a POM names, or the nearest parent's.
    async fn licenses(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        mut pom: Coordinates,
    ) -> Result<Vec<String>, RequestError> {
        for _ in 0..=MAX_PARENTS {
            let path = pom.pom_path();
            let lookup = self
                .immutable(engine, &path, layout::content_type(&path))
                .await?;
            let bytes = artifact_bytes(lookup, blobs, MAX_POM, &path).await?;
            let texts = XmlTexts::parse(&bytes)
                .map_err(|e| RequestError::NotFound(format!("`{path}`: {e}")))?;
            let names: Vec<String> = texts
                .all("project/licenses/license/name")
                .map(str::to_owned)
                .collect();
            if !names.is_empty() {
                return Ok(names);
            }
            let parent = |field: &str| {
                texts
                    .first(&format!("project/parent/{field}"))
                    .map(str::to_owned)
            };
            match (parent("groupId"), parent("artifactId"), parent("version")) {
                (Some(group), Some(artifact), Some(version)) => {
                    pom = Coordinates {
                        group,
                        artifact,
                        version,
                    };
                }
                _ => return Ok(Vec::new()),
            }
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_then_latest_then_last_listed() {
        let parse = |xml: &str| XmlTexts::parse(xml.as_bytes()).expect("test input");
        let both = parse("<metadata><versioning><latest>2.0-SNAPSHOT</latest><release>1.5</release><versions><version>1.0</version></versions></versioning></metadata>");
        assert_eq!(released_version(&both).as_deref(), Some("1.5"));
        let listed = parse("<metadata><versioning><versions><version>1.0</version><version>1.1</version></versions></versioning></metadata>");
        assert_eq!(released_version(&listed).as_deref(), Some("1.1"));
        assert_eq!(released_version(&parse("<metadata/>")), None);
    }

    #[test]
    fn pre_releases_by_maven_convention() {
        for pre in [
            "1.0-SNAPSHOT",
            "2.0.0-M1",
            "3.0-rc2",
            "1.0-beta",
            "1.0.0-alpha-1",
        ] {
            assert!(is_pre_release(pre), "{pre}");
        }
        for release in ["1.0", "2.17.1", "1.0-jre", "4.0.1-android", "1.0-mock"] {
            assert!(!is_pre_release(release), "{release}");
        }
    }
}
