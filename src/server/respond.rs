//! Turning a protocol's [`Reply`] into a response: cache headers, client conditional
//! requests, and artifacts from disk (with `Range` and `HEAD`) or from a fill.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::header::{
    HeaderValue, ACCEPT_RANGES, AGE, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RANGE,
    VARY, WARNING,
};
use http::{HeaderMap, Method, StatusCode};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::bodies::{accepts_gzip, DocumentBodies, MIN_COMPRESSED_BYTES};
use crate::engine::artifact::leases::BlobLease;
use crate::engine::ArtifactBody;
use crate::http_cache::if_none_match_hits;
use crate::metrics::{Metrics, RepoLabels};
use crate::protocols::{ArtifactReply, DocumentReply, Reply, ResponseReply};
use crate::storage::BlobStore;

/// Marks a response worth compressing per `Accept-Encoding` (documents and small
/// built responses; never artifacts, which keep Content-Length and Range).
#[derive(Debug, Clone, Copy)]
pub(super) struct Compressible;

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
    blobs: &Arc<dyn BlobStore>,
    bodies: &DocumentBodies,
    repo: &str,
) -> Response {
    match reply {
        Reply::Redirect { location } => Redirect::permanent(&location).into_response(),
        Reply::Document(document) => document_response(document, request.headers(), bodies),
        Reply::Passthrough(reply) => {
            let mut response = Response::new(Body::from(reply.body));
            response.extensions_mut().insert(Compressible);
            *response.status_mut() = reply.status;
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, header_value(&reply.content_type));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(
                X_CACHE,
                HeaderValue::from_static(reply.cache_status.header_value()),
            );
            response
        }
        Reply::Artifact(artifact) => {
            artifact_response(artifact, request, metrics, blobs, repo).await
        }
        Reply::Response(reply) => whole_response(reply, request.method() == Method::HEAD),
    }
}

/// A whole response (cached or passed through): its own status and headers, with
/// `Age` when it came from the cache; `HEAD` gets the headers and the length only.
fn whole_response(reply: ResponseReply, is_head: bool) -> Response {
    let length = reply.body.len();
    let mut response = if is_head {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(reply.body))
    };
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.reserve(reply.headers.len() + 3);
    for (name, value) in reply.headers.iter() {
        headers.append(name.clone(), value.clone());
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        X_CACHE,
        HeaderValue::from_static(reply.cache_status.header_value()),
    );
    if let Some(age) = reply.age {
        headers.insert(AGE, HeaderValue::from(age));
    }
    if !headers.contains_key(CONTENT_ENCODING) {
        response.extensions_mut().insert(Compressible);
    }
    response
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

fn document_response(
    document: DocumentReply,
    request_headers: &HeaderMap,
    bodies: &DocumentBodies,
) -> Response {
    // A templated document (one with base-URL markers) is the same bytes for every client but the
    // base URL between its parts: its validator covers the base too.
    let templated = document.rendition.parts.clone().zip(
        document
            .base_url
            .as_deref()
            .map(|b| Bytes::copy_from_slice(b.as_bytes())),
    );
    let (etag, etag_text) = match &templated {
        None => (
            document.rendition.etag_header.clone(),
            document.rendition.etag.clone(),
        ),
        Some((_, base)) => {
            let text = format!(
                "\"{}-{:016x}\"",
                document.rendition.etag.trim_matches('"'),
                base_hash(base)
            );
            (header_value(&text), text)
        }
    };
    let mut response =
        if document_not_modified(request_headers, &etag_text, document.last_modified.as_ref()) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let body = match templated {
                None => document.rendition.body,
                Some((parts, base)) => bodies.assemble(&etag_text, &parts, &base),
            };
            // gzip, when the client takes it, from the copy made once per validator.
            let gzipped = (body.len() >= MIN_COMPRESSED_BYTES && accepts_gzip(request_headers))
                .then(|| bodies.gzipped(&etag_text, &body));
            let mut response = match gzipped {
                Some(Some(gzipped)) => {
                    let mut response = Response::new(Body::from(gzipped));
                    response
                        .headers_mut()
                        .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    response
                }
                // Being compressed for later requests: this one is answered as is.
                Some(None) => Response::new(Body::from(body)),
                // Another coding (br) may still be made per response.
                None => {
                    let mut response = Response::new(Body::from(body));
                    response.extensions_mut().insert(Compressible);
                    response
                }
            };
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(document.content_type),
            );
            response
        };
    let headers = response.headers_mut();
    headers.insert(ETAG, etag);
    if let Some(date) = document.last_modified {
        headers.insert(LAST_MODIFIED, date);
    }
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

