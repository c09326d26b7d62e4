//! PyPI names (PEP 503 normalization, PEP 508 validity) and cache keys.

use crate::engine::{CacheKey, Category};

/// The format label in keys and metrics.
pub const FORMAT: &str = "pypi";

/// Longest project name or filename accepted.
const MAX_NAME_BYTES: usize = 255;

/// PEP 503 normalization: lowercase, runs of `-`, `_`, `.` become one `-`.
#[must_use]
pub fn normalize(name: &str) -> String {
    let mut normalized = String::with_capacity(name.len());
    let mut in_separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator {
                normalized.push('-');
            }
            in_separator = true;
        } else {
            normalized.push(c.to_ascii_lowercase());
            in_separator = false;
        }
    }
    normalized
}

/// PEP 508 name validity: ASCII letters and digits, with `.`, `_`, `-` inside.
#[must_use]
pub fn is_valid_project_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_BYTES
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A distribution filename we are willing to name a key after: printable, no
/// separators (already excluded by path splitting), not hidden, bounded, nothing
/// blank at either end (HTML anchor texts lose it).
#[must_use]
pub fn is_valid_filename(filename: &str) -> bool {
    !filename.is_empty()
        && filename.len() <= MAX_NAME_BYTES
        && !filename.starts_with('.')
        && filename.trim() == filename
        && filename
            .chars()
            .all(|c| !c.is_control() && !matches!(c, '/' | '\\' | '"' | '<' | '>'))
}

/// The key of a project's page.
#[must_use]
pub fn project_key(repo: &str, project: &str) -> CacheKey {
    CacheKey::new(Category::Index, FORMAT, repo, project)
}

/// The key of the project list (`/simple/`).
#[must_use]
pub fn root_key(repo: &str) -> CacheKey {
    CacheKey::new(Category::Index, FORMAT, repo, "/")
}

/// The key of a file (a distribution or its `.metadata`).
#[must_use]
pub fn file_key(repo: &str, project: &str, filename: &str) -> CacheKey {
    CacheKey::new(
        Category::Artifact,
        FORMAT,
        repo,
        &format!("{project}/{filename}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_follows_pep_503() {
        for (raw, expected) in [
            ("Django", "django"),
            ("friendly-bard", "friendly-bard"),
            ("Friendly-Bard", "friendly-bard"),
            ("FRIENDLY-BARD", "friendly-bard"),
            ("friendly.bard", "friendly-bard"),
            ("friendly_bard", "friendly-bard"),
            ("friendly--bard", "friendly-bard"),
            ("FrIeNdLy-._.-bArD", "friendly-bard"),
        ] {
            assert_eq!(normalize(raw), expected, "{raw}");
        }
    }

    #[test]
    fn names_follow_pep_508() {
        for good in ["a", "A1", "zope.interface", "foo_bar-baz"] {
            assert!(is_valid_project_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a b", "ä", "a/b", "..", &"a".repeat(256)] {
            assert!(!is_valid_project_name(bad), "{bad}");
        }
    }

    #[test]
    fn filenames_are_checked() {
        assert!(is_valid_filename("demo-1.0-py3-none-any.whl"));
        assert!(is_valid_filename("demo-1.0-py3-none-any.whl.metadata"));
        assert!(!is_valid_filename(".hidden"));
        assert!(!is_valid_filename("a\"b"));
        assert!(!is_valid_filename(&"x".repeat(300)));
    }
}
