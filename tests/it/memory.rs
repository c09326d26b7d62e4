//! Bounded memory: a 1 GiB artifact streamed to 20 concurrent clients through the real
//! binary never passes through memory whole. Peak RSS is measured from /proc and
//! reported; the bound asserted is the cache engine's promise (150 MB), not a timing.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::support::{FakeUpstream, GranaryProcess, Scripted};

const ARTIFACT_BYTES: u64 = 1024 * 1024 * 1024;
const CLIENTS: usize = 20;
const RSS_BOUND_KIB: u64 = 150 * 1000;

/// A granary (the real binary) whose PyPI upstream lists one project with one file
/// of `bytes` bytes (a repeated pattern), and its idle RSS in KiB. The upstream and
/// the scratch directory live as long as the granary is used.
async fn granary_with_one_file(
    project: &str,
    filename: &str,
    bytes: u64,
) -> (FakeUpstream, tempfile::TempDir, GranaryProcess, u64) {
    let upstream = FakeUpstream::start(None).await;
    let pattern: Bytes = (0..256 * 1024u32)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<u8>>()
        .into();
    upstream.script(
        &format!("simple/{project}/"),
        Scripted::ok(
            serde_json::json!({
                "meta": {"api-version": "1.0"}, "name": project,
                "files": [{"filename": filename, "url": format!("../../dl/{filename}"), "hashes": {}, "size": bytes}]
            })
            .to_string(),
        )
        .header("content-type", "application/vnd.pypi.simple.v1+json"),
    );
    upstream.script(
        &format!("dl/{filename}"),
        Scripted {
            repeat_to: Some(bytes),
            ..Scripted::ok(pattern)
        },
    );
    let scratch = tempfile::tempdir().expect("scratch");
    let config = scratch.path().join("granary.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[repos.pypi]\nformat = \"pypi\"\nupstream = \"{}\"\n",
            scratch.path().join("data").display(),
            upstream.url("simple/")
        ),
    )
    .expect("config");
    let granary = GranaryProcess::spawn(&config);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, idle_kib) = granary.memory_kib();
    (upstream, scratch, granary, idle_kib)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_1_gib_to_20_clients_keeps_rss_bounded() {
    let (upstream, _scratch, granary, idle_kib) =
        granary_with_one_file("huge", "huge-1.0.tar.gz", ARTIFACT_BYTES).await;

    let url = format!("http://{}/pypi/files/huge/huge-1.0.tar.gz", granary.addr);
    let client = reqwest::Client::new();
    let mut downloads = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url) = (client.clone(), url.clone());
        downloads.push(tokio::spawn(async move {
            let response = client.get(&url).send().await.expect("response");
            assert_eq!(response.status(), 200);
            let mut stream = response.bytes_stream();
            let mut received = 0u64;
            while let Some(chunk) = stream.next().await {
                received += chunk.expect("chunk").len() as u64;
            }
            received
        }));
    }
    for download in downloads {
        assert_eq!(download.await.expect("download"), ARTIFACT_BYTES);
    }
    let (peak_kib, _) = granary.memory_kib();
    eprintln!(
        "memory: idle RSS {idle_kib} KiB, peak RSS {peak_kib} KiB while streaming {} MiB to {CLIENTS} clients",
        ARTIFACT_BYTES / (1024 * 1024)
    );
    assert_eq!(upstream.hits("dl/huge-1.0.tar.gz"), 1);
    assert!(
        peak_kib < RSS_BOUND_KIB,
        "peak RSS {peak_kib} KiB exceeds {RSS_BOUND_KIB} KiB"
    );
}

/// Found by the soak: dependency extraction read each published archive whole into
/// memory (and the allocator kept it). A 300 MiB sdist (under the extractor's 512 MiB
/// limit) fetched once: after its extraction ran, peak RSS is still within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extracting_a_300_mib_sdist_does_not_read_it_into_memory() {
    const SDIST_BYTES: u64 = 300 * 1024 * 1024;
    let (_upstream, _scratch, granary, idle_kib) =
        granary_with_one_file("big-sdist", "big_sdist-1.0.tar.gz", SDIST_BYTES).await;
    let client = reqwest::Client::new();
    let url = format!(
        "http://{}/pypi/files/big-sdist/big_sdist-1.0.tar.gz",
        granary.addr
    );
    let mut stream = client
        .get(&url)
        .send()
        .await
        .expect("response")
        .bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        received += chunk.expect("chunk").len() as u64;
    }
    assert_eq!(received, SDIST_BYTES);
    // The extractor runs after publication, off the request path: wait (bounded) for
    // it to have counted this artifact.
    let metrics = format!("http://{}/-/metrics", granary.addr);
    let mut extracted = false;
    for _ in 0..120 {
        let text = client
            .get(&metrics)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        extracted = text
            .lines()
            .filter(|l| l.starts_with("granary_dependency_extractions_total{"))
            .any(|l| !l.ends_with(" 0"));
        if extracted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(extracted, "the extractor never counted the sdist");
    let (peak_kib, _) = granary.memory_kib();
    eprintln!(
        "memory: idle RSS {idle_kib} KiB, peak RSS {peak_kib} KiB after extracting a 300 MiB sdist"
    );
    assert!(
        peak_kib < RSS_BOUND_KIB,
        "peak RSS {peak_kib} KiB exceeds {RSS_BOUND_KIB} KiB: the archive was read into memory"
    );
}
