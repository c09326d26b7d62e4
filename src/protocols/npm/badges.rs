//! The facts behind an npm package's badges, all from its packument: the
//! `latest` dist-tag and that version's document.

use serde_json::Value;

use crate::protocols::badges::{
    license_fact, version_fact, BadgeKind, Fact, Facts, Stage, SLOW_TTL, VERSION_TTL,
};

/// The badges of an npm repository: one lookup (the packument) answers them all.
pub const KINDS: &[BadgeKind] = &[
    BadgeKind {
        name: "version",
        label: "npm",
        stage: Stage::Index,
        ttl: VERSION_TTL,
    },
    BadgeKind {
        name: "license",
        label: "license",
        stage: Stage::Index,
        ttl: SLOW_TTL,
    },
    BadgeKind {
        name: "node",
        label: "node",
        stage: Stage::Index,
        ttl: SLOW_TTL,
    },
    BadgeKind {
        name: "types",
        label: "types",
        stage: Stage::Index,
        ttl: SLOW_TTL,
    },
];

/// The facts of every npm badge, from a packument.
#[must_use]
pub fn facts(packument: &Value) -> Facts {
    let latest = packument
        .pointer("/dist-tags/latest")
        .and_then(Value::as_str);
    let document = latest.and_then(|v| packument.get("versions")?.get(v));
    let mut facts = Facts::new();
    facts.insert(
        "version".to_owned(),
        version_fact(latest.map(|v| {
            (
                v,
                semver::Version::parse(v).is_ok_and(|v| !v.pre.is_empty()),
            )
        })),
    );
    let licenses = document
        .map(licenses)
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| licenses(packument));
    facts.insert("license".to_owned(), license_fact(&licenses));
    facts.insert(
        "node".to_owned(),
        document
            .and_then(|d| d.pointer("/engines/node"))
            .and_then(Value::as_str)
            .filter(|range| !range.trim().is_empty())
            .map_or_else(Fact::missing, |range| Fact::new(range, "brightgreen")),
    );
    let typed = document.is_some_and(|d| {
        ["types", "typings"].iter().any(|field| {
            d.get(field)
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty())
        })
    });
    facts.insert(
        "types".to_owned(),
        if typed {
            Fact::new("included", "blue")
        } else {
            Fact::missing()
        },
    );
    facts
}

/// `license` as a string, a legacy `{type}` object or an array of either; or the
/// legacy `licenses` array.
fn licenses(document: &Value) -> Vec<String> {
    let name = |value: &Value| match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("type").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    let found = match document.get("license").or_else(|| document.get("licenses")) {
        Some(Value::Array(items)) => items.iter().filter_map(name).collect(),
        Some(value) => name(value).into_iter().collect(),
        None => Vec::new(),
    };
    found
        .into_iter()
        .filter(|l: &String| !l.trim().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn facts_come_from_the_latest_dist_tag() {
        let packument = json!({
            "dist-tags": {"latest": "1.2.0", "next": "2.0.0-rc.1"},
            "license": "ISC",
            "versions": {
                "1.2.0": {"license": {"type": "MIT"}, "engines": {"node": ">=18"}, "types": "index.d.ts"},
                "2.0.0-rc.1": {"license": "GPL-3.0"}
            }
        });
        let facts = facts(&packument);
        assert_eq!(facts["version"], Fact::new("v1.2.0", "blue"));
        assert_eq!(facts["license"], Fact::new("MIT", "green"));
        assert_eq!(facts["node"].message, ">=18");
        assert_eq!(facts["types"].message, "included");
    }

    #[test]
    fn licences_in_every_legacy_shape() {
        assert_eq!(licenses(&json!({"license": "MIT"})), ["MIT"]);
        assert_eq!(
            licenses(&json!({"license": {"type": "BSD-2-Clause"}})),
            ["BSD-2-Clause"]
        );
        assert_eq!(
            licenses(&json!({"licenses": [{"type": "MIT"}, {"type": "Apache-2.0"}]})),
            ["MIT", "Apache-2.0"]
        );
        assert!(licenses(&json!({})).is_empty());
        // No licence on the version: the packument's own.
        let packument =
            json!({"dist-tags": {"latest": "1.0.0"}, "license": "ISC", "versions": {"1.0.0": {}}});
        assert_eq!(facts(&packument)["license"].message, "ISC");
        assert_eq!(facts(&packument)["types"], Fact::missing());
    }
}
