//! Documents stored as the upstream sent them, once checked: cargo's index files,
//! Maven's metadata and checksum files, npm's packuments (which are then rendered).

use bytes::Bytes;

use super::{DocumentReply, Reply, RequestError};
use crate::engine::index::{sized_work, Parsed};
use crate::engine::upstream::display_url;
use crate::engine::{
    Fetched, IndexDocument, IndexLookup, UpstreamClient, UpstreamDocument, UpstreamError,
};
use crate::http_cache::Validators;

/// The name of the one rendition.
pub const AS_SERVED: &str = "as-served";

/// GETs `path` below the upstream root and checks the body with `check` (on the
/// blocking pool when it is large), which returns its parsed form if the protocol
/// keeps one; a body that fails it is [`UpstreamError::Malformed`] and is never
/// stored.
///
/// # Errors
/// Transport failures, unexpected statuses, oversized or malformed bodies.
pub async fn fetch_checked(
    upstream: &UpstreamClient,
    path: &str,
    accept: Option<&str>,
    validators: &Validators,
    max_bytes: usize,
    check: impl FnOnce(&[u8]) -> Result<Option<Parsed>, String> + Send + 'static,
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
            let checked = {
                let body = body.clone();
                sized_work(body.len(), move || check(&body)).await
            };
            let parsed = checked.map_err(|reason| UpstreamError::Malformed {
                upstream: display_url(&url),
                reason,
            })?;
            Ok(Fetched::Document {
                canonical: body,
                validators,
                ttl: None,
                parsed,
            })
        }
        UpstreamDocument::NotModified(validators) => Ok(Fetched::NotModified { validators }),
        UpstreamDocument::NotFound => Ok(Fetched::NotFound),
    }
}

/// The one form's name, for [`crate::engine::IndexSource::forms`].
pub const FORMS: &[&str] = &[AS_SERVED];

/// The one form: the canonical bytes, shared.
#[must_use]
pub fn render(document: &IndexDocument) -> Bytes {
    document.canonical.clone()
}

/// A found document's reply.
///
/// # Errors
/// When the document cannot be rendered.
pub async fn reply(
    lookup: IndexLookup,
    content_type: &'static str,
    base_url: Option<String>,
) -> Result<Reply, RequestError> {
    Ok(Reply::Document(
        DocumentReply::new(lookup, AS_SERVED, content_type, base_url).await?,
    ))
}
