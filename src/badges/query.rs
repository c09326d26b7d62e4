//! A badge request's query: `style`, `label`, `color`, `labelColor`, `cacheSeconds`,
//! checked. Colours are accepted only as named colours, hex, or `rgb()`/`hsl()`
//! forms; texts are capped and must be printable.

use super::image::STYLES;

/// Longest `label` accepted, in characters.
pub const MAX_LABEL: usize = 64;
/// Longest colour value accepted.
const MAX_COLOR: usize = 40;
/// The most a badge may be cached for (`cacheSeconds` is capped here).
pub const MAX_CACHE_SECONDS: u64 = 24 * 60 * 60;

/// The shields named colours and their aliases.
const NAMED_COLORS: [&str; 16] = [
    "brightgreen",
    "green",
    "yellow",
    "yellowgreen",
    "orange",
    "red",
    "blue",
    "grey",
    "gray",
    "lightgrey",
    "lightgray",
    "critical",
    "important",
    "success",
    "informational",
    "inactive",
];

/// A checked query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BadgeQuery {
    pub style: Option<&'static str>,
    pub label: Option<String>,
    pub color: Option<String>,
    pub label_color: Option<String>,
    pub cache_seconds: Option<u64>,
}

impl BadgeQuery {
    /// # Errors
    /// Which parameter is refused and why.
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut parsed = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match name.as_ref() {
                "style" => {
                    parsed.style = Some(
                        STYLES
                            .iter()
                            .find(|(style, _)| *style == value)
                            .map(|(style, _)| *style)
                            .ok_or_else(|| {
                                format!(
                                    "`style` must be one of {}",
                                    STYLES.map(|(style, _)| style).join(", ")
                                )
                            })?,
                    );
                }
                "label" => parsed.label = Some(checked_text("label", &value, MAX_LABEL)?),
                "color" => parsed.color = Some(checked_color("color", &value)?),
                "labelColor" => parsed.label_color = Some(checked_color("labelColor", &value)?),
                "cacheSeconds" => {
                    parsed.cache_seconds = Some(value.parse().map_err(|_| {
                        format!("`cacheSeconds` must be a whole number of seconds, not `{value}`")
                    })?);
                }
                // Other badge services' parameters (logos, links) are not drawn.
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// Printable text of at most `max` characters.
fn checked_text(name: &str, value: &str, max: usize) -> Result<String, String> {
    if value.chars().count() > max {
        return Err(format!("`{name}` is longer than {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("`{name}` contains control characters"));
    }
    Ok(value.to_owned())
}

/// A named colour, hex (3 or 6 digits, `#` optional), or `rgb()`, `rgba()`,
/// `hsl()`, `hsla()` of numbers.
fn checked_color(name: &str, value: &str) -> Result<String, String> {
    let lower = value.trim().to_ascii_lowercase();
    let hex = lower.strip_prefix('#').unwrap_or(&lower);
    let is_hex = matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let is_function = lower.len() <= MAX_COLOR
        && ["rgb(", "rgba(", "hsl(", "hsla("].iter().any(|function| {
            lower
                .strip_prefix(function)
                .and_then(|rest| rest.strip_suffix(')'))
                .is_some_and(|args| {
                    let args = args.replace("deg", "");
                    args.bytes().any(|b| b.is_ascii_digit())
                        && args
                            .bytes()
                            .all(|b| b.is_ascii_digit() || b" .,%/".contains(&b))
                })
        });
    if NAMED_COLORS.contains(&lower.as_str()) || is_function {
        Ok(lower)
    } else if is_hex {
        Ok(hex.to_owned())
    } else {
        Err(format!(
            "`{name}` must be a named colour ({}), hex, rgb() or hsl()",
            NAMED_COLORS.join(", ")
        ))
    }
}

/// A message cut to `max` characters (with an ellipsis) so a long fact cannot draw
/// a badge across the page.
#[must_use]
pub fn capped(message: &str, max: usize) -> String {
    if message.chars().count() <= max {
        message.to_owned()
    } else {
        let mut cut: String = message.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_named_hex_or_functions_only() {
        for good in [
            "green",
            "Critical",
            "4c1",
            "%23ff00aa",
            "rgb(10,20,30)",
            "hsla(120, 50%, 50%, 0.5)",
        ] {
            let query = format!("color={good}");
            assert!(BadgeQuery::parse(Some(&query)).is_ok(), "{good}");
        }
        for bad in [
            "url(%23x)",
            "red;fill:url(javascript:alert(1))",
            "%22%3E%3Cscript%3E",
            "rgb(1,2,3)%3Cscript",
            "expression(alert(1))",
            "12345",
        ] {
            let query = format!("labelColor={bad}");
            assert!(BadgeQuery::parse(Some(&query)).is_err(), "{bad}");
        }
        assert_eq!(
            BadgeQuery::parse(Some("color=%23FFAA00"))
                .expect("test input")
                .color
                .as_deref(),
            Some("ffaa00")
        );
    }

    #[test]
    fn styles_labels_and_cache_seconds_are_checked() {
        let query = BadgeQuery::parse(Some("style=for-the-badge&label=py&cacheSeconds=600&logo=x"))
            .expect("test input");
        assert_eq!(query.style, Some("for-the-badge"));
        assert_eq!(query.label.as_deref(), Some("py"));
        assert_eq!(query.cache_seconds, Some(600));
        assert!(BadgeQuery::parse(Some("style=neon")).is_err());
        assert!(BadgeQuery::parse(Some("cacheSeconds=-1")).is_err());
        assert!(BadgeQuery::parse(Some(&format!("label={}", "x".repeat(65)))).is_err());
        assert!(BadgeQuery::parse(Some("label=a%0Ab")).is_err());
    }

    #[test]
    fn long_messages_are_cut() {
        assert_eq!(capped("short", 8), "short");
        assert_eq!(capped("much too long", 8), "much to…");
    }
}
