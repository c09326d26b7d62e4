//! Regression tests for the defects the engine review found (issue: engine
//! hardening). Each names the defect it guards against; each failed before its fix.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use granary::clock::{Clock, ManualClock, SystemClock};
use granary::engine::index::Parsed;
use granary::engine::redis::RedisTier;
use granary::engine::{
    ArtifactBody, ArtifactCache, ArtifactCacheOptions, ArtifactLookup, ArtifactRequest, CacheKey,
    Category, DigestAlgorithm, DownloadLocks, ExpectedDigest, Fetched, IndexCache, IndexDocument,
    IndexRequest, IndexSource, SharedIndex, UpstreamClient, UpstreamError, UpstreamOptions,
};
use granary::http_cache::{FreshnessPolicy, Lifetimes, Validators};
use granary::metadata::{
    ApiTokenRecord, ArtifactRecord, BlobUsage, GuardedMetadataStore, IndexRecord, MetadataError,
    MetadataStore, SqliteMetadataStore,
};
use granary::metrics::Metrics;
use granary::storage::{
    BlobStore, BlobStream, Digest, FsBlobStore, FsStoreOptions, StorageError, StoredBlob,
};
use tokio::sync::Notify;

use crate::support::engines::index_stored_at_in_redis;
use crate::support::{one_file_page, sha256_hex, Engines, FakeUpstream, Scripted, TestGranary};

fn body_of(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| u8::try_from(i % 251).expect("small") ^ seed)
        .collect()
}

async fn read_all(lookup: ArtifactLookup, blobs: &Arc<dyn BlobStore>) -> Vec<u8> {
    let mut stream = match lookup.body {
        ArtifactBody::Memory(hot) => return hot.bytes.to_vec(),
        ArtifactBody::Stored { record, .. } => {
            blobs.read(&record.digest, None).await.expect("read blob")
        }
        ArtifactBody::Filling(reader) => reader.into_stream().boxed(),
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.expect("chunk"));
    }
    bytes
}

async fn settle(cache: &ArtifactCache) {
    for _ in 0..1000 {
        if cache.fills_in_flight() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fills did not finish");
}

/// An engine's artifact half on the given stores, and the client for `upstream`.
struct ArtifactRig {
    _dir: tempfile::TempDir,
    cache: ArtifactCache,
    metadata: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    upstream: Arc<UpstreamClient>,
}

async fn fs_store(dir: &Path) -> FsBlobStore {
    FsBlobStore::open(FsStoreOptions {
        blob_dir: dir.join("blobs"),
        temp_dir: dir.join("tmp"),
    })
    .await
    .expect("blob store")
}

async fn rig(
    upstream_root: &str,
    wrap_metadata: impl FnOnce(SqliteMetadataStore) -> Arc<dyn MetadataStore>,
    wrap_blobs: impl FnOnce(FsBlobStore) -> Arc<dyn BlobStore>,
    download_locks: Option<DownloadLocks>,
) -> ArtifactRig {
    let dir = tempfile::tempdir().expect("dir");
    let metadata = wrap_metadata(
        SqliteMetadataStore::open(&dir.path().join("granary.db"))
            .await
            .expect("sqlite"),
    );
    let blobs = wrap_blobs(fs_store(dir.path()).await);
    let metrics = Metrics::new();
    let upstream = UpstreamClient::new(
        UpstreamOptions {
            repo: "pypi".to_owned(),
            root: url::Url::parse(upstream_root).expect("url"),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            retries: 0,
            auth: None,
            max_concurrent_fills: 32,
            allowed_hosts: Vec::new(),
            only_allowed_hosts: false,
        },
        metrics.clone(),
    )
    .expect("client");
    let cache = ArtifactCache::new(
        Arc::clone(&metadata),
        Arc::clone(&blobs),
        ArtifactCacheOptions {
            max_stored_bytes: None,
            download_locks,
            hot_capacity_bytes: 0,
            replica_streams: None,
        },
        Arc::new(SystemClock),
        metrics,
    );
    ArtifactRig {
        _dir: dir,
        cache,
        metadata,
        blobs,
        upstream,
    }
}

impl ArtifactRig {
    fn request(&self, name: &str, url: &str, body: &[u8]) -> ArtifactRequest {
        ArtifactRequest {
            key: CacheKey::new(Category::Artifact, "pypi", "pypi", name),
            repo: "pypi".to_owned(),
            upstream: Arc::clone(&self.upstream),
            url: url::Url::parse(url).expect("url"),
            expected: vec![ExpectedDigest::new(
                DigestAlgorithm::Sha256,
                &sha256_hex(body),
            )],
            published: None,
            expected_size: None,
            content_type: "application/octet-stream".to_owned(),
        }
    }
}

// Defect 1: a cross-replica download lock dropped without `release()` (here: the
// temporary file cannot be created) kept renewing for ever, so every replica waited
// `artifact_wait` and answered 504 until the process exited.
#[tokio::test]
async fn a_download_lock_is_released_when_its_fill_cannot_start() {
    let Some(engines) = Engines::from_env("a_download_lock_is_released_when_its_fill_cannot_start")
    else {
        return;
    };
    let redis = engines.redis();
    let upstream = FakeUpstream::start(None).await;
    let body = body_of(64 * 1024, 1);
    upstream.script(
        "simple/lock/",
        one_file_page("lock", "lock-1.0.tar.gz", &body),
    );
    upstream.script("dl/lock-1.0.tar.gz", Scripted::ok(body.clone()));
    let granary = TestGranary::start_with_top_level(
        &upstream.url("simple/"),
        &format!(
            "[redis]\nurl = \"{}\"\nartifact_lock_ttl = \"600ms\"\nartifact_wait = \"10s\"\n",
            redis.url()
        ),
        "",
    )
    .await;
    // Fault: the fill's temporary file cannot be created.
    std::fs::remove_dir_all(granary.state.data_dir.temp_dir()).expect("remove temp dir");
    let response = granary.get("pypi/files/lock/lock-1.0.tar.gz").await;
    assert_eq!(response.status(), 500, "the fill cannot start");

    let probe =
        RedisTier::new(&redis.url(), Duration::from_secs(1), Metrics::new()).expect("redis client");
    let lock = "granary:lock:granary:artifact:pypi:pypi:lock/lock-1.0.tar.gz";
    // Three lock lifetimes: a lock still renewed would still be there.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(
        probe.get(lock).await.expect("redis answers"),
        None,
        "the lock was released, not renewed for ever"
    );
    // And the artifact is served once the fault is gone.
    std::fs::create_dir_all(granary.state.data_dir.temp_dir()).expect("temp dir back");
    let response = granary.get("pypi/files/lock/lock-1.0.tar.gz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        body.as_slice()
    );
}

