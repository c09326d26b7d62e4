//! The sparse index's rules: crate names, where a crate's index file lives, what an
//! index entry must hold, and the `dl` template of `config.json`.

use serde_json::Value;

use crate::engine::index::BASE_MARKER_TEXT;
use crate::engine::{CacheKey, Category};

/// The format label in keys and metrics.
pub const FORMAT: &str = "cargo";

/// Longest crate name cargo accepts in a registry.
const MAX_NAME_BYTES: usize = 64;
/// Longest version string accepted in a download path.
const MAX_VERSION_BYTES: usize = 128;

/// The `dl` markers cargo defines; a template with none gets
/// `/{crate}/{version}/download` appended.
const DL_MARKERS: [&str; 5] = [
    "{crate}",
    "{version}",
    "{prefix}",
    "{lowerprefix}",
    "{sha256-checksum}",
];

/// Whether `name` is a crate name a registry can hold: ASCII letters, digits, `-`
/// and `_`, at most 64 bytes, not starting with `-` or `_`.
#[must_use]
pub fn is_valid_crate_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `version` can be a semver version as written in an index entry.
#[must_use]
pub fn is_valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= MAX_VERSION_BYTES
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
}

/// Cargo's `{prefix}` of a crate name, keeping its case: `1`, `2`, `3/s` for `syn`,
/// `se/rd` for `serde`.
#[must_use]
pub fn prefix(name: &str) -> String {
    match name.len() {
        1 => "1".to_owned(),
        2 => "2".to_owned(),
        3 => format!("3/{}", &name[..1]),
        _ => format!("{}/{}", &name[..2], &name[2..4]),
    }
}

/// The index file path below the index root, e.g. `se/rd/serde` (lowercase, as the
/// sparse protocol asks).
#[must_use]
pub fn index_path(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    format!("{}/{lower}", prefix(&lower))
}

/// The crate whose index file `segments` name, if they follow the layout.
///
/// # Errors
/// A message saying what is wrong: a bad name, or a name in the wrong directory.
pub fn crate_of_index_path(segments: &[&str]) -> Result<String, String> {
    let Some((name, dirs)) = segments.split_last() else {
        return Err("empty index path".to_owned());
    };
    if !is_valid_crate_name(name) {
        return Err(format!("`{name}` is not a valid crate name"));
    }
    if dirs.join("/") != prefix(name) || *name != name.to_ascii_lowercase() {
        return Err(format!(
            "the index file of `{name}` is at `{}`",
            index_path(name)
        ));
    }
    Ok((*name).to_owned())
}

/// The key of a crate's index file (the lowercase name: the index is case-insensitive).
#[must_use]
pub fn index_key(repo: &str, name: &str) -> CacheKey {
    CacheKey::new(Category::Index, FORMAT, repo, &name.to_ascii_lowercase())
}

/// The key of the repository's `config.json` (not a crate name: it has a dot).
#[must_use]
pub fn config_key(repo: &str) -> CacheKey {
    CacheKey::new(Category::Index, FORMAT, repo, "config.json")
}

/// The key of one `.crate` file.
#[must_use]
pub fn crate_key(repo: &str, name: &str, version: &str) -> CacheKey {
    CacheKey::new(
        Category::Artifact,
        FORMAT,
        repo,
        &format!("{}/{version}", name.to_ascii_lowercase()),
    )
}

/// What granary needs of one index entry (a line of an index file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    /// SHA-256 of the `.crate` file, lowercase hex.
    pub checksum: String,
    pub yanked: bool,
    /// The `rust_version` (MSRV) the crate declares, when the index carries it.
    pub rust_version: Option<String>,
}

/// Parses an index file: one JSON object per line, each for the crate `name` with a
/// version and a SHA-256 checksum.
///
/// # Errors
/// The first malformed line and why.
pub fn parse_index_file(body: &[u8], name: &str) -> Result<Vec<IndexEntry>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "index file is not UTF-8".to_owned())?;
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("index file line {}", number + 1);
        let value: Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", at()))?;
        let field = |field: &str| {
            value
                .get(field)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{}: no string `{field}`", at()))
        };
        let entry_name = field("name")?;
        if !entry_name.eq_ignore_ascii_case(name) {
            return Err(format!(
                "{}: entry for `{entry_name}` in the index file of `{name}`",
                at()
            ));
        }
        let checksum = field("cksum")?.to_ascii_lowercase();
        if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{}: `cksum` is not a SHA-256 hex digest", at()));
        }
        entries.push(IndexEntry {
            name: entry_name.to_owned(),
            version: field("vers")?.to_owned(),
            checksum,
            yanked: value
                .get("yanked")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            rust_version: value
                .get("rust_version")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    Ok(entries)
}

/// The upstream's `config.json`, checked: an object with a string `dl`.
///
/// # Errors
/// What is missing.
pub fn parse_config(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("config.json: {e}"))?;
    let Value::Object(config) = value else {
        return Err("config.json is not a JSON object".to_owned());
    };
    if !config.get("dl").is_some_and(Value::is_string) {
        return Err("config.json has no string `dl`".to_owned());
    }
    Ok(config)
}

