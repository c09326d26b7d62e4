//! Everything that knows an ecosystem: how it names things, which URLs it serves,
//! what its cache keys are and how its index documents are rewritten.
//!
//! A protocol turns a parsed request into a [`Reply`]; only [`crate::server`] turns a
//! reply into an HTTP response. Code below this module sees keys and bytes only.

pub mod path;
pub mod pypi;

use std::sync::Arc;

use crate::proxy::{ArtifactLookup, CacheStatus, ProxyError, Rendition};

/// What a protocol answers; [`crate::server`] renders it.
#[derive(Debug)]
pub enum Reply {
    /// An index document in the form the client negotiated.
    Document(DocumentReply),
    /// An artifact, stored or streaming.
    Artifact(ArtifactReply),
    /// A permanent redirect to the canonical URL (an absolute path).
    Redirect { location: String },
}

/// An index document ready to serve.
#[derive(Debug)]
pub struct DocumentReply {
    pub rendition: Rendition,
    pub content_type: &'static str,
    pub status: CacheStatus,
    /// `Warning` header value when a stale copy is served because the upstream failed.
    pub warning: Option<String>,
}

/// An artifact ready to serve.
#[derive(Debug)]
pub struct ArtifactReply {
    pub lookup: ArtifactLookup,
    pub content_type: String,
}

/// Why a request could not be answered; [`crate::server`] maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("none of the media types in `Accept` can be served; available: {0}")]
    NotAcceptable(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Proxy(#[from] Arc<ProxyError>),
}
