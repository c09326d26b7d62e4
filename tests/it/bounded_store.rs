//! Admin invalidation, bounded disk (LRU eviction that spares blobs being served),
//! garbage collection and verification.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use granary::clock::ManualClock;

use crate::support::{
    build_pypi_fixture, files_under, sha256_hex, FakeUpstream, Scripted, TestGranary,
};

const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";

/// One project `blobs` with files `a`, `b`, `c` of `size` bytes each.
fn three_files(upstream: &FakeUpstream, size: usize) {
    let mut files = Vec::new();
    for (index, name) in ["a", "b", "c"].iter().enumerate() {
        let body = vec![u8::try_from(index).expect("small"); size];
        let filename = format!("{name}-1.0.tar.gz");
        files.push(serde_json::json!({
            "filename": filename, "url": format!("../../dl/{filename}"), "hashes": {"sha256": sha256_hex(&body)}
        }));
        upstream.script(&format!("dl/{filename}"), Scripted::ok(body));
    }
    upstream.script(
        "simple/blobs/",
        Scripted::ok(
            serde_json::json!({"meta": {"api-version": "1.0"}, "name": "blobs", "files": files})
                .to_string(),
        )
        .header("content-type", JSON_TYPE),
    );
}

async fn fetch(granary: &TestGranary, name: &str) -> reqwest::Response {
    let response = TestGranary::client()
        .get(granary.url(&format!("pypi/files/blobs/{name}-1.0.tar.gz")))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "{name}");
    response
}

#[tokio::test]
async fn least_recently_used_blobs_are_evicted_but_never_one_being_served() {
    let upstream = FakeUpstream::start(None).await;
    // Larger than loopback socket buffers, so a response that is not read really
    // stays open on the server side.
    let size = 24 * 1024 * 1024;
    three_files(&upstream, size);
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    // Room for two of the three files; the maintenance task is left to the test.
    let granary = TestGranary::start(&upstream.url("simple/"), "", clock.clone()).await;
    let artifacts = &granary.state.engine.artifacts;
    let max = u64::try_from(2 * size).expect("fits");

    for name in ["a", "b", "c"] {
        fetch(&granary, name).await.bytes().await.expect("body");
        granary.settle().await;
        clock.advance(Duration::from_secs(10));
    }
    // `a` is used again, so `b` is now the least recently used.
    fetch(&granary, "a").await.bytes().await.expect("body");
    let report = artifacts.evict_to(max).await.expect("evict");
    assert_eq!(report.evicted_blobs, 1);
    assert_eq!(report.stored_bytes_after, max);
    assert_eq!(fetch(&granary, "a").await.headers()["x-cache"], "HIT");
    assert_eq!(fetch(&granary, "c").await.headers()["x-cache"], "HIT");
    assert_eq!(upstream.hits("dl/b-1.0.tar.gz"), 1);
    assert_eq!(
        fetch(&granary, "b").await.headers()["x-cache"],
        "MISS",
        "b was evicted and is fetched again"
    );

    granary.settle().await;

    // Hold a response on `a` open, then make `a` the least recently used, and evict
    // down to one file: `a` must be skipped, `b` and `c` go.
    clock.advance(Duration::from_secs(10));
    let held = fetch(&granary, "a").await; // headers read, 4 MiB body not consumed
    clock.advance(Duration::from_secs(10));
    fetch(&granary, "c").await.bytes().await.expect("body");
    fetch(&granary, "b").await.bytes().await.expect("body");
    let report = artifacts
        .evict_to(u64::try_from(size).expect("fits"))
        .await
        .expect("evict");
    assert!(report.skipped_in_use >= 1, "{report:?}");
    let body = held.bytes().await.expect("the held response completes");
    assert_eq!(
        body.len(),
        size,
        "a blob being served is never evicted under it"
    );
    let blobs = files_under(&granary.data().join("blobs"));
    assert_eq!(blobs.len(), 1, "{blobs:?}");
}

