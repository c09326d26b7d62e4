//! PyPI lockfiles for `granary warm`: a pinned `requirements.txt` (as `pip-compile`
//! or `uv pip compile` write it), `uv.lock`, and PEP 751's `pylock.toml`. For each
//! pinned project: its page, then every file of the pinned version and its PEP 658
//! metadata file, as pip and uv fetch them.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

use pep440_rs::{Operator, Version};
use pep508_rs::{Requirement, VerbatimUrl, VersionOrUrl};
use serde::Deserialize;
use url::Url;

use super::keys::normalize;
use super::negotiate::SimpleFormat;
use crate::protocols::warm::WarmFetch;

/// # Errors
/// Another kind of file, a file that does not parse, a line that is not a
/// requirement, or a requirement that is not pinned to one version (`==`; the
/// caller resolves such files first).
pub fn plan(file_name: &str, text: &str) -> Result<Vec<WarmFetch>, String> {
    if file_name == "uv.lock" {
        return Ok(fetches(toml_pins(
            file_name,
            text,
            "version",
            "package",
            |entry| {
                entry
                    .get("source")
                    .and_then(toml::Value::as_table)
                    .is_some_and(|source| source.contains_key("registry"))
            },
        )?));
    }
    if file_name == "pylock.toml"
        || (file_name.starts_with("pylock.") && file_name.ends_with(".toml"))
    {
        return Ok(fetches(toml_pins(
            file_name,
            text,
            "lock-version",
            "packages",
            |entry| {
                ["vcs", "directory", "archive"]
                    .iter()
                    .all(|key| !entry.contains_key(*key))
            },
        )?));
    }
    if !std::path::Path::new(file_name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("txt"))
    {
        return Err(format!(
            "`{file_name}`: a PyPI repository is warmed from a requirements file (*.txt), uv.lock or pylock.toml"
        ));
    }
    let mut pins = BTreeSet::new();
    let mut problems = Vec::new();
    for (number, line) in logical_lines(text) {
        if line.starts_with('-') {
            continue; // pip's options: granary is the index
        }
        let at = format!("{file_name} line {number}");
        match super::dependencies::parse_requirement(&line) {
            Ok(requirement) => match pinned(&requirement) {
                Some(version) => {
                    pins.insert((normalize(requirement.name.as_ref()), version));
                }
                None => problems.push(format!(
                    "{at}: `{line}` is not pinned to one version (`==`); pin it first, e.g. with `uv pip compile`"
                )),
            },
            Err(error) => problems.push(format!("{at}: {error}")),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    Ok(fetches(pins))
}

/// What to fetch for each pinned (project, version).
fn fetches(pins: BTreeSet<(String, Version)>) -> Vec<WarmFetch> {
    pins.into_iter()
        .map(|(project, version)| {
            let page = format!("simple/{project}/");
            let base = page.clone();
            WarmFetch::new(page)
                .accepting(SimpleFormat::Json.content_type())
                .then(Arc::new(move |body| {
                    files_of(body, &base, &project, &version)
                }))
        })
        .collect()
}

/// The (project, version) of each entry of the array of tables `array` that
/// `from_index` says came from a package index; the file must have the key
/// `version_key` (its format's version).
fn toml_pins(
    file_name: &str,
    text: &str,
    version_key: &str,
    array: &str,
    from_index: impl Fn(&toml::Table) -> bool,
) -> Result<BTreeSet<(String, Version)>, String> {
    let lock: toml::Table = toml::from_str(text).map_err(|e| format!("{file_name}: {e}"))?;
    if !lock.contains_key(version_key) {
        return Err(format!(
            "{file_name}: no `{version_key}`: not the lockfile its name says"
        ));
    }
    let mut pins = BTreeSet::new();
    for entry in lock
        .get(array)
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_table)
    {
        if !from_index(entry) {
            continue; // the project itself, an editable, a VCS or local source
        }
        let (Some(name), Some(version)) = (
            entry.get("name").and_then(toml::Value::as_str),
            entry.get("version").and_then(toml::Value::as_str),
        ) else {
            return Err(format!(
                "{file_name}: a `[[{array}]]` without name or version"
            ));
        };
        let version = Version::from_str(version)
            .map_err(|e| format!("{file_name}: {name} {version}: {e}"))?;
        pins.insert((normalize(name), version));
    }
    Ok(pins)
}

/// Whether a requirements file has requirements not pinned to one version: then it
/// is resolved first (by granary's resolver, `POST /-/api/REPO/resolve`).
#[must_use]
pub fn needs_resolution(text: &str) -> bool {
    logical_lines(text).iter().any(|(_, line)| {
        super::dependencies::parse_requirement(line).is_ok_and(|r| pinned(&r).is_none())
    })
}

/// A pinned requirements file naming `pins` (project, version).
#[must_use]
pub fn pinned_file(pins: &[(String, String)]) -> String {
    let mut file = String::new();
    for (project, version) in pins {
        file.push_str(project);
        file.push_str("==");
        file.push_str(version);
        file.push('\n');
    }
    file
}

/// The logical lines of a requirements file as pip reads them — comments and line
/// continuations removed, a requirement's own options (`--hash=…`) cut off — with
/// their first line's number. Lines of pip options (`-r`, `--index-url`, …) start
/// with `-`.
pub(super) fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut first = 0;
    for (index, raw) in text.lines().enumerate() {
        if current.is_empty() {
            first = index + 1;
        }
        let without_comment = match raw.find(" #") {
            Some(at) => &raw[..at],
            None if raw.trim_start().starts_with('#') => "",
            None => raw,
        };
        let (text, continues) = match without_comment.trim_end().strip_suffix('\\') {
            Some(text) => (text, true),
            None => (without_comment, false),
        };
        current.push_str(text);
        current.push(' ');
        if !continues {
            // Options after the requirement (`--hash=...`) end it.
            let requirement = current.split(" --").next().unwrap_or("").trim();
            if !requirement.is_empty() {
                lines.push((first, requirement.to_owned()));
            }
            current.clear();
        }
    }
    lines
}

