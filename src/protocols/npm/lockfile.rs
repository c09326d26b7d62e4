//! npm's, pnpm's and yarn's lockfiles for `granary warm`: every registry package's
//! abbreviated packument and tarball. `package-lock.json` / `npm-shrinkwrap.json`
//! (versions 1–3), `pnpm-lock.yaml` (versions 5–9) and `yarn.lock` (yarn classic,
//! v1).

use std::collections::BTreeSet;

use serde_json::Value;

use super::keys::is_valid_package_name;
use super::rewrite::tarball_filename;
use super::ABBREVIATED_TYPE;
use crate::protocols::warm::WarmFetch;

/// # Errors
/// Another kind of file, or a lockfile that does not parse.
pub fn plan(file_name: &str, text: &str) -> Result<Vec<WarmFetch>, String> {
    let tarballs = match file_name {
        "package-lock.json" | "npm-shrinkwrap.json" => package_lock(file_name, text)?,
        "pnpm-lock.yaml" => pnpm_lock(text)?,
        "yarn.lock" => yarn_lock(text)?,
        _ => {
            return Err(format!(
                "`{file_name}`: an npm repository is warmed from package-lock.json, npm-shrinkwrap.json, pnpm-lock.yaml or yarn.lock"
            ))
        }
    };
    Ok(fetches(&tarballs))
}

/// (package name, tarball file name) of every registry package.
type Tarballs = BTreeSet<(String, String)>;

fn package_lock(file_name: &str, text: &str) -> Result<Tarballs, String> {
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
    Ok(tarballs)
}

/// `pnpm-lock.yaml`: the keys of `packages` — `name@version` (v9), `/name@version`
/// with a peer suffix `(…)` (v6), `/name/version` (v5). Entries resolved to a
/// tarball elsewhere, a git repository or a directory are not the registry's.
fn pnpm_lock(text: &str) -> Result<Tarballs, String> {
    let documents =
        yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| format!("pnpm-lock.yaml: {e}"))?;
    let document = documents
        .first()
        .ok_or_else(|| "pnpm-lock.yaml: empty".to_owned())?;
    let Some(version) = document["lockfileVersion"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| document["lockfileVersion"].as_f64().map(|v| v.to_string()))
    else {
        return Err("pnpm-lock.yaml: no `lockfileVersion`".to_owned());
    };
    let mut tarballs = BTreeSet::new();
    let Some(packages) = document["packages"].as_hash() else {
        return Ok(tarballs); // a project with no dependencies
    };
    for (key, entry) in packages {
        let Some(key) = key.as_str() else { continue };
        let resolution = &entry["resolution"];
        if resolution["tarball"].as_str().is_some()
            || resolution["repo"].as_str().is_some()
            || resolution["directory"].as_str().is_some()
        {
            continue;
        }
        let key = key.trim_start_matches('/');
        let key = key.split_once('(').map_or(key, |(bare, _)| bare);
        let split = if version.starts_with('5') {
            key.rsplit_once('/')
        } else {
            key.rsplit_once('@').filter(|(name, _)| !name.is_empty())
        };
        let Some((name, package_version)) = split else {
            return Err(format!("pnpm-lock.yaml: `{key}` is not name@version"));
        };
        let name = entry["name"].as_str().unwrap_or(name);
        if is_valid_package_name(name) {
            let base = name.rsplit('/').next().unwrap_or(name);
            tarballs.insert((name.to_owned(), format!("{base}-{package_version}.tgz")));
        }
    }
    Ok(tarballs)
}

/// `yarn.lock` of yarn classic: each entry's first spec names the package (after
/// `@npm:` for an alias), its `resolved` line the tarball.
fn yarn_lock(text: &str) -> Result<Tarballs, String> {
    if text.contains("__metadata:") || !text.contains("yarn lockfile v1") {
        return Err(
            "yarn.lock: not yarn classic's (v1) lockfile; yarn 2 and later write another format"
                .to_owned(),
        );
    }
    let mut tarballs = BTreeSet::new();
    let mut name: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            let first = line
                .trim_end_matches(':')
                .split(", ")
                .next()
                .unwrap_or_default()
                .trim_matches('"');
            let spec = first.split_once("@npm:").map_or(first, |(_, real)| real);
            let at = spec
                .char_indices()
                .skip(1)
                .find(|(_, c)| *c == '@')
                .map_or(spec.len(), |(at, _)| at);
            name = Some(spec[..at].to_owned());
        } else if let Some(resolved) = line.trim_start().strip_prefix("resolved ") {
            let resolved = resolved.trim().trim_matches('"');
            let resolved = resolved.split_once('#').map_or(resolved, |(url, _)| url);
            if let Some(name) = &name {
                collect_resolved(name, resolved, false, &mut tarballs);
            }
        }
    }
    Ok(tarballs)
}

