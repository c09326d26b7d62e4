//! `GET /-/api/REPO/PROJECT/VERSION/dependencies`: what the stored artifacts of one
//! release declare, as extracted when granary stored them; and
//! `GET /-/api/REPO/PROJECT/VERSION/resolve`: the transitive resolution, as the
//! format's client would make it. Both are refused like the repository itself to
//! callers who may not read it.

use axum::extract::{Extension, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, StatusCode};

use super::authorize::readable_repo;
use super::error::ApiError;
use super::state::AppState;
use super::warm::InProcessRoutes;

use crate::protocols::resolution::ResolveOptions;
use crate::resolution::{Lines, Outcome};
use futures::StreamExt;

pub(super) async fn api(
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

const SERVED: &str = "the API serves /-/api/REPO/PROJECT/VERSION/dependencies and \
                      /-/api/REPO/PROJECT/VERSION/resolve";

async fn answer(
    state: &AppState,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let segments = super::own_paths::segments(path)?;
    let [repo_name, project @ .., version, what @ ("dependencies" | "resolve")] =
        segments.as_slice()
    else {
        return Err(ApiError::client(StatusCode::NOT_FOUND, SERVED));
    };
    if project.is_empty() {
        return Err(ApiError::client(StatusCode::NOT_FOUND, SERVED));
    }
    let repo = match readable_repo(state, repo_name, headers).await? {
        Ok(repo) => repo,
        Err(refusal) => return Ok(refusal),
    };
    if *what == "resolve" {
        let (options, refresh) = resolve_query(state, query, headers).await?;
        let (resolved, outcome) = state
            .resolutions
            .resolve(
                &state.engine,
                crate::resolution::Request {
                    repo_name,
                    repo,
                    project: &project.join("/"),
                    version,
                    options: &options,
                    refresh,
                    blobs: &state.blobs,
                    file: None,
                },
            )
            .await?;
        let mut response = (
            [(http::header::CONTENT_TYPE, "application/json")],
            resolved.body.clone(),
        )
            .into_response();
        response.headers_mut().insert(
            super::respond::X_CACHE,
            http::HeaderValue::from_static(outcome.as_str()),
        );
        return Ok(response);
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

/// Largest requirements file `POST /-/api/REPO/resolve` reads.
const MAX_REQUIREMENTS_FILE: usize = 1024 * 1024;
const NDJSON: &str = "application/x-ndjson";

/// `POST /-/api/REPO/resolve`: the body is a requirements file in the repository's
/// format's terms; the answer is NDJSON (`node`…, `edge`…, `done`, or one `error`).
/// `POST /-/api/REPO/warm`: see [`super::warm`].
pub(super) async fn post(
    State(state): State<AppState>,
    Extension(routes): Extension<InProcessRoutes>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let segments = match super::own_paths::segments(&path) {
        Ok(segments) => segments,
        Err(error) => return error.into_response(),
    };
    let outcome = if let [repo_name, "warm"] = segments.as_slice() {
        super::warm::warm(&state, routes, repo_name, query.as_deref(), &headers, &body).await
    } else {
        ensure(&state, &path, query.as_deref(), &headers, &body).await
    };
    match outcome {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn ensure(
    state: &AppState,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let segments = super::own_paths::segments(path)?;
    let [repo_name, "resolve"] = segments.as_slice() else {
        return Err(ApiError::client(
            StatusCode::NOT_FOUND,
            "POST serves /-/api/REPO/resolve (a requirements file as the body) and \
             /-/api/REPO/warm?file=NAME (a lockfile as the body)",
        ));
    };
    let repo = match readable_repo(state, repo_name, headers).await? {
        Ok(repo) => repo,
        Err(refusal) => return Ok(refusal),
    };
    if body.len() > MAX_REQUIREMENTS_FILE {
        return Err(ApiError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a requirements file is at most {MAX_REQUIREMENTS_FILE} bytes"),
        ));
    }
    let file = std::str::from_utf8(body).map_err(|error| {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            format!("the requirements file is not UTF-8: {error}"),
        )
    })?;
    let (options, refresh) = resolve_query(state, query, headers).await?;
    let lines = state
        .resolutions
        .resolve_lines(
            &state.engine,
            super::resolve_file::file_request(state, repo_name, repo, &options, refresh, file),
        )
        .await
        .map_err(ApiError::from);
    let (status, body, outcome) = match lines {
        Ok(Lines::Whole(resolved, outcome)) => (
            StatusCode::OK,
            axum::body::Body::from(crate::resolution::ndjson(&resolved.body)),
            Some(outcome),
        ),
        // Resolving: lines as they become final, then `done` (or `error`).
        Ok(Lines::Streaming(lines)) => (
            StatusCode::OK,
            axum::body::Body::from_stream(lines.map(Ok::<_, std::convert::Infallible>)),
            Some(Outcome::Miss),
        ),
        Err(error) => (
            error.status,
            axum::body::Body::from(crate::protocols::resolution::ndjson_line(
                "error",
                &serde_json::json!({ "message": error.message }),
            )),
            None,
        ),
    };
    let mut response = (status, [(http::header::CONTENT_TYPE, NDJSON)], body).into_response();
    if let Some(outcome) = outcome {
        response.headers_mut().insert(
            super::respond::X_CACHE,
            http::HeaderValue::from_static(outcome.as_str()),
        );
    }
    Ok(response)
}

/// [`resolve_options`], with `refresh` allowed to the admin role only (recomputing on
/// demand costs the upstream).
async fn resolve_query(
    state: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(ResolveOptions, bool), ApiError> {
    let (options, refresh) = resolve_options(query)?;
    if refresh {
        super::admin::authorize(state, headers).await?;
    }
    Ok((options, refresh))
}

/// `max_depth`, `include_optional`, `target` and `refresh` from the query string.
fn resolve_options(query: Option<&str>) -> Result<(ResolveOptions, bool), ApiError> {
    let mut options = ResolveOptions {
        max_depth: None,
        include_optional: false,
        target: None,
    };
    let bad = |message: String| ApiError::client(StatusCode::BAD_REQUEST, message);
    let mut refresh = false;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "max_depth" => {
                options.max_depth = Some(value.parse().map_err(|_| {
                    bad(format!(
                        "`max_depth={value}`: a number of edges from the root"
                    ))
                })?);
            }
            "include_optional" => {
                options.include_optional = match value.as_ref() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad(format!("`include_optional={value}`: true or false"))),
                };
            }
            "target" => options.target = Some(value.into_owned()).filter(|t| !t.is_empty()),
            "refresh" => refresh = matches!(value.as_ref(), "true" | "1"),
            other => {
                return Err(bad(format!(
                    "`{other}`: resolve takes max_depth, include_optional, target and refresh"
                )))
            }
        }
    }
    Ok((options, refresh))
}
