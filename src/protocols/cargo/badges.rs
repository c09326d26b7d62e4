//! The facts behind a crate's badges: the index stage reads its index file (highest
//! version that is not yanked, its `rust_version`); the release stage reads that
//! version's `.crate` for the licence in its `Cargo.toml`.

use std::io::Read;
use std::sync::Arc;

use super::index::IndexEntry;
use super::CargoRepo;
use crate::engine::CacheEngine;
use crate::protocols::badges::{
    license_fact, version_fact, BadgeKind, Fact, Facts, Stage, SLOW_TTL, VERSION_TTL,
};
use crate::protocols::contents::artifact_bytes;
use crate::protocols::{Reply, RequestError};
use crate::storage::BlobStore;

/// The badges of a cargo repository.
pub const KINDS: &[BadgeKind] = &[
    BadgeKind {
        name: "version",
        label: "crate",
        stage: Stage::Index,
        ttl: VERSION_TTL,
    },
    BadgeKind {
        name: "msrv",
        label: "msrv",
        stage: Stage::Index,
        ttl: SLOW_TTL,
    },
    BadgeKind {
        name: "license",
        label: "license",
        stage: Stage::Release,
        ttl: SLOW_TTL,
    },
];

/// Largest `.crate` opened for its manifest.
const MAX_CRATE: u64 = 64 * 1024 * 1024;
/// Bound on the bytes unpacked while looking for the manifest (a gzip bomb stops here).
const MAX_UNPACKED: u64 = 512 * 1024 * 1024;

/// The highest version that is not yanked, skipping pre-releases unless there is
/// nothing else.
#[must_use]
pub fn latest(entries: &[IndexEntry]) -> Option<(&IndexEntry, semver::Version)> {
    let mut versions: Vec<(&IndexEntry, semver::Version)> = entries
        .iter()
        .filter(|entry| !entry.yanked)
        .filter_map(|entry| Some((entry, semver::Version::parse(&entry.version).ok()?)))
        .collect();
    versions.sort_by(|a, b| a.1.cmp(&b.1));
    let stable = versions.iter().rposition(|(_, v)| v.pre.is_empty());
    let at = stable.or_else(|| versions.len().checked_sub(1))?;
    Some(versions.swap_remove(at))
}

/// Index-stage facts.
#[must_use]
pub fn index_facts(entries: &[IndexEntry]) -> Facts {
    let latest = latest(entries);
    let mut facts = Facts::new();
    let shown = latest
        .as_ref()
        .map(|(entry, v)| (entry.version.as_str(), !v.pre.is_empty()));
    facts.insert("version".to_owned(), version_fact(shown));
    facts.insert(
        "msrv".to_owned(),
        latest
            .and_then(|(entry, _)| entry.rust_version.as_deref())
            .map_or_else(Fact::missing, |msrv| Fact::new(msrv, "blue")),
    );
    facts
}

/// The licence a `.crate`'s `Cargo.toml` declares (`license`, or `license-file`).
///
/// # Errors
/// Not a gzipped tar, no manifest, or a manifest that does not parse.
pub fn manifest_licenses(
    crate_file: &[u8],
    name: &str,
    version: &str,
) -> Result<Vec<String>, String> {
    let wanted = format!("{name}-{version}/Cargo.toml");
    let unpacked = flate2::read::GzDecoder::new(crate_file).take(MAX_UNPACKED);
    let mut archive = tar::Archive::new(unpacked);
    for entry in archive
        .entries()
        .map_err(|e| format!("not a .crate: {e}"))?
    {
        let entry = entry.map_err(|e| format!("not a .crate: {e}"))?;
        let is_manifest = entry.path().is_ok_and(|path| {
            path.to_str()
                .is_some_and(|p| p.eq_ignore_ascii_case(&wanted))
        });
        if !is_manifest {
            continue;
        }
        let mut text = String::new();
        entry
            .take(1024 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| format!("`{wanted}`: {e}"))?;
        let manifest: toml::Table =
            toml::from_str(&text).map_err(|e| format!("`{wanted}`: {e}"))?;
        let package = manifest.get("package").and_then(toml::Value::as_table);
        if let Some(license) = package
            .and_then(|p| p.get("license"))
            .and_then(toml::Value::as_str)
        {
            return Ok(vec![license.to_owned()]);
        }
        if package.is_some_and(|p| p.contains_key("license-file")) {
            return Ok(vec!["non-standard".to_owned()]);
        }
        return Ok(Vec::new());
    }
    Err(format!("the .crate has no `{wanted}`"))
}

