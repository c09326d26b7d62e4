//! Who may read a repository: the caller's credentials checked against its access
//! list, and the refusal in the form the repository's clients act on.

use axum::response::{IntoResponse, Response};
use http::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use http::StatusCode;

use super::error::ApiError;
use super::state::{AppState, Repository};
use crate::access::{AuthError, Decision, Identity};
use crate::protocols::RequestContext;

/// Who the caller is, when they may read `repo`; else the response refusing them
/// (`401` with the repository's challenge, `403`, or `503` when credentials cannot
/// be checked).
///
/// A public repository reads no credentials: an `Authorization` header there is the
/// client's business with the upstream (an `http` repository's application), or a
/// leftover from another index, and changes nothing.
pub(super) async fn authorize(
    state: &AppState,
    repo_name: &str,
    repo: &Repository,
    headers: &http::HeaderMap,
) -> Result<Identity, Response> {
    let identity = if repo.settings().access.is_private() {
        state
            .auth
            .authenticate(headers.get(AUTHORIZATION).map(HeaderValue::as_bytes))
            .await
    } else {
        Ok(Identity::anonymous())
    };
    let refusal = match &identity {
        Err(AuthError::Invalid) => Some((
            StatusCode::UNAUTHORIZED,
            format!("the credentials are not valid for repository `{repo_name}`"),
        )),
        Err(AuthError::Unavailable(reason)) => {
            return Err(ApiError::client(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("credentials cannot be checked right now: {reason}"),
            )
            .into_response());
        }
        Ok(identity) => match repo.settings().access.decide(identity) {
            Decision::Allow => None,
            Decision::NeedCredentials => Some((
                StatusCode::UNAUTHORIZED,
                format!("repository `{repo_name}` needs credentials"),
            )),
            Decision::Forbidden => Some((
                StatusCode::FORBIDDEN,
                format!(
                    "user `{}` may not read repository `{repo_name}`",
                    identity.user.as_deref().unwrap_or("admin")
                ),
            )),
        },
    };
    let identity = identity.unwrap_or_default();
    let Some((status, message)) = refusal else {
        return Ok(identity);
    };
    let mut response = ApiError::client(status, message).into_response();
    if status == StatusCode::UNAUTHORIZED {
        let context = RequestContext {
            engine: &state.engine,
            blobs: &state.blobs,
            identity: &identity,
            public_url: state.public_url.as_deref(),
            headers,
        };
        if let Ok(challenge) = HeaderValue::from_str(&repo.challenge(&context)) {
            response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
        }
    }
    Err(response)
}

/// The repository named `repo_name`, or the refusal its readers' check gives.
pub(super) async fn readable_repo<'a>(
    state: &'a AppState,
    repo_name: &str,
    headers: &http::HeaderMap,
) -> Result<Result<&'a Repository, Response>, ApiError> {
    let repo = state.repos.get(repo_name).ok_or_else(|| {
        ApiError::client(
            StatusCode::NOT_FOUND,
            format!("no repository named `{repo_name}`"),
        )
    })?;
    Ok(authorize(state, repo_name, repo, headers)
        .await
        .map(|_| repo))
}
