use std::path::PathBuf;

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object store `{location}`: {source}")]
    Object {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("blob store i/o on `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
