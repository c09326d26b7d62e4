//! Several replicas behind one address, sharing PostgreSQL, Redis and S3 (Garage): the
//! five cross-replica promises, each against the real binary and real engines.

use std::path::Path;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStore;

use crate::support::engines::{Garage, RedisServer};
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
    let dir = tempfile::tempdir().expect("dir");
    let database = engines.database().await;
    let redis = engines.redis();
    let garage = engines.garage();
    let prefix = format!("t{:08x}", rand::random::<u32>());
    let shared = format!(
        "[metadata]\ndatabase_url = \"{database}\"\n\n[redis]\nurl = \"{}\"\nartifact_lock_ttl = \"2s\"\nartifact_wait = \"60s\"\n\n{}\n\
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
    upstream.script(
        "simple/shared/",
        one_file_page("shared", "shared-1.0.tar.gz", &body),
    );
    upstream.script(
        "dl/shared-1.0.tar.gz",
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
    tokio::time::sleep(Duration::from_millis(200)).await; // let the refresh reach Redis
    assert_eq!(get(1).await, "HIT", "replica 1 sees replica 0's refresh");
    assert_eq!(get(2).await, "HIT");
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
    upstream.script(
        "simple/crash/",
        one_file_page("crash", "crash-1.0.tar.gz", &body),
    );
    upstream.script(
        "dl/crash-1.0.tar.gz",
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
