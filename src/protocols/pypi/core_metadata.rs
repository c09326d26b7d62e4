//! Core metadata (`METADATA`, `PKG-INFO`, PEP 658 files): the email-header format of
//! the core metadata specification, read as fields; the body (a long description)
//! is not read.

use std::io::Read;

/// The header fields of one core metadata file, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreMetadataFields {
    fields: Vec<(String, String)>,
}

impl CoreMetadataFields {
    /// Parses the header block: `Name: value` lines, with continuation lines (a
    /// leading space or tab) appended on new lines, up to the first empty line.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    // setuptools indents continuation lines with 8 spaces or `       |`.
                    let continued = line.trim_start();
                    let continued = continued.strip_prefix('|').unwrap_or(continued);
                    value.push('\n');
                    value.push_str(continued.trim_end());
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                fields.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        Self { fields }
    }

    /// The first value of `name` (case-insensitive), if any.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Every value of a multiple-use field (`Classifier`, `Requires-Dist`, ...).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The `METADATA` file of a wheel (`<name>-<version>.dist-info/METADATA`).
///
/// # Errors
/// Not a zip, no such member, or not UTF-8.
pub fn from_wheel(wheel: impl std::io::Read + std::io::Seek) -> Result<String, String> {
    let mut archive =
        zip::ZipArchive::new(wheel).map_err(|e| format!("not a readable wheel: {e}"))?;
    let member = archive
        .file_names()
        .filter_map(Result::ok)
        .find(|name| {
            name.split_once('/')
                .is_some_and(|(dir, file)| dir.ends_with(".dist-info") && file == "METADATA")
        })
        .map(std::borrow::Cow::into_owned)
        .ok_or_else(|| "the wheel has no `.dist-info/METADATA`".to_owned())?;
    let mut text = String::new();
    archive
        .by_name(&member)
        .map_err(|e| format!("`{member}`: {e}"))?
        // A metadata file is small; a huge one is not read whole.
        .take(16 * 1024 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("`{member}`: {e}"))?;
    Ok(text)
}

/// The `PKG-INFO` at the top of an sdist (`<name>-<version>/PKG-INFO`), from a
/// `.tar.gz` or a `.zip`.
///
/// # Errors
/// Not a readable archive, or no top-level `PKG-INFO`.
pub fn from_sdist(
    sdist: impl std::io::Read + std::io::Seek,
    filename: &str,
) -> Result<String, String> {
    let is_top_level_pkg_info = |path: &str| {
        path.split_once('/')
            .is_some_and(|(_, rest)| rest == "PKG-INFO")
    };
    let mut text = String::new();
    if filename.ends_with(".zip") {
        let mut archive =
            zip::ZipArchive::new(sdist).map_err(|e| format!("not a readable zip: {e}"))?;
        let member = archive
            .file_names()
            .filter_map(Result::ok)
            .find(|name| is_top_level_pkg_info(name))
            .map(std::borrow::Cow::into_owned)
            .ok_or_else(|| "the sdist has no top-level PKG-INFO".to_owned())?;
        archive
            .by_name(&member)
            .map_err(|e| format!("`{member}`: {e}"))?
            .take(16 * 1024 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| format!("`{member}`: {e}"))?;
        return Ok(text);
    }
    let unpacked =
        flate2::read::GzDecoder::new(std::io::BufReader::new(sdist)).take(1024 * 1024 * 1024);
    let mut archive = tar::Archive::new(unpacked);
    for entry in archive
        .entries()
        .map_err(|e| format!("not a readable tar.gz: {e}"))?
    {
        let entry = entry.map_err(|e| format!("not a readable tar.gz: {e}"))?;
        let wanted = entry
            .path()
            .ok()
            .and_then(|p| p.to_str().map(is_top_level_pkg_info))
            .unwrap_or(false);
        if wanted {
            entry
                .take(16 * 1024 * 1024)
                .read_to_string(&mut text)
                .map_err(|e| format!("PKG-INFO: {e}"))?;
            return Ok(text);
        }
    }
    Err("the sdist has no top-level PKG-INFO".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_repeat_continue_and_stop_at_the_body() {
        let text = "Metadata-Version: 2.1\nName: demo\nLicense: Line one\n        line two\nClassifier: A :: B\nclassifier: C :: D\n\nBody: not a field\n";
        let fields = CoreMetadataFields::parse(text);
        assert_eq!(fields.get("name"), Some("demo"));
        assert_eq!(fields.get("License"), Some("Line one\nline two"));
        assert_eq!(
            fields.all("Classifier").collect::<Vec<_>>(),
            ["A :: B", "C :: D"]
        );
        assert_eq!(fields.get("Body"), None);
    }
}
