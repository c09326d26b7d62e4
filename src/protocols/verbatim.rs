//! Documents stored as the upstream sent them, once checked: cargo's index files,
//! Maven's metadata and checksum files, npm's packuments (which are then rendered).

use bytes::Bytes;

use super::{DocumentReply, Reply};
use crate::engine::upstream::display_url;
use crate::engine::{
    Fetched, IndexLookup, Rendition, UpstreamClient, UpstreamDocument, UpstreamError,
};
use crate::http_cache::Validators;

/// The name of the one rendition.
pub const AS_SERVED: &str = "as-served";

/// GETs `path` below the upstream root and checks the body with `check`; a body that
/// fails it is [`UpstreamError::Malformed`] and is never stored.
///
/// # Errors
/// Transport failures, unexpected statuses, oversized or malformed bodies.
pub async fn fetch_checked(
    upstream: &UpstreamClient,
    path: &str,
    accept: Option<&str>,
    validators: &Validators,
    max_bytes: usize,
    check: impl FnOnce(&[u8]) -> Result<(), String>,
) -> Result<Fetched, UpstreamError> {
    let url = upstream
        .root()
        .join(path)
        .map_err(|e| UpstreamError::Malformed {
            upstream: display_url(upstream.root()),
            reason: e.to_string(),
        })?;
    match upstream
        .get_document(&url, accept, validators, max_bytes)
        .await?
    {
        UpstreamDocument::Body {
            body, validators, ..
        } => {
            check(&body).map_err(|reason| UpstreamError::Malformed {
                upstream: display_url(&url),
                reason,
            })?;
            Ok(Fetched::Document {
                canonical: body,
                validators,
                ttl: None,
            })
        }
        UpstreamDocument::NotModified(validators) => Ok(Fetched::NotModified { validators }),
        UpstreamDocument::NotFound => Ok(Fetched::NotFound),
    }
}

/// The one rendition: the canonical bytes, shared.
#[must_use]
pub fn render(canonical: &Bytes) -> Vec<Rendition> {
    vec![Rendition::new(AS_SERVED, canonical.clone())]
}

/// A found document's reply.
#[must_use]
pub fn reply(lookup: IndexLookup, content_type: &'static str, base_url: Option<String>) -> Reply {
    Reply::Document(DocumentReply::new(
        lookup,
        AS_SERVED,
        content_type,
        base_url,
    ))
}
