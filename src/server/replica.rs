//! `GET /-/replica/fill?key=KEY`: another replica follows this replica's download of
//! an artifact as it arrives (see `engine::artifact::from_replica`). Authenticated by
//! the replicas' shared secret (`redis.replica_secret`); without it configured, the
//! endpoint does not exist.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;

use super::error::ApiError;
use super::state::AppState;

#[derive(Debug, Deserialize)]
pub(super) struct FillQuery {
    key: String,
}

pub(super) async fn follow_fill(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<FillQuery>, QueryRejection>,
) -> Response {
    let artifacts = &state.engine.artifacts;
    let Some(streams) = artifacts.replica_streams() else {
        return ApiError::client(
            StatusCode::NOT_FOUND,
            "streaming between replicas is not configured",
        )
        .into_response();
    };
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|secret| streams.accepts(secret)) {
        let mut response = ApiError::client(
            StatusCode::UNAUTHORIZED,
            "the replicas' shared secret is required",
        )
        .into_response();
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let Ok(Query(FillQuery { key })) = query else {
        return ApiError::client(StatusCode::BAD_REQUEST, "expected ?key=<cache key>")
            .into_response();
    };
    let Some(reader) = artifacts.follow_own_fill(&key).await else {
        return ApiError::client(
            StatusCode::NOT_FOUND,
            "no download of that key in flight here",
        )
        .into_response();
    };
    let content_length = reader.content_length();
    let mut response = Response::new(Body::from_stream(reader.into_stream()));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(length) = content_length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}
