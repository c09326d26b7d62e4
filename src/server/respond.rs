//! Turning a protocol's [`Reply`] into a response: cache headers, client conditional
//! requests, and artifacts from disk (with `Range` and `HEAD`) or from a fill.

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Redirect, Response};
use futures::StreamExt;
use http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY, WARNING,
};
use http::{HeaderMap, Method, StatusCode};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::http_cache::if_none_match_hits;
use crate::metrics::{Metrics, RepoLabels};
use crate::protocols::{ArtifactReply, DocumentReply, Reply};
use crate::proxy::ArtifactBody;

/// `X-Cache`: what the cache did.
pub(super) const X_CACHE: &str = "x-cache";
/// Bytes per read when serving a stored blob.
const STORED_READ_CHUNK: usize = 256 * 1024;
/// Index pages: clients revalidate every time (cheap: our ETag answers with 304).
const INDEX_CACHE_CONTROL: &str = "max-age=0, must-revalidate";
/// Artifacts never change once stored.
const ARTIFACT_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

pub(super) async fn reply(
    reply: Reply,
    request: Request,
    metrics: &Metrics,
    repo: &str,
) -> Response {
    match reply {
        Reply::Redirect { location } => Redirect::permanent(&location).into_response(),
        Reply::Document(document) => document_response(document, request.headers()),
        Reply::Artifact(artifact) => artifact_response(artifact, request, metrics, repo).await,
    }
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn not_modified(request_headers: &HeaderMap, etag: &str) -> bool {
    request_headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| if_none_match_hits(v, etag))
}

fn document_response(document: DocumentReply, request_headers: &HeaderMap) -> Response {
    let etag = document.rendition.etag_header;
    let is_not_modified = not_modified(request_headers, &document.rendition.etag);
    let mut response = if is_not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Response::new(Body::from(document.rendition.body));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(document.content_type),
        );
        response
    };
    let headers = response.headers_mut();
    headers.insert(ETAG, etag);
    headers.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(INDEX_CACHE_CONTROL));
    headers.insert(
        X_CACHE,
        HeaderValue::from_static(document.status.header_value()),
    );
    if let Some(warning) = document.warning {
        headers.insert(WARNING, header_value(&warning.replace(['\r', '\n'], " ")));
    }
    response
}

async fn artifact_response(
    artifact: ArtifactReply,
    request: Request,
    metrics: &Metrics,
    repo: &str,
) -> Response {
    let labels = RepoLabels {
        repo: repo.to_owned(),
    };
    let is_head = request.method() == Method::HEAD;
    let status = artifact.lookup.status;
    let mut response = match artifact.lookup.body {
        ArtifactBody::Stored {
            record,
            blob,
            lease,
        } => {
            let etag = format!("\"{}\"", record.digest);
            if not_modified(request.headers(), &etag) {
                let mut response = StatusCode::NOT_MODIFIED.into_response();
                response.headers_mut().insert(ETAG, header_value(&etag));
                response
            } else {
                // tower-http's ServeFile handles Range, HEAD and Content-Length.
                let served = ServeFile::new_with_mime(
                    &blob.path,
                    &artifact
                        .content_type
                        .parse()
                        .unwrap_or(mime::APPLICATION_OCTET_STREAM),
                )
                // Fewer, larger reads: each read is a hop to the blocking pool.
                .with_buf_chunk_size(STORED_READ_CHUNK)
                .oneshot(request)
                .await;
                let mut response = match served {
                    // The body holds the lease until the last byte is sent (or the
                    // client goes away), so eviction never removes a blob mid-response.
                    Ok(response) => response.map(|body| {
                        let stream = Body::new(body).into_data_stream().map(move |chunk| {
                            let _held = &lease;
                            chunk
                        });
                        Body::from_stream(stream)
                    }),
                    Err(infallible) => match infallible {},
                };
                response.headers_mut().insert(ETAG, header_value(&etag));
                if !is_head && response.status().is_success() {
                    let sent = response
                        .headers()
                        .get(CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(blob.size);
                    metrics.bytes_served.get_or_create(&labels).inc_by(sent);
                }
                response
            }
        }
        ArtifactBody::Filling(reader) => {
            let content_length = reader.content_length();
            let mut response = if is_head {
                Response::new(Body::empty())
            } else {
                if let Some(length) = content_length {
                    metrics.bytes_served.get_or_create(&labels).inc_by(length);
                }
                Response::new(Body::from_stream(reader.into_stream()))
            };
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, header_value(&artifact.content_type));
            if let Some(length) = content_length {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
            }
            response
        }
    };
    let headers = response.headers_mut();
    headers.insert(X_CACHE, HeaderValue::from_static(status.header_value()));
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        response.headers_mut().insert(
            CACHE_CONTROL,
            HeaderValue::from_static(ARTIFACT_CACHE_CONTROL),
        );
    }
    response
}
