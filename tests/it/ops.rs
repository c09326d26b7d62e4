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

/// A client that trickles its request head (slowloris) is disconnected after
/// `header_read_timeout`, while everyone else is served.
#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use std::io::{Read, Write};

    let scratch = tempfile::tempdir().expect("scratch");
    let config = scratch.path().join("granary.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nheader_read_timeout = \"1s\"\n\n\
             [repos.pypi]\nformat = \"pypi\"\nupstream = \"http://127.0.0.1:9/simple/\"\n",
            scratch.path().join("data").display()
        ),
    )
    .expect("config");
    let granary = crate::support::GranaryProcess::spawn(&config);

    let mut slow = std::net::TcpStream::connect(granary.addr).expect("connect");
    slow.write_all(b"GET /-/health HTTP/1.1\r\nHost: granary\r\n")
        .expect("partial head");
    // A bound on the test, not a measurement: the server must act well before it.
    slow.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("read timeout");

    let mut healthy = std::net::TcpStream::connect(granary.addr).expect("connect");
    healthy
        .write_all(b"GET /-/health HTTP/1.1\r\nHost: granary\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    healthy.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut rest = Vec::new();
    let ended = slow.read_to_end(&mut rest);
    assert!(
        ended.is_ok(),
        "the server closes the connection (a read timeout here means it never did)"
    );
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "closed without serving the incomplete request: {text}"
    );
}