/// A metadata store that can be made to hang (a paused database), and that counts
/// artifact-row lookups (the query waiting replicas poll with).
#[derive(Debug)]
struct InstrumentedStore {
    inner: SqliteMetadataStore,
    hang: Arc<AtomicBool>,
    /// Index writes take 300 ms (a busy database).
    slow_writes: Arc<AtomicBool>,
    /// Index reads take 500 ms (longer than a request waits for the shared tiers).
    slow_reads: Arc<AtomicBool>,
    /// Artifact rows are not written until this is cleared (a publish in progress).
    hold_artifact_writes: Arc<AtomicBool>,
    artifact_lookups: Arc<AtomicUsize>,
}

impl InstrumentedStore {
    fn new(inner: SqliteMetadataStore) -> Self {
        Self {
            inner,
            hang: Arc::default(),
            slow_writes: Arc::default(),
            slow_reads: Arc::default(),
            hold_artifact_writes: Arc::default(),
            artifact_lookups: Arc::default(),
        }
    }

    async fn gate(&self) {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl MetadataStore for InstrumentedStore {
    async fn index_entry(&self, key: &str) -> Result<Option<IndexRecord>, MetadataError> {
        self.gate().await;
        if self.slow_reads.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.inner.index_entry(key).await
    }
    async fn api_token(&self, hash: &str) -> Result<Option<ApiTokenRecord>, MetadataError> {
        self.gate().await;
        self.inner.api_token(hash).await
    }
    async fn put_api_token(&self, record: &ApiTokenRecord) -> Result<(), MetadataError> {
        self.gate().await;
        self.inner.put_api_token(record).await
    }
    async fn put_extraction(
        &self,
        extraction: &granary::protocols::dependencies::Extraction,
    ) -> Result<(), MetadataError> {
        self.gate().await;
        self.inner.put_extraction(extraction).await
    }
    async fn resolution(
        &self,
        key: &str,
    ) -> Result<Option<granary::metadata::ResolutionRecord>, MetadataError> {
        self.inner.resolution(key).await
    }
    async fn put_resolution(
        &self,
        record: &granary::metadata::ResolutionRecord,
    ) -> Result<(), MetadataError> {
        self.inner.put_resolution(record).await
    }
    async fn delete_resolutions_before(
        &self,
        before: std::time::SystemTime,
    ) -> Result<u64, MetadataError> {
        self.inner.delete_resolutions_before(before).await
    }
    async fn has_extraction(&self, digest: &str) -> Result<bool, MetadataError> {
        self.gate().await;
        self.inner.has_extraction(digest).await
    }
    async fn extractions_of(
        &self,
        repo: &str,
        project: &str,
        version: &str,
    ) -> Result<Vec<granary::protocols::dependencies::Extraction>, MetadataError> {
        self.gate().await;
        self.inner.extractions_of(repo, project, version).await
    }
    async fn put_index_entry(&self, record: &IndexRecord) -> Result<(), MetadataError> {
        self.gate().await;
        if self.slow_writes.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.inner.put_index_entry(record).await
    }
    async fn renew_index_entry(
        &self,
        key: &str,
        stored_at: SystemTime,
        lifetimes: Lifetimes,
        validators: &Validators,
    ) -> Result<(), MetadataError> {
        self.gate().await;
        self.inner
            .renew_index_entry(key, stored_at, lifetimes, validators)
            .await
    }
    async fn artifact(&self, key: &str) -> Result<Option<ArtifactRecord>, MetadataError> {
        self.artifact_lookups.fetch_add(1, Ordering::SeqCst);
        self.gate().await;
        self.inner.artifact(key).await
    }
    async fn put_artifact(&self, record: &ArtifactRecord) -> Result<(), MetadataError> {
        self.gate().await;
        for _ in 0..1000 {
            if !self.hold_artifact_writes.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.inner.put_artifact(record).await
    }
    async fn delete_artifact(&self, key: &str) -> Result<(), MetadataError> {
        self.gate().await;
        self.inner.delete_artifact(key).await
    }
    async fn delete_index_entry(&self, key: &str) -> Result<u64, MetadataError> {
        self.gate().await;
        self.inner.delete_index_entry(key).await
    }
    async fn delete_index_entries(&self, prefix: &str) -> Result<u64, MetadataError> {
        self.gate().await;
        self.inner.delete_index_entries(prefix).await
    }
    async fn touch_artifacts(
        &self,
        accesses: &[(String, SystemTime)],
    ) -> Result<(), MetadataError> {
        self.gate().await;
        self.inner.touch_artifacts(accesses).await
    }
    async fn stored_bytes(&self) -> Result<u64, MetadataError> {
        self.gate().await;
        self.inner.stored_bytes().await
    }
    async fn stored_blobs(&self) -> Result<u64, MetadataError> {
        self.gate().await;
        self.inner.stored_blobs().await
    }
    async fn least_recently_used(&self, limit: u32) -> Result<Vec<BlobUsage>, MetadataError> {
        self.gate().await;
        self.inner.least_recently_used(limit).await
    }
    async fn referenced_digests(&self) -> Result<Vec<Digest>, MetadataError> {
        self.gate().await;
        self.inner.referenced_digests().await
    }
    async fn delete_artifacts_with_digest(&self, digest: &Digest) -> Result<u64, MetadataError> {
        self.gate().await;
        self.inner.delete_artifacts_with_digest(digest).await
    }
    fn kind(&self) -> &'static str {
        "instrumented"
    }
    async fn check(&self) -> Result<(), MetadataError> {
        self.gate().await;
        self.inner.check().await
    }
}

/// An index source answering from memory, counting fetches, reads of stored
/// bodies, and renders.
#[derive(Debug, Default)]
struct CountingSource {
    fetches: AtomicUsize,
    checks: AtomicUsize,
    renders: AtomicUsize,
}

#[async_trait]
impl IndexSource for CountingSource {
    async fn fetch(&self, _: &Validators) -> Result<Fetched, UpstreamError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        Ok(Fetched::Document {
            canonical: Bytes::from_static(b"the document"),
            validators: Validators::default(),
            ttl: None,
            parsed: None,
        })
    }
    fn check(&self, _: &Bytes) -> Result<Option<Parsed>, String> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        Ok(None)
    }
    fn forms(&self) -> &'static [&'static str] {
        &["plain"]
    }
    fn render(&self, document: &IndexDocument, _: &str) -> Result<Bytes, String> {
        self.renders.fetch_add(1, Ordering::SeqCst);
        Ok(document.canonical.clone())
    }
    fn format_version(&self) -> u32 {
        1
    }
}

