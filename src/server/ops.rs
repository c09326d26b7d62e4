//! granary's own endpoints: liveness, readiness (each backend and upstream pool), and
//! Prometheus metrics.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use serde_json::json;

use super::state::AppState;
use crate::config::AnonymousStatus;

/// Liveness: depends on nothing.
pub(super) async fn health() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers, the blob store is writable, and the state of each
/// upstream pool (reported, not probed: an upstream outage is what offline mode is for).
pub(super) async fn ready(State(state): State<AppState>) -> Response {
    let database = state.metadata.check().await;
    let blob_store = state.blobs.check().await;
    let upstreams: serde_json::Map<String, serde_json::Value> = state
        .repos
        .iter()
        .map(|(name, repo)| {
            let upstream = &repo.settings().upstream;
            let (in_flight, consecutive_failures) = upstream.pool_status();
            (
                name.clone(),
                json!({
                    "upstream": upstream.display_root(),
                    // Requests open to the upstream right now (connections in use).
                    "in_flight": in_flight,
                    "consecutive_failures": consecutive_failures,
                    "fills_queued": upstream.fills_queued(),
                    "health": upstream.health(),
                }),
            )
        })
        .collect();
    // Redis down degrades (each replica falls back to its own tiers); it does not
    // make the replica unready.
    let redis = match &state.redis {
        None => json!({"status": "disabled"}),
        Some(redis) => {
            let started = std::time::Instant::now();
            let ping = redis.ping().await;
            json!({
                "status": if ping.is_ok() { "ok" } else { "degraded" },
                "reason": ping.as_ref().err().map(|e| format!("degraded: {e}; replicas fall back to their own tiers")),
                "ping_ms": started.elapsed().as_secs_f64() * 1000.0,
                "errors_total": redis.errors(),
            })
        }
    };
    let ready = database.is_ok() && blob_store.is_ok();
    let mut database = status_of(&database);
    database["kind"] = json!(state.metadata.kind());
    database["pool"] = json!(state.metadata.pool_status());
    if let Some(pool) = state.metadata.pool_status() {
        if pool.in_use >= pool.max {
            database["reason"] = json!(format!(
                "saturated: all {} connections in use; queries wait up to `metadata.pool_timeout`",
                pool.max
            ));
        }
    }
    let mut blob_store = status_of(&blob_store);
    blob_store["kind"] = json!(state.blobs.kind());
    let body = json!({
        "ready": ready,
        "database": database,
        "blob_store": blob_store,
        "cache": {
            "status": "ok",
            "kind": if state.redis.is_some() { "in-process + redis" } else { "in-process" },
            "memory_bytes": state.engine.index.memory_bytes(),
            "artifact_memory_bytes": state.engine.artifacts.hot_bytes(),
            "fills_in_flight": state.engine.artifacts.fills_in_flight(),
            "fills_queued": state.repos.values().map(|r| r.settings().upstream.fills_queued()).sum::<i64>(),
            "refreshes_in_flight": state.engine.index.refreshes_in_flight(),
            "fill_temp_bytes": state.engine.artifacts.temp_bytes(),
        },
        "redis": redis,
        // tokio reports blocking threads in use only with `tokio_unstable`; the bound is ours.
        "blocking_threads": {"max": crate::server::MAX_BLOCKING_THREADS},
        "requests": {
            "in_flight": state.max_concurrent_requests - state.request_permits.available_permits(),
            "max": state.max_concurrent_requests,
        },
        "upstreams": upstreams,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

fn status_of<E: std::fmt::Display>(result: &Result<(), E>) -> serde_json::Value {
    match result {
        Ok(()) => json!({"status": "ok"}),
        Err(error) => json!({"status": "error", "error": error.to_string()}),
    }
}

/// Prometheus text exposition.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// How much of the status page the caller may see: the admin role sees it all;
/// others see the summary, or nothing when `status.anonymous = "off"`.
async fn status_view(
    state: &AppState,
    headers: &http::HeaderMap,
) -> Result<crate::status::View, Response> {
    let identity = state
        .auth
        .authenticate(
            headers
                .get(http::header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
        )
        .await;
    match identity {
        Ok(identity) if identity.admin => Ok(crate::status::View::Full),
        Ok(_) if state.anonymous_status == AnonymousStatus::Summary => {
            Ok(crate::status::View::Summary)
        }
        _ => {
            let mut response = super::error::ApiError::client(
                StatusCode::UNAUTHORIZED,
                "the status page needs the admin role (`status.anonymous = \"off\"`)",
            )
            .into_response();
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"granary status\""),
            );
            Err(response)
        }
    }
}

async fn status_report(state: &AppState, view: crate::status::View) -> crate::status::StatusReport {
    let repos = state
        .repos
        .values()
        .map(|repo| (repo.settings(), repo.format()))
        .collect();
    crate::status::report(
        crate::status::Sources {
            engine: &state.engine,
            metadata: &state.metadata,
            blobs: &state.blobs,
            redis: state.redis.as_ref(),
            repos,
            traffic: &state.traffic,
            shared_traffic: state.redis.as_ref(),
            max_stored_bytes: state.max_stored_bytes,
            now: std::time::SystemTime::now(),
        },
        view,
    )
    .await
}

/// `/-/status.json`: the status page's data.
pub(super) async fn status_json(
    State(state): State<AppState>,
    headers: http::HeaderMap,
) -> Response {
    match status_view(&state, &headers).await {
        Ok(view) => {
            let mut response = Json(status_report(&state, view).await).into_response();
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            response
        }
        Err(refused) => refused,
    }
}

/// `/-/status`: the status page.
pub(super) async fn status_page(
    State(state): State<AppState>,
    headers: http::HeaderMap,
) -> Response {
    match status_view(&state, &headers).await {
        Ok(view) => {
            let html = crate::status::page::render(&status_report(&state, view).await);
            let mut response = html.into_response();
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            headers.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            response
        }
        Err(refused) => refused,
    }
}
