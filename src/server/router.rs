//! The route table: granary's own endpoints under the reserved `/-/` prefix, and
//! every repository at `/<name>/`.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Extension, Request, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get};
use axum::Router;
use http::header::ACCEPT;
use http::{Method, StatusCode};
use std::sync::Arc;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::compression::CompressionLayer;

use super::error::ApiError;
use super::state::AppState;
use super::{admin, api, authorize, badge, middleware, ops, replica, respond, warm};
use crate::engine::artifact::REPLICA_FILL_PATH;
use crate::protocols::path::MAX_PATH_BYTES;
use crate::protocols::{ProtocolRequest, RequestContext, RequestError};

/// The application; tests drive it directly or through a listener.
pub fn router(state: AppState) -> Router {
    let permits = Arc::clone(&state.request_permits);
    let routes = routes(state);
    let in_process = warm::InProcessRoutes(routes.clone());
    routes
        .layer(Extension(in_process))
        // Outermost: a bound on requests in flight.
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(permits))
}

/// Every route with its middleware, without the bound on requests in flight.
fn routes(state: AppState) -> Router {
    Router::new()
        .route("/-/health", get(ops::health))
        .route("/-/ready", get(ops::ready))
        .route("/-/metrics", get(ops::metrics))
        .route("/-/status", get(ops::status_page))
        .route("/-/status.json", get(ops::status_json))
        .route("/-/badge/{*path}", get(badge::badge))
        .route(
            "/-/api/{*path}",
            get(api::api)
                .post(api::post)
                .layer(DefaultBodyLimit::max(warm::MAX_WARM_FILE)),
        )
        .route("/-/cache/{repo}", delete(admin::purge_repo))
        .route("/-/cache/{repo}/{project}", delete(admin::purge_project))
        .route(REPLICA_FILL_PATH, get(replica::follow_fill))
        .fallback(dispatch)
        // A request id, a span, one log line, one metrics sample and the traffic
        // counters per request (errors and panics included), sized before compression.
        .layer(from_fn_with_state(state.clone(), middleware::observe))
        // Index documents (some reach megabytes) are compressed per
        // `Accept-Encoding`; artifacts are already compressed and keep their
        // Content-Length and Range support.
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .br(true)
                .compress_when(compressible),
        )
        .with_state(state)
}

/// Documents worth compressing: what [`respond`] marked [`respond::Compressible`]
/// (index documents and small built responses), above 1 KiB. Artifacts are already
/// compressed and keep their Content-Length and Range support.
fn compressible(
    status: StatusCode,
    _: http::Version,
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
) -> bool {
    let large = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_none_or(|length| length > 1024);
    status.is_success() && large && extensions.get::<respond::Compressible>().is_some()
}

/// Routes `/<repo>/<rest>` to the repository's protocol.
async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    match dispatch_inner(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn dispatch_inner(state: &AppState, request: Request) -> Result<Response, ApiError> {
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
    let method = request.method().clone();
    let max_body = repo.max_body(&method);
    if method != Method::GET && method != Method::HEAD && max_body.is_none() {
        return Err(RequestError::MethodNotAllowed.into());
    }
    let identity = match authorize::authorize(state, repo_name, repo, request.headers()).await {
        Ok(identity) => identity,
        Err(refusal) => return Ok(refusal),
    };
    let segments = repo.segments(rest)?;
    let (parts, body) = request.into_parts();
    let body = match max_body {
        Some(limit) => axum::body::to_bytes(body, limit).await.map_err(|_| {
            ApiError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {limit} bytes"),
            )
        })?,
        None => bytes::Bytes::new(),
    };
    let context = RequestContext {
        engine: &state.engine,
        blobs: &state.blobs,
        identity: &identity,
        public_url: state.public_url.as_deref(),
        headers: &parts.headers,
    };
    let reply = repo
        .handle(
            &context,
            ProtocolRequest {
                method,
                segments,
                query: parts.uri.query().map(str::to_owned),
                accept: parts
                    .headers
                    .get(ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body,
            },
        )
        .await?;
    let request = Request::from_parts(parts, Body::empty());
    Ok(respond::reply(
        reply,
        request,
        &state.metrics,
        &state.blobs,
        &state.bodies,
        repo.settings().label,
    )
    .await)
}
