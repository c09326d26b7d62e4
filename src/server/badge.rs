//! `GET /-/badge/REPO/PROJECT/KIND.svg` (or `.json`): a badge drawn from what granary
//! caches, refused like the repository itself to callers who may not read it.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::authorize::authorize;
use super::error::ApiError;
use super::state::AppState;
use crate::badges::image::ImageFormat;
use crate::badges::{BadgeError, BadgeRequest};

/// An SVG served from granary's origin may not run or load anything.
const SVG_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

pub(super) async fn badge(
    State(state): State<AppState>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match answer(&state, &path, query.as_deref(), &headers).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn not_a_badge_path() -> ApiError {
    ApiError::client(
        StatusCode::NOT_FOUND,
        "a badge is at /-/badge/REPO/PROJECT/KIND.svg (or .json)",
    )
}

/// `REPO/PROJECT.../KIND.EXT`, checked: the project may span segments (a scoped
/// package name).
fn split(path: &str) -> Result<(&str, String, &str, ImageFormat), ApiError> {
    let segments = super::own_paths::segments(path)?;
    // One segment (`/-/badge/x`) has no project: found by fuzzing, it was a 500.
    let [repo, project @ .., file] = segments.as_slice() else {
        return Err(not_a_badge_path());
    };
    if project.is_empty() {
        return Err(not_a_badge_path());
    }
    let (kind, format) = match file.rsplit_once('.') {
        Some((kind, "svg")) => (kind, ImageFormat::Svg),
        Some((kind, "json")) => (kind, ImageFormat::Json),
        _ => {
            return Err(ApiError::client(
                StatusCode::NOT_FOUND,
                format!("`{file}`: a badge is KIND.svg or KIND.json"),
            ))
        }
    };
    Ok((repo, project.join("/"), kind, format))
}

async fn answer(
    state: &AppState,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (repo_name, project, kind, format) = split(path)?;
    let repo = state.repos.get(repo_name).ok_or_else(|| {
        ApiError::client(
            StatusCode::NOT_FOUND,
            format!("no repository named `{repo_name}`"),
        )
    })?;
    if let Err(refusal) = authorize(state, repo_name, repo, headers).await {
        return Ok(refusal);
    }
    let badge = state
        .badges
        .badge(BadgeRequest {
            protocol: repo,
            engine: &state.engine,
            blobs: &state.blobs,
            project: &project,
            kind,
            format,
            query,
            if_none_match: headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()),
        })
        .await
        .map_err(|error| match error {
            BadgeError::BadRequest(message) => ApiError::client(StatusCode::BAD_REQUEST, message),
            BadgeError::NotFound(message) => ApiError::client(StatusCode::NOT_FOUND, message),
        })?;
    let mut response = if badge.not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = badge.body.into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(badge.content_type));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if format == ImageFormat::Svg {
            headers.insert(
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(SVG_POLICY),
            );
        }
        response
    };
    let headers = response.headers_mut();
    headers.insert(
        ETAG,
        HeaderValue::from_str(&badge.etag).expect("an ETag is a quoted hex digest"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_str(&format!(
            "max-age={age}, s-maxage={age}",
            age = badge.max_age
        ))
        .expect("digits"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`fuzz/corpus/request/crash-8cab…`: `GET /-/badge/p` was a 500).
    #[test]
    fn paths_without_a_project_are_not_found() {
        for path in ["p", "p/version.svg"] {
            let error = split(path).expect_err(path);
            assert_eq!(error.status, StatusCode::NOT_FOUND, "{path}");
        }
        assert!(split("p/demo/version.svg").is_ok());
    }

    #[test]
    fn paths_split_into_repo_project_and_kind() {
        let (repo, project, kind, format) =
            split("js/@scope/name/version.json").expect("test input");
        assert_eq!(
            (repo, project.as_str(), kind, format),
            ("js", "@scope/name", "version", ImageFormat::Json)
        );
        assert!(split("py/demo/version.png").is_err());
        assert!(split("py/version.svg").is_err());
        assert!(split("py/../version.svg").is_err());
        assert!(split("py//demo/version.svg").is_err());
    }
}
