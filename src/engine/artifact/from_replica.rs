//! Streaming an artifact from the replica that is downloading it.
//!
//! ```text
//! replica A (holds the lock, value "token http://A"): upstream ─► fill ─► its clients
//!                                                                   └─► GET /-/replica/fill ─┐
//! replica B (finds the lock taken): reads A's address from the lock ──► fill of its own ◄──┘
//!                                   (hashed and checked as a download) ─► B's clients
//! ```
//!
//! B's fill is an ordinary fill whose body comes from A instead of the upstream: B's
//! clients follow it as they would any fill, and it is checked against the digests
//! B's request expects before its last byte is released. A serves only bytes its own
//! fill wrote, and holds its last byte back until it has verified them, so the
//! stream ends only on verified content. B does not store what it streamed (A
//! stores it); B's next requests read the store. When A cannot be reached, answers
//! anything but `200`, or named no address, B waits for A's announcement as before.

use std::time::Duration;

use tracing::debug;

use super::reader::FillReader;
use super::ArtifactCache;
use crate::access::constant_time_eq;

/// The internal path a replica serves its downloads in flight on.
pub const REPLICA_FILL_PATH: &str = "/-/replica/fill";

/// How long a replica waits for the holder to answer before it waits the old way.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Streaming between replicas: the shared secret and the client that presents it.
#[derive(Debug, Clone)]
pub struct ReplicaStreams {
    secret: String,
    client: reqwest::Client,
}

impl ReplicaStreams {
    /// # Errors
    /// When the HTTP client cannot be built (no TLS backend).
    pub fn new(secret: &str) -> Result<Self, reqwest::Error> {
        Ok(Self {
            secret: secret.to_owned(),
            client: reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(CONNECT_TIMEOUT)
                // Bytes, as they are on the holder's disk: nothing to decode.
                .no_gzip()
                .build()?,
        })
    }

    /// Whether `presented` (a bearer token) is the shared secret.
    #[must_use]
    pub fn accepts(&self, presented: &str) -> bool {
        constant_time_eq(presented.as_bytes(), self.secret.as_bytes())
    }

    /// The holder's stream of `key`, if it answers `200` at once.
    pub(super) async fn open(&self, holder: &str, key: &str) -> Option<reqwest::Response> {
        let mut url = url::Url::parse(holder).ok()?.join(REPLICA_FILL_PATH).ok()?;
        url.query_pairs_mut().append_pair("key", key);
        let sent = self
            .client
            .get(url)
            .bearer_auth(&self.secret)
            .timeout(Duration::from_secs(24 * 3600))
            .send();
        match tokio::time::timeout(CONNECT_TIMEOUT, sent).await {
            Ok(Ok(response)) if response.status() == reqwest::StatusCode::OK => Some(response),
            Ok(Ok(response)) => {
                debug!(%key, %holder, status = %response.status(), "replica has no download to share");
                None
            }
            Ok(Err(error)) => {
                debug!(%key, %holder, %error, "replica cannot be reached; waiting for it instead");
                None
            }
            Err(_) => {
                debug!(%key, %holder, "replica answered too slowly; waiting for it instead");
                None
            }
        }
    }
}

impl ArtifactCache {
    /// The streaming settings between replicas, when configured.
    #[must_use]
    pub fn replica_streams(&self) -> Option<&ReplicaStreams> {
        self.inner.replica_streams.as_ref()
    }

    /// A reader of this replica's own download of `key` in flight (never one streamed
    /// from another replica), for a replica that asks; `None` when there is none.
    pub async fn follow_own_fill(&self, key: &str) -> Option<FillReader> {
        let fill = self
            .inner
            .fills
            .lock()
            .expect("fill map is never poisoned")
            .get(key)
            .filter(|fill| !fill.from_replica)
            .cloned()?;
        let mut reader = FillReader::new(fill);
        reader.wait_for_headers().await.ok()?;
        Some(reader)
    }

    /// Advertises `url` in the download locks this replica takes.
    pub fn advertise(&self, url: &str) {
        if let Some(locks) = &self.inner.download_locks {
            locks.advertise(url);
        }
    }

    /// The stream of `key` from the replica holding its lock, if streaming is set up
    /// and that replica serves it. `asked` is the holding (the lock's value) asked
    /// last, not asked again.
    pub(super) async fn open_from_holder(
        &self,
        key: &str,
        asked: &mut Option<String>,
    ) -> Option<reqwest::Response> {
        let streams = self.inner.replica_streams.as_ref()?;
        let (holding, holder) = self.inner.download_locks.as_ref()?.holder(key).await?;
        if asked.as_deref() == Some(holding.as_str()) {
            return None;
        }
        *asked = Some(holding);
        let response = streams.open(&holder, key).await?;
        self.inner.metrics.cross_replica_streams.inc();
        debug!(%key, %holder, "streaming from the replica that is downloading it");
        Some(response)
    }
}