impl CargoRepo {
    /// The facts of every badge of `stage` for the crate `name`, in one lookup.
    pub(super) async fn facts(
        &self,
        engine: &CacheEngine,
        blobs: &Arc<dyn BlobStore>,
        name: &str,
        stage: Stage,
    ) -> Result<Facts, RequestError> {
        let entries = self.entries(engine, name).await?;
        match stage {
            Stage::Index => Ok(index_facts(&entries)),
            Stage::Release => {
                let mut facts = Facts::new();
                let Some((entry, _)) = latest(&entries) else {
                    facts.insert("license".to_owned(), Fact::missing());
                    return Ok(facts);
                };
                let (name, version) = (entry.name.clone(), entry.version.clone());
                let Reply::Artifact(artifact) = self.download(engine, &name, &version).await?
                else {
                    unreachable!("a download answers with an artifact");
                };
                let bytes = artifact_bytes(
                    artifact.lookup,
                    blobs,
                    MAX_CRATE,
                    &format!("{name}-{version}.crate"),
                )
                .await?;
                let found =
                    tokio::task::spawn_blocking(move || manifest_licenses(&bytes, &name, &version))
                        .await
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
                let fact = match found {
                    Ok(licenses) if licenses == ["non-standard"] => {
                        Fact::new("non-standard", "lightgrey")
                    }
                    Ok(licenses) => license_fact(&licenses),
                    Err(reason) => {
                        tracing::warn!(crate_name = %entry.name, %reason, "no licence read from the .crate");
                        Fact::new("unknown", "lightgrey")
                    }
                };
                facts.insert("license".to_owned(), fact);
                Ok(facts)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, yanked: bool, rust_version: Option<&str>) -> IndexEntry {
        IndexEntry {
            name: "demo".to_owned(),
            version: version.to_owned(),
            checksum: "0".repeat(64),
            yanked,
            rust_version: rust_version.map(str::to_owned),
        }
    }

    #[test]
    fn highest_not_yanked_by_semver_order() {
        let entries = [
            entry("0.9.0", false, None),
            entry("0.10.0", false, Some("1.70")),
            entry("0.11.0", true, Some("1.80")),
            entry("1.0.0-rc.1", false, None),
        ];
        let facts = index_facts(&entries);
        assert_eq!(facts["version"], Fact::new("v0.10.0", "blue"));
        assert_eq!(facts["msrv"], Fact::new("1.70", "blue"));
        let only_pre = [entry("1.0.0-rc.1", false, None)];
        assert_eq!(
            index_facts(&only_pre)["version"],
            Fact::new("v1.0.0-rc.1", "orange")
        );
        assert_eq!(index_facts(&only_pre)["msrv"], Fact::missing());
    }

    #[test]
    fn the_manifest_licence_is_read_from_the_crate() {
        let mut tar = tar::Builder::new(Vec::new());
        let manifest =
            b"[package]\nname = \"demo\"\nversion = \"1.0.0\"\nlicense = \"MIT OR Apache-2.0\"\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_cksum();
        tar.append_data(&mut header, "demo-1.0.0/Cargo.toml", &manifest[..])
            .expect("test input");
        let tar = tar.into_inner().expect("test input");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).expect("test input");
        let crate_file = gz.finish().expect("test input");
        assert_eq!(
            manifest_licenses(&crate_file, "demo", "1.0.0").expect("test input"),
            ["MIT OR Apache-2.0"]
        );
        assert!(manifest_licenses(&crate_file, "demo", "2.0.0").is_err());
        assert!(manifest_licenses(b"not gzip", "demo", "1.0.0").is_err());
    }
}
