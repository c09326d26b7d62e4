//! What a protocol tells the badge service: which badges its format draws and the
//! facts behind them. Rendering and caching live in [`crate::badges`]; the facts of
//! each format live beside the format (`<format>/badges.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A version badge's facts are kept this long (a release shows within minutes).
pub const VERSION_TTL: Duration = Duration::from_secs(5 * 60);
/// Facts that change rarely (licence, supported versions, status).
pub const SLOW_TTL: Duration = Duration::from_secs(60 * 60);

/// Which lookup a badge's facts come from. Every badge of one stage is answered by
/// one lookup of the project: the index stage reads index documents only; the
/// release stage also reads the latest release's own metadata (a core metadata
/// file, a POM, a `.crate`'s manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Index,
    Release,
}

impl Stage {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Release => "release",
        }
    }
}

/// One badge a format can draw.
#[derive(Debug, Clone, Copy)]
pub struct BadgeKind {
    /// Its name in the URL (`version`, `license`, ...).
    pub name: &'static str,
    /// The label drawn on its left unless the caller names another.
    pub label: &'static str,
    pub stage: Stage,
    /// How long its facts are fresh (and the badge's default `max-age`).
    pub ttl: Duration,
}

/// What a badge says: the message and its colour (a shields named colour or hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub message: String,
    pub color: String,
}

impl Fact {
    #[must_use]
    pub fn new(message: impl Into<String>, color: &str) -> Self {
        Self {
            message: message.into(),
            color: color.to_owned(),
        }
    }

    /// A fact the project does not declare (drawn grey, like the badge services do).
    #[must_use]
    pub fn missing() -> Self {
        Self::new("missing", "lightgrey")
    }
}

/// The facts one lookup found, by badge kind.
pub type Facts = BTreeMap<String, Fact>;

/// A version's badge: blue when it is a release, orange for a pre-release.
#[must_use]
pub fn version_fact(version: Option<(&str, bool)>) -> Fact {
    match version {
        Some((version, pre_release)) => Fact::new(
            format!("v{version}"),
            if pre_release { "orange" } else { "blue" },
        ),
        None => Fact::new("no releases", "lightgrey"),
    }
}

/// A licence badge, coloured by the kind of licence as the badge services do:
/// permissive green, copyleft orange, public domain light green, unknown grey.
#[must_use]
pub fn license_fact(licenses: &[String]) -> Fact {
    if licenses.is_empty() {
        return Fact::new("missing", "red");
    }
    let message = licenses.join(", ");
    let color = if licenses.iter().all(|l| is_public_domain(l)) {
        "7cd958"
    } else if licenses.iter().any(|l| is_copyleft(l)) {
        "orange"
    } else if licenses.iter().all(|l| is_permissive(l)) {
        "green"
    } else {
        "lightgrey"
    };
    Fact::new(message, color)
}

fn words(license: &str) -> String {
    license.to_ascii_uppercase()
}

fn is_public_domain(license: &str) -> bool {
    let l = words(license);
    ["UNLICENSE", "CC0", "PUBLIC DOMAIN", "WTFPL", "0BSD"]
        .iter()
        .any(|w| l.contains(w))
}

fn is_copyleft(license: &str) -> bool {
    let l = words(license);
    ["GPL", "MPL", "EPL", "EUPL", "OSL", "CDDL", "GENERAL PUBLIC"]
        .iter()
        .any(|w| l.contains(w))
}

fn is_permissive(license: &str) -> bool {
    let l = words(license);
    [
        "MIT", "APACHE", "BSD", "ISC", "ZLIB", "BSL", "PYTHON", "PSF", "UNICODE", "X11",
    ]
    .iter()
    .any(|w| l.contains(w))
        || is_public_domain(license)
}

/// The calendar date of an RFC 3339 time (`2024-05-01T12:00:00Z` → `2024-05-01`).
#[must_use]
pub fn date_of(time: &str) -> Option<&str> {
    let date = time.get(..10)?;
    let bytes = date.as_bytes();
    let shape = bytes.iter().enumerate().all(|(i, b)| match i {
        4 | 7 => *b == b'-',
        _ => b.is_ascii_digit(),
    });
    shape.then_some(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licences_are_coloured_by_kind() {
        assert_eq!(license_fact(&["MIT".to_owned()]).color, "green");
        assert_eq!(
            license_fact(&["MIT".to_owned(), "Apache-2.0".to_owned()]).color,
            "green"
        );
        assert_eq!(license_fact(&["GPL-3.0-only".to_owned()]).color, "orange");
        assert_eq!(license_fact(&["Unlicense".to_owned()]).color, "7cd958");
        assert_eq!(license_fact(&["Proprietary".to_owned()]).color, "lightgrey");
        assert_eq!(license_fact(&[]), Fact::new("missing", "red"));
    }

    #[test]
    fn dates_come_from_rfc3339_times_only() {
        assert_eq!(date_of("2024-05-01T12:00:00.123Z"), Some("2024-05-01"));
        assert_eq!(date_of("yesterday"), None);
        assert_eq!(date_of("2024/05/01"), None);
    }
}