/// The one version `requirement` allows (`==1.0` or `===1.0`, without wildcards).
fn pinned(requirement: &Requirement<VerbatimUrl>) -> Option<Version> {
    let Some(VersionOrUrl::VersionSpecifier(specifiers)) = &requirement.version_or_url else {
        return None;
    };
    let mut iter = specifiers.iter();
    let only = iter.next()?;
    (iter.next().is_none() && matches!(only.operator(), Operator::Equal | Operator::ExactEqual))
        .then(|| only.version().clone())
}

#[derive(Deserialize)]
struct Page {
    files: Vec<File>,
}

#[derive(Deserialize)]
struct File {
    filename: String,
    url: String,
    #[serde(default, rename = "core-metadata")]
    core_metadata: serde_json::Value,
}

/// From granary's own PEP 691 page: the files of `version`, and their metadata files.
fn files_of(
    body: &[u8],
    page_path: &str,
    project: &str,
    version: &Version,
) -> Result<Vec<WarmFetch>, String> {
    let page: Page = serde_json::from_slice(body).map_err(|e| format!("{page_path}: {e}"))?;
    let base = Url::parse("http://127.0.0.1/")
        .and_then(|root| root.join(page_path))
        .map_err(|e| e.to_string())?;
    let mut fetches = Vec::new();
    for file in page.files {
        if file_version(&file.filename, project).as_ref() != Some(version) {
            continue;
        }
        let Ok(url) = base.join(&file.url) else {
            continue;
        };
        if url.origin() != base.origin() {
            continue; // not one of granary's own links
        }
        let path = url.path().trim_start_matches('/').to_owned();
        let has_metadata = match &file.core_metadata {
            serde_json::Value::Bool(flag) => *flag,
            serde_json::Value::Object(_) => true,
            _ => false,
        };
        if has_metadata {
            fetches.push(WarmFetch::new(format!("{path}.metadata")));
        }
        fetches.push(WarmFetch::new(path));
    }
    if fetches.is_empty() {
        return Err(format!("{page_path}: no file of version {version}"));
    }
    Ok(fetches)
}

