//! Blobs in S3-compatible object storage (`storage.blob_store = "s3://bucket/prefix"`),
//! through `object_store`.
//!
//! A verified temporary file is uploaded with a multipart upload, streamed from disk
//! in parts (never whole in memory); S3 makes the object visible only when the
//! upload completes, so a reader never sees a partial object, and the metadata row
//! that points at it is written after that.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::{BlobStore, BlobStream, Digest, StorageError, StoredBlob};

/// Parts of a multipart upload.
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts uploaded concurrently.
const PART_CONCURRENCY: usize = 4;

/// How to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3StoreOptions {
    pub bucket: String,
    /// Key prefix (may be empty).
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub path_style: bool,
    /// Local directory for fills' temporary files.
    pub temp_dir: PathBuf,
}

/// The S3 [`BlobStore`].
#[derive(Debug)]
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    temp_dir: PathBuf,
}

impl S3BlobStore {
    /// Builds the client and prepares the local temporary directory.
    ///
    /// # Errors
    /// Invalid options, or a temporary directory that cannot be created.
    pub async fn open(options: S3StoreOptions) -> Result<Self, StorageError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&options.bucket)
            .with_region(&options.region)
            .with_virtual_hosted_style_request(!options.path_style);
        if let Some(endpoint) = &options.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(key) = &options.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &options.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|source| StorageError::Object {
            location: format!("s3://{}", options.bucket),
            source,
        })?;
        tokio::fs::create_dir_all(&options.temp_dir)
            .await
            .map_err(StorageError::io(&options.temp_dir))?;
        let mut leftovers = tokio::fs::read_dir(&options.temp_dir)
            .await
            .map_err(StorageError::io(&options.temp_dir))?;
        while let Some(entry) = leftovers
            .next_entry()
            .await
            .map_err(StorageError::io(&options.temp_dir))?
        {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
        Ok(Self {
            store: Arc::new(store),
            prefix: options.prefix.trim_matches('/').to_owned(),
            temp_dir: options.temp_dir,
        })
    }

    fn location(&self, digest: &Digest) -> ObjectPath {
        let hex = digest.as_str();
        ObjectPath::from(self.key(&format!("blobs/{}/{hex}", &hex[..2])))
    }

    fn key(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_owned()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    fn error(location: &ObjectPath) -> impl FnOnce(object_store::Error) -> StorageError {
        let location = location.to_string();
        move |source| StorageError::Object { location, source }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn temp_dir(&self) -> &Path {
        &self.temp_dir
    }

    async fn get(&self, digest: &Digest) -> Result<Option<StoredBlob>, StorageError> {
        let location = self.location(digest);
        match self.store.head(&location).await {
            Ok(meta) => Ok(Some(StoredBlob {
                path: None,
                size: meta.size,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(Self::error(&location)(source)),
        }
    }

    async fn publish(&self, temp_file: &Path, digest: &Digest) -> Result<StoredBlob, StorageError> {
        let location = self.location(digest);
        if let Some(existing) = self.get(digest).await? {
            tokio::fs::remove_file(temp_file)
                .await
                .map_err(StorageError::io(temp_file))?;
            return Ok(existing);
        }
        let mut file = tokio::fs::File::open(temp_file)
            .await
            .map_err(StorageError::io(temp_file))?;
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(Self::error(&location))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut size = 0u64;
        let mut buffer = vec![0; 1024 * 1024];
        let streamed: Result<(), StorageError> = async {
            loop {
                writer
                    .wait_for_capacity(PART_CONCURRENCY)
                    .await
                    .map_err(Self::error(&location))?;
                let read = file
                    .read(&mut buffer)
                    .await
                    .map_err(StorageError::io(temp_file))?;
                if read == 0 {
                    return Ok(());
                }
                size += read as u64;
                writer.put(Bytes::copy_from_slice(&buffer[..read]));
            }
        }
        .await;
        if let Err(error) = streamed {
            // Abandon the upload so no part lingers; the object never became visible.
            let _ = writer.abort().await;
            return Err(error);
        }
        writer.finish().await.map_err(Self::error(&location))?;
        tokio::fs::remove_file(temp_file)
            .await
            .map_err(StorageError::io(temp_file))?;
        Ok(StoredBlob { path: None, size })
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobStream, StorageError> {
        let location = self.location(digest);
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&location, options)
            .await
            .map_err(Self::error(&location))?;
        Ok(result.into_stream().map_err(std::io::Error::other).boxed())
    }

    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        let location = self.location(digest);
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Self::error(&location)(source)),
        }
    }

    async fn list(&self) -> Result<Vec<(Digest, u64)>, StorageError> {
        let prefix = ObjectPath::from(self.key("blobs"));
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(Self::error(&prefix))?;
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?;
                Digest::from_hex(name).map(|digest| (digest, meta.size))
            })
            .collect())
    }

    async fn check(&self) -> Result<(), StorageError> {
        // A name of its own per probe: concurrent probes must not race on one object.
        let probe =
            ObjectPath::from(self.key(&format!("ready-probe-{:016x}", rand::random::<u64>())));
        self.store
            .put(&probe, Bytes::from_static(b"ok").into())
            .await
            .map_err(Self::error(&probe))?;
        self.store.delete(&probe).await.map_err(Self::error(&probe))
    }
}