fn fetches(tarballs: &Tarballs) -> Vec<WarmFetch> {
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
    fetches
}

/// A package fetched from a registry: `resolved` is an http(s) URL of a `.tgz`
/// (git, file and link dependencies are not the registry's).
fn collect(name: &str, entry: &Value, tarballs: &mut Tarballs) {
    let resolved = entry.get("resolved").and_then(Value::as_str).unwrap_or("");
    let link = entry.get("link").and_then(Value::as_bool) == Some(true);
    collect_resolved(name, resolved, link, tarballs);
}

fn collect_resolved(name: &str, resolved: &str, link: bool, tarballs: &mut Tarballs) {
    if !(resolved.starts_with("http://") || resolved.starts_with("https://"))
        || link
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

    fn paths(file_name: &str, text: &str) -> Vec<String> {
        plan(file_name, text)
            .expect("plan")
            .into_iter()
            .map(|f| f.path)
            .collect()
    }

    #[test]
    fn pnpm_lockfiles_of_versions_9_6_and_5() {
        let v9 = "lockfileVersion: '9.0'\n\nimporters:\n  .:\n    dependencies:\n      a:\n        specifier: ^1\n        version: 1.0.0\n\n\
                  packages:\n\n  '@s/b@2.0.0':\n    resolution: {integrity: sha512-AA==}\n\n  a@1.0.0:\n    resolution: {integrity: sha512-BB==}\n\n\
                  g@1.0.0:\n    resolution: {tarball: https://127.0.0.2/g.tgz}\n\nsnapshots:\n\n  a@1.0.0: {}\n";
        assert_eq!(
            paths("pnpm-lock.yaml", v9),
            ["@s%2fb", "a", "@s/b/-/b-2.0.0.tgz", "a/-/a-1.0.0.tgz"]
        );
        let v6 = "lockfileVersion: '6.0'\npackages:\n  /a@1.0.0(react@18.0.0):\n    resolution: {integrity: sha512-AA==}\n";
        assert_eq!(paths("pnpm-lock.yaml", v6), ["a", "a/-/a-1.0.0.tgz"]);
        let v5 = "lockfileVersion: 5.4\npackages:\n  /@s/b/2.0.0:\n    resolution: {integrity: sha512-AA==}\n";
        assert_eq!(
            paths("pnpm-lock.yaml", v5),
            ["@s%2fb", "@s/b/-/b-2.0.0.tgz"]
        );
        assert!(plan("pnpm-lock.yaml", "packages: [").is_err());
    }

    #[test]
    fn yarn_classic_lockfiles() {
        let v1 = "# THIS IS AN AUTOGENERATED FILE.\n# yarn lockfile v1\n\n\n\
                  \"@s/b@^2.0.0\":\n  version \"2.0.0\"\n  resolved \"http://127.0.0.2/npm/@s/b/-/b-2.0.0.tgz#abc\"\n  integrity sha512-AA==\n\n\
                  a@^1.0.0, a@^1.1.0:\n  version \"1.1.0\"\n  resolved \"http://127.0.0.2/npm/a/-/a-1.1.0.tgz#def\"\n  dependencies:\n    \"@s/b\" \"^2.0.0\"\n\n\
                  \"alias@npm:c@^1\":\n  version \"1.0.0\"\n  resolved \"http://127.0.0.2/npm/c/-/c-1.0.0.tgz\"\n";
        assert_eq!(
            paths("yarn.lock", v1),
            [
                "@s%2fb",
                "a",
                "c",
                "@s/b/-/b-2.0.0.tgz",
                "a/-/a-1.1.0.tgz",
                "c/-/c-1.0.0.tgz"
            ]
        );
        assert!(plan("yarn.lock", "__metadata:\n  version: 6\n").is_err());
    }
}
