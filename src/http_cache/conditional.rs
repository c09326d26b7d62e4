//! Client conditional requests (RFC 9110 §13.1.2, `If-None-Match`).

/// Whether an `If-None-Match` header value matches `etag` (weak comparison, as
/// RFC 9110 §13.1.2 requires for `If-None-Match`).
#[must_use]
pub fn if_none_match_hits(if_none_match: &str, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_lists_weak_tags_and_star() {
        let cases = [
            ("\"abc\"", "\"abc\"", true),
            ("\"x\", \"abc\"", "\"abc\"", true),
            ("W/\"abc\"", "\"abc\"", true),
            ("*", "\"abc\"", true),
            ("\"abd\"", "\"abc\"", false),
            ("", "\"abc\"", false),
        ];
        for (header, etag, expected) in cases {
            assert_eq!(
                if_none_match_hits(header, etag),
                expected,
                "{header} vs {etag}"
            );
        }
    }
}
