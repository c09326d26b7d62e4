//! Several replicas behind one address, sharing PostgreSQL, Redis and S3 (Garage): the
//! five cross-replica promises, each against the real binary and real engines.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStore;

use granary::engine::redis::RedisTier;
use granary::metrics::Metrics;

use crate::support::engines::{index_stored_at_in_redis, Garage, RedisServer};
use crate::support::{
    build_pypi_fixture, one_file_page, python, sha256_hex, Engines, FakeUpstream, GranaryProcess,
    Scripted,
};

/// One replica: its own `data_dir`, and `shared` (engines and repository) verbatim.
fn replica(dir: &Path, name: &str, shared: &str) -> GranaryProcess {
    let config = dir.join(format!("{name}.toml"));
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n{shared}",
        dir.join(name).display()
    );
    std::fs::write(&config, text).expect("replica config");
    GranaryProcess::spawn(&config)
}

struct Cluster {
    _dir: tempfile::TempDir,
    replicas: Vec<GranaryProcess>,
    redis: RedisServer,
    garage: Garage,
    prefix: String,
}

async fn cluster(engines: &Engines, count: usize, upstream: &str, extra: &str) -> Cluster {
    cluster_with(engines, count, upstream, "", extra).await
}

/// A cluster with `redis_extra` lines in every replica's `[redis]` section.
async fn cluster_with(
    engines: &Engines,
    count: usize,
    upstream: &str,
    redis_extra: &str,
    extra: &str,
) -> Cluster {
    let dir = tempfile::tempdir().expect("dir");
    let database = engines.database().await;
    let redis = engines.redis();
    let garage = engines.garage();
    let prefix = format!("t{:08x}", rand::random::<u32>());
    let shared = format!(
        "[metadata]\ndatabase_url = \"{database}\"\n\n[redis]\nurl = \"{}\"\nartifact_lock_ttl = \"2s\"\nartifact_wait = \"60s\"\n{redis_extra}\n\n{}\n\
         [repos.pypi]\nformat = \"pypi\"\nupstream = \"{upstream}\"\n{extra}\n",
        redis.url(),
        garage.storage_toml(&prefix),
    );
    let replicas = (0..count)
        .map(|i| replica(dir.path(), &format!("r{i}"), &shared))
        .collect();
    Cluster {
        _dir: dir,
        replicas,
        redis,
        garage,
        prefix,
    }
}

/// The upstream lists `project`'s one file, `dl/<project>-1.0.tar.gz`, and serves it
/// as `scripted` says.
fn serve_one_file(upstream: &FakeUpstream, project: &str, body: &[u8], scripted: Scripted) {
    let file = format!("{project}-1.0.tar.gz");
    upstream.script(
        &format!("simple/{project}/"),
        one_file_page(project, &file, body),
    );
    upstream.script(&format!("dl/{file}"), scripted);
}