struct SourceHandle(Arc<CountingSource>);

#[async_trait]
impl IndexSource for SourceHandle {
    async fn fetch(&self, validators: &Validators) -> Result<Fetched, UpstreamError> {
        self.0.fetch(validators).await
    }
    fn check(&self, canonical: &Bytes) -> Result<Option<Parsed>, String> {
        self.0.check(canonical)
    }
    fn forms(&self) -> &'static [&'static str] {
        self.0.forms()
    }
    fn render(&self, document: &IndexDocument, form: &str) -> Result<Bytes, String> {
        self.0.render(document, form)
    }
    fn format_version(&self) -> u32 {
        self.0.format_version()
    }
}

fn index_request(source: &Arc<CountingSource>) -> IndexRequest {
    IndexRequest {
        key: CacheKey::new(Category::Index, "pypi", "pypi", "page"),
        policy: FreshnessPolicy {
            ttl: Duration::from_secs(60),
            update_time: Duration::from_secs(10),
            max_staleness: None,
        },
        negative_ttl: Duration::from_secs(60),
        source: Arc::new(SourceHandle(Arc::clone(source))),
    }
}

async fn wait_for_row(store: &dyn MetadataStore, key: &str) {
    for _ in 0..500 {
        if store.index_entry(key).await.expect("store").is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the index entry was never persisted");
}

const PAGE_KEY: &str = "granary:index:pypi:pypi:page";

/// Waits (at most 3 s) until `probe` holds true.
async fn eventually(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if probe().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

fn millis(time: SystemTime) -> i64 {
    i64::try_from(
        time.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

/// A clock the tests move by hand.
fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    ))
}

/// One replica's index engine on shared tiers (as with PostgreSQL or Redis shared by
/// replicas: a page not fresh here is looked up there first).
fn shared_index(
    metadata: &Arc<dyn MetadataStore>,
    redis: Option<&Arc<RedisTier>>,
    clock: &Arc<ManualClock>,
) -> IndexCache {
    IndexCache::new(
        1 << 20,
        SharedIndex {
            metadata: Arc::clone(metadata),
            redis: redis.map(Arc::clone),
            is_shared: true,
        },
        Arc::clone(clock) as Arc<dyn Clock>,
        Metrics::new(),
    )
}

/// `first` fetches the page (a miss), `second` reads it from the shared tiers (a
/// hit); then, past the TTL, `first` serves it stale and refreshes it behind. The
/// refresh's `stored_at`, in Unix milliseconds.
async fn both_hold_then_first_refreshes(
    first: &IndexCache,
    second: &IndexCache,
    source: &Arc<CountingSource>,
    store: &dyn MetadataStore,
    clock: &ManualClock,
    before_refresh: impl FnOnce(),
) -> i64 {
    let miss = first.lookup(index_request(source)).await.expect("miss");
    assert_eq!(miss.status.as_str(), "miss");
    wait_for_row(store, PAGE_KEY).await;
    let shared = second.lookup(index_request(source)).await.expect("hit");
    assert_eq!(
        shared.status.as_str(),
        "hit",
        "the second replica reads the first's copy"
    );
    before_refresh();
    clock.advance(Duration::from_secs(65));
    let refreshed_at = millis(clock.now());
    let stale = first.lookup(index_request(source)).await.expect("stale");
    assert_eq!(
        stale.status.as_str(),
        "stale",
        "served stale, refreshed behind"
    );
    refreshed_at
}

// Found by CI (scale_out's refresh test, now and then): a refreshed page reached Redis
// only after the database had taken it, so while the database was busy the other
// replicas went on serving their stale copies. Both tiers are now written at once.
#[tokio::test]
async fn a_refresh_reaches_other_replicas_through_redis_while_the_database_hangs() {
    let Some(engines) = Engines::from_env(
        "a_refresh_reaches_other_replicas_through_redis_while_the_database_hangs",
    ) else {
        return;
    };
    let redis = engines.redis();
    let dir = tempfile::tempdir().expect("dir");
    let instrumented = InstrumentedStore::new(
        SqliteMetadataStore::open(&dir.path().join("granary.db"))
            .await
            .expect("sqlite"),
    );
    let hang = Arc::clone(&instrumented.hang);
    let store: Arc<dyn MetadataStore> = Arc::new(GuardedMetadataStore::new(
        instrumented,
        Duration::from_secs(5),
    ));
    let tier = RedisTier::new(&redis.url(), Duration::from_secs(1), Metrics::new()).expect("redis");
    let clock = manual_clock();
    let first = shared_index(&store, Some(&tier), &clock);
    let second = shared_index(&store, Some(&tier), &clock);
    let source = Arc::new(CountingSource::default());
    let refreshed_at =
        both_hold_then_first_refreshes(&first, &second, &source, store.as_ref(), &clock, || {
            hang.store(true, Ordering::SeqCst);
        })
        .await;
    // The database write hangs (the store gives up after 5 s); Redis has it at once.
    eventually("the refreshed page is in Redis", async || {
        index_stored_at_in_redis(&tier, PAGE_KEY).await == Some(refreshed_at)
    })
    .await;
    let seen = second.lookup(index_request(&source)).await.expect("lookup");
    assert_eq!(
        seen.status.as_str(),
        "hit",
        "the second replica sees the refresh"
    );
    assert_eq!(millis(seen.document.stored_at), refreshed_at);
    assert_eq!(
        source.fetches.load(Ordering::SeqCst),
        2,
        "one refresh for both"
    );
}

// Found with the test above: a replica whose read of the shared tiers took longer than
// a request waits (200 ms) served its stale copy, as it should, and then refreshed the
// page from the upstream although another replica had already stored a fresh copy.
// Its background refresh now takes that copy instead.
#[tokio::test]
async fn a_slow_shared_read_does_not_make_a_replica_fetch_a_page_another_refreshed() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = SqliteMetadataStore::open(&dir.path().join("granary.db"))
        .await
        .expect("sqlite");
    let fast: Arc<dyn MetadataStore> = Arc::new(sqlite.clone());
    let instrumented = InstrumentedStore::new(sqlite);
    let slow_reads = Arc::clone(&instrumented.slow_reads);
    let slow: Arc<dyn MetadataStore> = Arc::new(instrumented);
    let clock = manual_clock();
    // Two replicas sharing one database (as with PostgreSQL), no Redis.
    let (first, second) = (
        shared_index(&fast, None, &clock),
        shared_index(&slow, None, &clock),
    );
    let source = Arc::new(CountingSource::default());
    let refreshed_at =
        both_hold_then_first_refreshes(&first, &second, &source, fast.as_ref(), &clock, || {})
            .await;
    eventually("the refresh is in the database", async || {
        fast.index_entry(PAGE_KEY)
            .await
            .expect("store")
            .is_some_and(|record| millis(record.stored_at) == refreshed_at)
    })
    .await;

    slow_reads.store(true, Ordering::SeqCst);
    let waited = second.lookup(index_request(&source)).await.expect("lookup");
    assert_eq!(
        waited.status.as_str(),
        "stale",
        "the read outlasts the 200 ms a request waits: the copy in memory is served"
    );
    eventually("the second replica serves the refreshed copy", async || {
        let lookup = second.lookup(index_request(&source)).await.expect("lookup");
        lookup.status.as_str() == "hit" && millis(lookup.document.stored_at) == refreshed_at
    })
    .await;
    assert_eq!(
        source.fetches.load(Ordering::SeqCst),
        2,
        "the second replica took the first one's refresh instead of fetching again"
    );
}

