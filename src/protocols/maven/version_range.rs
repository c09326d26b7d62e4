//! Maven version requirements: a soft requirement (`1.0`, which nearest-wins may
//! override) or ranges (`[1.0,2.0)`, `[1.5,)`, `(,1.0]`, `[1.2]`, several joined by
//! commas), matched with Maven's own ordering of versions (`ComparableVersion`).

use std::cmp::Ordering;

use mvn_version::ComparableVersion;

/// One bracketed range.
#[derive(Debug, Clone)]
pub struct Restriction {
    lower: Option<(ComparableVersion, bool)>,
    upper: Option<(ComparableVersion, bool)>,
}

impl Restriction {
    fn contains(&self, version: &ComparableVersion) -> bool {
        let above = self
            .lower
            .as_ref()
            .is_none_or(|(bound, inclusive)| match version.cmp(bound) {
                Ordering::Greater => true,
                Ordering::Equal => *inclusive,
                Ordering::Less => false,
            });
        let below = self
            .upper
            .as_ref()
            .is_none_or(|(bound, inclusive)| match version.cmp(bound) {
                Ordering::Less => true,
                Ordering::Equal => *inclusive,
                Ordering::Greater => false,
            });
        above && below
    }
}

/// A dependency's `<version>`.
#[derive(Debug, Clone)]
pub enum Requirement {
    /// A plain version: what is used unless a nearer declaration says otherwise.
    Soft(String),
    /// Any version inside one of the ranges: the highest the metadata lists.
    Ranges {
        restrictions: Vec<Restriction>,
        /// Whether a bound names a snapshot (only then are snapshots candidates).
        snapshots: bool,
    },
}

impl Requirement {
    /// # Errors
    /// A range that is not well formed (unbalanced brackets, a bound in the wrong
    /// order), said with the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if !text.starts_with(['[', '(']) {
            return Ok(Self::Soft(text.to_owned()));
        }
        let bad = |why: &str| format!("version range `{text}`: {why}");
        let mut restrictions = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let open = rest.chars().next().expect("not empty");
            if open != '[' && open != '(' {
                return Err(bad("expected `[` or `(`"));
            }
            let close_at = rest
                .find([']', ')'])
                .ok_or_else(|| bad("a range is not closed"))?;
            let close = rest[close_at..].chars().next().expect("found");
            let inside = &rest[1..close_at];
            let restriction = match inside.split_once(',') {
                None => {
                    if open != '[' || close != ']' || inside.trim().is_empty() {
                        return Err(bad("a single version must be written `[v]`"));
                    }
                    let exact = ComparableVersion::new(inside.trim());
                    Restriction {
                        lower: Some((exact.clone(), true)),
                        upper: Some((exact, true)),
                    }
                }
                Some((low, high)) => {
                    let bound = |value: &str, inclusive: bool| {
                        let value = value.trim();
                        (!value.is_empty()).then(|| (ComparableVersion::new(value), inclusive))
                    };
                    let restriction = Restriction {
                        lower: bound(low, open == '['),
                        upper: bound(high, close == ']'),
                    };
                    if let (Some((low, _)), Some((high, _))) =
                        (&restriction.lower, &restriction.upper)
                    {
                        if low > high {
                            return Err(bad("its lower bound is above its upper bound"));
                        }
                    }
                    restriction
                }
            };
            restrictions.push(restriction);
            rest = rest[close_at + 1..].trim_start();
            if let Some(after_comma) = rest.strip_prefix(',') {
                rest = after_comma.trim_start();
                if rest.is_empty() {
                    return Err(bad("a comma ends it"));
                }
            } else if !rest.is_empty() {
                return Err(bad("ranges must be joined by commas"));
            }
        }
        Ok(Self::Ranges {
            restrictions,
            snapshots: text.contains("SNAPSHOT"),
        })
    }

    /// The highest of `versions` this requirement accepts (a soft one accepts only
    /// itself and needs no list).
    #[must_use]
    pub fn pick<'a>(&'a self, versions: &'a [String]) -> Option<&'a str> {
        match self {
            Self::Soft(version) => Some(version),
            Self::Ranges {
                restrictions,
                snapshots,
            } => versions
                .iter()
                .filter(|v| *snapshots || !v.ends_with("SNAPSHOT"))
                .map(|v| (ComparableVersion::new(v), v))
                .filter(|(parsed, _)| restrictions.iter().any(|r| r.contains(parsed)))
                .max_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, v)| v.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Requirement;

    fn listed() -> Vec<String> {
        [
            "1.0",
            "1.1",
            "1.2-beta-1",
            "1.2",
            "1.10",
            "2.0-SNAPSHOT",
            "2.0",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn pick(range: &str) -> Option<String> {
        let list = listed();
        Requirement::parse(range)
            .expect("parses")
            .pick(&list)
            .map(str::to_owned)
    }

    #[test]
    fn ranges_take_the_highest_listed_version_inside_by_maven_order() {
        assert_eq!(pick("[1.0,2.0)").as_deref(), Some("1.10"));
        assert_eq!(pick("[1.0,1.2)").as_deref(), Some("1.2-beta-1"));
        assert_eq!(pick("(,1.1]").as_deref(), Some("1.1"));
        assert_eq!(pick("[1.5,)").as_deref(), Some("2.0"));
        assert_eq!(pick("[1.1]").as_deref(), Some("1.1"));
        assert_eq!(pick("[1.0,1.0],[1.2,1.3)").as_deref(), Some("1.2"));
        assert_eq!(pick("[3.0,)"), None);
        assert_eq!(pick("1.1").as_deref(), Some("1.1"));
    }

    #[test]
    fn malformed_ranges_are_refused_with_the_text() {
        for bad in [
            "[1.0,2.0",
            "[2.0,1.0]",
            "[1.0,2.0) [3,4]",
            "(1.0)",
            "[1.0,2.0),",
        ] {
            let error = Requirement::parse(bad).expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
    }
}
