//! Admin endpoints, behind the bearer token in `admin_token`:
//! `DELETE /-/cache/REPO/PROJECT` forgets one project's index entries,
//! `DELETE /-/cache/REPO` every index entry of a repository. Artifacts are immutable
//! and never invalidated.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode};
use serde_json::json;
use tracing::info;

use super::error::ApiError;
use super::state::AppState;
use crate::engine::{CacheKey, Category};

pub(super) async fn purge_repo(
    State(state): State<AppState>,
    Path(repo): Path<String>,
    headers: HeaderMap,
) -> Response {
    purge(&state, &headers, &repo, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn purge_project(
    State(state): State<AppState>,
    Path((repo, project)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    purge(&state, &headers, &repo, Some(&project))
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn purge(
    state: &AppState,
    headers: &HeaderMap,
    repo_name: &str,
    project: Option<&str>,
) -> Result<Response, ApiError> {
    authorize(state, headers).await?;
    let repo = state.repos.get(repo_name).ok_or_else(|| {
        ApiError::client(
            StatusCode::NOT_FOUND,
            format!("no repository named `{repo_name}`"),
        )
    })?;
    let prefix = match project {
        // The exact key: a prefix of `foo` must not also purge `foo-bar`.
        Some(project) => repo.project_index_key(project)?.as_str().to_owned(),
        None => CacheKey::repo_prefix(Category::Index, repo.format(), repo_name),
    };
    let removed = if project.is_some() {
        state.engine.index.invalidate_key(&prefix).await
    } else {
        state.engine.index.invalidate_prefix(&prefix).await
    }
    .map_err(|e| ApiError::internal(e.to_string()))?;
    info!(
        repo = repo_name,
        project, removed, "index entries invalidated"
    );
    Ok(Json(json!({"repo": repo_name, "project": project, "removed": removed})).into_response())
}

/// The admin role, or why not (`404` when admin endpoints are disabled).
pub(super) async fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.admin_token.is_none() && !state.auth.has_admins() {
        return Err(ApiError::client(
            StatusCode::NOT_FOUND,
            "admin endpoints are disabled: set `admin_token` or `auth.admins`",
        ));
    }
    let identity = state
        .auth
        .authenticate(headers.get(AUTHORIZATION).map(http::HeaderValue::as_bytes))
        .await;
    match identity {
        Ok(identity) if identity.admin => Ok(()),
        Ok(identity) if identity.is_authenticated() => Err(ApiError::client(
            StatusCode::FORBIDDEN,
            "the admin role is required",
        )),
        _ => Err(ApiError::client(
            StatusCode::UNAUTHORIZED,
            "admin credentials are required (`Authorization: Bearer <admin_token>`, or a user with the admin role)",
        )),
    }
}