// Defect 2: with the metadata store stalled, index requests that memory can answer
// waited for it (for ever here; `pool_timeout`, 30 s, with PostgreSQL).
#[tokio::test]
async fn a_hanging_metadata_store_does_not_stall_pages_held_in_memory() {
    let dir = tempfile::tempdir().expect("dir");
    let instrumented = InstrumentedStore::new(
        SqliteMetadataStore::open(&dir.path().join("granary.db"))
            .await
            .expect("sqlite"),
    );
    let hang = Arc::clone(&instrumented.hang);
    let store: Arc<dyn MetadataStore> = Arc::new(GuardedMetadataStore::new(
        instrumented,
        Duration::from_secs(5),
    ));
    let clock = manual_clock();
    let index = shared_index(&store, None, &clock);
    let source = Arc::new(CountingSource::default());
    let first = index.lookup(index_request(&source)).await.expect("first");
    assert_eq!(first.status.as_str(), "miss");
    wait_for_row(store.as_ref(), "granary:index:pypi:pypi:page").await;

    hang.store(true, Ordering::SeqCst);
    // Stale (in the grace period): served at once.
    clock.advance(Duration::from_secs(65));
    let stale = tokio::time::timeout(Duration::from_secs(1), index.lookup(index_request(&source)))
        .await
        .expect("a stale page in memory is answered while the database hangs")
        .expect("lookup");
    assert_eq!(stale.status.as_str(), "stale");
    // Expired: refreshed from the upstream and answered without waiting to persist.
    clock.advance(Duration::from_secs(120));
    let refreshed =
        tokio::time::timeout(Duration::from_secs(1), index.lookup(index_request(&source)))
            .await
            .expect("an expired page is refreshed and answered while the database hangs")
            .expect("lookup");
    assert_eq!(refreshed.document.canonical.as_ref(), b"the document");
}

// Found by CI: a page's write to the metadata store runs behind the response, so a
// purge right after the fetch removed nothing, and the write then landed: the purged
// page was back (the admin test saw `removed: 1` of 2, now and then).
#[tokio::test]
async fn a_purge_waits_for_writes_in_flight_so_nothing_purged_comes_back() {
    let dir = tempfile::tempdir().expect("dir");
    let instrumented = InstrumentedStore::new(
        SqliteMetadataStore::open(&dir.path().join("granary.db"))
            .await
            .expect("sqlite"),
    );
    let slow = Arc::clone(&instrumented.slow_writes);
    let store: Arc<dyn MetadataStore> = Arc::new(instrumented);
    let index = IndexCache::new(
        1 << 20,
        SharedIndex {
            metadata: Arc::clone(&store),
            redis: None,
            // Embedded: the write is not waited for at all.
            is_shared: false,
        },
        Arc::new(granary::clock::SystemClock) as Arc<dyn Clock>,
        Metrics::new(),
    );
    slow.store(true, Ordering::SeqCst);
    let source = Arc::new(CountingSource::default());
    let fetched = index.lookup(index_request(&source)).await.expect("fetch");
    assert_eq!(fetched.status.as_str(), "miss");
    let removed = index
        .invalidate_prefix("granary:index:pypi:pypi:")
        .await
        .expect("purge");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(removed, 1, "the purge saw the page being written");
    assert!(
        store
            .index_entry("granary:index:pypi:pypi:page")
            .await
            .expect("read")
            .is_none(),
        "a purged page is not written back"
    );
}

