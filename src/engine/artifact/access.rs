//! Last-access times of artifacts, recorded in memory on every hit and written in one
//! transaction every few seconds by the maintenance task, never one write per hit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

/// Pending last-access times, written in batches.
#[derive(Debug, Default)]
pub(crate) struct AccessLog {
    pending: Mutex<HashMap<String, SystemTime>>,
}

impl AccessLog {
    pub(crate) fn record(&self, key: &str, at: SystemTime) {
        self.pending
            .lock()
            .expect("access log is never poisoned")
            .insert(key.to_owned(), at);
    }

    pub(crate) fn drain(&self) -> Vec<(String, SystemTime)> {
        self.pending
            .lock()
            .expect("access log is never poisoned")
            .drain()
            .collect()
    }
}