#[tokio::test]
async fn admin_endpoints_invalidate_index_entries_behind_a_token() {
    let dir = tempfile::tempdir().expect("dir");
    build_pypi_fixture(dir.path());
    let upstream = FakeUpstream::start(Some(dir.path().to_path_buf())).await;
    let granary =
        TestGranary::start_with_top_level(&upstream.url("simple/"), "admin_token = \"s3cret\"", "")
            .await;
    let client = TestGranary::client();
    for project in ["alpha", "beta"] {
        client
            .get(granary.url(&format!("pypi/simple/{project}/")))
            .send()
            .await
            .expect("warm");
    }
    let unauthorized = client
        .delete(granary.url("-/cache/pypi/alpha"))
        .send()
        .await
        .expect("delete");
    assert_eq!(unauthorized.status(), 401);
    assert!(unauthorized.headers().contains_key("www-authenticate"));
    let wrong = client
        .delete(granary.url("-/cache/pypi/alpha"))
        .bearer_auth("nope")
        .send()
        .await
        .expect("delete");
    assert_eq!(wrong.status(), 401);

    let purged: serde_json::Value = client
        .delete(granary.url("-/cache/pypi/Alpha"))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("delete")
        .json()
        .await
        .expect("json");
    assert_eq!(purged["removed"], 1);
    let again = client
        .get(granary.url("pypi/simple/alpha/"))
        .send()
        .await
        .expect("refetch");
    assert_eq!(again.headers()["x-cache"], "MISS");
    let beta = client
        .get(granary.url("pypi/simple/beta/"))
        .send()
        .await
        .expect("beta");
    assert_eq!(
        beta.headers()["x-cache"],
        "HIT",
        "only the named project was purged"
    );

    let purged: serde_json::Value = client
        .delete(granary.url("-/cache/pypi"))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("delete repo")
        .json()
        .await
        .expect("json");
    assert_eq!(purged["removed"], 2);
    let beta = client
        .get(granary.url("pypi/simple/beta/"))
        .send()
        .await
        .expect("beta");
    assert_eq!(beta.headers()["x-cache"], "MISS");
    assert_eq!(upstream.hits("simple/alpha/"), 2);
    assert_eq!(upstream.hits("simple/beta/"), 2);

    let disabled = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let response = client
        .delete(disabled.url("-/cache/pypi"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 404, "no admin_token: endpoints disabled");
}

#[tokio::test]
async fn verify_finds_corrupt_blobs_and_gc_removes_orphans() {
    let upstream = FakeUpstream::start(None).await;
    three_files(&upstream, 10_000);
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    for name in ["a", "b", "c"] {
        fetch(&granary, name).await.bytes().await.expect("body");
    }
    granary.settle().await;
    let artifacts = &granary.state.engine.artifacts;
    let clean = artifacts.verify(false).await.expect("verify");
    assert_eq!((clean.checked, clean.corrupt.len()), (3, 0));

    // Flip a byte in one blob, and drop an orphan next to them.
    let blobs = files_under(&granary.data().join("blobs"));
    let victim = &blobs[0];
    let mut bytes = std::fs::read(victim).expect("read blob");
    bytes[0] ^= 0xff;
    std::fs::write(victim, bytes).expect("corrupt blob");
    let orphan_hex = "ee".repeat(32);
    let orphan = granary.data().join("blobs").join("ee").join(&orphan_hex);
    std::fs::create_dir_all(orphan.parent().expect("parent")).expect("dir");
    std::fs::write(&orphan, b"orphan").expect("orphan");

    let found = artifacts.verify(false).await.expect("verify");
    assert_eq!(
        found.corrupt.len(),
        2,
        "the flipped blob and the orphan whose name is not its hash"
    );
    let repaired = artifacts.verify(true).await.expect("repair");
    assert_eq!(repaired.removed, 2);
    assert_eq!(files_under(&granary.data().join("blobs")).len(), 2);

    std::fs::create_dir_all(orphan.parent().expect("parent")).expect("dir");
    std::fs::write(&orphan, b"orphan").expect("orphan");
    let gc = artifacts.collect_garbage(None).await.expect("gc");
    assert_eq!((gc.orphan_blobs, gc.dangling_rows), (1, 0));
    assert!(!orphan.exists());
}
