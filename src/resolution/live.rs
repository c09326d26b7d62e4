//! A resolution in flight, as the NDJSON lines it has made so far: the flight appends,
//! any number of followers (`POST …/resolve` callers, the one that started it and
//! those that joined) read from the first line on and wait for more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::Notify;

/// The lines of one resolution in flight.
#[derive(Debug, Default)]
pub(super) struct Live {
    log: Mutex<Log>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct Log {
    chunks: Vec<Bytes>,
    /// No more lines will come.
    closed: bool,
    /// The last line (`done` or `error`) is in `chunks`.
    ended: bool,
}

/// What a follower finds beyond what it has read.
struct Beyond {
    chunks: Vec<Bytes>,
    /// Chunks in the log when this was read.
    total: usize,
    closed: bool,
    ended: bool,
}

/// A follower's place in the log.
struct Following {
    live: Arc<Live>,
    /// Chunks read.
    read: usize,
    /// The log was closed when last read: the stream ends.
    over: bool,
    /// Read before the stream began, not yet sent.
    first: Option<Beyond>,
}

/// The line a follower ends with when the flight ended without its last line (it
/// panicked: a bug, logged where it happened).
const BROKEN: &[u8] =
    b"{\"message\":\"the resolution failed: see the server's log\",\"type\":\"error\"}\n";

impl Live {
    /// More lines (a chunk of whole lines).
    pub(super) fn push(&self, chunk: Bytes) {
        self.log
            .lock()
            .expect("a live log is never poisoned")
            .chunks
            .push(chunk);
        self.changed.notify_waiters();
    }

    /// The last lines: nothing comes after them.
    pub(super) fn end(&self, last: Bytes) {
        {
            let mut log = self.log.lock().expect("a live log is never poisoned");
            if log.closed {
                return;
            }
            if !last.is_empty() {
                log.chunks.push(last);
            }
            log.ended = true;
            log.closed = true;
        }
        self.changed.notify_waiters();
    }

    /// Nothing more comes (a no-op after [`Live::end`]).
    fn close(&self) {
        self.log
            .lock()
            .expect("a live log is never poisoned")
            .closed = true;
        self.changed.notify_waiters();
    }

    /// Waits until there is a chunk beyond the first `seen`, or the log is closed.
    async fn beyond(&self, seen: usize) -> Beyond {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let log = self.log.lock().expect("a live log is never poisoned");
                if log.chunks.len() > seen || log.closed {
                    return Beyond {
                        chunks: log.chunks.get(seen..).unwrap_or_default().to_vec(),
                        total: log.chunks.len(),
                        closed: log.closed,
                        ended: log.ended,
                    };
                }
            }
            notified.await;
        }
    }

    /// The lines from the first on, as they come, once some have come: `None` when
    /// the flight ended before it made any (its result then says everything).
    pub(super) async fn follow(self: Arc<Self>) -> Option<impl Stream<Item = Bytes> + Send> {
        let first = self.beyond(0).await;
        if first.closed {
            return None;
        }
        let start = Following {
            live: self,
            read: 0,
            over: false,
            first: Some(first),
        };
        Some(futures::stream::unfold(start, |mut following| async move {
            if following.over {
                return None;
            }
            let found = match following.first.take() {
                Some(found) => found,
                None => following.live.beyond(following.read).await,
            };
            let mut body = BytesMut::new();
            for chunk in &found.chunks {
                body.extend_from_slice(chunk);
            }
            if found.closed && !found.ended {
                body.extend_from_slice(BROKEN);
            }
            following.read = found.total;
            following.over = found.closed;
            (!body.is_empty()).then(|| (body.freeze(), following))
        }))
    }
}

/// The resolutions in flight that stream, by key.
#[derive(Debug, Clone, Default)]
pub(super) struct Lives(Arc<Mutex<HashMap<String, Arc<Live>>>>);

impl Lives {
    pub(super) fn insert(&self, key: &str, live: &Arc<Live>) {
        self.0
            .lock()
            .expect("the live map is never poisoned")
            .insert(key.to_owned(), Arc::clone(live));
    }

    pub(super) fn get(&self, key: &str) -> Option<Arc<Live>> {
        self.0
            .lock()
            .expect("the live map is never poisoned")
            .get(key)
            .cloned()
    }
}

/// Closes a flight's log and forgets it when the flight ends, however it ends.
pub(super) struct Closing {
    pub(super) lives: Lives,
    pub(super) key: String,
    pub(super) live: Arc<Live>,
}

impl Drop for Closing {
    fn drop(&mut self) {
        self.live.close();
        if let Ok(mut lives) = self.lives.0.lock() {
            if lives
                .get(&self.key)
                .is_some_and(|live| Arc::ptr_eq(live, &self.live))
            {
                lives.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Live, BROKEN};
    use bytes::Bytes;
    use futures::StreamExt;
    use std::sync::Arc;

    async fn read_all(live: &Arc<Live>) -> Option<Vec<u8>> {
        let lines = Arc::clone(live).follow().await?;
        Some(lines.collect::<Vec<Bytes>>().await.concat())
    }

    #[tokio::test]
    async fn every_follower_reads_from_the_first_line_whenever_it_joins() {
        let live = Arc::new(Live::default());
        let early = tokio::spawn({
            let live = Arc::clone(&live);
            async move { read_all(&live).await }
        });
        tokio::task::yield_now().await;
        live.push(Bytes::from_static(b"1\n"));
        live.push(Bytes::from_static(b"2\n"));
        let late = tokio::spawn({
            let live = Arc::clone(&live);
            async move { read_all(&live).await }
        });
        tokio::task::yield_now().await;
        live.push(Bytes::from_static(b"3\n"));
        live.end(Bytes::from_static(b"done\n"));
        for follower in [early, late] {
            assert_eq!(
                follower.await.expect("follower").as_deref(),
                Some(&b"1\n2\n3\ndone\n"[..])
            );
        }
    }

    #[tokio::test]
    async fn a_flight_that_ends_before_any_line_is_not_followed() {
        let live = Arc::new(Live::default());
        live.end(Bytes::from_static(b"done\n"));
        assert_eq!(read_all(&live).await, None);
    }

    #[tokio::test]
    async fn a_flight_closed_without_its_last_line_ends_with_an_error_line() {
        let live = Arc::new(Live::default());
        live.push(Bytes::from_static(b"1\n"));
        let follower = tokio::spawn({
            let live = Arc::clone(&live);
            async move { read_all(&live).await }
        });
        tokio::task::yield_now().await;
        live.close();
        let read = follower.await.expect("follower").expect("lines");
        assert_eq!(read, [&b"1\n"[..], BROKEN].concat());
        let last = read
            .split(|b| *b == b'\n')
            .rev()
            .nth(1)
            .expect("a last line");
        let error: serde_json::Value = serde_json::from_slice(last).expect("JSON");
        assert_eq!(error["type"], "error");
    }
}
