//! The status page: exact numbers after real traffic, what callers without the admin
//! role see, and the page rendered in a real browser (headless Chromium).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use http::StatusCode;

use crate::support::{one_file_page, FakeUpstream, Scripted, TestGranary};

const ADMIN: &str = "Bearer status-admin-token";
/// The stampede file's size.
const STAMPEDE_BYTES: u64 = 8 * 64 * 1024;

async fn status(granary: &TestGranary, authorization: Option<&str>) -> reqwest::Response {
    let mut request = TestGranary::client().get(granary.url("-/status.json"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.expect("status")
}

/// Traffic with known numbers: 1 page miss + 3 page hits, 1 file miss + 1 file hit,
/// a 20-client stampede on a cold file, and one upstream failure.
async fn traffic(upstream: &FakeUpstream, granary: &TestGranary) -> (u64, u64) {
    let body = b"status fixture bytes".repeat(500);
    let big = b"stampede".repeat(64 * 1024);
    assert_eq!(big.len() as u64, STAMPEDE_BYTES);
    upstream.script(
        "simple/gauge/",
        one_file_page("gauge", "gauge-1.0.tar.gz", &body),
    );
    upstream.script("dl/gauge-1.0.tar.gz", Scripted::ok(body.clone()));
    upstream.script(
        "simple/herd/",
        one_file_page("herd", "herd-1.0.tar.gz", &big),
    );
    upstream.script(
        "dl/herd-1.0.tar.gz",
        Scripted {
            pace: Some((64 * 1024, Duration::from_millis(10))),
            ..Scripted::ok(big.clone())
        },
    );
    upstream.queue_statuses("simple/broken/", &[StatusCode::INTERNAL_SERVER_ERROR; 3]);
    let mut page_bytes = 0;
    for _ in 0..4 {
        let response = granary.get("pypi/simple/gauge/").await;
        assert_eq!(response.status(), 200);
        page_bytes = response.bytes().await.expect("page").len() as u64;
    }
    for _ in 0..2 {
        let response = granary.get("pypi/files/gauge/gauge-1.0.tar.gz").await;
        assert_eq!(
            response.bytes().await.expect("file").as_ref(),
            body.as_slice()
        );
        granary.settle().await;
    }
    let stampede = (0..20).map(|_| async {
        let response = granary.get("pypi/files/herd/herd-1.0.tar.gz").await;
        let mut stream = response.bytes_stream();
        let mut total = 0;
        while let Some(chunk) = stream.next().await {
            total += chunk.expect("chunk").len();
        }
        total
    });
    for received in futures::future::join_all(stampede).await {
        assert_eq!(received, big.len());
    }
    granary.settle().await;
    let broken = granary.get("pypi/simple/broken/").await;
    assert_eq!(broken.status(), 502);
    (page_bytes, body.len() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_has_the_exact_numbers_of_the_traffic() {
    let upstream = FakeUpstream::start(None).await;
    let granary = TestGranary::start_with_top_level(
        &upstream.url("simple/"),
        "admin_token = \"status-admin-token\"",
        "retries = 0",
    )
    .await;
    let (page_bytes, file_bytes) = traffic(&upstream, &granary).await;
    let report: serde_json::Value = status(&granary, Some(ADMIN))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(report["view"], "full");
    let repo = &report["repos"][0];
    assert_eq!(repo["name"], "pypi");
    let hour = &repo["last_hour"];
    // 4 pages + 2 files + 20 stampede + 1 broken page (the index lookups behind the
    // files are the engine's, not requests).
    assert_eq!(hour["requests"], 4 + 2 + 20 + 1, "{hour}");
    // 3 page hits and 1 file hit; stampede clients that arrive once the file is
    // verified are served the stored blob (hits), the others stream the fill (misses).
    let hits = hour["hits"].as_u64().expect("hits");
    assert!(hits >= 4, "{hour}");
    assert_eq!(hour["errors"], 1, "{hour}");
    assert_eq!(
        hour["bytes_from_cache"],
        3 * page_bytes + file_bytes + (hits - 4) * STAMPEDE_BYTES,
        "{hour}"
    );
    assert_eq!(
        hour["misses"].as_u64().expect("misses") + hour["hits"].as_u64().expect("hits"),
        4 + 2 + 20,
        "every cacheable request was a hit or a miss: {hour}"
    );
    #[allow(clippy::cast_precision_loss)]
    let expected_ratio = hits as f64 / 26.0;
    assert!((repo["hit_ratio_hour"].as_f64().expect("ratio") - expected_ratio).abs() < 1e-9);
    let health = &repo["upstream_health"];
    let last_error = health["last_error"][1].as_str().expect("last error");
    assert!(last_error.contains("500"), "{last_error}");
    assert!(health["errors_5m"].as_u64().expect("errors") >= 1);
    assert!(health["bytes_fetched"].as_u64().expect("bytes") >= file_bytes + 8 * 64 * 1024);
    let top = repo["top_projects"]
        .as_array()
        .expect("full view lists projects");
    assert_eq!(top[0], serde_json::json!(["herd", 20]));
    assert!(top.contains(&serde_json::json!(["gauge", 6])), "{top:?}");
    assert_eq!(report["storage"]["stored_blobs"], 2);
    assert_eq!(
        upstream.hits("dl/herd-1.0.tar.gz"),
        1,
        "the stampede cost one fetch"
    );
    let engines = report["engines"].as_array().expect("engines");
    assert_eq!(engines[0]["name"], "database");
    assert_eq!(engines[0]["state"], "up");
}

#[tokio::test]
async fn without_the_admin_role_no_project_name_is_shown_or_nothing_at_all() {
    let upstream = FakeUpstream::start(None).await;
    upstream.script(
        "simple/secret-project-name/",
        one_file_page(
            "secret-project-name",
            "secret_project_name-1.0.tar.gz",
            b"s",
        ),
    );
    let granary = TestGranary::start_with_top_level(
        &upstream.url("simple/"),
        "admin_token = \"status-admin-token\"",
        "",
    )
    .await;
    assert_eq!(
        granary
            .get("pypi/simple/secret-project-name/")
            .await
            .status(),
        200
    );
    for path in ["-/status.json", "-/status"] {
        let response = TestGranary::client()
            .get(granary.url(path))
            .send()
            .await
            .expect("status");
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.expect("body");
        assert!(
            !text.contains("secret-project-name"),
            "{path} leaks a project name"
        );
        assert!(
            !text.contains("status-admin-token"),
            "{path} shows a credential"
        );
    }
    let full = status(&granary, Some(ADMIN))
        .await
        .text()
        .await
        .expect("json");
    assert!(
        full.contains("secret-project-name"),
        "the admin view lists it"
    );

    let closed = TestGranary::start_with_top_level(
        &upstream.url("simple/"),
        "admin_token = \"status-admin-token\"\n[status]\nanonymous = \"off\"",
        "",
    )
    .await;
    assert_eq!(status(&closed, None).await.status(), 401);
    assert_eq!(status(&closed, Some(ADMIN)).await.status(), 200);
}

/// Runs the real `granary` with `args` (off the async workers) and returns its
/// standard output; fails the test with its standard error if it fails.
async fn run_granary(args: Vec<String>, envs: &[(&'static str, &'static str)]) -> String {
    let envs = envs.to_vec();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_granary"))
            .args(&args)
            .envs(envs)
            .output()
            .expect("granary runs")
    })
    .await
    .expect("granary task");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn chromium() -> PathBuf {
    for candidate in ["chromium", "chromium-browser"] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return PathBuf::from(candidate);
        }
    }
    panic!("chromium not found: scripts/test installs Debian's chromium");
}

pub fn headless(args: &[&str]) -> std::process::Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .args(args)
        .output()
        .expect("chromium runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_renders_the_numbers_in_a_real_browser_on_a_laptop_and_a_phone() {
    let upstream = FakeUpstream::start(None).await;
    let granary =
        TestGranary::start_with_top_level(&upstream.url("simple/"), "", "retries = 0").await;
    traffic(&upstream, &granary).await;
    // What the page must show: the numbers of the same (summary) report.
    let report: serde_json::Value = status(&granary, None).await.json().await.expect("json");
    let hour = &report["repos"][0]["last_hour"];
    let ratio = report["repos"][0]["hit_ratio_hour"]
        .as_f64()
        .expect("ratio");
    let url = granary.url("-/status");
    let dom = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || headless(&["--dump-dom", &url]))
            .await
            .expect("chromium")
    };
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    for (key, value) in [
        ("requests-hour", "27".to_owned()),
        ("hits-hour", hour["hits"].to_string()),
        ("misses-hour", hour["misses"].to_string()),
        ("errors-hour", "1".to_owned()),
        ("hit-ratio-hour", format!("{:.1}%", ratio * 100.0)),
        ("stored-blobs", "2".to_owned()),
    ] {
        let cell = format!("data-k=\"{key}\">{value}<");
        assert!(dom.contains(&cell), "`{cell}` is not in the rendered page");
    }
    assert!(
        dom.contains("answered 500"),
        "the last upstream error is shown"
    );
    assert!(
        !dom.contains("gauge"),
        "the anonymous view names no project"
    );

    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&out).expect("screenshot dir");
    for (name, size) in [("laptop", "1280,1000"), ("phone", "390,1600")] {
        let file = out.join(format!("status-{name}.png"));
        let _ = std::fs::remove_file(&file);
        let (url, shot) = (url.clone(), file.clone());
        let output = tokio::task::spawn_blocking(move || {
            headless(&[
                &format!("--screenshot={}", shot.display()),
                &format!("--window-size={size}"),
                &url,
            ])
        })
        .await
        .expect("chromium");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let png = std::fs::read(&file).expect("screenshot written");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}: a PNG");
        assert!(
            png.len() > 10_000,
            "{name}: a page, not a blank image ({} bytes)",
            png.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granary_status_prints_the_same_numbers_in_a_terminal() {
    let upstream = FakeUpstream::start(None).await;
    let granary = TestGranary::start_with_top_level(
        &upstream.url("simple/"),
        "admin_token = \"status-admin-token\"",
        "retries = 0",
    )
    .await;
    traffic(&upstream, &granary).await;
    let url = granary.url("").trim_end_matches('/').to_owned();
    let text = run_granary(
        vec!["status".into(), "--url".into(), url],
        &[("GRANARY_ADMIN_TOKEN", "status-admin-token")],
    )
    .await;
    let line = text
        .lines()
        .find(|l| l.starts_with("pypi "))
        .unwrap_or_else(|| panic!("no pypi line:\n{text}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1], "27", "{line}");
    assert!(
        line.contains("answered 500"),
        "the last upstream error: {line}"
    );
    assert!(text.contains("2 blobs"), "{text}");
    assert!(text.contains("database up (sqlite)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_its_progress_in_plain_lines_when_not_on_a_terminal() {
    let upstream = FakeUpstream::start(None).await;
    let granary = TestGranary::pypi(&upstream.url("simple/"), "retries = 0").await;
    traffic(&upstream, &granary).await;
    let config = granary
        .data()
        .parent()
        .expect("scratch")
        .join("granary.toml");
    let text = run_granary(
        vec![
            "verify".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &[],
    )
    .await;
    assert!(
        text.contains("verify: 2/2 blobs, 534.3 KB of 534.3 KB"),
        "{text}"
    );
    assert!(text.contains("checked 2 blobs, 0 corrupt"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_every_replica_shows_the_traffic_of_all() {
    let Some(engines) =
        crate::support::Engines::from_env("with_redis_every_replica_shows_the_traffic_of_all")
    else {
        return;
    };
    let redis = engines.redis();
    let upstream = FakeUpstream::start(None).await;
    upstream.script(
        "simple/shared/",
        one_file_page("shared", "shared-1.0.tar.gz", b"x"),
    );
    let top_level = format!("[redis]\nurl = \"{}\"\n", redis.url());
    let a = TestGranary::start_with_top_level(&upstream.url("simple/"), &top_level, "").await;
    let b = TestGranary::start_with_top_level(&upstream.url("simple/"), &top_level, "").await;
    for _ in 0..3 {
        assert_eq!(a.get("pypi/simple/shared/").await.status(), 200);
    }
    for _ in 0..5 {
        assert_eq!(b.get("pypi/simple/shared/").await.status(), 200);
    }
    // B writes its counts to Redis (every 5 s on its own; now, for the test).
    granary::status::traffic::share_now(
        &b.state.traffic,
        b.state.redis.as_ref().expect("redis configured"),
    )
    .await;
    let report: serde_json::Value = status(&a, None).await.json().await.expect("json");
    let repo = &report["repos"][0];
    assert_eq!(repo["scope"], "cluster");
    assert_eq!(repo["last_hour"]["requests"], 8, "3 on A and 5 on B");
    assert_eq!(repo["last_day"]["requests"], 8);
    assert_eq!(repo["last_minute"]["requests"], 8);
}
