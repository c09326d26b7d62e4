//! Dependencies of `.crate` files, from their line in the cached index file: `deps`
//! (name, requirement, features, optional, default features, target, kind, rename)
//! and `features`/`features2` as attributes.

use serde_json::{json, Value};

use super::{index, CargoRepo};
use crate::engine::{CacheEngine, CacheKey, Category, Published};
use crate::protocols::dependencies::{Dependency, Extraction, ExtractionStatus, EXTRACTOR_VERSION};

/// The dependencies and attributes of one index line.
#[must_use]
pub fn from_index_line(line: &Value) -> (Vec<Dependency>, Value) {
    let dependencies = line
        .get("deps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|dep| {
            let declared = dep.get("name")?.as_str()?;
            // `package` is the real crate when the dependency is renamed.
            let real = dep.get("package").and_then(Value::as_str);
            Some(Dependency {
                name: real.unwrap_or(declared).to_owned(),
                requirement: dep.get("req").and_then(Value::as_str).unwrap_or("*").to_owned(),
                kind: dep
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("normal")
                    .to_owned(),
                marker: dep.get("target").and_then(Value::as_str).map(str::to_owned),
                optional: dep.get("optional").and_then(Value::as_bool).unwrap_or(false),
                details: json!({
                    "features": dep.get("features").cloned().unwrap_or_else(|| json!([])),
                    "default_features": dep.get("default_features").and_then(Value::as_bool).unwrap_or(true),
                    "rename": real.map(|_| declared),
                }),
            })
        })
        .collect();
    let mut features = line.get("features").cloned().unwrap_or_else(|| json!({}));
    if let (Some(all), Some(more)) = (
        features.as_object_mut(),
        line.get("features2").and_then(Value::as_object),
    ) {
        all.extend(more.clone());
    }
    let attributes = json!({
        "features": features,
        "rust_version": line.get("rust_version"),
        "links": line.get("links"),
        "yanked": line.get("yanked").and_then(Value::as_bool).unwrap_or(false),
    });
    (dependencies, attributes)
}

impl CargoRepo {
    pub(super) async fn extract(
        &self,
        engine: &CacheEngine,
        published: &Published,
    ) -> Option<Extraction> {
        let prefix = CacheKey::repo_prefix(Category::Artifact, index::FORMAT, &self.name);
        let (name, version) = published
            .key
            .as_str()
            .strip_prefix(&prefix)?
            .split_once('/')?;
        let lookup = self.index_lookup(engine, name).await.ok()?;
        if !lookup.document.found {
            return None;
        }
        let text = std::str::from_utf8(&lookup.document.canonical).ok()?;
        let line: Value = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line.get("vers").and_then(Value::as_str) == Some(version))?;
        let crate_name = line
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_owned();
        let (dependencies, attributes) = from_index_line(&line);
        Some(Extraction {
            digest: published.digest.as_str().to_owned(),
            repo: self.name.clone(),
            format: index::FORMAT.to_owned(),
            project: crate_name.clone(),
            version: version.to_owned(),
            filename: format!("{crate_name}-{version}.crate"),
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
    fn deps_with_renames_targets_kinds_and_features() {
        let line = json!({
            "name": "demo", "vers": "1.0.0", "cksum": "0",
            "deps": [
                {"name": "serde", "req": "^1.0", "features": ["derive"], "optional": false, "default_features": true, "target": null, "kind": "normal"},
                {"name": "winapi", "req": "^0.3", "features": [], "optional": false, "default_features": true, "target": "cfg(windows)", "kind": "normal"},
                {"name": "old_rand", "package": "rand", "req": "^0.7", "features": [], "optional": true, "default_features": false, "target": null, "kind": "normal"},
                {"name": "cc", "req": "^1", "kind": "build"},
                {"name": "proptest", "req": "^1", "kind": "dev"}
            ],
            "features": {"default": ["std"], "std": []},
            "features2": {"rng": ["dep:old_rand"]},
            "rust_version": "1.70"
        });
        let (dependencies, attributes) = from_index_line(&line);
        let summary: Vec<(&str, &str, &str, Option<&str>, bool)> = dependencies
            .iter()
            .map(|d| {
                (
                    d.name.as_str(),
                    d.requirement.as_str(),
                    d.kind.as_str(),
                    d.marker.as_deref(),
                    d.optional,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("serde", "^1.0", "normal", None, false),
                ("winapi", "^0.3", "normal", Some("cfg(windows)"), false),
                ("rand", "^0.7", "normal", None, true),
                ("cc", "^1", "build", None, false),
                ("proptest", "^1", "dev", None, false),
            ]
        );
        assert_eq!(dependencies[0].details["features"][0], "derive");
        assert_eq!(dependencies[2].details["rename"], "old_rand");
        assert_eq!(dependencies[2].details["default_features"], false);
        assert_eq!(attributes["features"]["rng"][0], "dep:old_rand");
        assert_eq!(attributes["rust_version"], "1.70");
    }
}
