//! Resolving a project's own requirements file, for `POST /-/api/REPO/resolve` and
//! for `POST /-/api/REPO/warm` of a file granary resolves first.

use std::sync::Arc;

use super::error::ApiError;
use super::state::AppState;
use crate::protocols::resolution::ResolveOptions;

/// The resolution of a project's own requirements `file` on `repo`, cached by its
/// digest.
///
/// # Errors
/// What the resolver refused, as the status and message to answer.
pub(super) async fn resolve_file(
    state: &AppState,
    repo_name: &str,
    repo: &Arc<dyn crate::protocols::Protocol>,
    options: &ResolveOptions,
    refresh: bool,
    file: &str,
) -> Result<(Arc<crate::resolution::Resolved>, crate::resolution::Outcome), ApiError> {
    state
        .resolutions
        .resolve(
            &state.engine,
            file_request(state, repo_name, repo, options, refresh, file),
        )
        .await
        .map_err(ApiError::from)
}

/// What is asked of the resolution cache for a project's own requirements `file`.
pub(super) fn file_request<'a>(
    state: &'a AppState,
    repo_name: &'a str,
    repo: &'a Arc<dyn crate::protocols::Protocol>,
    options: &'a ResolveOptions,
    refresh: bool,
    file: &'a str,
) -> crate::resolution::Request<'a> {
    crate::resolution::Request {
        repo_name,
        repo,
        project: "",
        version: "",
        options,
        refresh,
        blobs: &state.blobs,
        file: Some(file),
    }
}
