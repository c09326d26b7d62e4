//! One suite per backend trait, run against every implementation: SQLite and
//! PostgreSQL for `MetadataStore`, the local directory and S3 (Garage) for `BlobStore`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use granary::clock::from_unix_millis;
use granary::http_cache::{Lifetimes, Validators};
use granary::metadata::{
    ArtifactRecord, IndexRecord, MetadataStore, PostgresMetadataStore, PostgresOptions,
    ResolutionRecord, SqliteMetadataStore,
};
use granary::storage::{
    BlobStore, Digest, FsBlobStore, FsStoreOptions, S3BlobStore, S3StoreOptions,
};

use crate::support::{sha256_hex, Engines};

async fn metadata_suite(store: Arc<dyn MetadataStore>) {
    let now = from_unix_millis(1_700_000_000_000);
    let lifetimes = Lifetimes {
        fresh_until: now + Duration::from_secs(60),
        stale_until: now + Duration::from_secs(120),
    };
    let record = IndexRecord {
        key: "granary:index:pypi:p:demo".into(),
        format_version: 1,
        found: true,
        body: Bytes::from_static(b"{\"x\":1}"),
        validators: Validators {
            etag: Some("\"e1\"".into()),
            last_modified: Some("Mon, 01 Jan 2024 00:00:00 GMT".into()),
        },
        stored_at: now,
        lifetimes,
    };
    store.put_index_entry(&record).await.expect("put");
    store
        .put_index_entry(&record)
        .await
        .expect("upsert is idempotent");
    let negative = IndexRecord {
        key: "granary:index:pypi:p:missing".into(),
        found: false,
        body: Bytes::new(),
        ..record.clone()
    };
    store.put_index_entry(&negative).await.expect("negative");
    assert!(
        !store
            .index_entry(&negative.key)
            .await
            .expect("get")
            .expect("row")
            .found
    );
    let later = now + Duration::from_secs(500);
    let renewed = Lifetimes {
        fresh_until: later,
        stale_until: later,
    };
    store
        .renew_index_entry(&record.key, later, renewed, &Validators::default())
        .await
        .expect("renew");
    let loaded = store
        .index_entry(&record.key)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(loaded.lifetimes, renewed);
    assert_eq!(
        loaded.validators, record.validators,
        "validators kept on renew"
    );
    assert_eq!(loaded.body, record.body);
    assert_eq!(loaded.format_version, 1);

    let artifact = |key: &str, hex: &str, size: u64| ArtifactRecord {
        key: key.into(),
        repo: "p".into(),
        digest: Digest::from_hex(&hex.repeat(32)).expect("hex"),
        size,
        content_type: "application/zip".into(),
        stored_at: now,
    };
    let a = artifact("granary:artifact:pypi:p:a/a.whl", "0a", 40);
    let b = artifact("granary:artifact:pypi:p:b/b.whl", "0b", 8);
    let b_alias = artifact("granary:artifact:pypi:p:b/b-copy.whl", "0b", 8);
    for row in [&a, &b, &b_alias] {
        store.put_artifact(row).await.expect("put artifact");
    }
    store
        .put_artifact(&artifact(&a.key, "ff", 1))
        .await
        .expect("second put keeps the first");
    assert_eq!(
        store
            .artifact(&a.key)
            .await
            .expect("get")
            .expect("row")
            .digest,
        a.digest
    );
    assert_eq!(
        store.stored_bytes().await.expect("bytes"),
        48,
        "distinct blobs counted once"
    );
    let batch: Vec<(String, SystemTime)> = (0..50)
        .map(|i| (format!("granary:artifact:pypi:p:none/{i}"), now))
        .chain([(a.key.clone(), now + Duration::from_secs(60))])
        .collect();
    store.touch_artifacts(&batch).await.expect("batched touch");
    let lru = store.least_recently_used(10).await.expect("lru");
    assert_eq!(lru.len(), 2);
    assert_eq!(
        lru[0].digest, b.digest,
        "the untouched blob is least recently used"
    );
    assert_eq!(store.referenced_digests().await.expect("digests").len(), 2);
    assert_eq!(
        store
            .delete_artifacts_with_digest(&b.digest)
            .await
            .expect("delete"),
        2
    );
    assert_eq!(
        store
            .delete_index_entries("granary:index:pypi:p:")
            .await
            .expect("purge"),
        2
    );
    assert_eq!(
        store
            .delete_index_entry(&record.key)
            .await
            .expect("purge one"),
        0
    );
    store.delete_artifact(&a.key).await.expect("delete");
    assert!(store.artifact(&a.key).await.expect("get").is_none());

    // Resolutions: kept, replaced under the same key, pruned by age.
    let old = ResolutionRecord {
        key: "r-old".into(),
        body: Bytes::from_static(b"{\"nodes\":[]}"),
        documents: "{\"demo\":\"f1\"}".into(),
        stored_at: now,
    };
    let new = ResolutionRecord {
        key: "r-new".into(),
        stored_at: now + Duration::from_secs(3600),
        ..old.clone()
    };
    store.put_resolution(&old).await.expect("put");
    store.put_resolution(&new).await.expect("put");
    assert_eq!(
        store.resolution("r-old").await.expect("get"),
        Some(old.clone())
    );
    let replaced = ResolutionRecord {
        body: Bytes::from_static(b"{\"nodes\":[1]}"),
        ..old.clone()
    };
    store.put_resolution(&replaced).await.expect("replace");
    assert_eq!(
        store.resolution("r-old").await.expect("get"),
        Some(replaced)
    );
    assert_eq!(
        store
            .delete_resolutions_before(now + Duration::from_secs(60))
            .await
            .expect("prune"),
        1
    );
    assert!(store.resolution("r-old").await.expect("get").is_none());
    assert_eq!(store.resolution("r-new").await.expect("get"), Some(new));
    assert!(store.resolution("r-none").await.expect("get").is_none());
    store.check().await.expect("check");
}

