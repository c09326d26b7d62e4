//! The route table: granary's own endpoints under the reserved `/-/` prefix, and
//! every repository at `/<name>/`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get};
use axum::Router;
use http::header::ACCEPT;
use http::{Method, StatusCode};
use tower_http::compression::CompressionLayer;

use super::error::ApiError;
use super::state::{AppState, Repository};
use super::{admin, middleware, ops, respond};
use crate::protocols::cargo::CargoRequest;
use crate::protocols::npm::{self, NpmRequest};
use crate::protocols::path::{self, MAX_PATH_BYTES};
use crate::protocols::RequestError;

/// The application; tests drive it directly or through a listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/-/health", get(ops::health))
        .route("/-/ready", get(ops::ready))
        .route("/-/metrics", get(ops::metrics))
        .route("/-/cache/{repo}", delete(admin::purge_repo))
        .route("/-/cache/{repo}/{project}", delete(admin::purge_project))
        .fallback(dispatch)
        // Index documents (npm packuments reach megabytes) are compressed per
        // `Accept-Encoding`; artifacts are already compressed and keep their
        // Content-Length and Range support.
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .br(true)
                .compress_when(compressible),
        )
        // Outermost: one log line and one metrics sample per request, errors included.
        .layer(from_fn_with_state(state.clone(), middleware::observe))
        .with_state(state)
}

/// Documents worth compressing: JSON, HTML and text index documents above 1 KiB.
fn compressible(
    status: StatusCode,
    _: http::Version,
    headers: &http::HeaderMap,
    _: &http::Extensions,
) -> bool {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let large = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_none_or(|length| length > 1024);
    status.is_success()
        && large
        && (content_type.starts_with("application/json")
            || content_type.starts_with("application/vnd.npm")
            || content_type.starts_with("application/vnd.pypi")
            || content_type.starts_with("text/html")
            // cargo's index files; Maven checksums are below the size floor.
            || content_type.starts_with("text/plain"))
}

/// Routes `/<repo>/<rest>` to the repository's protocol.
async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    match dispatch_inner(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn dispatch_inner(state: &AppState, request: Request) -> Result<Response, ApiError> {
    // POST reaches only npm's audit passthrough; the repository checks the path.
    if request.method() != Method::GET
        && request.method() != Method::HEAD
        && request.method() != Method::POST
    {
        return Err(RequestError::MethodNotAllowed.into());
    }
    let raw_path = request.uri().path().to_owned();
    if raw_path.len() > MAX_PATH_BYTES {
        return Err(ApiError::client(
            StatusCode::URI_TOO_LONG,
            format!("request path is longer than {MAX_PATH_BYTES} bytes"),
        ));
    }
    let trimmed = raw_path.trim_start_matches('/');
    let (repo_name, rest) = match trimmed.split_once('/') {
        Some((repo, rest)) => (repo, rest),
        None if state.repos.contains_key(trimmed) => {
            return Ok(Redirect::permanent(&format!("/{trimmed}/")).into_response());
        }
        None => (trimmed, ""),
    };
    let repo = state.repos.get(repo_name).ok_or_else(|| {
        ApiError::client(
            StatusCode::NOT_FOUND,
            format!("no repository named `{repo_name}`"),
        )
    })?;
    let accept = request
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let reply = match repo {
        _ if request.method() == Method::POST && !matches!(repo, Repository::Npm(_)) => {
            return Err(RequestError::MethodNotAllowed.into());
        }
        Repository::Pypi(pypi) => {
            let segments = path::segments(rest)?;
            pypi.handle(&state.engine, &segments, accept.as_deref())
                .await?
        }
        Repository::Npm(npm) => {
            // `@scope%2fname` is how clients spell a scoped package in one segment.
            let segments = path::segments(&path::decode_scope_slash(rest))?;
            let base_url = state.base_url(request.headers());
            let method = request.method().clone();
            let query = request.uri().query().map(str::to_owned);
            let (parts, body) = request.into_parts();
            let body = if method == Method::POST {
                axum::body::to_bytes(body, npm::MAX_PASSTHROUGH_BODY)
                    .await
                    .map_err(|_| {
                        ApiError::client(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                    })?
            } else {
                bytes::Bytes::new()
            };
            let reply = npm
                .handle(
                    &state.engine,
                    &segments,
                    NpmRequest {
                        method: &method,
                        accept: accept.as_deref(),
                        query: query.as_deref(),
                        body,
                        base_url: &base_url,
                    },
                )
                .await?;
            let request = Request::from_parts(parts, Body::empty());
            return Ok(
                respond::reply(reply, request, &state.metrics, &state.blobs, repo_name).await,
            );
        }
        Repository::Cargo(cargo) => {
            let segments = path::segments(rest)?;
            let base_url = state.base_url(request.headers());
            cargo
                .handle(
                    &state.engine,
                    &segments,
                    CargoRequest {
                        method: request.method(),
                        query: request.uri().query(),
                        base_url: &base_url,
                    },
                )
                .await?
        }
        Repository::Maven(maven) => {
            let segments = path::segments(rest)?;
            maven
                .handle(&state.engine, &state.blobs, &segments, request.method())
                .await?
        }
    };
    let (parts, _) = request.into_parts();
    let request = Request::from_parts(parts, Body::empty());
    Ok(respond::reply(reply, request, &state.metrics, &state.blobs, repo_name).await)
}