/// The version in a wheel's or an sdist's file name, when the name is `project`'s.
fn file_version(filename: &str, project: &str) -> Option<Version> {
    let (name, version) = if let Some(stem) = filename.strip_suffix(".whl") {
        let mut parts = stem.split('-');
        (parts.next()?, parts.next()?)
    } else {
        let stem = [".tar.gz", ".zip", ".tar.bz2", ".tgz"]
            .iter()
            .find_map(|extension| filename.strip_suffix(extension))?;
        stem.rsplit_once('-')?
    };
    (normalize(name) == project)
        .then(|| Version::from_str(version).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::plan;

    fn pages(file_name: &str, text: &str) -> Vec<String> {
        plan(file_name, text)
            .expect("plan")
            .into_iter()
            .map(|f| f.path)
            .collect()
    }

    #[test]
    fn uv_lock_and_pylock_toml_name_their_index_packages() {
        let uv_lock = r#"
version = 1
requires-python = ">=3.11"

[[package]]
name = "app"
version = "0.1.0"
source = { virtual = "." }

[[package]]
name = "Beta"
version = "1.1"
source = { registry = "http://127.0.0.2/pypi/simple/" }

[[package]]
name = "local"
version = "2.0"
source = { directory = "../local" }
"#;
        assert_eq!(pages("uv.lock", uv_lock), ["simple/beta/"]);
        let pylock = r#"
lock-version = "1.0"
created-by = "uv"

[[packages]]
name = "alpha"
version = "1.0"
index = "http://127.0.0.2/pypi/simple/"

[[packages]]
name = "from-git"
version = "1.0"
vcs = { type = "git", url = "http://127.0.0.2/r.git", commit-id = "abc" }
"#;
        assert_eq!(pages("pylock.toml", pylock), ["simple/alpha/"]);
        assert_eq!(pages("pylock.app.toml", pylock), ["simple/alpha/"]);
        assert!(plan(
            "uv.lock",
            "version = 1\n[[package]]\nname = 1\nsource = { registry = \"x\" }"
        )
        .is_err());
        assert!(plan(
            "pylock.toml",
            "lock-version = \"1.0\"\n[[packages]]\nversion = \"1\"\nindex = \"x\""
        )
        .is_err());
    }

    #[test]
    fn pins_with_hashes_comments_and_markers() {
        let text = "# via uv pip compile\n\
                    Flask_Utils==1.0 \\\n    --hash=sha256:00 \\\n    --hash=sha256:11\n\
                    --index-url http://127.0.0.2/simple/\n\
                    colorama==0.4.6 ; sys_platform == 'win32'  # via click\n\n";
        let fetches = plan("requirements.txt", text).expect("plan");
        let paths: Vec<&str> = fetches.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["simple/colorama/", "simple/flask-utils/"]);
        let page = br#"{"meta": {"api-version": "1.1"}, "name": "flask-utils", "files": [
            {"filename": "flask_utils-1.0-py3-none-any.whl", "url": "../../files/flask-utils/flask_utils-1.0-py3-none-any.whl", "core-metadata": {"sha256": "00"}},
            {"filename": "Flask-Utils-1.0.tar.gz", "url": "../../files/flask-utils/Flask-Utils-1.0.tar.gz", "core-metadata": false},
            {"filename": "flask_utils-1.1-py3-none-any.whl", "url": "../../files/flask-utils/flask_utils-1.1-py3-none-any.whl"},
            {"filename": "flask_utils-1.0.post1-py3-none-any.whl", "url": "../../files/flask-utils/flask_utils-1.0.post1-py3-none-any.whl"},
            {"filename": "flask_utils-1.0-py2-none-any.whl", "url": "http://127.0.0.2/elsewhere.whl"}
        ]}"#;
        let expand = fetches[1].expand.as_ref().expect("a page expands");
        let files: Vec<String> = expand(page)
            .expect("files")
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            files,
            [
                "files/flask-utils/flask_utils-1.0-py3-none-any.whl.metadata",
                "files/flask-utils/flask_utils-1.0-py3-none-any.whl",
                "files/flask-utils/Flask-Utils-1.0.tar.gz"
            ]
        );
        let unpinned = plan("requirements.txt", "requests>=2\nidna==3.7\n").expect_err("unpinned");
        assert!(
            unpinned.contains("line 1") && unpinned.contains("not pinned"),
            "{unpinned}"
        );
        assert!(plan("uv.lock", "").is_err());
    }
}
