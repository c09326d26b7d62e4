//! The Maven repository layout: which paths exist, and what each one is.
//!
//! `group/path/artifact/version/artifact-version[-classifier].ext`, checksum files
//! beside every file (`.md5`, `.sha1`, `.sha256`, `.sha512`), and
//! `maven-metadata.xml` at group, artifact and snapshot-version level.

use crate::engine::{CacheKey, Category, DigestAlgorithm};

/// The format label in keys and metrics.
pub const FORMAT: &str = "maven";

/// Longest path segment accepted.
const MAX_SEGMENT_BYTES: usize = 255;

/// The metadata file's name.
pub const METADATA: &str = "maven-metadata.xml";
/// The prefix list's name, in `.meta/`.
const PREFIXES: &str = "prefixes.txt";

/// Checksum files Maven clients ask for, by suffix.
const CHECKSUMS: [(&str, DigestAlgorithm); 4] = [
    (".sha512", DigestAlgorithm::Sha512),
    (".sha256", DigestAlgorithm::Sha256),
    (".sha1", DigestAlgorithm::Sha1),
    (".md5", DigestAlgorithm::Md5),
];

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// `maven-metadata.xml`: changes with every deployment; an index page.
    Metadata,
    /// A `-SNAPSHOT` file under its non-unique name (`a-1.0-SNAPSHOT.jar`): changes
    /// with every deployment; an index page.
    SnapshotFile,
    /// `.meta/prefixes.txt`: the repository's list of group prefixes (Maven 3.9+ reads
    /// it to skip repositories that cannot have an artifact); changes; an index page.
    PrefixList,
    /// A release file, or a snapshot's timestamped build (`a-1.0-20250101.120000-3.jar`):
    /// written once, never changed; an immutable artifact.
    Immutable,
}

/// A parsed request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MavenPath {
    /// The file, without a checksum suffix: `org/x/a/1.0/a-1.0.jar`.
    pub file: String,
    pub kind: FileKind,
    /// Set when the request is for the file's checksum rather than the file.
    pub checksum: Option<DigestAlgorithm>,
}

impl MavenPath {
    /// The file name (last segment).
    #[must_use]
    pub fn file_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }
}

/// The checksum file suffix of `algorithm`.
#[must_use]
pub fn checksum_suffix(algorithm: DigestAlgorithm) -> &'static str {
    CHECKSUMS
        .iter()
        .find(|(_, a)| *a == algorithm)
        .map_or(".sha1", |(suffix, _)| suffix)
}

fn is_valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_SEGMENT_BYTES
        && !segment.starts_with('.')
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+' | b'~'))
}

/// Classifies decoded path segments.
///
/// # Errors
/// `Err` with a message when the path is not in the repository layout (bad
/// characters, too short, a file name that does not match its directories).
pub fn parse(segments: &[&str]) -> Result<MavenPath, String> {
    if let [".meta", name] = segments {
        if let Some((base, checksum)) = split_checksum(name) {
            if base == PREFIXES {
                return Ok(MavenPath {
                    file: format!(".meta/{PREFIXES}"),
                    kind: FileKind::PrefixList,
                    checksum,
                });
            }
        }
    }
    if let Some(bad) = segments.iter().find(|s| !is_valid_segment(s)) {
        return Err(format!(
            "`{bad}` is not a Maven path segment (letters, digits and `.-_+~`; not starting with `.`)"
        ));
    }
    let Some((name, dirs)) = segments.split_last() else {
        return Err("empty path".to_owned());
    };
    let (base_name, checksum) = split_checksum(name).unwrap_or((name, None));
    let file = if dirs.is_empty() {
        base_name.to_owned()
    } else {
        format!("{}/{base_name}", dirs.join("/"))
    };
    let layout_error = || {
        format!(
            "`{}` is not in the Maven repository layout \
             (group/artifact/version/artifact-version[-classifier].ext)",
            segments.join("/")
        )
    };
    if base_name == METADATA {
        // Group-level (plugin prefixes), artifact-level or snapshot-version level.
        if dirs.is_empty() {
            return Err(layout_error());
        }
        return Ok(MavenPath {
            file,
            kind: FileKind::Metadata,
            checksum,
        });
    }
    if CHECKSUMS
        .iter()
        .any(|(suffix, _)| base_name.ends_with(suffix))
    {
        return Err(format!(
            "`{name}`: checksums of checksum files are not served"
        ));
    }
    let [.., artifact, version] = dirs else {
        return Err(layout_error());
    };
    if dirs.len() < 3 {
        return Err(layout_error());
    }
    let kind = match version.strip_suffix("-SNAPSHOT") {
        Some(base_version) => {
            if follows(base_name, &format!("{artifact}-{version}")) {
                FileKind::SnapshotFile
            } else if base_name
                .strip_prefix(&format!("{artifact}-{base_version}-"))
                .is_some_and(starts_with_build_stamp)
            {
                FileKind::Immutable
            } else {
                return Err(layout_error());
            }
        }
        None if follows(base_name, &format!("{artifact}-{version}")) => FileKind::Immutable,
        None => return Err(layout_error()),
    };
    Ok(MavenPath {
        file,
        kind,
        checksum,
    })
}

/// `name` without a checksum suffix, and which checksum it asks for (`None` when it
/// has no suffix); `None` for a bare suffix.
fn split_checksum(name: &str) -> Option<(&str, Option<DigestAlgorithm>)> {
    match CHECKSUMS
        .iter()
        .find_map(|(suffix, algorithm)| name.strip_suffix(suffix).map(|base| (base, algorithm)))
    {
        Some(("", _)) => None,
        Some((base, algorithm)) => Some((base, Some(*algorithm))),
        None => Some((name, None)),
    }
}

