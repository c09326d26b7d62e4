//! The per-request layer: a request id (in the span, the log line, the
//! `x-request-id` header and every error body), one span per request, one structured
//! log line and one metrics sample for every request with the repository, route,
//! status and cache result, and a panic in a handler answered with a 500 that names
//! the request id instead of a dropped connection.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::FutureExt;
use http::HeaderValue;
use tracing::{error, info, Instrument};

use super::error::ApiError;
use super::request_id::{RequestId, REQUEST_ID};
use super::respond::X_CACHE;
use super::state::AppState;
use crate::metrics::RequestLabels;
use crate::status::Observed;

/// The response header carrying the request id.
pub(super) const X_REQUEST_ID: &str = "x-request-id";

pub(super) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = RequestId(rand::random());
    let (repo, route) = classify(&state, request.uri().path());
    let project = project_of(&state, request.uri().path());
    // The log line is the only user of these; skip the copies when it is off.
    let logged = tracing::enabled!(tracing::Level::INFO).then(|| {
        (
            request.method().clone(),
            truncate(request.uri().path(), 256).to_owned(),
        )
    });
    let span = tracing::info_span!("request", request_id = %id, repo, route);
    let answered = AssertUnwindSafe(REQUEST_ID.scope(id, next.run(request)))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let mut response = match answered {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            span.in_scope(|| error!(request_id = %id, panic = %what, "request handler panicked"));
            state.metrics.panics.inc();
            REQUEST_ID.sync_scope(id, || {
                axum::response::IntoResponse::into_response(ApiError::internal(format!(
                    "handler panicked: {what}"
                )))
            })
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    if repo != "-" && repo != "unknown" {
        // A whole body knows its size; a streamed one announces it.
        let bytes = axum::body::HttpBody::size_hint(response.body())
            .exact()
            .or_else(|| {
                response
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0);
        state.traffic.record(
            repo,
            std::time::SystemTime::now(),
            Observed {
                cache_status: response
                    .headers()
                    .get(X_CACHE)
                    .and_then(|v| v.to_str().ok()),
                status,
                bytes,
                project: project.as_deref(),
            },
        );
    }
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            repo,
            route,
            status,
        })
        .inc();
    let Some((method, path)) = logged else {
        return response;
    };
    let cache_status = response
        .headers()
        .get(X_CACHE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    info!(
        request_id = %id,
        %method,
        %path,
        repo,
        route,
        status,
        cache_status = %cache_status,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// Repository and a low-cardinality route label for a path (the protocol names the
/// route).
fn classify(state: &AppState, path: &str) -> (&'static str, &'static str) {
    let trimmed = path.trim_start_matches('/');
    let (first, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    if first == "-" {
        return ("-", "ops");
    }
    match state.repos.get(first) {
        Some(repo) => (repo.settings().label, repo.route_label(rest)),
        None => ("unknown", "other"),
    }
}

/// The project a path is about, as the repository's protocol reads it.
fn project_of(state: &AppState, path: &str) -> Option<String> {
    let trimmed = path.trim_start_matches('/');
    let (first, rest) = trimmed.split_once('/')?;
    state.repos.get(first)?.project_of(rest)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use axum::Router;
    use figment::providers::{Format as _, Toml};
    use tower::ServiceExt;

    use super::*;

    // A panic in a handler dropped the connection (no answer, no log line); now it is
    // a 500 that names the request id, the same id as the response header.
    #[tokio::test]
    async fn a_panicking_handler_is_answered_with_500_and_the_request_id() {
        let dir = tempfile::tempdir().expect("dir");
        let config: crate::config::Config = figment::Figment::from(Toml::string(&format!(
            "data_dir = \"{}\"\n",
            dir.path().display()
        )))
        .extract()
        .expect("config");
        let state = AppState::build(&config).await.expect("state");
        let app = Router::new()
            .route(
                "/boom",
                get(|| async {
                    assert!(!std::hint::black_box(true), "injected fault");
                    "unreachable"
                }),
            )
            .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
            .with_state(state.clone());
        let response = app
            .oneshot(
                http::Request::get("/boom")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answered");
        assert_eq!(response.status(), 500);
        let id = response.headers()[X_REQUEST_ID]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(&id), "the body names request {id}: {body}");
        assert_eq!(state.metrics.panics.get(), 1);
    }
}