async fn blob_suite(store: Arc<dyn BlobStore>) {
    let body = b"granary blob conformance".repeat(1000);
    let digest = Digest::from_hex(&sha256_hex(&body)).expect("digest");
    assert!(store.get(&digest).await.expect("get").is_none());
    for _ in 0..2 {
        let temp = store
            .temp_dir()
            .join(format!("suite-{:x}", rand::random::<u64>()));
        std::fs::write(&temp, &body).expect("temp");
        let stored = store.publish(&temp, &digest).await.expect("publish");
        assert_eq!(stored.size, body.len() as u64);
        assert!(!temp.exists(), "the temporary file is consumed");
    }
    assert_eq!(
        store.get(&digest).await.expect("get").expect("stored").size,
        body.len() as u64
    );
    let read = |range| {
        let store = Arc::clone(&store);
        let digest = digest.clone();
        async move {
            let mut stream = store.read(&digest, range).await.expect("read");
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(&chunk.expect("chunk"));
            }
            bytes
        }
    };
    assert_eq!(read(None).await, body);
    assert_eq!(read(Some(10..20)).await, body[10..20]);
    assert_eq!(
        store.list().await.expect("list"),
        vec![(digest.clone(), body.len() as u64)]
    );
    store.delete(&digest).await.expect("delete");
    store.delete(&digest).await.expect("deleting twice is fine");
    assert!(store.get(&digest).await.expect("get").is_none());
    store.check().await.expect("check");
}

#[tokio::test]
async fn sqlite_metadata_store_conforms() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteMetadataStore::open(&dir.path().join("g.db"))
        .await
        .expect("open");
    metadata_suite(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_metadata_store_conforms() {
    let Some(engines) = Engines::from_env("postgres_metadata_store_conforms") else {
        return;
    };
    let store = PostgresMetadataStore::open(&PostgresOptions {
        url: engines.database().await,
        pool_size: 4,
        pool_overflow: 4,
        acquire_timeout: Duration::from_secs(10),
    })
    .await
    .expect("open");
    metadata_suite(Arc::new(store)).await;
}

#[tokio::test]
async fn fs_blob_store_conforms() {
    let dir = tempfile::tempdir().expect("dir");
    let store = FsBlobStore::open(FsStoreOptions {
        blob_dir: dir.path().join("blobs"),
        temp_dir: dir.path().join("tmp"),
    })
    .await
    .expect("open");
    blob_suite(Arc::new(store)).await;
}

#[tokio::test]
async fn s3_blob_store_conforms() {
    let Some(engines) = Engines::from_env("s3_blob_store_conforms") else {
        return;
    };
    let garage = engines.garage();
    let dir = tempfile::tempdir().expect("dir");
    let store = S3BlobStore::open(S3StoreOptions {
        bucket: garage.bucket.clone(),
        prefix: "conformance".into(),
        endpoint: Some(garage.endpoint.clone()),
        region: "garage".into(),
        access_key_id: Some(garage.key_id.clone()),
        secret_access_key: Some(garage.secret.clone()),
        path_style: true,
        temp_dir: dir.path().join("tmp"),
    })
    .await
    .expect("open");
    blob_suite(Arc::new(store)).await;
}
