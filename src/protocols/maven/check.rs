//! Checking what a Maven upstream sends before it is stored: `maven-metadata.xml`
//! must be well-formed XML with a `<metadata>` root; a checksum file must hold a
//! digest of the right length.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::engine::DigestAlgorithm;

/// Checks a `maven-metadata.xml` body.
///
/// # Errors
/// Where and why it is malformed.
pub fn metadata_xml(body: &[u8]) -> Result<(), String> {
    let mut reader = Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut root_seen = false;
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| {
            format!(
                "maven-metadata.xml is not well-formed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        match event {
            Event::Start(ref start) | Event::Empty(ref start) if depth == 0 => {
                if root_seen {
                    return Err("maven-metadata.xml has more than one root element".to_owned());
                }
                if start.name().as_ref() != b"metadata" {
                    return Err(format!(
                        "maven-metadata.xml's root element is `{}`, not `metadata`",
                        String::from_utf8_lossy(start.name().as_ref())
                    ));
                }
                root_seen = true;
                if matches!(event, Event::Start(_)) {
                    depth = 1;
                }
            }
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(text) if depth == 0 && !text.iter().all(u8::is_ascii_whitespace) => {
                return Err("maven-metadata.xml has text outside its root element".to_owned());
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !root_seen {
        return Err("maven-metadata.xml has no `metadata` element".to_owned());
    }
    if depth != 0 {
        return Err("maven-metadata.xml ends before its elements are closed".to_owned());
    }
    Ok(())
}

/// The digest in a checksum file, lowercase hex. The file holds the digest, optionally
/// followed by whitespace and a file name (`sha1sum` style).
///
/// # Errors
/// When the first word is not a hex digest of `algorithm`'s length.
pub fn checksum_file(body: &[u8], algorithm: DigestAlgorithm) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "checksum file is not text".to_owned())?;
    let word = text.split_whitespace().next().unwrap_or("");
    let hex_len = match algorithm {
        DigestAlgorithm::Md5 => 32,
        DigestAlgorithm::Sha1 => 40,
        DigestAlgorithm::Sha256 => 64,
        DigestAlgorithm::Sha512 => 128,
    };
    if word.len() != hex_len || !word.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{} checksum file does not start with a {hex_len}-digit hex digest",
            algorithm.as_str()
        ));
    }
    Ok(word.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_must_be_well_formed_with_a_metadata_root() {
        let good = br#"<?xml version="1.0" encoding="UTF-8"?>
<metadata><groupId>g</groupId><versioning><versions><version>1</version></versions></versioning></metadata>
"#;
        assert_eq!(metadata_xml(good), Ok(()));
        assert!(metadata_xml(b"<metadata><a></b></metadata>").is_err());
        assert!(metadata_xml(b"<metadata><versioning>").is_err());
        assert!(metadata_xml(b"<html><body>login</body></html>").is_err());
        assert!(metadata_xml(b"").is_err());
        assert!(metadata_xml(b"not xml at all").is_err());
        assert!(metadata_xml(b"<metadata/><metadata/>").is_err());
    }

    #[test]
    fn checksum_files_in_both_styles() {
        let sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
        assert_eq!(
            checksum_file(sha1.as_bytes(), DigestAlgorithm::Sha1).as_deref(),
            Ok(sha1)
        );
        assert_eq!(
            checksum_file(
                format!("{}  core-1.0.jar\n", sha1.to_uppercase()).as_bytes(),
                DigestAlgorithm::Sha1
            )
            .as_deref(),
            Ok(sha1)
        );
        assert!(checksum_file(sha1.as_bytes(), DigestAlgorithm::Md5).is_err());
        assert!(checksum_file(b"<html>", DigestAlgorithm::Sha1).is_err());
    }
}
