//! granary's own endpoints: liveness, readiness (each backend and upstream pool), and
//! Prometheus metrics.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use serde_json::json;

use super::state::AppState;

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
                    "in_flight": in_flight,
                    "consecutive_failures": consecutive_failures,
                    "fills_queued": upstream.fills_queued(),
                }),
            )
        })
        .collect();
    // Redis down degrades (each replica falls back to its own tiers); it does not
    // make the replica unready.
    let redis = match &state.redis {
        None => json!({"status": "disabled"}),
        Some(redis) => {
            let ping = redis.ping().await;
            json!({
                "status": if ping.is_ok() { "ok" } else { "degraded" },
                "error": ping.err().map(|e| e.to_string()),
                "errors_total": redis.errors(),
            })
        }
    };
    let ready = database.is_ok() && blob_store.is_ok();
    let mut database = status_of(&database);
    database["kind"] = json!(state.metadata.kind());
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
            "fills_in_flight": state.engine.artifacts.fills_in_flight(),
            "fill_temp_bytes": state.engine.artifacts.temp_bytes(),
        },
        "redis": redis,
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
