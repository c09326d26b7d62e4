//! npm package names (the registry's rules) and cache keys.

use crate::engine::{CacheKey, Category};

/// The format label in keys and metrics.
pub const FORMAT: &str = "npm";

/// Longest package name npm accepts.
const MAX_NAME_BYTES: usize = 214;

/// Whether `name` (`name` or `@scope/name`) is a valid npm package name. Uppercase
/// letters are accepted: old packages have them, and reading them must work.
#[must_use]
pub fn is_valid_package_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return false;
    }
    let part_ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && !part.starts_with('_')
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
            && part != "node_modules"
            && part != "favicon.ico"
    };
    match name.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, package)| part_ok(scope) && part_ok(package)),
        None => part_ok(name),
    }
}

/// The path of a packument below the upstream root: scoped names have their slash
/// encoded, as registries expect (`@scope%2fname`).
#[must_use]
pub fn upstream_path(name: &str) -> String {
    name.replacen('/', "%2f", 1)
}

/// The key of a packument.
#[must_use]
pub fn packument_key(repo: &str, name: &str) -> CacheKey {
    CacheKey::new(Category::Index, FORMAT, repo, name)
}

/// The key of a tarball.
#[must_use]
pub fn tarball_key(repo: &str, name: &str, filename: &str) -> CacheKey {
    CacheKey::new(
        Category::Artifact,
        FORMAT,
        repo,
        &format!("{name}/-/{filename}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_npm_rules() {
        for good in [
            "lodash",
            "@types/node",
            "a.b-c_d~e",
            "JSONStream",
            "@granary/core",
        ] {
            assert!(is_valid_package_name(good), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "_private",
            "@scope",
            "@/x",
            "@s/",
            "a b",
            "a/b",
            "../x",
            "@s/../x",
            "node_modules",
            &"a".repeat(215),
        ] {
            assert!(!is_valid_package_name(bad), "{bad}");
        }
        assert_eq!(upstream_path("@scope/name"), "@scope%2fname");
        assert_eq!(upstream_path("plain"), "plain");
    }
}
