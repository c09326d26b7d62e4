//! A blob store in a local directory: `blobs/<first two hex digits>/<sha256>`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tracing::{info, warn};

use super::{BlobStore, BlobStream, Digest, StorageError, StoredBlob};

/// Where the local store keeps its files.
#[derive(Debug, Clone)]
pub struct FsStoreOptions {
    /// `data_dir/blobs`.
    pub blob_dir: PathBuf,
    /// `data_dir/tmp`; emptied at start-up (whatever is there was left by a crash).
    pub temp_dir: PathBuf,
}

/// The local-directory [`BlobStore`].
#[derive(Debug)]
pub struct FsBlobStore {
    options: FsStoreOptions,
}

impl FsBlobStore {
    /// Creates the directories and removes temporary files a crash left behind.
    ///
    /// # Errors
    /// When a directory cannot be created or cleaned.
    pub async fn open(options: FsStoreOptions) -> Result<Self, StorageError> {
        tokio::fs::create_dir_all(&options.blob_dir)
            .await
            .map_err(StorageError::io(&options.blob_dir))?;
        tokio::fs::create_dir_all(&options.temp_dir)
            .await
            .map_err(StorageError::io(&options.temp_dir))?;
        let removed = remove_leftovers(&options.temp_dir).await?;
        if removed > 0 {
            info!(removed, dir = %options.temp_dir.display(), "removed temporary files left by an earlier run");
        }
        Ok(Self { options })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.as_str();
        self.options.blob_dir.join(&hex[..2]).join(hex)
    }
}

async fn remove_leftovers(dir: &Path) -> Result<usize, StorageError> {
    let mut removed = 0;
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(StorageError::io(dir))?;
    while let Some(entry) = entries.next_entry().await.map_err(StorageError::io(dir))? {
        let path = entry.path();
        tokio::fs::remove_file(&path)
            .await
            .map_err(StorageError::io(&path))?;
        removed += 1;
    }
    Ok(removed)
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn temp_dir(&self) -> &Path {
        &self.options.temp_dir
    }

    async fn get(&self, digest: &Digest) -> Result<Option<StoredBlob>, StorageError> {
        let path = self.blob_path(digest);
        match tokio::fs::metadata(&path).await {
            Ok(metadata) => Ok(Some(StoredBlob {
                size: metadata.len(),
                path: Some(path),
            })),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StorageError::Io {
                path,
                source: error,
            }),
        }
    }

    async fn publish(&self, temp_file: &Path, digest: &Digest) -> Result<StoredBlob, StorageError> {
        let destination = self.blob_path(digest);
        let parent = destination
            .parent()
            .expect("a blob path always has a fan-out parent")
            .to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(StorageError::io(&parent))?;
        if let Some(existing) = self.get(digest).await? {
            // Same content, stored earlier under another key: keep the existing file.
            tokio::fs::remove_file(temp_file)
                .await
                .map_err(StorageError::io(temp_file))?;
            return Ok(existing);
        }
        let temp = temp_file.to_path_buf();
        let size = tokio::task::spawn_blocking(move || -> Result<u64, StorageError> {
            let file = std::fs::File::open(&temp).map_err(StorageError::io(&temp))?;
            file.sync_all().map_err(StorageError::io(&temp))?;
            let size = file.metadata().map_err(StorageError::io(&temp))?.len();
            std::fs::rename(&temp, &destination).map_err(StorageError::io(&destination))?;
            // Make the rename itself durable.
            if let Ok(dir) = std::fs::File::open(&parent) {
                if let Err(error) = dir.sync_all() {
                    warn!(%error, dir = %parent.display(), "could not fsync blob directory");
                }
            }
            Ok(size)
        })
        .await
        .expect("publish task does not panic")?;
        Ok(StoredBlob {
            path: Some(self.blob_path(digest)),
            size,
        })
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobStream, StorageError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let path = self.blob_path(digest);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(StorageError::io(&path))?;
        let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match range {
            Some(range) => {
                file.seek(std::io::SeekFrom::Start(range.start))
                    .await
                    .map_err(StorageError::io(&path))?;
                Box::new(file.take(range.end - range.start))
            }
            None => Box::new(file),
        };
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            reader,
            256 * 1024,
        )))
    }

    fn kind(&self) -> &'static str {
        "fs"
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        let path = self.blob_path(digest);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(StorageError::Io {
                path,
                source: error,
            }),
        }
    }

    async fn list(&self) -> Result<Vec<(Digest, u64)>, StorageError> {
        let root = self.options.blob_dir.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<(Digest, u64)>, StorageError> {
            let mut blobs = Vec::new();
            for fan_out in std::fs::read_dir(&root).map_err(StorageError::io(&root))? {
                let fan_out = fan_out.map_err(StorageError::io(&root))?.path();
                if !fan_out.is_dir() {
                    continue;
                }
                for entry in std::fs::read_dir(&fan_out).map_err(StorageError::io(&fan_out))? {
                    let entry = entry.map_err(StorageError::io(&fan_out))?;
                    let name = entry.file_name();
                    if let Some(digest) = name.to_str().and_then(Digest::from_hex) {
                        let size = entry
                            .metadata()
                            .map_err(StorageError::io(entry.path()))?
                            .len();
                        blobs.push((digest, size));
                    }
                }
            }
            Ok(blobs)
        })
        .await
        .expect("listing task does not panic")
    }

    async fn check(&self) -> Result<(), StorageError> {
        // A name of its own per probe: concurrent probes must not race on one file.
        let probe = self
            .options
            .temp_dir
            .join(format!(".ready-probe-{:016x}", rand::random::<u64>()));
        tokio::fs::write(&probe, b"ok")
            .await
            .map_err(StorageError::io(&probe))?;
        tokio::fs::remove_file(&probe)
            .await
            .map_err(StorageError::io(&probe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publish_is_atomic_and_idempotent_and_start_cleans_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = FsStoreOptions {
            blob_dir: dir.path().join("blobs"),
            temp_dir: dir.path().join("tmp"),
        };
        std::fs::create_dir_all(&options.temp_dir).expect("tmp");
        std::fs::write(options.temp_dir.join("crash-leftover"), b"partial").expect("leftover");
        let store = FsBlobStore::open(options.clone()).await.expect("open");
        assert_eq!(std::fs::read_dir(&options.temp_dir).expect("ls").count(), 0);

        let digest = Digest::from_hex(&"ab".repeat(32)).expect("hex");
        assert!(store.get(&digest).await.expect("get").is_none());
        for _ in 0..2 {
            let temp = options.temp_dir.join("fill");
            std::fs::write(&temp, b"hello").expect("write temp");
            let blob = store.publish(&temp, &digest).await.expect("publish");
            assert_eq!(blob.size, 5);
            assert!(!temp.exists());
        }
        let blob = store.get(&digest).await.expect("get").expect("stored");
        assert_eq!(store.list().await.expect("list"), vec![(digest.clone(), 5)]);
        assert_eq!(
            std::fs::read(blob.path.expect("local")).expect("read"),
            b"hello"
        );
        store.delete(&digest).await.expect("delete");
        assert!(store.get(&digest).await.expect("get").is_none());
    }

    #[test]
    fn digest_rejects_anything_but_lowercase_hex() {
        assert!(Digest::from_hex(&"0".repeat(64)).is_some());
        assert!(Digest::from_hex(&"A".repeat(64)).is_none());
        assert!(Digest::from_hex("../../etc/passwd").is_none());
        assert!(Digest::from_hex(&"0".repeat(63)).is_none());
    }
}
