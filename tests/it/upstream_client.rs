//! The upstream client: retries, and credentials that stay with their origin.

use http::StatusCode;

use crate::support::{sha256_hex, FakeUpstream, Scripted, TestGranary};

#[tokio::test]
async fn credentials_go_to_the_upstream_origin_only_and_never_back_to_clients() {
    let index = FakeUpstream::start(None).await;
    let files = FakeUpstream::start(None).await;
    let body = b"artifact on another host".to_vec();
    index.script(
        "simple/auth/",
        Scripted::ok(
            serde_json::json!({
                "meta": {"api-version": "1.0"}, "name": "auth",
                "files": [{"filename": "auth-1.0.tar.gz", "url": files.url("dl/auth-1.0.tar.gz"), "hashes": {"sha256": sha256_hex(&body)}}]
            })
            .to_string(),
        )
        .header("content-type", "application/vnd.pypi.simple.v1+json"),
    );
    files.script("dl/auth-1.0.tar.gz", Scripted::ok(body.clone()));
    let granary = TestGranary::pypi(
        &index.url("simple/"),
        // Explicitly public: a repository whose upstream needs credentials is
        // private by default (tests/it/access.rs).
        "auth = { username = \"reader\", password = \"hunter2\" }\naccess = \"anonymous\"",
    )
    .await;
    let client = TestGranary::client();
    let page = client
        .get(granary.url("pypi/simple/auth/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    let file = client
        .get(granary.url("pypi/files/auth/auth-1.0.tar.gz"))
        .send()
        .await
        .expect("file");
    assert_eq!(file.bytes().await.expect("body"), body);

    let sent = index.authorization("simple/auth/");
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].as_deref().is_some_and(|v| v.starts_with("Basic ")),
        "{sent:?}"
    );
    assert_eq!(
        files.authorization("dl/auth-1.0.tar.gz"),
        vec![None],
        "no credentials to another origin"
    );
    let ready = client
        .get(granary.url("-/ready"))
        .send()
        .await
        .expect("ready")
        .text()
        .await
        .expect("body");
    let metrics = client
        .get(granary.url("-/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    for text in [&page, &ready, &metrics] {
        assert!(
            !text.contains("hunter2") && !text.contains("cmVhZGVy"),
            "credentials leaked: {text}"
        );
    }
}

#[tokio::test]
async fn transient_upstream_errors_are_retried_with_backoff() {
    let upstream = FakeUpstream::start(None).await;
    upstream.script(
        "simple/flaky/",
        Scripted::ok(
            serde_json::json!({"meta": {"api-version": "1.0"}, "name": "flaky", "files": []})
                .to_string(),
        )
        .header("content-type", "application/vnd.pypi.simple.v1+json"),
    );
    upstream.queue_statuses(
        "simple/flaky/",
        &[StatusCode::SERVICE_UNAVAILABLE, StatusCode::BAD_GATEWAY],
    );
    let granary = TestGranary::pypi(&upstream.url("simple/"), "retries = 2").await;
    let response = TestGranary::client()
        .get(granary.url("pypi/simple/flaky/"))
        .send()
        .await
        .expect("page");
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.hits("simple/flaky/"),
        3,
        "two retries, then success"
    );

    upstream.script(
        "simple/broken/",
        Scripted {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            ..Scripted::ok("boom")
        },
    );
    let response = TestGranary::client()
        .get(granary.url("pypi/simple/broken/"))
        .send()
        .await
        .expect("page");
    assert_eq!(response.status(), 502);
    assert_eq!(upstream.hits("simple/broken/"), 1, "500 is not retried");
}

fn page_linking(project: &str, url: &str, body: &[u8]) -> Scripted {
    Scripted::ok(
        serde_json::json!({
            "meta": {"api-version": "1.0"}, "name": project,
            "files": [{"filename": format!("{project}-1.0.tar.gz"), "url": url, "hashes": {"sha256": sha256_hex(body)}}]
        })
        .to_string(),
    )
    .header("content-type", "application/vnd.pypi.simple.v1+json")
}

/// A fake upstream on 127.0.0.2, standing for another (internal) host.
async fn internal_host() -> FakeUpstream {
    FakeUpstream::start_at(
        None,
        "127.0.0.2:0".parse().expect("addr"),
        crate::support::Behaviour::Normal,
    )
    .await
}

// Issue #17, part 4: a compromised upstream must not make granary fetch internal
// addresses: file links, names resolving to them, and redirects to them are refused
// unless the host is the upstream's own or in `allowed_hosts`.
#[tokio::test]
async fn links_and_redirects_to_internal_addresses_are_refused_unless_allowed() {
    let index = FakeUpstream::start(None).await;
    let internal = internal_host().await;
    let body = b"internal bytes".to_vec();
    internal.script("secret.tar.gz", Scripted::ok(body.clone()));
    let internal_url = internal.url("secret.tar.gz");
    // A link straight to the internal host.
    index.script(
        "simple/direct/",
        page_linking("direct", &internal_url, &body),
    );
    // A name that resolves to a loopback address.
    let by_name = internal_url.replace("127.0.0.2", "localhost");
    index.script("simple/named/", page_linking("named", &by_name, &body));
    // A link on the upstream's own host that redirects to the internal one.
    index.script(
        "simple/bounce/",
        page_linking("bounce", &index.url("bounce.tar.gz"), &body),
    );
    index.script(
        "bounce.tar.gz",
        Scripted {
            status: StatusCode::FOUND,
            ..Scripted::ok("")
        }
        .header("location", internal_url.clone()),
    );
    let granary = TestGranary::pypi(&index.url("simple/"), "retries = 0").await;
    for (project, host) in [
        ("direct", "127.0.0.2"),
        ("named", "localhost"),
        ("bounce", "127.0.0.2"),
    ] {
        let response = granary
            .get(&format!("pypi/files/{project}/{project}-1.0.tar.gz"))
            .await;
        assert_eq!(response.status(), 502, "{project}");
        let text = response.text().await.expect("body");
        assert!(text.contains(host), "{project}: {text}");
        assert!(text.contains("allowed_hosts"), "{project}: {text}");
    }
    assert_eq!(
        internal.total_hits(),
        0,
        "the internal host was never contacted"
    );
    assert_eq!(
        index.hits("bounce.tar.gz"),
        1,
        "the redirect was seen, not followed"
    );

    let allowed = TestGranary::pypi(
        &index.url("simple/"),
        "retries = 0\nallowed_hosts = [\"127.0.0.2\"]",
    )
    .await;
    let response = allowed.get("pypi/files/direct/direct-1.0.tar.gz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        body.as_slice()
    );

    let only = TestGranary::pypi(
        &index.url("simple/"),
        "retries = 0\nallowed_hosts = [\"127.0.0.9\"]\nonly_allowed_hosts = true",
    )
    .await;
    let response = only.get("pypi/files/direct/direct-1.0.tar.gz").await;
    assert_eq!(response.status(), 502);
    assert!(response
        .text()
        .await
        .expect("body")
        .contains("only_allowed_hosts"));
}
