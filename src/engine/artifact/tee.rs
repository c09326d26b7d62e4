//! The tee of a fill: its most recent chunks, kept as shared `Bytes`, so readers that
//! keep up with the upstream take zero-copy slices instead of each copying the same
//! bytes out of the temporary file. The window is bounded; readers that fall behind
//! it read the file. The fill never waits for readers.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;

/// Bytes of recent chunks kept per fill.
pub(super) const TEE_WINDOW_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Default)]
struct Window {
    /// `(offset of the chunk's first byte, chunk)`, oldest first.
    chunks: VecDeque<(u64, Bytes)>,
    bytes: u64,
}

/// A bounded window over the newest bytes of a fill.
#[derive(Debug, Default)]
pub(super) struct RecentChunks {
    window: Mutex<Window>,
}

impl RecentChunks {
    /// Adds the chunk that starts at `offset`, dropping the oldest beyond the window.
    pub(super) fn push(&self, offset: u64, chunk: Bytes) {
        let mut window = self.window.lock().expect("tee window is never poisoned");
        window.bytes += chunk.len() as u64;
        window.chunks.push_back((offset, chunk));
        while window.bytes > TEE_WINDOW_BYTES && window.chunks.len() > 1 {
            if let Some((_, dropped)) = window.chunks.pop_front() {
                window.bytes -= dropped.len() as u64;
            }
        }
    }

    /// The bytes from `offset` up to the end of the chunk holding it, but not past
    /// `limit`; `None` if that offset is no longer (or not yet) in the window.
    pub(super) fn slice(&self, offset: u64, limit: u64) -> Option<Bytes> {
        let window = self.window.lock().expect("tee window is never poisoned");
        let (start, chunk) = window
            .chunks
            .iter()
            .rev()
            .find(|(start, chunk)| *start <= offset && offset < start + chunk.len() as u64)?;
        let from = usize::try_from(offset - start).ok()?;
        let end = (start + chunk.len() as u64).min(limit);
        let to = usize::try_from(end.checked_sub(*start)?).ok()?;
        (from < to).then(|| chunk.slice(from..to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_within_the_window_and_forgets_beyond_it() {
        let tee = RecentChunks::default();
        tee.push(0, Bytes::from_static(b"hello "));
        tee.push(6, Bytes::from_static(b"world"));
        assert_eq!(tee.slice(2, 100).as_deref(), Some(&b"llo "[..]));
        assert_eq!(
            tee.slice(6, 9).as_deref(),
            Some(&b"wor"[..]),
            "never past the limit"
        );
        assert_eq!(tee.slice(11, 100), None, "not written yet");
        let big = Bytes::from(vec![7u8; usize::try_from(TEE_WINDOW_BYTES).expect("fits")]);
        tee.push(11, big);
        assert_eq!(tee.slice(0, 100), None, "dropped from the window");
        assert_eq!(tee.slice(11, 13).as_deref(), Some(&[7u8, 7][..]));
    }
}