/// A client's conditional request on a document: `If-None-Match` when it sent one
/// (RFC 9110 §13.2.2), else `If-Modified-Since` equal to our `Last-Modified` (an
/// exact match, as nginx does by default: only dates we handed out are trusted).
fn document_not_modified(
    request_headers: &HeaderMap,
    etag: &str,
    last_modified: Option<&HeaderValue>,
) -> bool {
    if request_headers.contains_key(IF_NONE_MATCH) {
        return not_modified(request_headers, etag);
    }
    matches!(
        (request_headers.get(IF_MODIFIED_SINCE), last_modified),
        (Some(since), Some(date)) if since == date
    )
}

/// A hash of the base URL for templated documents' `ETag`s: SHA-256, so every
/// replica, whatever it was built with, gives the same validator for the same bytes
/// (`DefaultHasher`'s output may change between Rust releases).
fn base_hash(base: &[u8]) -> u64 {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(base);
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

async fn artifact_response(
    artifact: ArtifactReply,
    request: Request,
    metrics: &Metrics,
    blobs: &Arc<dyn BlobStore>,
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
            } else if let Some(path) = blob.path.clone() {
                // A `Range` that asks for the whole body (or is malformed, or asks for
                // several ranges) is answered with the whole body, as on every other
                // path (RFC 9110 §14.2: an invalid Range is ignored).
                let mut request = request;
                if request
                    .headers()
                    .get(RANGE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| parse_range(v, blob.size) == Some(0..blob.size))
                    || request
                        .headers()
                        .get(RANGE)
                        .is_some_and(|v| v.to_str().is_err())
                {
                    request.headers_mut().remove(RANGE);
                }
                // tower-http's ServeFile handles Range, HEAD and Content-Length.
                let served = ServeFile::new_with_mime(
                    &path,
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
                    Ok(response) => response.map(|body| hold_lease(Body::new(body), lease)),
                    Err(infallible) => match infallible {},
                };
                response.headers_mut().insert(ETAG, header_value(&etag));
                count_sent(metrics, &labels, is_head, &response, blob.size);
                response
            } else {
                let range = request
                    .headers()
                    .get(RANGE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                drop(request);
                let mut response = remote_blob_response(
                    is_head,
                    range.as_deref(),
                    &record.digest,
                    blob.size,
                    blobs,
                    lease,
                )
                .await;
                let headers = response.headers_mut();
                headers.insert(ETAG, header_value(&etag));
                headers.insert(CONTENT_TYPE, header_value(&artifact.content_type));
                count_sent(metrics, &labels, is_head, &response, blob.size);
                response
            }
        }
        ArtifactBody::Memory(hot) => {
            let etag = format!("\"{}\"", hot.record.digest);
            if not_modified(request.headers(), &etag) {
                let mut response = StatusCode::NOT_MODIFIED.into_response();
                response.headers_mut().insert(ETAG, header_value(&etag));
                response
            } else {
                let range = request.headers().get(RANGE).and_then(|v| v.to_str().ok());
                let mut response = memory_response(&hot.bytes, is_head, range);
                let headers = response.headers_mut();
                headers.insert(ETAG, header_value(&etag));
                headers.insert(CONTENT_TYPE, header_value(&artifact.content_type));
                count_sent(metrics, &labels, is_head, &response, hot.bytes.len() as u64);
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

/// `416` for a `Range` outside a body of `size` bytes (RFC 9110 §15.5.17).
fn range_not_satisfiable(size: u64) -> Response {
    let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    response
        .headers_mut()
        .insert(CONTENT_RANGE, header_value(&format!("bytes */{size}")));
    response
}

/// A small artifact served from memory, with one `Range` honoured.
fn memory_response(bytes: &Bytes, is_head: bool, range: Option<&str>) -> Response {
    let size = bytes.len() as u64;
    let span = match range.map(|r| parse_range(r, size)) {
        Some(None) => {
            return range_not_satisfiable(size);
        }
        Some(Some(span)) if span != (0..size) => Some(span),
        _ => None,
    };
    let body = match &span {
        _ if is_head => Bytes::new(),
        Some(span) => bytes.slice(
            usize::try_from(span.start).unwrap_or(0)..usize::try_from(span.end).unwrap_or(0),
        ),
        None => bytes.clone(),
    };
    let length = span.as_ref().map_or(size, |s| s.end - s.start);
    let mut response = Response::new(Body::from(body));
    if let Some(span) = &span {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        response.headers_mut().insert(
            CONTENT_RANGE,
            header_value(&format!("bytes {}-{}/{size}", span.start, span.end - 1)),
        );
    }
    let headers = response.headers_mut();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response
}

/// Keeps `lease` alive as long as the body is being sent.
fn hold_lease(body: Body, lease: BlobLease) -> Body {
    let stream = body.into_data_stream().map(move |chunk| {
        let _held = &lease;
        chunk
    });
    Body::from_stream(stream)
}

fn count_sent(
    metrics: &Metrics,
    labels: &RepoLabels,
    is_head: bool,
    response: &Response,
    size: u64,
) {
    if is_head || !response.status().is_success() {
        return;
    }
    let sent = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(size);
    metrics.bytes_served.get_or_create(labels).inc_by(sent);
}

/// A blob that is not a local file (object storage): streamed from the store, with a
/// single `Range` honoured (RFC 9110 §14.2); several ranges get the whole body.
async fn remote_blob_response(
    is_head: bool,
    range: Option<&str>,
    digest: &crate::storage::Digest,
    size: u64,
    blobs: &Arc<dyn BlobStore>,
    lease: BlobLease,
) -> Response {
    let range = range.map(|v| parse_range(v, size));
    let (status, span) = match range {
        Some(Some(span)) if span != (0..size) => (StatusCode::PARTIAL_CONTENT, Some(span)),
        Some(None) => {
            return range_not_satisfiable(size);
        }
        _ => (StatusCode::OK, None),
    };
    let length = span.as_ref().map_or(size, |r| r.end - r.start);
    let mut response: Response = if is_head {
        Response::new(Body::empty())
    } else {
        match blobs.read(digest, span.clone()).await {
            Ok(stream) => Response::new(hold_lease(Body::from_stream(stream), lease)),
            Err(error) => {
                tracing::error!(%digest, %error, "stored blob cannot be read");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        }
    };
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(span) = span {
        headers.insert(
            CONTENT_RANGE,
            header_value(&format!("bytes {}-{}/{size}", span.start, span.end - 1)),
        );
    }
    response
}

/// One `bytes=` range as a half-open span, or `None` when it is well-formed but
/// unsatisfiable (416). Several ranges, or a malformed header, mean the whole body
/// (`0..size`): RFC 9110 §14.2 says to ignore a Range header that is not understood.
pub(crate) fn parse_range(header: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let whole = Some(0..size);
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return whole;
    };
    if spec.contains(',') {
        return whole;
    }
    let Some((start, end)) = spec.split_once('-') else {
        return whole;
    };
    let (start, end) = match (start.trim(), end.trim()) {
        ("", "") => return whole,
        ("", suffix) => match suffix.parse::<u64>() {
            Ok(n) => (size.saturating_sub(n), size),
            Err(_) => return whole,
        },
        (start, "") => match start.parse::<u64>() {
            Ok(start) => (start, size),
            Err(_) => return whole,
        },
        (start, end) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(start), Ok(end)) if start <= end => (start, end.saturating_add(1).min(size)),
            _ => return whole,
        },
    };
    (start < end && start < size).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Some(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Some(90..100));
        assert_eq!(parse_range("bytes=95-200", 100), Some(95..100));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Some(0..100));
        assert_eq!(parse_range("items=0-1", 100), Some(0..100));
    }

    #[test]
    fn malformed_ranges_are_ignored_not_refused() {
        for malformed in [
            "bytes=abc-",
            "bytes=-xyz",
            "bytes=5-2",
            "bytes=",
            "bytes=-",
            "bytes=1-x",
        ] {
            assert_eq!(parse_range(malformed, 100), Some(0..100), "{malformed}");
        }
        assert_eq!(
            parse_range("bytes=-0", 100),
            None,
            "a zero suffix is unsatisfiable"
        );
    }

    #[test]
    fn templated_etags_use_a_stable_hash() {
        // The first 8 bytes of SHA-256("http://127.0.0.1:8080"): the same in every
        // build, so replicas agree on validators.
        assert_eq!(
            super::base_hash(b"http://127.0.0.1:8080"),
            0xd30a_576c_0318_7167
        );
    }
}