// Defect 3: after a restart (an empty memory tier) N concurrent requests each read
// the stored row and rendered it.
#[tokio::test]
async fn concurrent_loads_of_a_stored_page_read_and_render_it_once() {
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn MetadataStore> = Arc::new(
        SqliteMetadataStore::open(&dir.path().join("granary.db"))
            .await
            .expect("sqlite"),
    );
    let shared = SharedIndex {
        metadata: Arc::clone(&store),
        redis: None,
        is_shared: false,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let source = Arc::new(CountingSource::default());
    let before_restart =
        IndexCache::new(1 << 20, shared.clone(), Arc::clone(&clock), Metrics::new());
    before_restart
        .lookup(index_request(&source))
        .await
        .expect("stored");
    wait_for_row(store.as_ref(), "granary:index:pypi:pypi:page").await;
    assert_eq!(
        source.checks.load(Ordering::SeqCst),
        0,
        "a fetched page is not read back"
    );

    let restarted = IndexCache::new(1 << 20, shared, clock, Metrics::new());
    let lookups = (0..50).map(|_| restarted.lookup(index_request(&source)));
    let mut documents = Vec::new();
    for lookup in futures::future::join_all(lookups).await {
        let lookup = lookup.expect("lookup");
        assert_eq!(lookup.status.as_str(), "hit");
        documents.push(lookup.document);
    }
    assert_eq!(
        source.checks.load(Ordering::SeqCst),
        1,
        "50 concurrent loads read the stored page once"
    );
    let renditions = documents.iter().map(|document| document.rendition("plain"));
    for rendition in futures::future::join_all(renditions).await {
        assert_eq!(&rendition.expect("rendered").body[..], b"the document");
    }
    assert_eq!(
        source.renders.load(Ordering::SeqCst),
        1,
        "50 concurrent requests for the loaded page rendered it once"
    );
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1, "no refetch");
}

/// A blob store whose `publish` panics once, or whose `delete` waits at a gate.
#[derive(Debug)]
struct FaultyBlobs {
    inner: FsBlobStore,
    panic_on_publish: AtomicBool,
    gate_deletes: AtomicBool,
    delete_entered: Notify,
    delete_released: Notify,
}

impl FaultyBlobs {
    fn new(inner: FsBlobStore) -> Self {
        Self {
            inner,
            panic_on_publish: AtomicBool::new(false),
            gate_deletes: AtomicBool::new(false),
            delete_entered: Notify::new(),
            delete_released: Notify::new(),
        }
    }
}

#[async_trait]
impl BlobStore for FaultyBlobs {
    fn temp_dir(&self) -> &Path {
        self.inner.temp_dir()
    }
    async fn get(&self, digest: &Digest) -> Result<Option<StoredBlob>, StorageError> {
        self.inner.get(digest).await
    }
    async fn publish(&self, temp_file: &Path, digest: &Digest) -> Result<StoredBlob, StorageError> {
        assert!(
            !self.panic_on_publish.swap(false, Ordering::SeqCst),
            "injected fault: publish panics"
        );
        self.inner.publish(temp_file, digest).await
    }
    async fn read(
        &self,
        digest: &Digest,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<BlobStream, StorageError> {
        self.inner.read(digest, range).await
    }
    fn kind(&self) -> &'static str {
        "faulty"
    }
    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        if self.gate_deletes.load(Ordering::SeqCst) {
            let released = self.delete_released.notified();
            self.delete_entered.notify_one();
            released.await;
        }
        self.inner.delete(digest).await
    }
    async fn list(&self) -> Result<Vec<(Digest, u64)>, StorageError> {
        self.inner.list().await
    }
    async fn check(&self) -> Result<(), StorageError> {
        self.inner.check().await
    }
}

// Defect 5: a fill that panicked stayed in the fill map, so every later request for
// its key joined the dead fill and the artifact was never stored until a restart.
#[tokio::test]
async fn a_panicking_fill_does_not_poison_its_key() {
    let upstream = FakeUpstream::start(None).await;
    let body = body_of(200 * 1024, 2);
    upstream.script("dl/p.tar.gz", Scripted::ok(body.clone()));
    let faulty = Arc::new(std::sync::Mutex::new(None::<Arc<FaultyBlobs>>));
    let slot = Arc::clone(&faulty);
    let rig = rig(
        &upstream.url(""),
        |store| Arc::new(store),
        move |store| {
            let blobs = Arc::new(FaultyBlobs::new(store));
            blobs.panic_on_publish.store(true, Ordering::SeqCst);
            *slot.lock().expect("slot") = Some(Arc::clone(&blobs));
            blobs
        },
        None,
    )
    .await;
    let request = rig.request("p/p.tar.gz", &upstream.url("dl/p.tar.gz"), &body);
    let first = rig.cache.fetch(request.clone()).await.expect("first fetch");
    let _ = read_all(first, &rig.blobs).await;
    settle(&rig.cache).await;
    assert_eq!(
        rig.cache.fills_in_flight(),
        0,
        "the panicked fill left the map"
    );

    let second = rig
        .cache
        .fetch(request.clone())
        .await
        .expect("second fetch");
    assert_eq!(read_all(second, &rig.blobs).await, body);
    settle(&rig.cache).await;
    assert!(
        rig.cache
            .stored(&request.key)
            .await
            .expect("store")
            .is_some(),
        "the key works again: the artifact is stored"
    );
    assert_eq!(upstream.hits("dl/p.tar.gz"), 2);
    drop(faulty);
}

