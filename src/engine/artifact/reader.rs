//! One client's view of a fill. Readers read from the fill's temporary file with
//! positional reads (or zero-copy from the tee while they keep up), never from a
//! channel of chunks, so a slow reader never slows the fill and the first client is
//! just a reader like any other.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;

use super::fill::{Fill, FillState};
use crate::engine::ProxyError;

/// Bytes read per step by a reader. Below glibc's default mmap threshold (128 KiB),
/// so each chunk's buffer comes from the heap rather than an mmap/munmap pair: with
/// hundreds of readers that difference dominated time to first byte (bench/run).
const READ_CHUNK: usize = 64 * 1024;

/// One client's view of a fill.
#[derive(Debug)]
pub struct FillReader {
    fill: Arc<Fill>,
    offset: u64,
    content_length: Option<u64>,
}

impl FillReader {
    pub(super) fn new(fill: Arc<Fill>) -> Self {
        fill.readers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            fill,
            offset: 0,
            content_length: None,
        }
    }

    /// The length the upstream announced (or the index listed), once known.
    #[must_use]
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Waits until the fill is published (or failed to be), at most `limit`.
    pub(super) async fn wait_published(&self, limit: Duration) {
        let mut state = self.fill.state.clone();
        let _ = tokio::time::timeout(limit, async {
            loop {
                if matches!(
                    *state.borrow_and_update(),
                    FillState::Done { .. } | FillState::Failed(_)
                ) {
                    return;
                }
                if state.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    pub(super) fn is_verified(&self) -> bool {
        matches!(
            *self.fill.state.borrow(),
            FillState::Verified { .. } | FillState::Done { .. }
        )
    }

    pub(super) async fn wait_for_headers(&mut self) -> Result<(), Arc<ProxyError>> {
        let mut state = self.fill.state.clone();
        loop {
            let current = state.borrow_and_update().clone();
            match current {
                FillState::Connecting => {}
                FillState::Streaming { content_length, .. } => {
                    self.content_length = content_length;
                    return Ok(());
                }
                FillState::Verified { size } | FillState::Done { size } => {
                    self.content_length = Some(size);
                    return Ok(());
                }
                FillState::Failed(error) => return Err(error),
            }
            if state.changed().await.is_err() {
                return Err(Arc::new(ProxyError::FillAborted {
                    key: self.fill.key.clone(),
                }));
            }
        }
    }

    /// The body as a stream; it ends with an error if the fill fails.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let state = self.fill.state.clone();
        futures::stream::unfold((self, state), |(mut reader, mut state)| async move {
            match reader.next_chunk(&mut state).await {
                Ok(Some(chunk)) => Some((Ok(chunk), (reader, state))),
                Ok(None) => None,
                Err(error) => {
                    // End the stream after the error.
                    reader.offset = u64::MAX;
                    Some((Err(error), (reader, state)))
                }
            }
        })
    }

    async fn next_chunk(
        &mut self,
        state: &mut watch::Receiver<FillState>,
    ) -> Result<Option<Bytes>, std::io::Error> {
        if self.offset == u64::MAX {
            return Ok(None);
        }
        loop {
            let readable = match &*state.borrow_and_update() {
                FillState::Connecting => 0,
                // Hold back the final byte until the fill is verified.
                FillState::Streaming { written, .. } => written.saturating_sub(1),
                FillState::Verified { size } | FillState::Done { size } => {
                    if self.offset >= *size {
                        return Ok(None);
                    }
                    *size
                }
                FillState::Failed(error) => {
                    return Err(std::io::Error::other(error.to_string()));
                }
            };
            if self.offset < readable {
                if let Some(chunk) = self.fill.recent.slice(self.offset, readable) {
                    self.offset += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                let length = usize::try_from(readable - self.offset)
                    .unwrap_or(usize::MAX)
                    .min(READ_CHUNK);
                // Behind the tee's window: the bytes were written moments ago, so
                // they are in the page cache and a positional read is a memory copy;
                // reading inline avoids a blocking-pool hop per chunk per reader.
                let mut buffer = vec![0; length];
                self.fill.file.read_exact_at(&mut buffer, self.offset)?;
                let chunk = Bytes::from(buffer);
                self.offset += chunk.len() as u64;
                return Ok(Some(chunk));
            }
            if state.changed().await.is_err() {
                return Err(std::io::Error::other(format!(
                    "fill of `{}` stopped unexpectedly",
                    self.fill.key
                )));
            }
        }
    }
}

impl Drop for FillReader {
    fn drop(&mut self) {
        self.fill
            .readers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
