use super::upstream::UpstreamError;
use crate::metadata::MetadataError;
use crate::storage::StorageError;

/// Why the engine could not produce what was asked. Shared between the waiters of
/// one flight behind an `Arc`.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("`{key}`: the upstream does not have it")]
    UpstreamNotFound { key: String },
    #[error("`{key}`: upstream bytes do not match the published {algorithm} (expected `{expected}`, got `{actual}`); nothing was stored")]
    Integrity {
        key: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error(
        "`{key}`: upstream sent {received} bytes, {expected} were announced; nothing was stored"
    )]
    SizeMismatch {
        key: String,
        expected: u64,
        received: u64,
    },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("`{key}`: temporary file: {source}")]
    TempFile {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{key}`: another replica's download did not complete within {waited:?}")]
    CrossReplicaWait {
        key: String,
        waited: std::time::Duration,
    },
    #[error(
        "`{key}`: the upstream's checksum files could not be read: {reason}; nothing was stored"
    )]
    PublishedDigests { key: String, reason: String },
    #[error("`{key}`: the fill task stopped unexpectedly")]
    FillAborted { key: String },
    #[error("`{key}`: the response another request fetched must not be shared")]
    NotShareable { key: String },
}