/// What `replica` says at `/-/metrics`.
async fn metrics_of(client: &reqwest::Client, replica: &GranaryProcess) -> String {
    client
        .get(replica.url("-/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

async fn blob_objects(cluster: &Cluster) -> Vec<String> {
    let prefix = object_store::path::Path::from(format!("{}/blobs", cluster.prefix));
    cluster
        .garage
        .client()
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .expect("list bucket")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_requests_over_three_replicas_fetch_an_artifact_once() {
    let Some(engines) =
        Engines::from_env("sixty_requests_over_three_replicas_fetch_an_artifact_once")
    else {
        return;
    };
    let upstream = FakeUpstream::start(None).await;
    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
    serve_one_file(
        &upstream,
        "shared",
        &body,
        Scripted {
            pace: Some((64 * 1024, Duration::from_millis(10))),
            ..Scripted::ok(body.clone())
        },
    );
    let cluster = cluster(&engines, 3, &upstream.url("simple/"), "").await;
    let client = reqwest::Client::new();
    let mut requests = Vec::new();
    for i in 0..60 {
        let url = cluster.replicas[i % 3].url("pypi/files/shared/shared-1.0.tar.gz");
        let client = client.clone();
        requests.push(tokio::spawn(async move {
            let response = client.get(&url).send().await.expect("response");
            assert_eq!(response.status(), 200);
            sha256_hex(&response.bytes().await.expect("body"))
        }));
    }
    for request in requests {
        assert_eq!(request.await.expect("task"), sha256_hex(&body));
    }
    assert_eq!(
        upstream.hits("dl/shared-1.0.tar.gz"),
        1,
        "exactly one upstream fetch across three replicas"
    );
    assert_eq!(blob_objects(&cluster).await.len(), 1);
}

const REPLICA_SECRET: &str = "replica-secret-for-tests-0123456789";

/// Reads `response` until at least `want` body bytes arrived; returns them.
async fn read_at_least(response: &mut reqwest::Response, want: usize) -> Vec<u8> {
    let mut received = Vec::new();
    while received.len() < want {
        match response.chunk().await.expect("body") {
            Some(chunk) => received.extend_from_slice(&chunk),
            None => break,
        }
    }
    received
}

// Issue #16: a replica whose clients asked for an artifact another replica was
// downloading gave them nothing until the whole file was stored. Now it streams the
// download from that replica as it arrives: here the upstream holds the second half
// back, and the other replicas' clients still get the first half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_stream_another_replicas_download_as_it_arrives() {
    let Some(engines) =
        Engines::from_env("replicas_stream_another_replicas_download_as_it_arrives")
    else {
        return;
    };
    let upstream = FakeUpstream::start(None).await;
    let body: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let half = body.len() / 2;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    serve_one_file(
        &upstream,
        "stream",
        &body,
        Scripted {
            hold_after: Some((half, Arc::clone(&gate))),
            ..Scripted::ok(body.clone())
        },
    );
    let cluster = cluster_with(
        &engines,
        3,
        &upstream.url("simple/"),
        &format!("replica_secret = \"{REPLICA_SECRET}\""),
        "",
    )
    .await;
    let path = "pypi/files/stream/stream-1.0.tar.gz";
    let client = reqwest::Client::new();
    let mut filling = client
        .get(cluster.replicas[0].url(path))
        .send()
        .await
        .expect("response");
    assert_eq!(filling.status(), 200);
    // Everything the upstream sent before it stalled, but the byte held back until
    // the download is verified.
    let mut received = vec![tokio::time::timeout(
        Duration::from_secs(30),
        read_at_least(&mut filling, half - 1),
    )
    .await
    .expect("the filling replica's client gets what the upstream sent")];
    let mut followers = Vec::new();
    for replica in [1, 2] {
        let mut response = tokio::time::timeout(
            Duration::from_secs(30),
            client.get(cluster.replicas[replica].url(path)).send(),
        )
        .await
        .unwrap_or_else(|_| panic!("replica {replica} answers while the upstream holds back"))
        .expect("response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.content_length(), Some(body.len() as u64));
        let first =
            // Each fill holds its last byte back until verified, so a byte or two short
            // of the half.
            tokio::time::timeout(Duration::from_secs(30), read_at_least(&mut response, half - 2))
                .await
                .unwrap_or_else(|_| panic!("replica {replica} streams the first half"));
        assert_eq!(
            first,
            body[..first.len()],
            "replica {replica}'s first bytes"
        );
        followers.push((response, first));
    }
    assert_eq!(upstream.hits("dl/stream-1.0.tar.gz"), 1);

    gate.add_permits(1);
    received[0].extend(read_at_least(&mut filling, body.len()).await);
    for (mut response, mut first) in followers {
        first.extend(read_at_least(&mut response, body.len()).await);
        received.push(first);
    }
    for bytes in &received {
        assert_eq!(sha256_hex(bytes), sha256_hex(&body));
    }
    assert_eq!(
        upstream.hits("dl/stream-1.0.tar.gz"),
        1,
        "one upstream download"
    );
    for replica in [1, 2] {
        let metrics = metrics_of(&client, &cluster.replicas[replica]).await;
        assert!(
            metrics.contains("granary_cross_replica_streams_total 1"),
            "replica {replica} streamed once from replica 0"
        );
    }
    // Stored once, by the replica that downloaded it; then a hit everywhere.
    for _ in 0..200 {
        if blob_objects(&cluster).await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(blob_objects(&cluster).await.len(), 1);
    let again = client
        .get(cluster.replicas[2].url(path))
        .send()
        .await
        .expect("response");
    assert_eq!(again.headers()["x-cache"], "HIT");

    // The endpoint between replicas wants the shared secret.
    let internal = cluster.replicas[0].url("-/replica/fill?key=anything");
    let anonymous = client.get(&internal).send().await.expect("response");
    assert_eq!(anonymous.status(), 401);
    let wrong = client
        .get(&internal)
        .bearer_auth("not-the-replica-secret-at-all")
        .send()
        .await
        .expect("response");
    assert_eq!(wrong.status(), 401);
    let nothing = client
        .get(&internal)
        .bearer_auth(REPLICA_SECRET)
        .send()
        .await
        .expect("response");
    assert_eq!(nothing.status(), 404, "no download of that key in flight");
}

// Found in review: a replica waiting for another replica's download asked the holder
// for its stream at every step of its wait, and a holder that accepted connections
// but never answered cost each step the 2 s the ask waits. Each holding is now asked
// once. Here every replica advertises an address that accepts and never answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_does_not_answer_is_asked_once_and_the_others_wait_as_before() {
    let Some(engines) = Engines::from_env(
        "a_holder_that_does_not_answer_is_asked_once_and_the_others_wait_as_before",
    ) else {
        return;
    };
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket); // never read, never answered
        }
    });
    let upstream = FakeUpstream::start(None).await;
    let body: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 233) as u8).collect();
    serve_one_file(
        &upstream,
        "quiet",
        &body,
        Scripted {
            pace: Some((64 * 1024, Duration::from_millis(60))), // about 4 s
            ..Scripted::ok(body.clone())
        },
    );
    let cluster = cluster_with(
        &engines,
        2,
        &upstream.url("simple/"),
        &format!("replica_secret = \"{REPLICA_SECRET}\"\nreplica_url = \"{silent_url}\""),
        "",
    )
    .await;
    let path = "pypi/files/quiet/quiet-1.0.tar.gz";
    let client = reqwest::Client::new();
    let first = client
        .get(cluster.replicas[0].url(path))
        .send()
        .await
        .expect("response");
    assert_eq!(first.status(), 200);
    let second = client
        .get(cluster.replicas[1].url(path))
        .send()
        .await
        .expect("response");
    assert_eq!(second.status(), 200);
    assert_eq!(
        sha256_hex(&second.bytes().await.expect("body")),
        sha256_hex(&body)
    );
    assert_eq!(
        sha256_hex(&first.bytes().await.expect("body")),
        sha256_hex(&body)
    );
    assert_eq!(upstream.hits("dl/quiet-1.0.tar.gz"), 1);
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the silent holder was asked once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_page_refreshed_on_one_replica_is_fresh_on_the_others() {
    let Some(engines) =
        Engines::from_env("an_index_page_refreshed_on_one_replica_is_fresh_on_the_others")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    build_pypi_fixture(dir.path());
    let upstream = FakeUpstream::start(Some(dir.path().to_path_buf())).await;
    let cluster = cluster(
        &engines,
        3,
        &upstream.url("simple/"),
        "index_ttl = \"2s\"\nupdate_time = \"2s\"",
    )
    .await;
    let client = reqwest::Client::new();
    let get = |replica: usize| {
        let url = cluster.replicas[replica].url("pypi/simple/alpha/");
        let client = client.clone();
        async move {
            let response = client.get(&url).send().await.expect("response");
            assert_eq!(response.status(), 200);
            response.headers()["x-cache"]
                .to_str()
                .expect("x-cache")
                .to_owned()
        }
    };
    assert_eq!(get(0).await, "MISS");
    assert_eq!(get(1).await, "HIT", "served from the shared tier");
    assert_eq!(get(2).await, "HIT");
    assert_eq!(upstream.hits("simple/alpha/"), 1);
    let probe = RedisTier::new(&cluster.redis.url(), Duration::from_secs(1), Metrics::new())
        .expect("redis");
    let first_copy = index_stored_at_in_redis(&probe, "granary:index:pypi:pypi:alpha").await;
    assert!(first_copy.is_some(), "the page is in Redis");

    tokio::time::sleep(Duration::from_millis(2300)).await; // past the TTL, inside the grace
    assert_eq!(
        get(0).await,
        "STALE",
        "replica 0 serves stale and refreshes in the background"
    );
    for _ in 0..100 {
        if upstream.hits("simple/alpha/") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Until the refresh has reached Redis, the others rightly serve their stale copies.
    let mut landed = false;
    for _ in 0..250 {
        let copy = index_stored_at_in_redis(&probe, "granary:index:pypi:pypi:alpha").await;
        if copy.is_some() && copy != first_copy {
            landed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(landed, "replica 0's refresh reached Redis");
    for replica in [1, 2] {
        let seen = get(replica).await;
        // A replica waits 200 ms for the shared tiers before answering from its own
        // stale copy (a loaded machine can take that long); the shared read goes on
        // and its next answer is the refreshed copy, fetched by no one again.
        if seen == "STALE" {
            assert_eq!(get(replica).await, "HIT", "replica {replica}, second ask");
        } else {
            assert_eq!(seen, "HIT", "replica {replica} sees replica 0's refresh");
        }
    }
    assert_eq!(
        upstream.hits("simple/alpha/"),
        2,
        "one refresh for the cluster"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_download_leaves_no_partial_object_and_no_stuck_lock() {
    let Some(engines) = Engines::from_env(
        "a_replica_killed_mid_download_leaves_no_partial_object_and_no_stuck_lock",
    ) else {
        return;
    };
    let upstream = FakeUpstream::start(None).await;
    let body: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 239) as u8).collect();
    serve_one_file(
        &upstream,
        "crash",
        &body,
        Scripted {
            pace: Some((64 * 1024, Duration::from_millis(40))), // about 2.6 s
            ..Scripted::ok(body.clone())
        },
    );
    let mut cluster = cluster(&engines, 2, &upstream.url("simple/"), "").await;
    let victim_url = cluster.replicas[0].url("pypi/files/crash/crash-1.0.tar.gz");
    let doomed = tokio::spawn(async move { reqwest::get(&victim_url).await.map(|_| ()) });
    for _ in 0..200 {
        if upstream.hits("dl/crash-1.0.tar.gz") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // well into the download
    cluster.replicas.remove(0).kill_hard();
    let _ = doomed.await;
    assert!(
        blob_objects(&cluster).await.is_empty(),
        "no partial object is visible"
    );

    // The survivor waits for the dead replica's lock to expire (2 s), then fetches.
    let response = reqwest::get(cluster.replicas[0].url("pypi/files/crash/crash-1.0.tar.gz"))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        sha256_hex(&response.bytes().await.expect("body")),
        sha256_hex(&body)
    );
    assert_eq!(upstream.hits("dl/crash-1.0.tar.gz"), 2);
    for _ in 0..100 {
        if blob_objects(&cluster).await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(blob_objects(&cluster).await.len(), 1);
    let mut redis = redis::Client::open(cluster.redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let lock: Option<String> = redis::cmd("GET")
        .arg("granary:lock:granary:artifact:pypi:pypi:crash/crash-1.0.tar.gz")
        .query_async(&mut redis)
        .await
        .expect("get lock");
    assert_eq!(lock, None, "no stuck lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopping_and_returning_under_load_fails_no_request() {
    let Some(engines) =
        Engines::from_env("redis_stopping_and_returning_under_load_fails_no_request")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    build_pypi_fixture(dir.path());
    let upstream = FakeUpstream::start(Some(dir.path().to_path_buf())).await;
    // Short lifetimes, so the outage hits the request path: stale pages look in Redis
    // for a fresher copy and take the refresh lock there.
    let mut cluster = cluster(
        &engines,
        2,
        &upstream.url("simple/"),
        "index_ttl = \"1s\"\nupdate_time = \"1s\"",
    )
    .await;
    let client = reqwest::Client::new();
    let paths = [
        "pypi/simple/alpha/",
        "pypi/files/alpha/alpha-1.0-py3-none-any.whl",
        "pypi/simple/beta/",
    ];
    let mut degraded_seen = false;
    let mut failures = Vec::new();
    let mut served = 0;
    for round in 0..90 {
        if round == 30 {
            cluster.redis.stop();
        }
        if round == 45 {
            let ready: serde_json::Value = client
                .get(cluster.replicas[0].url("-/ready"))
                .send()
                .await
                .expect("ready")
                .json()
                .await
                .expect("json");
            degraded_seen = ready["redis"]["status"] == "degraded" && ready["ready"] == true;
        }
        if round == 60 {
            cluster.redis.restart();
        }
        for replica in &cluster.replicas {
            for path in paths {
                match client.get(replica.url(path)).send().await {
                    Ok(response) if response.status() == 200 => served += 1,
                    Ok(response) => failures.push(format!("{path}: {}", response.status())),
                    Err(error) => failures.push(format!("{path}: {error}")),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        degraded_seen,
        "/-/ready reported redis degraded (and the replica still ready) during the outage"
    );
    assert_eq!(served, 90 * 2 * paths.len());
    let metrics = client
        .get(cluster.replicas[0].url("-/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let errors: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("granary_redis_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("redis error counter");
    assert!(errors > 0, "the outage was counted");
    // Recovered on its own.
    let mut recovered = false;
    for _ in 0..50 {
        let ready: serde_json::Value = client
            .get(cluster.replicas[0].url("-/ready"))
            .send()
            .await
            .expect("ready")
            .json()
            .await
            .expect("json");
        if ready["redis"]["status"] == "ok" {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "redis reported ok again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_through_replica_a_then_replica_b_with_the_upstream_stopped() {
    let Some(engines) =
        Engines::from_env("pip_through_replica_a_then_replica_b_with_the_upstream_stopped")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let fixture = build_pypi_fixture(&dir.path().join("upstream"));
    let mut upstream = FakeUpstream::start(Some(fixture)).await;
    let cluster = cluster(&engines, 2, &upstream.url("simple/"), "").await;
    let install = |replica: &GranaryProcess, round: &str| {
        let target = dir.path().join(format!("target-{round}"));
        let cache = dir.path().join(format!("cache-{round}"));
        let index = format!("{}/", replica.url("pypi/simple").trim_end_matches('/'));
        async move {
            tokio::task::spawn_blocking(move || {
                let output = std::process::Command::new(python())
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "--no-input",
                        "--index-url",
                        &index,
                    ])
                    .arg("--cache-dir")
                    .arg(&cache)
                    .arg("--target")
                    .arg(&target)
                    .arg("alpha")
                    .env("PIP_CONFIG_FILE", "/dev/null")
                    .output()
                    .expect("pip runs");
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let import = std::process::Command::new(python())
                    .args(["-c", "import alpha, beta, gamma_lib, delta"])
                    .env("PYTHONPATH", &target)
                    .status()
                    .expect("python runs");
                assert!(import.success());
            })
            .await
            .expect("install task");
        }
    };
    install(&cluster.replicas[0], "a").await;
    upstream.stop().await;
    install(&cluster.replicas[1], "b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_badge_drawn_on_one_replica_costs_the_others_no_lookup() {
    let Some(engines) =
        Engines::from_env("a_badge_drawn_on_one_replica_costs_the_others_no_lookup")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    crate::support::run_generator(
        &python(),
        "badges/make_projects.py",
        &[dir.path().as_os_str()],
        &[],
    );
    let mut upstream = FakeUpstream::start(Some(dir.path().join("pypi"))).await;
    let cluster = cluster(&engines, 2, &upstream.url("simple/"), "").await;
    let badge = |replica: &GranaryProcess| {
        let url = replica.url("-/badge/pypi/alpha-lib/version.json");
        async move {
            let response = reqwest::get(url).await.expect("badge");
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.expect("json")["message"].clone()
        }
    };
    let lookups = |replica: &GranaryProcess| {
        let url = replica.url("-/metrics");
        async move {
            let text = reqwest::get(url)
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            text.lines()
                .find(|line| line.starts_with("granary_badge_fact_lookups_total{stage=\"index\"}"))
                .and_then(|line| line.rsplit(' ').next())
                .map_or(0, |n| n.parse::<u64>().expect("a count"))
        }
    };
    assert_eq!(badge(&cluster.replicas[0]).await, "v1.0.0");
    assert_eq!(lookups(&cluster.replicas[0]).await, 1);
    upstream.stop().await;
    assert_eq!(badge(&cluster.replicas[1]).await, "v1.0.0");
    assert_eq!(
        lookups(&cluster.replicas[1]).await,
        0,
        "the other replica's facts came through Redis"
    );
}

// Issue #13: a resolution made on one replica is answered by the others from Redis
// (checked against the index documents it read, which they find in the shared tiers):
// no upstream request, no resolving again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_made_on_one_replica_is_answered_by_another() {
    let Some(engines) =
        Engines::from_env("a_resolution_made_on_one_replica_is_answered_by_another")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let fixture = dir.path().join("upstream");
    crate::support::run_generator(
        &python(),
        "pypi/make_index.py",
        &[fixture.as_os_str(), "--resolution".as_ref()],
        &[],
    );
    let upstream = FakeUpstream::start(Some(fixture)).await;
    let cluster = cluster(&engines, 2, &upstream.url("simple/"), "").await;
    let path = "-/api/pypi/rp-top/1.0/resolve?target=3.11-linux-x86_64";
    let resolve = |replica: &GranaryProcess| {
        let url = replica.url(path);
        async move {
            let response = reqwest::get(url).await.expect("resolve");
            assert_eq!(response.status(), 200);
            let cache = response.headers()["x-cache"]
                .to_str()
                .expect("ascii")
                .to_owned();
            (
                cache,
                response.json::<serde_json::Value>().await.expect("JSON"),
            )
        }
    };
    let (cache, first) = resolve(&cluster.replicas[0]).await;
    assert_eq!(cache, "MISS");
    assert!(
        first["nodes"].as_array().expect("nodes").len() > 3,
        "a real tree: {first}"
    );
    let hits = upstream.total_hits();
    let (cache, other) = resolve(&cluster.replicas[1]).await;
    assert_eq!(
        cache, "HIT",
        "the other replica's answer, through the shared tiers"
    );
    assert_eq!(other, first);
    assert_eq!(upstream.total_hits(), hits, "nothing fetched to check it");
}
