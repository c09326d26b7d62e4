//! Errors become HTTP responses here and nowhere else. Each records who failed:
//! the client (4xx), the upstream (502, or 504 when it was slow), or granary itself
//! (500 with a request id; the cause is logged, not returned).

use axum::response::{IntoResponse, Response};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use tracing::error;

use crate::protocols::RequestError;
use crate::proxy::ProxyError;

/// Who is at fault, and so which status class the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    Upstream,
    Internal,
}

/// An error ready to send.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub source: ErrorSource,
    pub message: String,
}

impl ApiError {
    #[must_use]
    pub fn client(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            source: ErrorSource::Client,
            message: message.into(),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::BadRequest(message) => Self::client(StatusCode::BAD_REQUEST, message),
            RequestError::NotFound(message) => Self::client(StatusCode::NOT_FOUND, message),
            RequestError::NotAcceptable(_) => {
                Self::client(StatusCode::NOT_ACCEPTABLE, error.to_string())
            }
            RequestError::MethodNotAllowed => Self::client(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are supported",
            ),
            RequestError::Proxy(proxy) => from_proxy(&proxy),
        }
    }
}

fn from_proxy(error: &ProxyError) -> ApiError {
    let (status, source) = match error {
        ProxyError::UpstreamNotFound { .. } => (StatusCode::NOT_FOUND, ErrorSource::Client),
        ProxyError::Upstream(upstream) if upstream.is_timeout() => {
            (StatusCode::GATEWAY_TIMEOUT, ErrorSource::Upstream)
        }
        ProxyError::CrossReplicaWait { .. } => (StatusCode::GATEWAY_TIMEOUT, ErrorSource::Upstream),
        ProxyError::Upstream(_)
        | ProxyError::Integrity { .. }
        | ProxyError::SizeMismatch { .. }
        | ProxyError::PublishedDigests { .. } => (StatusCode::BAD_GATEWAY, ErrorSource::Upstream),
        ProxyError::Metadata(_)
        | ProxyError::Storage(_)
        | ProxyError::TempFile { .. }
        | ProxyError::FillAborted { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorSource::Internal)
        }
    };
    ApiError {
        status,
        source,
        message: error.to_string(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.source == ErrorSource::Internal {
            let request_id = format!("{:016x}", rand::random::<u64>());
            error!(%request_id, cause = %self.message, "internal error");
            format!("internal error (request id {request_id})\n")
        } else {
            format!("{}\n", self.message)
        };
        let mut response = (self.status, body).into_response();
        super::admin::challenge(&mut response);
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}
