//! The cache engine's promises: one upstream fetch per stampede with streaming late
//! joiners, stale-while-revalidate with one refresh, conditional revalidation, and
//! offline mode. Time is a manual clock: no test sleeps through a TTL.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use granary::clock::ManualClock;

use crate::support::{
    build_pypi_fixture, sha256_hex, Behaviour, FakeUpstream, Scripted, TestGranary,
};

const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";

fn page(project: &str, filename: &str, sha256: &str) -> Scripted {
    Scripted::ok(
        serde_json::json!({
            "meta": {"api-version": "1.0"},
            "name": project,
            "files": [{"filename": filename, "url": format!("../../dl/{filename}"), "hashes": {"sha256": sha256}}]
        })
        .to_string(),
    )
    .header("content-type", JSON_TYPE)
}

#[tokio::test]
async fn stampede_of_100_clients_causes_one_upstream_fetch_and_streams_to_all() {
    let upstream = FakeUpstream::start(None).await;
    let body: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256_hex(&body);
    upstream.script("simple/big/", page("big", "big-1.0.tar.gz", &digest));
    // 5 MiB in 64 KiB chunks, 15 ms apart: about 1.2 s of sending.
    upstream.script(
        "dl/big-1.0.tar.gz",
        Scripted {
            pace: Some((64 * 1024, Duration::from_millis(15))),
            ..Scripted::ok(body.clone())
        },
    );
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let url = granary.url("pypi/files/big/big-1.0.tar.gz");
    let client = TestGranary::client();

    let mut clients = Vec::new();
    for _ in 0..100 {
        let client = client.clone();
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let response = client.get(&url).send().await.expect("response");
            let mut stream = response.bytes_stream();
            let mut received = Vec::new();
            let mut first_byte_at = None;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("chunk");
                if first_byte_at.is_none() && !chunk.is_empty() {
                    first_byte_at = Some(Instant::now());
                }
                received.extend_from_slice(&chunk);
            }
            (
                first_byte_at.expect("some bytes"),
                sha256_hex(&received),
                received.len(),
            )
        }));
    }
    let mut first_bytes = Vec::new();
    for client in clients {
        let (first_byte_at, received_digest, length) = client.await.expect("client task");
        assert_eq!(length, body.len());
        assert_eq!(
            received_digest, digest,
            "byte-identical, hash-correct content"
        );
        first_bytes.push(first_byte_at);
    }
    assert_eq!(
        upstream.hits("dl/big-1.0.tar.gz"),
        1,
        "exactly one upstream request"
    );
    let upstream_done = upstream
        .finished_at("dl/big-1.0.tar.gz")
        .expect("upstream finished");
    let early = first_bytes.iter().filter(|t| **t < upstream_done).count();
    assert_eq!(
        early, 100,
        "every client got its first bytes before the upstream finished sending"
    );
    let metrics = granary.state.metrics.render();
    assert!(
        metrics
            .contains("granary_coalesced_requests_total{category=\"artifact\",format=\"pypi\"} 99"),
        "{metrics}"
    );
}

async fn clocked_granary(upstream: &FakeUpstream, extra: &str) -> (TestGranary, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let granary = TestGranary::start(&upstream.url("simple/"), extra, clock.clone()).await;
    (granary, clock)
}

