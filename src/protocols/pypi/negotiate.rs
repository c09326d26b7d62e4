//! Content negotiation for the Simple API (PEP 691): the client's `Accept`, with
//! q-values, picks JSON, the versioned HTML or legacy `text/html`.

/// A form of a Simple API document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimpleFormat {
    Json,
    HtmlV1,
    LegacyHtml,
}

pub const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";
pub const HTML_V1_TYPE: &str = "application/vnd.pypi.simple.v1+html";
pub const LEGACY_HTML_TYPE: &str = "text/html; charset=utf-8";
/// What `406 Not Acceptable` lists.
pub const AVAILABLE: &str =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html, text/html";

impl SimpleFormat {
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => JSON_TYPE,
            Self::HtmlV1 => HTML_V1_TYPE,
            Self::LegacyHtml => LEGACY_HTML_TYPE,
        }
    }

    /// Our preference when the client's q-values tie.
    fn rank(self) -> u8 {
        match self {
            Self::Json => 2,
            Self::HtmlV1 => 1,
            Self::LegacyHtml => 0,
        }
    }
}

/// Media ranges we can satisfy, matched case-insensitively without allocating.
const MEDIA_TYPES: &[(&str, SimpleFormat)] = &[
    ("application/vnd.pypi.simple.v1+json", SimpleFormat::Json),
    (
        "application/vnd.pypi.simple.latest+json",
        SimpleFormat::Json,
    ),
    ("application/vnd.pypi.simple.v1+html", SimpleFormat::HtmlV1),
    (
        "application/vnd.pypi.simple.latest+html",
        SimpleFormat::HtmlV1,
    ),
    ("text/html", SimpleFormat::LegacyHtml),
    ("text/*", SimpleFormat::LegacyHtml),
    ("*/*", SimpleFormat::LegacyHtml),
];

/// The form to serve for an `Accept` header, or `None` for 406. No header means
/// `text/html` (what PEP 503 clients expect).
#[must_use]
pub fn negotiate(accept: Option<&str>) -> Option<SimpleFormat> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(SimpleFormat::LegacyHtml);
    };
    let mut best: Option<(u16, SimpleFormat)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media_type = parts.next().unwrap_or("").trim();
        let quality = parts
            .filter_map(|p| {
                let p = p.trim();
                // `get`: a parameter may start with a multi-byte character.
                p.get(..2)
                    .filter(|name| name.eq_ignore_ascii_case("q="))
                    .map(|_| &p[2..])
            })
            .find_map(parse_quality)
            .unwrap_or(1000);
        if quality == 0 {
            continue;
        }
        let Some(format) = MEDIA_TYPES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(media_type))
            .map(|(_, format)| *format)
        else {
            continue;
        };
        let better =
            best.is_none_or(|(q, f)| quality > q || (quality == q && format.rank() > f.rank()));
        if better {
            best = Some((quality, format));
        }
    }
    best.map(|(_, format)| format)
}

/// q-value as thousandths (RFC 9110 §12.4.2 allows three decimals).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "the value is checked to be in 0..=1 first"
)]
fn parse_quality(text: &str) -> Option<u16> {
    let value: f32 = text.trim().parse().ok()?;
    (0.0..=1.0)
        .contains(&value)
        .then(|| (value * 1000.0).round() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`fuzz/corpus/accept/crash-6f69…`): a parameter starting with
    /// a multi-byte character was sliced inside it. Unreachable over HTTP today (the
    /// router reads only ASCII header values), but the function is public.
    #[test]
    fn a_parameter_starting_with_a_multi_byte_character_is_ignored() {
        assert_eq!(
            negotiate(Some(
                "text/html;\u{20ac}a, application/vnd.pypi.simple.v1+json;q=0.5"
            )),
            Some(SimpleFormat::LegacyHtml)
        );
    }

    #[test]
    fn picks_by_q_value_then_preference() {
        let cases: &[(Option<&str>, Option<SimpleFormat>)] = &[
            (None, Some(SimpleFormat::LegacyHtml)),
            (Some(""), Some(SimpleFormat::LegacyHtml)),
            (Some("*/*"), Some(SimpleFormat::LegacyHtml)),
            (Some("text/html"), Some(SimpleFormat::LegacyHtml)),
            // pip's header.
            (Some("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"), Some(SimpleFormat::Json)),
            // uv's header.
            (Some("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"), Some(SimpleFormat::Json)),
            (Some("application/vnd.pypi.simple.v1+html, application/vnd.pypi.simple.v1+json;q=0.5"), Some(SimpleFormat::HtmlV1)),
            (Some("application/vnd.pypi.simple.latest+json"), Some(SimpleFormat::Json)),
            (Some("Application/Vnd.PyPI.Simple.V1+JSON; Q=0.5, text/html;q=0.4"), Some(SimpleFormat::Json)),
            (Some("application/vnd.pypi.simple.v1+json;q=0, text/html"), Some(SimpleFormat::LegacyHtml)),
            (Some("application/json"), None),
            (Some("image/png, text/html;q=0"), None),
        ];
        for (accept, expected) in cases {
            assert_eq!(negotiate(*accept), *expected, "{accept:?}");
        }
    }
}
