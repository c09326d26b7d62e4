//! The texts of an XML document's elements by path (`project/licenses/license/name`),
//! with namespace prefixes dropped: enough to read POMs and `maven-metadata.xml`.

use quick_xml::events::Event;
use quick_xml::Reader;

/// Appends what a text event carries (text, CDATA, an entity or character
/// reference) to `text`; other events add nothing.
///
/// # Errors
/// Text that does not decode, or an unknown entity.
pub(super) fn append_text(event: &Event<'_>, text: &mut String) -> Result<(), String> {
    match event {
        Event::Text(t) => text.push_str(&t.xml10_content().map_err(|e| e.to_string())?),
        Event::CData(t) => text.push_str(&String::from_utf8_lossy(t)),
        Event::GeneralRef(reference) => {
            if let Ok(Some(c)) = reference.resolve_char_ref() {
                text.push(c);
            } else {
                let name = reference.decode().map_err(|e| e.to_string())?;
                text.push_str(
                    &quick_xml::escape::unescape(&format!("&{name};"))
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        _ => {}
    }
    Ok(())
}

/// Every element's text, in document order.
#[derive(Debug, Default)]
pub struct XmlTexts {
    texts: Vec<(String, String)>,
}

/// Deepest nesting read (a POM is a few levels deep).
const MAX_DEPTH: usize = 64;

impl XmlTexts {
    /// # Errors
    /// Malformed XML, or nested deeper than any POM.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::from_reader(body);
        let mut buf = Vec::new();
        let mut path: Vec<String> = Vec::new();
        let mut text = String::new();
        let mut texts = Vec::new();
        loop {
            let event = reader.read_event_into(&mut buf).map_err(|e| {
                format!(
                    "not well-formed XML at byte {}: {e}",
                    reader.error_position()
                )
            })?;
            match event {
                Event::Start(start) => {
                    if path.len() >= MAX_DEPTH {
                        return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                    }
                    path.push(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
                    text.clear();
                }
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    append_text(&event, &mut text)?;
                }
                Event::End(_) => {
                    let trimmed = text.trim();
                    if !trimmed.is_empty() {
                        texts.push((path.join("/"), trimmed.to_owned()));
                    }
                    text.clear();
                    path.pop();
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        Ok(Self { texts })
    }

    /// The first text at `path`.
    #[must_use]
    pub fn first(&self, path: &str) -> Option<&str> {
        self.texts
            .iter()
            .find(|(at, _)| at == path)
            .map(|(_, text)| text.as_str())
    }

    /// Every text at `path`, in document order.
    pub fn all<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.texts
            .iter()
            .filter(move |(at, _)| at == path)
            .map(|(_, text)| text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_by_path_with_entities_and_prefixes() {
        let xml = br#"<?xml version="1.0"?>
<p:project xmlns:p="http://maven.apache.org/POM/4.0.0">
  <p:licenses>
    <p:license><p:name>Apache License, Version 2.0</p:name></p:license>
    <p:license><p:name>A &amp; B &#65;</p:name></p:license>
  </p:licenses>
</p:project>"#;
        let texts = XmlTexts::parse(xml).expect("test input");
        assert_eq!(
            texts
                .all("project/licenses/license/name")
                .collect::<Vec<_>>(),
            ["Apache License, Version 2.0", "A & B A"]
        );
        assert_eq!(texts.first("project/parent/version"), None);
        assert!(XmlTexts::parse(b"<a><b></a>").is_err());
    }
}