// Defect 7: a fill that published a digest while an eviction of that digest was
// between deleting its rows and deleting its blob left a row without a blob.
#[tokio::test]
async fn a_publish_racing_an_eviction_of_the_same_content_leaves_no_row_without_its_blob() {
    let upstream = FakeUpstream::start(None).await;
    let body = body_of(300 * 1024, 3);
    upstream.script("dl/a.tar.gz", Scripted::ok(body.clone()));
    upstream.script("dl/b.tar.gz", Scripted::ok(body.clone()));
    let slot = Arc::new(std::sync::Mutex::new(None::<Arc<FaultyBlobs>>));
    let setter = Arc::clone(&slot);
    let rig = rig(
        &upstream.url(""),
        |store| Arc::new(store),
        move |store| {
            let blobs = Arc::new(FaultyBlobs::new(store));
            *setter.lock().expect("slot") = Some(Arc::clone(&blobs));
            blobs
        },
        None,
    )
    .await;
    let faulty = slot.lock().expect("slot").clone().expect("set");
    let a = rig.request("x/a.tar.gz", &upstream.url("dl/a.tar.gz"), &body);
    let b = rig.request("x/b.tar.gz", &upstream.url("dl/b.tar.gz"), &body);
    let stored = rig.cache.fetch(a).await.expect("a");
    let _ = read_all(stored, &rig.blobs).await;
    settle(&rig.cache).await;

    // An eviction of that content: rows deleted, then held before the blob goes.
    faulty.gate_deletes.store(true, Ordering::SeqCst);
    let entered = faulty.delete_entered.notified();
    let evicting = {
        let cache = rig.cache.clone();
        tokio::spawn(async move { cache.evict_to(0).await })
    };
    entered.await;
    // Meanwhile the same content is fetched under another key.
    let fetching = {
        let cache = rig.cache.clone();
        let blobs = Arc::clone(&rig.blobs);
        tokio::spawn(async move {
            let lookup = cache.fetch(b).await.expect("b");
            read_all(lookup, &blobs).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    faulty.gate_deletes.store(false, Ordering::SeqCst);
    faulty.delete_released.notify_one();
    evicting.await.expect("eviction task").expect("eviction");
    assert_eq!(fetching.await.expect("fetch task"), body);
    settle(&rig.cache).await;

    let digest = Digest::from_hex(&sha256_hex(&body)).expect("digest");
    let row = rig
        .metadata
        .artifact("granary:artifact:pypi:pypi:x/b.tar.gz")
        .await
        .expect("metadata");
    let blob = rig.blobs.get(&digest).await.expect("blobs");
    assert!(
        row.is_none() || blob.is_some(),
        "a row points at digest {digest}, whose blob is gone"
    );
    assert!(
        row.is_some(),
        "the fill that waited for the eviction stored its artifact"
    );
}

// Defect 11: fills outlive their clients, so one client asking for N cold files and
// leaving made N downloads run at once.
#[tokio::test]
async fn fills_per_upstream_are_bounded_and_the_rest_queue() {
    let upstream = FakeUpstream::start(None).await;
    let mut files = Vec::new();
    for i in 0..6u8 {
        let body = body_of(256 * 1024, i);
        let name = format!("q{i}");
        let filename = format!("{name}-1.0.tar.gz");
        upstream.script(
            &format!("simple/{name}/"),
            one_file_page(&name, &filename, &body),
        );
        upstream.script(
            &format!("dl/{filename}"),
            Scripted {
                pace: Some((32 * 1024, Duration::from_millis(60))),
                ..Scripted::ok(body.clone())
            },
        );
        files.push((name, filename));
    }
    let granary = TestGranary::pypi(&upstream.url("simple/"), "max_concurrent_fills = 2").await;
    let client = TestGranary::client();
    // One client asks for every file and hangs up as soon as the headers arrive.
    for (name, filename) in &files {
        let url = granary.url(&format!("pypi/files/{name}/{filename}"));
        let client = client.clone();
        tokio::spawn(async move {
            drop(client.get(&url).send().await);
        });
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    let downloading: usize = files
        .iter()
        .map(|(_, filename)| upstream.hits(&format!("dl/{filename}")))
        .sum();
    assert_eq!(
        downloading, 2,
        "two downloads run, the others wait their turn"
    );
    let metrics = granary
        .get("-/metrics")
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics.contains("granary_fills_queued{repo=\"pypi\"} 4"),
        "the queue is visible: {}",
        metrics
            .lines()
            .filter(|l| l.contains("fills_queued"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    granary.settle().await;
    for (name, filename) in &files {
        let response = granary.get(&format!("pypi/files/{name}/{filename}")).await;
        assert_eq!(
            response.headers()["x-cache"],
            "HIT",
            "{filename} was stored"
        );
    }
}

// Defect 6: building a state for `granary verify` (or `gc`) emptied the temporary
// directory under a running server, failing its fills after their bytes were
// verified; and a second writer on the same data_dir was not refused.
#[tokio::test]
async fn verify_beside_a_running_fill_leaves_it_alone_and_a_second_writer_is_refused() {
    let upstream = FakeUpstream::start(None).await;
    let body = body_of(512 * 1024, 4);
    upstream.script(
        "simple/slow/",
        one_file_page("slow", "slow-1.0.tar.gz", &body),
    );
    upstream.script(
        "dl/slow-1.0.tar.gz",
        Scripted {
            pace: Some((64 * 1024, Duration::from_millis(60))),
            ..Scripted::ok(body.clone())
        },
    );
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let response = granary.get("pypi/files/slow/slow-1.0.tar.gz").await;
    assert_eq!(response.status(), 200);

    let verifier = granary::server::AppState::build_read_only(&granary.config)
        .await
        .expect("verify runs beside a server");
    let report = verifier
        .engine
        .artifacts
        .verify(false)
        .await
        .expect("verify");
    assert!(report.corrupt.is_empty());
    let second = granary::server::AppState::build(&granary.config)
        .await
        .expect_err("a second writer is refused");
    assert!(
        format!("{second:#}").contains("in use by another granary process"),
        "{second:#}"
    );

    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        body.as_slice()
    );
    granary.settle().await;
    let again = granary.get("pypi/files/slow/slow-1.0.tar.gz").await;
    assert_eq!(again.headers()["x-cache"], "HIT", "the fill was stored");
    drop(verifier);
}

// Defect 9: a malformed `Range` got 416; RFC 9110 §14.2 says to ignore it.
#[tokio::test]
async fn a_malformed_range_is_ignored_on_stored_files() {
    let upstream = FakeUpstream::start(None).await;
    // Above the in-memory tier's size, so it is served from the file.
    let body = body_of(2 * 1024 * 1024, 5);
    upstream.script("simple/r/", one_file_page("r", "r-1.0.tar.gz", &body));
    upstream.script("dl/r-1.0.tar.gz", Scripted::ok(body.clone()));
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let url = granary.url("pypi/files/r/r-1.0.tar.gz");
    let client = TestGranary::client();
    let _ = client.get(&url).send().await.expect("fill").bytes().await;
    granary.settle().await;
    for range in ["bytes=abc-", "bytes=5-2", "bytes=-x", "pages=1-2"] {
        let response = client
            .get(&url)
            .header("range", range)
            .send()
            .await
            .expect("response");
        assert_eq!(response.status(), 200, "{range}");
        assert_eq!(
            response.bytes().await.expect("body").len(),
            body.len(),
            "{range}"
        );
    }
    let partial = client
        .get(&url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .expect("response");
    assert_eq!(partial.status(), 206);
    assert_eq!(partial.bytes().await.expect("body").as_ref(), &body[10..20]);
}

// Defect 9: `/-/ready` probed the blob store with one fixed file name, so
// concurrent probes raced (one removed the file another was about to remove).
#[tokio::test]
async fn concurrent_readiness_probes_all_succeed() {
    let upstream = FakeUpstream::start(None).await;
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let client = TestGranary::client();
    let probes = (0..100).map(|_| {
        let client = client.clone();
        let url = granary.url("-/ready");
        async move { client.get(&url).send().await.expect("ready").status() }
    });
    let statuses = futures::future::join_all(probes).await;
    let failed = statuses.iter().filter(|s| s.as_u16() != 200).count();
    assert_eq!(
        failed, 0,
        "{failed} of 100 concurrent probes said not ready"
    );
}

// Found by bench/run's three-replica stampede: each of 50 concurrent requests for a
// cold artifact looked its row up on its own, so three replicas opened 150 database
// connections at once, PostgreSQL (max_connections 100) refused a third of them, and
// those requests failed after `metadata.timeout`. Now one query per key per replica.
#[tokio::test]
async fn a_stampede_on_one_replica_looks_the_row_up_once() {
    let upstream = FakeUpstream::start(None).await;
    let body = body_of(256 * 1024, 8);
    upstream.script(
        "dl/s.tar.gz",
        Scripted {
            pace: Some((16 * 1024, Duration::from_millis(10))),
            ..Scripted::ok(body.clone())
        },
    );
    let lookups = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&lookups);
    let rig = rig(
        &upstream.url(""),
        move |inner| {
            Arc::new(InstrumentedStore {
                artifact_lookups: counter,
                ..InstrumentedStore::new(inner)
            })
        },
        |s| Arc::new(s),
        None,
    )
    .await;
    let request = rig.request("s/s.tar.gz", &upstream.url("dl/s.tar.gz"), &body);
    let fetches = (0..50).map(|_| rig.cache.fetch(request.clone()));
    for lookup in futures::future::join_all(fetches).await {
        assert_eq!(read_all(lookup.expect("fetch"), &rig.blobs).await, body);
    }
    assert_eq!(upstream.hits("dl/s.tar.gz"), 1);
    assert_eq!(
        lookups.load(Ordering::SeqCst),
        1,
        "fifty requests, one row lookup"
    );
}

// Maven asks for a file's `.sha1` right after the file, and that answer waited for
// the file to be published (fsync, rename, row): 185 such requests at 2.5 ms each in
// bench/clients.py's cold mvn run. A verified fill now gives its digests at once.
#[tokio::test]
async fn a_verified_fill_gives_its_digests_before_it_is_published() {
    let upstream = FakeUpstream::start(None).await;
    let body = body_of(64 * 1024, 9);
    upstream.script("dl/v.jar", Scripted::ok(body.clone()));
    let publishing_held = Arc::new(AtomicBool::new(true));
    let release = Arc::clone(&publishing_held);
    let rig = rig(
        &upstream.url(""),
        move |inner| {
            Arc::new(InstrumentedStore {
                hold_artifact_writes: publishing_held,
                ..InstrumentedStore::new(inner)
            })
        },
        |s| Arc::new(s),
        None,
    )
    .await;
    let sha1 = {
        let mut hasher = DigestAlgorithm::Sha1.hasher();
        hasher.update(&body);
        hex::encode(hasher.finalize())
    };
    let mut request = rig.request("v/v.jar", &upstream.url("dl/v.jar"), &body);
    request
        .expected
        .push(ExpectedDigest::new(DigestAlgorithm::Sha1, &sha1));
    let lookup = rig.cache.fetch(request.clone()).await.expect("fetch");
    assert_eq!(read_all(lookup, &rig.blobs).await, body);
    // Every byte served and verified; the row is not written yet.
    assert_eq!(rig.cache.fills_in_flight(), 1, "still publishing");
    assert_eq!(
        rig.cache
            .verified_digest(&request.key, DigestAlgorithm::Sha1)
            .as_deref(),
        Some(sha1.as_str())
    );
    assert_eq!(
        rig.cache
            .verified_digest(&request.key, DigestAlgorithm::Sha256)
            .as_deref(),
        Some(sha256_hex(&body).as_str())
    );
    assert_eq!(
        rig.cache
            .verified_digest(&request.key, DigestAlgorithm::Md5),
        None,
        "a digest the fill did not compute is not made up"
    );
    release.store(false, Ordering::SeqCst);
    settle(&rig.cache).await;
    assert_eq!(
        rig.cache
            .verified_digest(&request.key, DigestAlgorithm::Sha1),
        None,
        "once stored, the stored blob answers"
    );
    assert!(rig
        .cache
        .stored(&request.key)
        .await
        .expect("stored")
        .is_some());
}

// The published-artifact event: features subscribe to it off the request path.
#[tokio::test]
async fn every_stored_artifact_is_announced_once() {
    let upstream = FakeUpstream::start(None).await;
    let body = body_of(10 * 1024, 6);
    // Paced, so that all five requests find the fill in flight: a fill that ends
    // while a request is still checking the store lets that request start a second
    // one (a race noted in the session's closing note, not what this test is about).
    upstream.script(
        "dl/e.tar.gz",
        Scripted {
            pace: Some((2560, Duration::from_millis(30))),
            ..Scripted::ok(body.clone())
        },
    );
    let rig = rig(&upstream.url(""), |s| Arc::new(s), |s| Arc::new(s), None).await;
    let mut events = rig.cache.subscribe();
    let request = rig.request("e/e.tar.gz", &upstream.url("dl/e.tar.gz"), &body);
    let lookups = (0..5).map(|_| rig.cache.fetch(request.clone()));
    for lookup in futures::future::join_all(lookups).await {
        assert_eq!(read_all(lookup.expect("fetch"), &rig.blobs).await, body);
    }
    settle(&rig.cache).await;
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event")
        .expect("not lagged");
    assert_eq!(event.key, request.key);
    assert_eq!(event.digest.as_str(), sha256_hex(&body));
    assert_eq!(event.size, body.len() as u64);
    let path = event.path.expect("the local store has a file");
    assert_eq!(std::fs::read(path).expect("blob file"), body);
    assert!(
        events.try_recv().is_err(),
        "five requests, one fill, one event"
    );
}

// Defect 4: every request waiting for another replica's download ran its own
// back-off loop (a Redis call and a database query per step per request), so many
// waiters drained the database pool. Now one waiter per key per replica, woken by
// the publisher's Redis message.
#[tokio::test]
async fn requests_waiting_for_another_replica_share_one_waiter_woken_by_redis() {
    let Some(engines) =
        Engines::from_env("requests_waiting_for_another_replica_share_one_waiter_woken_by_redis")
    else {
        return;
    };
    let redis = engines.redis();
    let upstream = FakeUpstream::start(None).await;
    let body = body_of(100 * 1024, 7);
    upstream.script("dl/w.tar.gz", Scripted::ok(body.clone()));
    let tier = RedisTier::new(&redis.url(), Duration::from_secs(1), Metrics::new()).expect("redis");
    let locks = DownloadLocks::new(
        Arc::clone(&tier),
        Duration::from_secs(30),
        Duration::from_secs(60),
    );
    let lookups = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&lookups);
    let rig = rig(
        &upstream.url(""),
        move |inner| {
            Arc::new(InstrumentedStore {
                artifact_lookups: counter,
                ..InstrumentedStore::new(inner)
            })
        },
        |s| Arc::new(s),
        Some(locks.clone()),
    )
    .await;
    let request = rig.request("w/w.tar.gz", &upstream.url("dl/w.tar.gz"), &body);
    // "Another replica" holds the lock and is downloading.
    let key = request.key.as_str().to_owned();
    assert!(tier
        .try_lock(&key, "other-replica", Duration::from_secs(60))
        .await
        .expect("lock"));
    // Let the subscriber connect before anyone waits.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let waiters: Vec<_> = (0..200)
        .map(|_| {
            let cache = rig.cache.clone();
            let blobs = Arc::clone(&rig.blobs);
            let request = request.clone();
            tokio::spawn(async move {
                read_all(cache.fetch(request).await.expect("fetch"), &blobs).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_joining = lookups.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let polls = lookups.load(Ordering::SeqCst) - after_joining;
    assert!(
        polls <= 10,
        "200 waiting requests polled the database {polls} times in 2.5 s (one waiter polls about 4 times)"
    );

    // The other replica publishes: blob, row, announcement.
    let temp = rig.blobs.temp_dir().join("other-replica");
    std::fs::write(&temp, &body).expect("temp");
    let digest = Digest::from_hex(&sha256_hex(&body)).expect("digest");
    rig.blobs.publish(&temp, &digest).await.expect("publish");
    rig.metadata
        .put_artifact(&ArtifactRecord {
            key: key.clone(),
            repo: "pypi".to_owned(),
            digest,
            size: body.len() as u64,
            content_type: "application/octet-stream".to_owned(),
            stored_at: SystemTime::now(),
        })
        .await
        .expect("row");
    tier.publish(
        granary::engine::coordination::download_lock::PUBLISHED_CHANNEL,
        &key,
    )
    .await
    .expect("announce");
    for waiter in waiters {
        assert_eq!(waiter.await.expect("waiter"), body);
    }
    assert_eq!(
        upstream.hits("dl/w.tar.gz"),
        0,
        "this replica never downloaded it"
    );
}

// Issue #16: a cold index page requested on several replicas at once was fetched
// once per replica (the shared lock covered background refreshes only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_index_page_is_fetched_once_across_replicas() {
    let Some(engines) = Engines::from_env("a_cold_index_page_is_fetched_once_across_replicas")
    else {
        return;
    };
    let redis = engines.redis();
    let upstream = FakeUpstream::start(None).await;
    let page = one_file_page("cold", "cold-1.0.tar.gz", b"cold");
    upstream.script(
        "simple/cold/",
        Scripted {
            pace: Some((64, Duration::from_millis(100))),
            ..page
        },
    );
    let top_level = format!("[redis]\nurl = \"{}\"\n", redis.url());
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            TestGranary::start_with_top_level(&upstream.url("simple/"), &top_level, "").await,
        );
    }
    let requests = replicas.iter().flat_map(|replica| {
        (0..10).map(move |_| async move {
            let response = replica.get("pypi/simple/cold/").await;
            assert_eq!(response.status(), 200);
            response.headers()["x-cache"]
                .to_str()
                .expect("x-cache")
                .to_owned()
        })
    });
    let statuses = futures::future::join_all(requests).await;
    assert_eq!(
        upstream.hits("simple/cold/"),
        1,
        "30 requests on 3 replicas: one upstream fetch ({statuses:?})"
    );
}
