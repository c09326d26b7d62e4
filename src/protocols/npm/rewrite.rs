//! Rendering packuments for clients: the full document and the abbreviated install
//! form (`application/vnd.npm.install-v1+json`), derived here when the upstream only
//! gives the full one, with every `dist.tarball` pointing at granary.
//!
//! npm needs absolute tarball URLs, but a cached document is shared by every client,
//! so it must not contain one client's `Host`. Tarball URLs are rendered as
//! `BASE_MARKER` + path; the server puts the base URL in their place per response
//! (`Rendition::parts`), without copying the document.

use serde_json::{Map, Value};

use crate::engine::index::BASE_MARKER_TEXT;

/// Fields of a version that the abbreviated form keeps (npm's registry API).
const ABBREVIATED_VERSION_FIELDS: &[&str] = &[
    "name",
    "version",
    "dependencies",
    "optionalDependencies",
    "devDependencies",
    "bundleDependencies",
    "bundledDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "acceptDependencies",
    "bin",
    "directories",
    "dist",
    "engines",
    "os",
    "cpu",
    "deprecated",
    "funding",
    "_hasShrinkwrap",
    "hasInstallScript",
];

/// Our path for a version's tarball.
#[must_use]
pub fn tarball_path(repo: &str, name: &str, filename: &str) -> String {
    format!("/{repo}/{name}/-/{filename}")
}

/// The file name of an upstream tarball URL.
#[must_use]
pub fn tarball_filename(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next()?;
    let name = path.rsplit('/').next()?;
    (!name.is_empty()).then_some(name)
}

fn rewrite_dist(version: &mut Value, repo: &str, name: &str) {
    let Some(dist) = version.get_mut("dist").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(filename) = dist
        .get("tarball")
        .and_then(Value::as_str)
        .and_then(tarball_filename)
    else {
        return;
    };
    let ours = format!("{BASE_MARKER_TEXT}{}", tarball_path(repo, name, filename));
    dist.insert("tarball".to_owned(), Value::String(ours));
}

/// The full packument with tarball URLs rewritten.
#[must_use]
pub fn full(packument: &Value, repo: &str, name: &str) -> Vec<u8> {
    let mut document = packument.clone();
    if let Some(versions) = document.get_mut("versions").and_then(Value::as_object_mut) {
        for version in versions.values_mut() {
            rewrite_dist(version, repo, name);
        }
    }
    serde_json::to_vec(&document).expect("serializing a JSON value cannot fail")
}

/// The abbreviated install form, derived from the full packument.
#[must_use]
pub fn abbreviated(packument: &Value, repo: &str, name: &str) -> Vec<u8> {
    let mut document = Map::new();
    document.insert(
        "name".to_owned(),
        packument
            .get("name")
            .cloned()
            .unwrap_or(Value::String(name.to_owned())),
    );
    let modified = packument
        .get("modified")
        .or_else(|| packument.pointer("/time/modified"))
        .cloned()
        .unwrap_or(Value::Null);
    if !modified.is_null() {
        document.insert("modified".to_owned(), modified);
    }
    document.insert(
        "dist-tags".to_owned(),
        packument
            .get("dist-tags")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
    );
    let mut versions = Map::new();
    if let Some(all) = packument.get("versions").and_then(Value::as_object) {
        for (number, version) in all {
            let mut slim = Map::new();
            for field in ABBREVIATED_VERSION_FIELDS {
                if let Some(value) = version.get(*field) {
                    slim.insert((*field).to_owned(), value.clone());
                }
            }
            // npm derives this from lifecycle scripts when the registry does not say.
            if !slim.contains_key("hasInstallScript") {
                let scripts = version.get("scripts").and_then(Value::as_object);
                if scripts.is_some_and(|s| {
                    ["preinstall", "install", "postinstall"]
                        .iter()
                        .any(|k| s.contains_key(*k))
                }) {
                    slim.insert("hasInstallScript".to_owned(), Value::Bool(true));
                }
            }
            let mut slim = Value::Object(slim);
            rewrite_dist(&mut slim, repo, name);
            versions.insert(number.clone(), slim);
        }
    }
    document.insert("versions".to_owned(), Value::Object(versions));
    serde_json::to_vec(&Value::Object(document)).expect("serializing a JSON value cannot fail")
}

/// One version's document (`/<name>/<version>`), tarball rewritten.
#[must_use]
pub fn version(packument: &Value, version: &str, repo: &str, name: &str) -> Option<Vec<u8>> {
    let mut document = packument.get("versions")?.get(version)?.clone();
    rewrite_dist(&mut document, repo, name);
    Some(serde_json::to_vec(&document).expect("serializing a JSON value cannot fail"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        serde_json::json!({
            "name": "@granary/core",
            "dist-tags": {"latest": "1.1.0", "next": "2.0.0-beta.1"},
            "time": {"modified": "2024-01-01T00:00:00.000Z"},
            "readme": "a long readme that the abbreviated form drops",
            "versions": {
                "1.1.0": {
                    "name": "@granary/core", "version": "1.1.0", "description": "dropped",
                    "dependencies": {"dep-a": "^1.0.0"}, "scripts": {"postinstall": "node x.js"},
                    "deprecated": "use 2.x",
                    "dist": {"tarball": "http://upstream.test/@granary/core/-/core-1.1.0.tgz", "integrity": "sha512-abc", "shasum": "00"}
                }
            }
        })
    }

    #[test]
    fn abbreviated_keeps_install_fields_only_and_rewrites_tarballs() {
        let text = String::from_utf8(abbreviated(&sample(), "npm", "@granary/core")).expect("utf8");
        let parsed: Value = serde_json::from_str(&text).expect("json");
        let version = &parsed["versions"]["1.1.0"];
        assert_eq!(parsed["dist-tags"]["next"], "2.0.0-beta.1");
        assert_eq!(parsed["modified"], "2024-01-01T00:00:00.000Z");
        assert!(parsed.get("readme").is_none());
        assert!(version.get("description").is_none());
        assert!(version.get("scripts").is_none());
        assert_eq!(version["hasInstallScript"], true);
        assert_eq!(version["deprecated"], "use 2.x");
        assert_eq!(version["dist"]["integrity"], "sha512-abc");
        assert_eq!(
            version["dist"]["tarball"].as_str().expect("tarball"),
            format!(
                "{}/npm/@granary/core/-/core-1.1.0.tgz",
                "\u{0}granary-base\u{0}"
            )
        );
    }

    #[test]
    fn full_keeps_everything_but_the_tarball_host() {
        let parsed: Value =
            serde_json::from_slice(&full(&sample(), "npm", "@granary/core")).expect("json");
        assert_eq!(
            parsed["readme"],
            "a long readme that the abbreviated form drops"
        );
        assert!(!parsed.to_string().contains("upstream.test"));
        assert!(version(&sample(), "9.9.9", "npm", "@granary/core").is_none());
    }
}
