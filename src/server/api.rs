//! `GET /-/api/REPO/PROJECT/VERSION/dependencies`: what the stored artifacts of one
//! release declare, as extracted when granary stored them; refused like the
//! repository itself to callers who may not read it.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, StatusCode};

use super::authorize::authorize;
use super::error::ApiError;
use super::state::AppState;

pub(super) async fn api(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    match answer(&state, &path, &headers).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn answer(state: &AppState, path: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let segments = super::own_paths::segments(path)?;
    let [repo_name, project @ .., version, "dependencies"] = segments.as_slice() else {
        return Err(ApiError::client(
            StatusCode::NOT_FOUND,
            "the API serves /-/api/REPO/PROJECT/VERSION/dependencies",
        ));
    };
    if project.is_empty() {
        return Err(ApiError::client(
            StatusCode::NOT_FOUND,
            "the API serves /-/api/REPO/PROJECT/VERSION/dependencies",
        ));
    }
    let repo = state.repos.get(*repo_name).ok_or_else(|| {
        ApiError::client(
            StatusCode::NOT_FOUND,
            format!("no repository named `{repo_name}`"),
        )
    })?;
    if let Err(refusal) = authorize(state, repo_name, repo, headers).await {
        return Ok(refusal);
    }
    let project = repo.canonical_project(&project.join("/"))?;
    let extractions = state
        .metadata
        .extractions_of(repo_name, &project, version)
        .await
        .map_err(|error| {
            ApiError::client(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the metadata store cannot answer right now: {error}"),
            )
        })?;
    if extractions.is_empty() {
        return Err(ApiError::client(
            StatusCode::NOT_FOUND,
            format!(
                "no artifact of `{project}` {version} is stored in repository `{repo_name}` yet: \
                 dependencies are extracted when granary stores one (fetch it through granary first)"
            ),
        ));
    }
    Ok(Json(serde_json::json!({
        "repo": repo_name,
        "project": project,
        "version": version,
        "artifacts": extractions,
    }))
    .into_response())
}
