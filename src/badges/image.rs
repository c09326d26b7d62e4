//! Drawing a badge and the content-keyed image cache: an image is keyed by a hash of
//! everything that decides its bytes (renderer, format, style, texts, colours), so
//! the "license: MIT" badge of ten thousand projects is rendered once.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use shields::{BadgeParams, BadgeStyle};

use crate::metrics::Metrics;

/// Changes whenever the same inputs would draw different bytes (a new renderer
/// version, a change to what the JSON carries), so cached images and `ETag`s from
/// before are not reused.
pub const RENDERER_VERSION: &str = "shields-1.8/granary-1";
/// Images kept in memory (each is about a kilobyte).
const MEMORY_IMAGES: u64 = 20_000;
/// How long an image is kept without being asked for.
const IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Badge styles, as the badge services name them.
pub const STYLES: [(&str, BadgeStyle); 5] = [
    ("flat", BadgeStyle::Flat),
    ("flat-square", BadgeStyle::FlatSquare),
    ("for-the-badge", BadgeStyle::ForTheBadge),
    ("plastic", BadgeStyle::Plastic),
    ("social", BadgeStyle::Social),
];

/// What a badge is served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Svg,
    /// The shields "endpoint" schema, so other badge services can draw it.
    Json,
}

impl ImageFormat {
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Svg => "image/svg+xml;charset=utf-8",
            Self::Json => "application/json",
        }
    }
}

/// Everything that decides a badge image's bytes.
#[derive(Debug, Clone)]
pub struct Drawing {
    pub format: ImageFormat,
    pub style: &'static str,
    pub label: String,
    pub message: String,
    pub color: String,
    pub label_color: Option<String>,
    pub is_error: bool,
}

impl Drawing {
    /// The hash the image is cached and tagged (`ETag`) by.
    #[must_use]
    pub fn content_key(&self) -> String {
        let mut hasher = Sha256::new();
        let format = match self.format {
            ImageFormat::Svg => "svg",
            ImageFormat::Json => "json",
        };
        for part in [
            RENDERER_VERSION,
            format,
            self.style,
            &self.label,
            &self.message,
            &self.color,
            self.label_color.as_deref().unwrap_or("\u{0}default"),
            if self.is_error { "error" } else { "ok" },
        ] {
            // Length-prefixed, so no two different inputs hash alike.
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// The image's bytes.
    #[must_use]
    pub fn render(&self) -> Bytes {
        match self.format {
            ImageFormat::Svg => {
                let style = STYLES
                    .iter()
                    .find(|(name, _)| *name == self.style)
                    .map_or(BadgeStyle::Flat, |(_, style)| *style);
                shields::render_badge_svg(&BadgeParams {
                    style,
                    label: Some(&self.label),
                    message: Some(&self.message),
                    label_color: self.label_color.as_deref(),
                    message_color: Some(&self.color),
                    ..BadgeParams::default()
                })
                .into()
            }
            ImageFormat::Json => {
                let mut value = serde_json::json!({
                    "schemaVersion": 1,
                    "label": self.label,
                    "message": self.message,
                    "color": self.color,
                    "isError": self.is_error,
                    "style": self.style,
                });
                if let Some(label_color) = &self.label_color {
                    value["labelColor"] = label_color.clone().into();
                }
                serde_json::to_vec(&value).expect("JSON serializes").into()
            }
        }
    }
}

/// Rendered images by content key.
#[derive(Debug, Clone)]
pub struct ImageCache {
    memory: moka::sync::Cache<String, Bytes>,
    metrics: Metrics,
}

impl ImageCache {
    #[must_use]
    pub fn new(metrics: Metrics) -> Self {
        Self {
            memory: moka::sync::Cache::builder()
                .max_capacity(MEMORY_IMAGES)
                .time_to_idle(IDLE_FOR)
                .build(),
            metrics,
        }
    }

    /// The image of `drawing`, whose content key is `key`: rendered on the first ask
    /// (concurrent first asks render once) and kept.
    #[must_use]
    pub fn get_or_render(&self, key: &str, drawing: &Drawing) -> Bytes {
        self.memory.get_with_by_ref(key, || {
            self.metrics.badge_renders.inc();
            drawing.render()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drawing() -> Drawing {
        Drawing {
            format: ImageFormat::Svg,
            style: "flat",
            label: "license".to_owned(),
            message: "MIT".to_owned(),
            color: "green".to_owned(),
            label_color: None,
            is_error: false,
        }
    }

    #[test]
    fn content_keys_differ_with_every_input() {
        let base = drawing();
        let mut keys = vec![base.content_key()];
        keys.push(
            Drawing {
                style: "plastic",
                ..base.clone()
            }
            .content_key(),
        );
        keys.push(
            Drawing {
                format: ImageFormat::Json,
                ..base.clone()
            }
            .content_key(),
        );
        keys.push(
            Drawing {
                label: "licens".to_owned(),
                message: "eMIT".to_owned(),
                ..base.clone()
            }
            .content_key(),
        );
        keys.push(
            Drawing {
                color: "red".to_owned(),
                ..base.clone()
            }
            .content_key(),
        );
        keys.push(
            Drawing {
                label_color: Some("red".to_owned()),
                ..base.clone()
            }
            .content_key(),
        );
        keys.push(
            Drawing {
                is_error: true,
                ..base.clone()
            }
            .content_key(),
        );
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        assert_eq!(base.content_key(), drawing().content_key());
    }

    #[test]
    fn svg_is_accessible_and_escaped() {
        let svg = Drawing {
            label: "<script>".to_owned(),
            message: "a\"b&c".to_owned(),
            ..drawing()
        }
        .render();
        let svg = std::str::from_utf8(&svg).expect("test input");
        assert!(svg.contains("role=\"img\""), "{svg}");
        assert!(
            svg.contains("<title>&lt;script&gt;: a&quot;b&amp;c</title>"),
            "{svg}"
        );
        assert!(!svg.contains("<script>"), "{svg}");
    }

    #[test]
    fn one_render_per_content_key() {
        let metrics = Metrics::new();
        let cache = ImageCache::new(metrics.clone());
        let first = drawing();
        for _ in 0..3 {
            let _ = cache.get_or_render(&first.content_key(), &first);
        }
        let other = Drawing {
            message: "ISC".to_owned(),
            ..drawing()
        };
        let _ = cache.get_or_render(&other.content_key(), &other);
        assert_eq!(metrics.badge_renders.get(), 2);
    }
}

#[cfg(test)]
mod reference_sizes {
    use super::*;

    /// The sizes the common badge services draw these at (their font-metrics table:
    /// Verdana 11px), e.g. the familiar 88×20 "build | passing".
    #[test]
    fn text_widths_follow_the_font_metrics_table() {
        for (label, message, width) in [("build", "passing", 88), ("license", "MIT", 78)] {
            let svg = Drawing {
                format: ImageFormat::Svg,
                style: "flat",
                label: label.to_owned(),
                message: message.to_owned(),
                color: "brightgreen".to_owned(),
                label_color: None,
                is_error: false,
            }
            .render();
            let svg = String::from_utf8(svg.to_vec()).expect("utf-8");
            assert!(
                svg.starts_with(&format!(
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"20\""
                )),
                "{svg}"
            );
        }
    }
}
