//! Splitting a request path into decoded, validated segments.
//!
//! Every segment is percent-decoded once and then rejected if it could name anything
//! but itself: `.`, `..`, separators, NUL and control characters. This is the only
//! place client paths are interpreted, so traversal (`..`, `%2e%2e`, `%2f`) cannot
//! reach a protocol.

use super::RequestError;

/// Longest request path accepted (bytes, before decoding).
pub const MAX_PATH_BYTES: usize = 2048;

/// Decoded segments of a path below a repository's mount point. The last segment is
/// empty when the path ends with `/`.
///
/// # Errors
/// `BadRequest` for traversal, separators or control characters in a segment.
pub fn segments(raw_path: &str) -> Result<Vec<String>, RequestError> {
    raw_path
        .split('/')
        .map(|raw| {
            let decoded = percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| {
                    RequestError::BadRequest(format!("path segment `{raw}` is not valid UTF-8"))
                })?;
            let decoded = decoded.into_owned();
            if decoded == "." || decoded == ".." {
                return Err(RequestError::BadRequest(format!(
                    "path segment `{raw}` is a relative reference"
                )));
            }
            if decoded
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control())
            {
                return Err(RequestError::BadRequest(format!(
                    "path segment `{raw}` contains a separator or control character"
                )));
            }
            Ok(decoded)
        })
        .collect()
}

/// `@scope%2fname…` → `@scope/name…`: npm clients encode a scoped package's slash
/// in its first segment; only that one occurrence is decoded.
#[must_use]
pub fn decode_scope_slash(raw_path: &str) -> std::borrow::Cow<'_, str> {
    if !raw_path.starts_with('@') && !raw_path.starts_with("%40") {
        return raw_path.into();
    }
    let first_end = raw_path.find('/').unwrap_or(raw_path.len());
    let first = &raw_path[..first_end];
    let lower = first.to_ascii_lowercase();
    match lower.find("%2f") {
        Some(at) => format!(
            "{}/{}{}",
            &first[..at],
            &first[at + 3..],
            &raw_path[first_end..]
        )
        .into(),
        None => raw_path.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_slash_is_decoded_once() {
        assert_eq!(decode_scope_slash("@s%2fn"), "@s/n");
        assert_eq!(decode_scope_slash("@s%2Fn/-/n-1.tgz"), "@s/n/-/n-1.tgz");
        assert_eq!(decode_scope_slash("@s/n"), "@s/n");
        assert_eq!(
            decode_scope_slash("plain%2fx"),
            "plain%2fx",
            "only scoped names"
        );
        assert!(
            segments(&decode_scope_slash("@s%2f..%2f..")).is_err(),
            "traversal still rejected"
        );
    }

    #[test]
    fn traversal_and_separators_are_rejected() {
        for bad in [
            "simple/../x",
            "simple/%2e%2e/x",
            "simple/%2E%2e",
            "files/a%2fb",
            "files/a%5cb",
            "files/%00",
            "files/./x",
            "x/%ff",
        ] {
            assert!(segments(bad).is_err(), "{bad}");
        }
        assert_eq!(
            segments("simple/foo-bar/").expect("valid"),
            vec!["simple", "foo-bar", ""]
        );
        assert_eq!(
            segments("files/p/p-1.0%2Blocal.tar.gz").expect("valid"),
            vec!["files", "p", "p-1.0+local.tar.gz"]
        );
    }
}