#[tokio::test]
async fn stale_entries_are_served_at_once_while_one_refresh_runs() {
    let upstream = FakeUpstream::start(None).await;
    let slow_page = Scripted {
        pace: Some((64, Duration::from_millis(40))),
        ..page("swr", "swr-1.0.tar.gz", &"a".repeat(64))
    };
    upstream.script("simple/swr/", slow_page);
    let (granary, clock) =
        clocked_granary(&upstream, "index_ttl = \"60s\"\nupdate_time = \"10s\"").await;
    let client = TestGranary::client();
    let url = granary.url("pypi/simple/swr/");
    let first = client.get(&url).send().await.expect("first");
    assert_eq!(first.headers()["x-cache"], "MISS");
    assert_eq!(upstream.hits("simple/swr/"), 1);
    let refresh_started = Instant::now();

    clock.advance(Duration::from_secs(65)); // past the TTL, inside the 2 × 10 s grace
    let mut requests = Vec::new();
    for _ in 0..50 {
        let client = client.clone();
        let url = url.clone();
        requests.push(tokio::spawn(async move {
            let response = client.get(&url).send().await.expect("stale request");
            let status = response.headers()["x-cache"]
                .to_str()
                .expect("x-cache")
                .to_owned();
            (status, response.status())
        }));
    }
    for request in requests {
        let (cache_status, status) = request.await.expect("task");
        assert_eq!(status, 200);
        assert_eq!(cache_status, "STALE");
    }
    assert!(
        upstream
            .finished_at("simple/swr/")
            .is_none_or(|t| t < refresh_started),
        "all 50 were answered before the background refresh finished"
    );
    for _ in 0..200 {
        let fresh = client.get(&url).send().await.expect("after refresh");
        if fresh.headers()["x-cache"] == "HIT" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let fresh = client.get(&url).send().await.expect("after refresh");
    assert_eq!(
        fresh.headers()["x-cache"],
        "HIT",
        "the refreshed copy is fresh again"
    );
    assert_eq!(
        upstream.hits("simple/swr/"),
        2,
        "exactly one refresh for 50 stale requests"
    );
}

#[tokio::test]
async fn expired_entries_wait_for_one_conditional_refresh() {
    let dir = tempfile::tempdir().expect("dir");
    build_pypi_fixture(dir.path());
    let upstream = FakeUpstream::start(Some(dir.path().to_path_buf())).await;
    let (granary, clock) =
        clocked_granary(&upstream, "index_ttl = \"60s\"\nupdate_time = \"10s\"").await;
    let client = TestGranary::client();
    let url = granary.url("pypi/simple/alpha/");
    let first = client.get(&url).send().await.expect("first");
    let etag = first.headers()["etag"].clone();

    clock.advance(Duration::from_secs(81)); // past TTL + 2 × update_time
    let mut requests = Vec::new();
    for _ in 0..20 {
        let client = client.clone();
        let url = url.clone();
        requests.push(tokio::spawn(async move {
            let response = client.get(&url).send().await.expect("request");
            response.headers()["x-cache"]
                .to_str()
                .expect("x-cache")
                .to_owned()
        }));
    }
    for request in requests {
        assert_eq!(
            request.await.expect("task"),
            "REVALIDATED",
            "upstream answered 304"
        );
    }
    assert_eq!(
        upstream.hits("simple/alpha/"),
        2,
        "one conditional refresh for 20 requests"
    );
    let again = client
        .get(&url)
        .header("if-none-match", etag)
        .send()
        .await
        .expect("conditional");
    assert_eq!(
        again.status(),
        304,
        "our own validator is unchanged by revalidation"
    );
    assert_eq!(again.headers()["x-cache"], "HIT");
}

#[tokio::test]
async fn offline_mode_serves_last_good_copy_and_fails_only_uncached() {
    let dir = tempfile::tempdir().expect("dir");
    build_pypi_fixture(dir.path());
    let upstream = FakeUpstream::start(Some(dir.path().to_path_buf())).await;
    let (granary, clock) = clocked_granary(
        &upstream,
        "index_ttl = \"60s\"\nupdate_time = \"10s\"\ntimeout = \"1s\"\nretries = 1",
    )
    .await;
    let client = TestGranary::client();
    let url = granary.url("pypi/simple/alpha/");
    assert_eq!(client.get(&url).send().await.expect("warm").status(), 200);

    upstream.set_behaviour(Behaviour::Fail(http::StatusCode::SERVICE_UNAVAILABLE));
    clock.advance(Duration::from_secs(3600));
    let stale = client.get(&url).send().await.expect("stale");
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.headers()["x-cache"], "STALE");
    assert!(stale.headers()["warning"]
        .to_str()
        .expect("warning")
        .starts_with("111 "));
    let missing = client
        .get(granary.url("pypi/simple/delta/"))
        .send()
        .await
        .expect("uncached");
    assert_eq!(missing.status(), 502);
    assert!(
        missing
            .text()
            .await
            .expect("body")
            .contains(&upstream.url("simple/delta/")),
        "names the upstream"
    );

    upstream.set_behaviour(Behaviour::Hang);
    clock.advance(Duration::from_secs(3600));
    let stale = client.get(&url).send().await.expect("stale while hanging");
    assert_eq!(stale.headers()["x-cache"], "STALE");
    let timed_out = client
        .get(granary.url("pypi/simple/gamma-lib/"))
        .send()
        .await
        .expect("uncached");
    assert_eq!(timed_out.status(), 504);
}

#[tokio::test]
async fn max_staleness_bounds_offline_mode() {
    let dir = tempfile::tempdir().expect("dir");
    build_pypi_fixture(dir.path());
    let upstream = FakeUpstream::start(Some(dir.path().to_path_buf())).await;
    let (granary, clock) = clocked_granary(
        &upstream,
        "index_ttl = \"60s\"\nupdate_time = \"10s\"\nmax_staleness = \"10m\"\nretries = 0",
    )
    .await;
    let client = TestGranary::client();
    let url = granary.url("pypi/simple/alpha/");
    assert_eq!(client.get(&url).send().await.expect("warm").status(), 200);
    upstream.set_behaviour(Behaviour::Fail(http::StatusCode::BAD_GATEWAY));
    clock.advance(Duration::from_secs(5 * 60));
    assert_eq!(
        client.get(&url).send().await.expect("within").headers()["x-cache"],
        "STALE"
    );
    clock.advance(Duration::from_secs(60 * 60));
    assert_eq!(client.get(&url).send().await.expect("beyond").status(), 502);
}

#[tokio::test]
async fn stampede_on_a_cold_index_page_causes_one_upstream_fetch() {
    let upstream = FakeUpstream::start(None).await;
    upstream.script(
        "simple/cold/",
        Scripted {
            pace: Some((32, Duration::from_millis(20))),
            ..page("cold", "cold-1.0.tar.gz", &"b".repeat(64))
        },
    );
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let client = TestGranary::client();
    let mut requests = Vec::new();
    for _ in 0..100 {
        let (client, url) = (client.clone(), granary.url("pypi/simple/cold/"));
        requests.push(tokio::spawn(async move {
            let response = client.get(&url).send().await.expect("request");
            (response.status(), response.text().await.expect("body"))
        }));
    }
    let mut bodies = std::collections::HashSet::new();
    for request in requests {
        let (status, body) = request.await.expect("task");
        assert_eq!(status, 200);
        bodies.insert(body);
    }
    assert_eq!(bodies.len(), 1, "everyone got the same page");
    assert_eq!(
        upstream.hits("simple/cold/"),
        1,
        "one upstream fetch for 100 concurrent requests"
    );
}