/// `config.json` as granary serves it: downloads (and the API, if the upstream has
/// one) point at granary's mount point `/<repo>`, through the base-URL marker each
/// response fills in. `auth-required` is granary's own: `true` when the repository
/// is private (cargo then sends its token with every request), else absent, whatever
/// the upstream says (granary authenticates to the upstream with `repos.NAME.auth`).
#[must_use]
pub fn rewrite_config(
    config: &serde_json::Map<String, Value>,
    repo: &str,
    auth_required: bool,
) -> Vec<u8> {
    let mount = format!("{BASE_MARKER_TEXT}/{repo}");
    let mut served = config.clone();
    served.insert(
        "dl".to_owned(),
        Value::String(format!("{mount}/api/v1/crates")),
    );
    if served.contains_key("api") {
        served.insert("api".to_owned(), Value::String(mount));
    }
    served.remove("auth-required");
    if auth_required {
        served.insert("auth-required".to_owned(), Value::Bool(true));
    }
    serde_json::to_vec(&Value::Object(served)).expect("serializing JSON cannot fail")
}

/// The upstream download URL of one crate version, from the upstream's `dl`
/// template (cargo's rules: markers, or `/{crate}/{version}/download` appended).
#[must_use]
pub fn download_url(template: &str, entry: &IndexEntry) -> String {
    if !DL_MARKERS.iter().any(|marker| template.contains(marker)) {
        return format!(
            "{}/{}/{}/download",
            template.trim_end_matches('/'),
            entry.name,
            entry.version
        );
    }
    let prefix = prefix(&entry.name);
    template
        .replace("{crate}", &entry.name)
        .replace("{version}", &entry.version)
        .replace("{prefix}", &prefix)
        .replace("{lowerprefix}", &prefix.to_ascii_lowercase())
        .replace("{sha256-checksum}", &entry.checksum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_follow_the_sparse_layout() {
        assert_eq!(index_path("a"), "1/a");
        assert_eq!(index_path("ab"), "2/ab");
        assert_eq!(index_path("Syn"), "3/s/syn");
        assert_eq!(index_path("serde_json"), "se/rd/serde_json");
        assert_eq!(
            crate_of_index_path(&["se", "rd", "serde"]),
            Ok("serde".to_owned())
        );
        assert_eq!(
            crate_of_index_path(&["3", "s", "syn"]),
            Ok("syn".to_owned())
        );
        assert!(crate_of_index_path(&["zz", "rd", "serde"]).is_err());
        assert!(crate_of_index_path(&["se", "rd", "Serde"]).is_err());
        assert!(crate_of_index_path(&["2", "a.b"]).is_err());
        assert!(crate_of_index_path(&["1", "-"]).is_err());
    }

    #[test]
    fn crate_names_and_versions() {
        for good in ["a", "serde_json", "tokio-util", "x86", "A1"] {
            assert!(is_valid_crate_name(good), "{good}");
        }
        for bad in ["", "-a", "_a", "a.b", "a/b", "a b", "ä", &"a".repeat(65)] {
            assert!(!is_valid_crate_name(bad), "{bad}");
        }
        assert!(is_valid_version("1.0.0-rc.1+build.5"));
        assert!(!is_valid_version("1.0/../x"));
    }

    #[test]
    fn entries_are_checked() {
        let sum = "ab".repeat(32);
        let good =
            format!("{{\"name\":\"Foo\",\"vers\":\"1.0.0\",\"cksum\":\"{sum}\",\"deps\":[]}}\n\n");
        let entries = parse_index_file(good.as_bytes(), "foo").expect("valid");
        assert_eq!(entries[0].version, "1.0.0");
        assert!(parse_index_file(
            b"{\"name\":\"foo\",\"vers\":\"1\",\"cksum\":\"xyz\"}",
            "foo"
        )
        .is_err());
        assert!(parse_index_file(good.as_bytes(), "bar").is_err());
        assert!(parse_index_file(b"not json", "foo").is_err());
    }

    #[test]
    fn download_urls_follow_cargo_templates() {
        let entry = IndexEntry {
            name: "Serde".to_owned(),
            version: "1.0.1".to_owned(),
            checksum: "00ff".to_owned(),
            yanked: false,
            rust_version: None,
        };
        assert_eq!(
            download_url("http://up/api/v1/crates/", &entry),
            "http://up/api/v1/crates/Serde/1.0.1/download"
        );
        assert_eq!(
            download_url(
                "http://up/files/{lowerprefix}/{crate}-{version}.crate?h={sha256-checksum}",
                &entry
            ),
            "http://up/files/se/rd/Serde-1.0.1.crate?h=00ff"
        );
        assert_eq!(
            download_url("http://up/{prefix}/{crate}", &entry),
            "http://up/Se/rd/Serde"
        );
    }

    #[test]
    fn config_points_downloads_and_api_at_granary() {
        let config =
            parse_config(br#"{"dl":"http://up/dl","api":"http://up","auth-required":true}"#)
                .expect("valid");
        let served: Value =
            serde_json::from_slice(&rewrite_config(&config, "crates", false)).expect("json");
        assert_eq!(
            served["dl"],
            format!("{BASE_MARKER_TEXT}/crates/api/v1/crates")
        );
        assert_eq!(served["api"], format!("{BASE_MARKER_TEXT}/crates"));
        assert!(served.get("auth-required").is_none());
        assert!(parse_config(br#"{"api":"x"}"#).is_err());
    }
}
