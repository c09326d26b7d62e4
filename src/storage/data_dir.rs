//! Who uses `data_dir`: one process that writes (`serve`, `gc`, `verify --repair`)
//! holds an exclusive lock on `data_dir/granary.lock` for as long as it runs; a second
//! one is refused with a message saying so. Readers (`verify`) take no lock.
//!
//! Every process writes its temporary files in a directory of its own under
//! `data_dir/tmp/`, so nothing another process does can remove a running fill's file.
//! The writer that takes the lock removes what earlier processes left there: with the
//! lock held, no other writer is running, and a reader's files are only its own.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::StorageError;

/// Whether the process writes to `data_dir` or only reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirAccess {
    /// Serve, collect garbage, repair: one such process at a time.
    Exclusive,
    /// Verify without repairing: beside a running server.
    ReadOnly,
}

/// This process's claim on `data_dir`; releases the lock and removes its temporary
/// directory when dropped.
#[derive(Debug)]
pub struct DataDirClaim {
    /// Held open while the lock is held (closing it releases the lock).
    _lock: Option<std::fs::File>,
    temp_dir: PathBuf,
}

/// Errors claiming `data_dir`.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("data_dir `{0}` is in use by another granary process (`serve`, `gc` or `verify --repair`); stop it first, or give this one another `data_dir`")]
    InUse(PathBuf),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl DataDirClaim {
    /// Claims `data_dir` for `access` and creates this process's temporary directory.
    ///
    /// # Errors
    /// When another writer holds the lock, or the directories cannot be made.
    pub fn acquire(data_dir: &Path, access: DataDirAccess) -> Result<Self, ClaimError> {
        let io = |path: &Path| StorageError::io(path.to_path_buf());
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        let temp_root = data_dir.join("tmp");
        std::fs::create_dir_all(&temp_root).map_err(io(&temp_root))?;
        let lock = match access {
            DataDirAccess::ReadOnly => None,
            DataDirAccess::Exclusive => {
                let path = data_dir.join("granary.lock");
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                match file.try_lock() {
                    Ok(()) => {}
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(ClaimError::InUse(data_dir.to_path_buf()))
                    }
                    Err(std::fs::TryLockError::Error(error)) => {
                        return Err(StorageError::Io {
                            path,
                            source: error,
                        }
                        .into())
                    }
                }
                remove_leftovers(&temp_root);
                Some(file)
            }
        };
        let temp_dir = temp_root.join(format!(
            "{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&temp_dir).map_err(io(&temp_dir))?;
        Ok(Self {
            _lock: lock,
            temp_dir,
        })
    }

    /// This process's directory for temporary files.
    #[must_use]
    pub fn temp_dir(&self) -> &Path {
        &self.temp_dir
    }
}

impl Drop for DataDirClaim {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.temp_dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                warn!(dir = %self.temp_dir.display(), %error, "could not remove the temporary directory");
            }
        }
    }
}

/// Removes whatever earlier processes left in `tmp/` (a crash's partial fills).
fn remove_leftovers(temp_root: &Path) {
    let Ok(entries) = std::fs::read_dir(temp_root) else {
        return;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let result = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => removed += 1,
            Err(error) => {
                warn!(path = %path.display(), %error, "could not remove a leftover temporary file");
            }
        }
    }
    if removed > 0 {
        info!(removed, dir = %temp_root.display(), "removed temporary files left by an earlier run");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_at_a_time_and_readers_beside_it() {
        let dir = tempfile::tempdir().expect("dir");
        let serving = DataDirClaim::acquire(dir.path(), DataDirAccess::Exclusive).expect("first");
        let second = DataDirClaim::acquire(dir.path(), DataDirAccess::Exclusive)
            .expect_err("a second writer is refused");
        assert!(
            second
                .to_string()
                .contains("in use by another granary process"),
            "{second}"
        );
        std::fs::write(serving.temp_dir().join("fill-1"), b"in progress").expect("fill");
        let reader = DataDirClaim::acquire(dir.path(), DataDirAccess::ReadOnly).expect("reader");
        assert!(
            serving.temp_dir().join("fill-1").exists(),
            "a reader leaves the writer's temporary files alone"
        );
        assert_ne!(reader.temp_dir(), serving.temp_dir());
        drop(reader);
        drop(serving);
        let next = DataDirClaim::acquire(dir.path(), DataDirAccess::Exclusive).expect("freed");
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp"))
                .expect("ls")
                .count(),
            1,
            "only the new writer's own directory is left"
        );
        drop(next);
    }
}
