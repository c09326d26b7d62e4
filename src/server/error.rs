//! Errors become HTTP responses here and nowhere else. Each records who failed:
//! the client (4xx), the upstream (502, or 504 when it was slow), or granary itself
//! (500 with a request id; the cause is logged, not returned).

use axum::response::{IntoResponse, Response};
use http::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::StatusCode;
use tracing::error;

use super::request_id::current_request_id;
use crate::engine::ProxyError;
use crate::protocols::RequestError;

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

    /// A 500 whose message is logged, not shown to the client.
    #[must_use]
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            source: ErrorSource::Internal,
            message: message.into(),
        }
    }
}

impl From<crate::resolution::Failure> for ApiError {
    fn from(failure: crate::resolution::Failure) -> Self {
        match failure {
            crate::resolution::Failure::Refused(error) => {
                Self::from(std::sync::Arc::unwrap_or_clone(error))
            }
            crate::resolution::Failure::Panicked => {
                Self::internal("the resolution failed unexpectedly")
            }
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
        | ProxyError::FillAborted { .. }
        | ProxyError::NotShareable { .. } => {
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
        let request_id = current_request_id().map_or_else(
            || format!("{:016x}", rand::random::<u64>()),
            |id| id.to_string(),
        );
        let body = if self.source == ErrorSource::Internal {
            error!(%request_id, cause = %self.message, "internal error");
            format!("internal error (request id {request_id})\n")
        } else {
            format!("{}\n(request id {request_id})\n", self.message)
        };
        let mut response = (self.status, body).into_response();
        if response.status() == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: a 401 says how to authenticate.
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"granary-admin\""),
            );
        }
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}
