//! Cache keys and cache statuses: one spelling everywhere (memory, database, Redis
//! later, logs, metrics and the `X-Cache` header).

use std::fmt;

/// What kind of thing a key names; each category has its own lifetime rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Index documents: project pages, project lists. Revalidated after a TTL.
    Index,
    /// Artifacts and per-artifact metadata files. Immutable, cached for ever.
    Artifact,
}

impl Category {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Artifact => "artifact",
        }
    }
}

/// `granary:{category}:{format}:{repo}:{identifier}`.
///
/// The identifier is chosen by the protocol (a normalized project name, `project/filename`),
/// and is already validated: it never contains anything a client could use to escape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    category: Category,
    format: &'static str,
    text: String,
}

impl CacheKey {
    #[must_use]
    pub fn new(category: Category, format: &'static str, repo: &str, identifier: &str) -> Self {
        let text = format!("granary:{}:{format}:{repo}:{identifier}", category.as_str());
        Self {
            category,
            format,
            text,
        }
    }

    /// The prefix shared by every key of one category in one repository.
    #[must_use]
    pub fn repo_prefix(category: Category, format: &'static str, repo: &str) -> String {
        format!("granary:{}:{format}:{repo}:", category.as_str())
    }

    #[must_use]
    pub fn category(&self) -> Category {
        self.category
    }

    #[must_use]
    pub fn format(&self) -> &'static str {
        self.format
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What the cache did for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from cache; the upstream was not asked.
    Hit,
    /// Fetched from the upstream (possibly by another request we joined).
    Miss,
    /// Served from a stale copy: in the grace period, or because the upstream failed.
    Stale,
    /// The upstream confirmed the stored copy with `304 Not Modified`.
    Revalidated,
    /// Passed through without caching.
    Bypass,
}

impl CacheStatus {
    /// Lowercase, for metrics and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Revalidated => "revalidated",
            Self::Bypass => "bypass",
        }
    }

    /// Uppercase, for the `X-Cache` header.
    #[must_use]
    pub fn header_value(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Stale => "STALE",
            Self::Revalidated => "REVALIDATED",
            Self::Bypass => "BYPASS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_has_the_documented_shape() {
        let key = CacheKey::new(Category::Index, "pypi", "internal", "requests");
        assert_eq!(key.as_str(), "granary:index:pypi:internal:requests");
        assert_eq!(key.category(), Category::Index);
    }
}
