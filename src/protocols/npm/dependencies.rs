//! Dependencies of npm tarballs, from their version document in the cached
//! packument: `dependencies`, `optionalDependencies`, `peerDependencies` (with
//! `peerDependenciesMeta`), and `bundleDependencies`, `os`, `cpu`, `engines` as
//! attributes.

use serde_json::{json, Map, Value};

use super::{found_packument, keys, NpmRepo};
use crate::engine::{CacheEngine, CacheKey, Category, Published};
use crate::protocols::dependencies::{Dependency, Extraction, ExtractionStatus, EXTRACTOR_VERSION};

/// The dependencies and attributes of one version document.
#[must_use]
pub fn from_version(document: &Value) -> (Vec<Dependency>, Value) {
    let table = |field: &str| document.get(field).and_then(Value::as_object);
    let optional = table("optionalDependencies");
    let peer_meta = table("peerDependenciesMeta");
    let mut dependencies = Vec::new();
    let mut push =
        |entries: Option<&Map<String, Value>>, kind: &str, skip: Option<&Map<String, Value>>| {
            for (name, range) in entries.into_iter().flatten() {
                // npm lists an optional dependency in `dependencies` too; it is optional.
                if skip.is_some_and(|skip| skip.contains_key(name)) {
                    continue;
                }
                let optional = match kind {
                    "optional" => true,
                    "peer" => peer_meta
                        .and_then(|meta| meta.get(name))
                        .and_then(|meta| meta.get("optional"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    _ => false,
                };
                dependencies.push(Dependency {
                    name: name.clone(),
                    requirement: range.as_str().unwrap_or_default().to_owned(),
                    kind: kind.to_owned(),
                    marker: None,
                    optional,
                    details: Value::Null,
                });
            }
        };
    push(table("dependencies"), "runtime", optional);
    push(optional, "optional", None);
    push(table("peerDependencies"), "peer", None);
    let bundled = document
        .get("bundleDependencies")
        .or_else(|| document.get("bundledDependencies"))
        .cloned()
        .unwrap_or(Value::Null);
    let attributes = json!({
        "os": document.get("os"),
        "cpu": document.get("cpu"),
        "engines": document.get("engines"),
        "bundle_dependencies": bundled,
    });
    (dependencies, attributes)
}

impl NpmRepo {
    pub(super) async fn extract(
        &self,
        engine: &CacheEngine,
        published: &Published,
    ) -> Option<Extraction> {
        let prefix = CacheKey::repo_prefix(Category::Artifact, keys::FORMAT, &self.name);
        let (name, filename) = published
            .key
            .as_str()
            .strip_prefix(&prefix)?
            .split_once("/-/")?;
        let lookup = self.lookup(engine, name).await.ok()?;
        let packument = found_packument(&lookup, name).ok()?;
        let (version, document) =
            packument
                .get("versions")?
                .as_object()?
                .iter()
                .find(|(_, document)| {
                    document
                        .pointer("/dist/tarball")
                        .and_then(Value::as_str)
                        .is_some_and(|url| url.rsplit('/').next() == Some(filename))
                })?;
        let (dependencies, attributes) = from_version(document);
        Some(Extraction {
            digest: published.digest.as_str().to_owned(),
            repo: self.name.clone(),
            format: keys::FORMAT.to_owned(),
            project: name.to_owned(),
            version: version.clone(),
            filename: filename.to_owned(),
            status: ExtractionStatus::Complete,
            reason: None,
            extractor_version: EXTRACTOR_VERSION,
            attributes,
            dependencies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_optional_and_peer_metadata() {
        let document = json!({
            "dependencies": {"a": "^1.0.0", "fsevents": "^2.3.0"},
            "optionalDependencies": {"fsevents": "^2.3.0"},
            "peerDependencies": {"react": ">=17", "react-dom": ">=17"},
            "peerDependenciesMeta": {"react-dom": {"optional": true}},
            "os": ["darwin"],
            "bundleDependencies": ["a"]
        });
        let (dependencies, attributes) = from_version(&document);
        let summary: Vec<(&str, &str, &str, bool)> = dependencies
            .iter()
            .map(|d| {
                (
                    d.name.as_str(),
                    d.requirement.as_str(),
                    d.kind.as_str(),
                    d.optional,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a", "^1.0.0", "runtime", false),
                ("fsevents", "^2.3.0", "optional", true),
                ("react", ">=17", "peer", false),
                ("react-dom", ">=17", "peer", true),
            ]
        );
        assert_eq!(attributes["os"][0], "darwin");
        assert_eq!(attributes["bundle_dependencies"][0], "a");
    }
}
