//! Blob storage: immutable artifacts addressed by their SHA-256.
//!
//! [`BlobStore`] is the seam; [`FsBlobStore`] (a local directory) is today's only
//! implementation. A blob becomes visible only through [`BlobStore::publish`], which is
//! atomic: readers never see a partial object.

mod data_dir;
mod error;
mod fs;
mod s3;

use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use data_dir::{ClaimError, DataDirAccess, DataDirClaim};
pub use error::StorageError;
pub use fs::{FsBlobStore, FsStoreOptions};
pub use s3::{S3BlobStore, S3StoreOptions};

/// A blob's bytes as a stream.
pub type BlobStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// A lowercase hex SHA-256, validated at construction so it is safe in a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parses a lowercase 64-character hex SHA-256.
    #[must_use]
    pub fn from_hex(hex: &str) -> Option<Self> {
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(hex.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored blob.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    /// A local file holding exactly the blob's bytes, when the store has one (the
    /// server then serves it with the file fast path); else read it with
    /// [`BlobStore::read`].
    pub path: Option<PathBuf>,
    pub size: u64,
}

/// A store of immutable, content-addressed blobs.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// The directory where fills write temporary files before publishing.
    fn temp_dir(&self) -> &Path;

    /// The blob, if it is stored.
    async fn get(&self, digest: &Digest) -> Result<Option<StoredBlob>, StorageError>;

    /// Moves a complete, verified temporary file into place under `digest`, durably
    /// and atomically. If the blob already exists the temporary file is removed.
    async fn publish(&self, temp_file: &Path, digest: &Digest) -> Result<StoredBlob, StorageError>;

    /// The blob's bytes, or the bytes in `range`.
    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobStream, StorageError>;

    /// What kind of store this is, for `/-/ready`.
    fn kind(&self) -> &'static str;

    /// Removes a blob; absent blobs are not an error.
    async fn delete(&self, digest: &Digest) -> Result<(), StorageError>;

    /// Every stored blob with its size (for `granary gc` and `granary verify`).
    async fn list(&self) -> Result<Vec<(Digest, u64)>, StorageError>;

    /// Checks that the store can be written; for `/-/ready`.
    async fn check(&self) -> Result<(), StorageError>;
}
