//! Reading what is inside an artifact (a core metadata file, a POM, a `.crate`'s
//! manifest): its verified bytes, whole, in memory, up to a bound.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::RequestError;
use crate::engine::{ArtifactBody, ArtifactLookup, ProxyError};
use crate::storage::{BlobStore, StorageError};

/// The artifact's bytes, when it is at most `limit` bytes long. A fill in progress is
/// followed to its end, and its verification failing fails this too.
///
/// # Errors
/// Larger than `limit`, or the store or the fill failed.
pub async fn artifact_bytes(
    lookup: ArtifactLookup,
    blobs: &Arc<dyn BlobStore>,
    limit: u64,
    what: &str,
) -> Result<Bytes, RequestError> {
    let too_large = || {
        RequestError::BadRequest(format!(
            "`{what}` is larger than the {limit} bytes granary reads to look inside"
        ))
    };
    let io_error = |source: std::io::Error| {
        RequestError::Proxy(Arc::new(ProxyError::Storage(StorageError::Io {
            path: what.into(),
            source,
        })))
    };
    let stream = match lookup.body {
        ArtifactBody::Memory(hot) => {
            return if hot.bytes.len() as u64 > limit {
                Err(too_large())
            } else {
                Ok(hot.bytes.clone())
            };
        }
        ArtifactBody::Stored { record, blob, .. } => {
            if blob.size > limit {
                return Err(too_large());
            }
            blobs
                .read(&record.digest, None)
                .await
                .map_err(|e| RequestError::Proxy(Arc::new(ProxyError::Storage(e))))?
        }
        ArtifactBody::Filling(reader) => reader.into_stream().boxed(),
    };
    collect(stream, limit).await.map_err(|error| match error {
        Collected::TooLarge => too_large(),
        Collected::Io(source) => io_error(source),
    })
}

/// Why a stream was not collected.
enum Collected {
    TooLarge,
    Io(std::io::Error),
}

/// The whole of `stream`, if it is at most `limit` bytes.
async fn collect(mut stream: crate::storage::BlobStream, limit: u64) -> Result<Bytes, Collected> {
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Collected::Io)?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(Collected::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The bytes of a just-published artifact (from its local file when the store has
/// one), when it is at most `limit` bytes long.
///
/// # Errors
/// Larger than `limit`, or the store failed.
pub async fn published_bytes(
    published: &crate::engine::Published,
    blobs: &Arc<dyn BlobStore>,
    limit: u64,
) -> Result<Bytes, String> {
    if published.size > limit {
        return Err(format!(
            "{} bytes is more than the {limit} read to look inside",
            published.size
        ));
    }
    if let Some(path) = &published.path {
        return tokio::fs::read(path)
            .await
            .map(Bytes::from)
            .map_err(|e| format!("`{}`: {e}", path.display()));
    }
    let stream = blobs
        .read(&published.digest, None)
        .await
        .map_err(|e| e.to_string())?;
    collect(stream, limit).await.map_err(|error| match error {
        Collected::TooLarge => format!("more than the {limit} bytes read to look inside"),
        Collected::Io(source) => source.to_string(),
    })
}
