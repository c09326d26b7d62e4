//! Paths of granary's own endpoints that name a repository and a project
//! (`/-/badge/...`, `/-/api/...`), split and checked once.

use http::StatusCode;

use super::error::ApiError;

/// The segments of `path`, none empty, `.`, `..` or with control characters.
///
/// # Errors
/// A 400 naming what is refused.
pub(super) fn segments(path: &str) -> Result<Vec<&str>, ApiError> {
    let segments: Vec<&str> = path.split('/').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == ".." || s.chars().any(char::is_control))
    {
        return Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            "a path here has no empty, `.` or `..` segments and no control characters",
        ));
    }
    Ok(segments)
}
