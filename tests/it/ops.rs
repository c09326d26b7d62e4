//! granary's own endpoints.

use crate::support::{build_pypi_fixture, FakeUpstream, TestGranary};

#[tokio::test]
async fn health_ready_and_metrics_report_what_happened() {
    let dir = tempfile::tempdir().expect("dir");
    build_pypi_fixture(dir.path());
    let upstream = FakeUpstream::start(Some(dir.path().to_path_buf())).await;
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let client = TestGranary::client();

    let health = client
        .get(granary.url("-/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);

    let ready: serde_json::Value = client
        .get(granary.url("-/ready"))
        .send()
        .await
        .expect("ready")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["database"]["status"], "ok");
    assert_eq!(ready["blob_store"]["status"], "ok");
    assert_eq!(ready["cache"]["kind"], "in-process");
    assert_eq!(
        ready["upstreams"]["pypi"]["upstream"],
        upstream.url("simple/")
    );

    for _ in 0..2 {
        let page = client
            .get(granary.url("pypi/simple/alpha/"))
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), 200);
    }
    let metrics = client
        .get(granary.url("-/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for expected in [
        "granary_requests_total{repo=\"pypi\",route=\"project\",status=\"200\"} 2",
        "granary_cache_results_total{category=\"index\",format=\"pypi\",cache_status=\"miss\"} 1",
        "granary_cache_results_total{category=\"index\",format=\"pypi\",cache_status=\"hit\"} 1",
        "granary_upstream_requests_total{repo=\"pypi\"} 1",
        "granary_upstream_response_seconds_count{repo=\"pypi\"} 1",
        "granary_upstream_in_flight 0",
    ] {
        assert!(
            metrics.contains(expected),
            "missing `{expected}` in:\n{metrics}"
        );
    }
}
