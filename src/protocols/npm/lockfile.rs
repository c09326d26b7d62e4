//! `package-lock.json` (and `npm-shrinkwrap.json`) for `granary warm`: every
//! registry package's abbreviated packument and tarball.

use std::collections::BTreeSet;

use serde_json::Value;

use super::keys::is_valid_package_name;
use super::rewrite::tarball_filename;
use super::ABBREVIATED_TYPE;
use crate::protocols::warm::WarmFetch;

/// # Errors
/// Another kind of file, or a lockfile that does not parse.
pub fn plan(file_name: &str, text: &str) -> Result<Vec<WarmFetch>, String> {
    if !matches!(file_name, "package-lock.json" | "npm-shrinkwrap.json") {
        return Err(format!(
            "`{file_name}`: an npm repository is warmed from package-lock.json or npm-shrinkwrap.json"
        ));
    }
    let lock: Value = serde_json::from_str(text).map_err(|e| format!("{file_name}: {e}"))?;
    let mut tarballs = BTreeSet::new();
    if let Some(packages) = lock.get("packages").and_then(Value::as_object) {
        // lockfileVersion 2 and 3: `node_modules/a/node_modules/@s/b` → `@s/b`.
        for (location, entry) in packages {
            let Some((_, installed_as)) = location.rsplit_once("node_modules/") else {
                continue; // the root project, or a workspace folder
            };
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(installed_as);
            collect(name, entry, &mut tarballs);
        }
    } else if let Some(dependencies) = lock.get("dependencies").and_then(Value::as_object) {
        // lockfileVersion 1: nested `dependencies`.
        let mut stack: Vec<(&String, &Value)> = dependencies.iter().collect();
        while let Some((name, entry)) = stack.pop() {
            collect(name, entry, &mut tarballs);
            if let Some(nested) = entry.get("dependencies").and_then(Value::as_object) {
                stack.extend(nested.iter());
            }
        }
    } else {
        return Err(format!(
            "{file_name}: neither `packages` nor `dependencies`"
        ));
    }
    let names: BTreeSet<&String> = tarballs.iter().map(|(name, _)| name).collect();
    let mut fetches: Vec<WarmFetch> = names
        .into_iter()
        .map(|name| WarmFetch::new(name.replacen('/', "%2f", 1)).accepting(ABBREVIATED_TYPE))
        .collect();
    fetches.extend(
        tarballs
            .iter()
            .map(|(name, filename)| WarmFetch::new(format!("{name}/-/{filename}"))),
    );
    Ok(fetches)
}

/// A package fetched from a registry: `resolved` is an http(s) URL of a `.tgz`
/// (git, file and link dependencies are not the registry's).
fn collect(name: &str, entry: &Value, tarballs: &mut BTreeSet<(String, String)>) {
    let resolved = entry.get("resolved").and_then(Value::as_str).unwrap_or("");
    if !(resolved.starts_with("http://") || resolved.starts_with("https://"))
        || entry.get("link").and_then(Value::as_bool) == Some(true)
        || !is_valid_package_name(name)
    {
        return;
    }
    if let Some(filename) = tarball_filename(resolved).filter(|f| f.ends_with(".tgz")) {
        tarballs.insert((name.to_owned(), filename.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::plan;

    #[test]
    fn packages_of_a_v3_lockfile_and_dependencies_of_a_v1() {
        let v3 = r#"{"lockfileVersion": 3, "packages": {
            "": {"name": "app", "dependencies": {"a": "^1"}},
            "node_modules/a": {"version": "1.0.0", "resolved": "http://127.0.0.2/r/a/-/a-1.0.0.tgz"},
            "node_modules/a/node_modules/@s/b": {"version": "2.0.0", "resolved": "http://127.0.0.2/r/@s/b/-/b-2.0.0.tgz"},
            "node_modules/alias": {"name": "c", "version": "1.0.0", "resolved": "http://127.0.0.2/c/-/c-1.0.0.tgz"},
            "node_modules/local": {"resolved": "packages/local", "link": true},
            "node_modules/g": {"version": "1.0.0", "resolved": "git+ssh://127.0.0.2/g.git#abc"}
        }}"#;
        let paths: Vec<String> = plan("package-lock.json", v3)
            .expect("plan")
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            paths,
            [
                "@s%2fb",
                "a",
                "c",
                "@s/b/-/b-2.0.0.tgz",
                "a/-/a-1.0.0.tgz",
                "c/-/c-1.0.0.tgz"
            ]
        );
        let v1 = r#"{"lockfileVersion": 1, "dependencies": {
            "a": {"version": "1.0.0", "resolved": "https://127.0.0.2/a/-/a-1.0.0.tgz",
                  "dependencies": {"b": {"version": "2.0.0", "resolved": "https://127.0.0.2/b/-/b-2.0.0.tgz"}}}
        }}"#;
        assert_eq!(plan("package-lock.json", v1).expect("plan").len(), 4);
        assert!(plan("yarn.lock", "").is_err());
        assert!(plan("package-lock.json", "{").is_err());
    }
}
