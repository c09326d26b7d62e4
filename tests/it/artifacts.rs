//! Artifact downloads: streamed while stored, verified, immutable afterwards.

use crate::support::{
    build_pypi_fixture, files_under, sha256_hex, FakeUpstream, Scripted, TestGranary,
};

/// A PEP 691 page listing one file.
fn json_page(project: &str, filename: &str, url: &str, sha256: &str) -> String {
    serde_json::json!({
        "meta": {"api-version": "1.0"},
        "name": project,
        "files": [{"filename": filename, "url": url, "hashes": {"sha256": sha256}}]
    })
    .to_string()
}

fn stored_files(granary: &TestGranary) -> (usize, usize) {
    let data = granary.data();
    (
        files_under(&data.join("blobs")).len(),
        files_under(&data.join("tmp")).len(),
    )
}

#[tokio::test]
async fn file_is_stored_once_then_served_from_disk_with_range_and_head() {
    let dir = tempfile::tempdir().expect("dir");
    build_pypi_fixture(dir.path());
    let upstream = FakeUpstream::start(Some(dir.path().to_path_buf())).await;
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let client = TestGranary::client();
    let wheel = "alpha-1.0-py3-none-any.whl";
    let expected = std::fs::read(dir.path().join("packages").join(wheel)).expect("fixture wheel");
    let url = granary.url(&format!("pypi/files/alpha/{wheel}"));

    let first = client.get(&url).send().await.expect("first");
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache"], "MISS");
    assert_eq!(first.bytes().await.expect("body"), expected);

    let second = client.get(&url).send().await.expect("second");
    assert_eq!(second.headers()["x-cache"], "HIT");
    assert_eq!(
        second.headers()["etag"].to_str().expect("etag"),
        format!("\"{}\"", sha256_hex(&expected))
    );
    assert_eq!(second.headers()["accept-ranges"], "bytes");
    assert_eq!(second.headers()["content-type"], "application/zip");
    assert!(second.headers()["cache-control"]
        .to_str()
        .expect("cc")
        .contains("immutable"));
    assert_eq!(second.bytes().await.expect("body"), expected);

    let range = client
        .get(&url)
        .header("range", "bytes=0-9")
        .send()
        .await
        .expect("range");
    assert_eq!(range.status(), 206);
    assert_eq!(range.bytes().await.expect("body"), expected[..10]);

    let head = client.head(&url).send().await.expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        expected.len().to_string().as_str()
    );

    let metadata = client
        .get(format!("{url}.metadata"))
        .send()
        .await
        .expect("metadata");
    assert_eq!(metadata.status(), 200);
    let metadata = metadata.text().await.expect("metadata body");
    assert!(metadata.contains("Requires-Dist: beta>=1.0"), "{metadata}");

    assert_eq!(upstream.hits(&format!("packages/{wheel}")), 1);
    granary.settle().await;
    assert_eq!(
        stored_files(&granary),
        (2, 0),
        "wheel and metadata stored, no temp left"
    );
}

#[tokio::test]
async fn hash_mismatch_aborts_the_download_and_stores_nothing() {
    let upstream = FakeUpstream::start(None).await;
    let body = vec![7u8; 300_000];
    let wrong = "0".repeat(64);
    upstream.script(
        "simple/evil/",
        Scripted::ok(json_page(
            "evil",
            "evil-1.0.tar.gz",
            "../../dl/evil-1.0.tar.gz",
            &wrong,
        ))
        .header("content-type", "application/vnd.pypi.simple.v1+json"),
    );
    upstream.script("dl/evil-1.0.tar.gz", Scripted::ok(body.clone()));
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let url = granary.url("pypi/files/evil/evil-1.0.tar.gz");

    for attempt in 1..=2 {
        let response = TestGranary::client()
            .get(&url)
            .send()
            .await
            .expect("response head");
        assert_eq!(
            response.status(),
            200,
            "headers were sent before the hash was known"
        );
        let received = response.bytes().await;
        assert!(
            received.is_err(),
            "attempt {attempt}: the body must end in an error, not cleanly"
        );
        assert_eq!(
            upstream.hits("dl/evil-1.0.tar.gz"),
            attempt,
            "nothing stored, so it is fetched again"
        );
    }
    assert_eq!(stored_files(&granary), (0, 0));
    let metrics = granary.state.metrics.render();
    assert!(
        metrics.contains("granary_integrity_failures_total{repo=\"pypi\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn truncated_upstream_body_stores_nothing() {
    let upstream = FakeUpstream::start(None).await;
    let body = vec![1u8; 500_000];
    upstream.script(
        "simple/cut/",
        Scripted::ok(json_page(
            "cut",
            "cut-1.0.tar.gz",
            "../../dl/cut-1.0.tar.gz",
            &sha256_hex(&body),
        ))
        .header("content-type", "application/vnd.pypi.simple.v1+json"),
    );
    upstream.script(
        "dl/cut-1.0.tar.gz",
        Scripted {
            cut_after: Some(200_000),
            // Paced, so the headers and the first bytes really go out before the cut.
            pace: Some((32 * 1024, std::time::Duration::from_millis(10))),
            ..Scripted::ok(body)
        },
    );
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let response = TestGranary::client()
        .get(granary.url("pypi/files/cut/cut-1.0.tar.gz"))
        .send()
        .await
        .expect("response head");
    // Either the cut is seen before the response starts (502) or during it (broken body).
    if response.status() == 200 {
        assert!(
            response.bytes().await.is_err(),
            "a truncated body is an error for the client"
        );
    } else {
        assert_eq!(response.status(), 502);
        let message = response.text().await.expect("error body");
        assert!(
            message.contains("broke off") || message.contains("announced"),
            "{message}"
        );
    }
    // The fill may still be cleaning up when the client sees the error.
    for _ in 0..50 {
        if stored_files(&granary) == (0, 0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(stored_files(&granary), (0, 0));
    let healthy = TestGranary::client()
        .get(granary.url("-/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(healthy.status(), 200, "the server keeps serving");
}

#[tokio::test]
async fn unlisted_and_upstream_missing_files_are_404() {
    let upstream = FakeUpstream::start(None).await;
    upstream.script(
        "simple/gone/",
        Scripted::ok(json_page(
            "gone",
            "gone-1.0.tar.gz",
            "../../dl/gone-1.0.tar.gz",
            &"a".repeat(64),
        ))
        .header("content-type", "application/vnd.pypi.simple.v1+json"),
    );
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let client = TestGranary::client();
    let unlisted = client
        .get(granary.url("pypi/files/gone/other-1.0.tar.gz"))
        .send()
        .await
        .expect("unlisted");
    assert_eq!(unlisted.status(), 404);
    let missing = client
        .get(granary.url("pypi/files/gone/gone-1.0.tar.gz"))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status(), 404, "upstream 404 passes through");
    let no_metadata = client
        .get(granary.url("pypi/files/gone/gone-1.0.tar.gz.metadata"))
        .send()
        .await
        .expect("metadata");
    assert_eq!(no_metadata.status(), 404, "no core metadata offered");
}