/// `name` is `stem` followed by a classifier (`-…`) or an extension (`.…`).
fn follows(name: &str, stem: &str) -> bool {
    name.strip_prefix(stem)
        .is_some_and(|rest| rest.len() > 1 && (rest.starts_with('.') || rest.starts_with('-')))
}

/// `yyyyMMdd.HHmmss-N…`: a unique snapshot build's timestamp and build number.
fn starts_with_build_stamp(rest: &str) -> bool {
    let bytes = rest.as_bytes();
    bytes.len() > 17
        && bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[8] == b'.'
        && bytes[9..15].iter().all(u8::is_ascii_digit)
        && bytes[15] == b'-'
        && bytes[16].is_ascii_digit()
}

/// The key of a document (metadata, snapshot file, or an upstream checksum file).
#[must_use]
pub fn document_key(repo: &str, path: &str) -> CacheKey {
    CacheKey::new(Category::Index, FORMAT, repo, path)
}

/// The key of an immutable file.
#[must_use]
pub fn artifact_key(repo: &str, path: &str) -> CacheKey {
    CacheKey::new(Category::Artifact, FORMAT, repo, path)
}

/// The artifact-level metadata path of `group:artifact`, for purging.
///
/// # Errors
/// When `coordinates` is not `group:artifact` with valid parts.
pub fn metadata_path_of(coordinates: &str) -> Result<String, String> {
    let (group, artifact) = coordinates
        .split_once(':')
        .ok_or_else(|| format!("`{coordinates}`: expected `groupId:artifactId`"))?;
    let mut segments: Vec<&str> = group.split('.').collect();
    segments.push(artifact);
    if let Some(bad) = segments.iter().find(|s| !is_valid_segment(s)) {
        return Err(format!("`{coordinates}`: `{bad}` is not a valid part"));
    }
    Ok(format!("{}/{METADATA}", segments.join("/")))
}

/// The content type of a served file, by its name.
#[must_use]
pub fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit('.').next().unwrap_or("");
    match extension {
        "pom" | "xml" => "text/xml",
        "jar" | "war" | "ear" => "application/java-archive",
        "module" | "json" => "application/json",
        "md5" | "sha1" | "sha256" | "sha512" | "asc" | "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(path: &str) -> Result<MavenPath, String> {
        parse(&path.split('/').collect::<Vec<_>>())
    }

    #[test]
    fn release_files_and_their_checksums_are_immutable() {
        let jar = parsed("org/acme/core/1.0/core-1.0.jar").expect("jar");
        assert_eq!(jar.kind, FileKind::Immutable);
        assert_eq!(jar.checksum, None);
        let sources = parsed("org/acme/core/1.0/core-1.0-sources.jar.sha1").expect("sha1");
        assert_eq!(sources.file, "org/acme/core/1.0/core-1.0-sources.jar");
        assert_eq!(sources.checksum, Some(DigestAlgorithm::Sha1));
        assert_eq!(
            parsed("org/acme/core/1.0/core-1.0.pom.sha512")
                .expect("pom")
                .checksum,
            Some(DigestAlgorithm::Sha512)
        );
    }

    #[test]
    fn metadata_and_snapshots_are_index_pages() {
        for path in [
            "org/acme/core/maven-metadata.xml",
            "org/acme/core/1.0-SNAPSHOT/maven-metadata.xml.md5",
            "org/apache/maven/plugins/maven-metadata.xml",
        ] {
            assert_eq!(parsed(path).expect(path).kind, FileKind::Metadata, "{path}");
        }
        assert_eq!(
            parsed("org/acme/core/1.0-SNAPSHOT/core-1.0-SNAPSHOT.jar")
                .expect("snapshot")
                .kind,
            FileKind::SnapshotFile
        );
        assert_eq!(
            parsed("org/acme/core/1.0-SNAPSHOT/core-1.0-20250101.120000-3-tests.jar")
                .expect("timestamped")
                .kind,
            FileKind::Immutable
        );
    }

    #[test]
    fn the_prefix_list_is_an_index_page() {
        let prefixes = parsed(".meta/prefixes.txt").expect("prefixes");
        assert_eq!(prefixes.kind, FileKind::PrefixList);
        assert_eq!(
            parsed(".meta/prefixes.txt.sha1").expect("sha1").checksum,
            Some(DigestAlgorithm::Sha1)
        );
        assert!(parsed(".meta/other.txt").is_err());
        assert!(parsed(".meta/.sha1").is_err());
    }

    #[test]
    fn paths_outside_the_layout_are_refused() {
        for bad in [
            "maven-metadata.xml",
            "etc/passwd",
            "org/acme/core/1.0/other-1.0.jar",
            "org/acme/core/1.0/core-1.0",
            "org/acme/core/1.0-SNAPSHOT/core-1.0-garbage.jar",
            "org/acme/core/1.0/core-1.0.jar.sha1.md5",
            "org/acme/core/1.0/.hidden",
            "org/acme/co re/1.0/co re-1.0.jar",
            "org/acme/core/1.0/",
        ] {
            assert!(parsed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn coordinates_name_artifact_metadata() {
        assert_eq!(
            metadata_path_of("org.acme:core").expect("valid"),
            "org/acme/core/maven-metadata.xml"
        );
        assert!(metadata_path_of("org..acme:core").is_err());
        assert!(metadata_path_of("core").is_err());
    }
}
