//! The Simple API through granary: both forms, negotiation, normalization, 404s.

use crate::support::{build_pypi_fixture, FakeUpstream, TestGranary};

const PIP_ACCEPT: &str =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";

async fn fixture() -> (tempfile::TempDir, FakeUpstream, TestGranary) {
    let dir = tempfile::tempdir().expect("fixture dir");
    build_pypi_fixture(dir.path());
    let upstream = FakeUpstream::start(Some(dir.path().to_path_buf())).await;
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    (dir, upstream, granary)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn project_page_is_negotiated_rewritten_and_cached() {
    let (_dir, upstream, granary) = fixture().await;
    let client = TestGranary::client();
    let url = granary.url("pypi/simple/alpha/");

    let json = client
        .get(&url)
        .header("accept", PIP_ACCEPT)
        .send()
        .await
        .expect("json request");
    assert_eq!(json.status(), 200);
    assert_eq!(
        header(&json, "content-type"),
        "application/vnd.pypi.simple.v1+json"
    );
    assert_eq!(header(&json, "x-cache"), "MISS");
    assert!(header(&json, "vary").contains("Accept"));
    let json_etag = header(&json, "etag").to_owned();
    let page: serde_json::Value = json.json().await.expect("json body");
    let file = &page["files"][0];
    assert_eq!(file["filename"], "alpha-1.0-py3-none-any.whl");
    assert_eq!(file["url"], "../../files/alpha/alpha-1.0-py3-none-any.whl");
    assert_eq!(file["requires-python"], ">=3.8");
    assert_eq!(file["hashes"]["sha256"].as_str().map(str::len), Some(64));
    assert!(file["core-metadata"]["sha256"].is_string(), "{file}");
    assert_eq!(file["core-metadata"], file["dist-info-metadata"]);

    let html = client
        .get(&url)
        .header("accept", "text/html")
        .send()
        .await
        .expect("html request");
    assert_eq!(header(&html, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&html, "x-cache"), "HIT");
    assert_ne!(
        header(&html, "etag"),
        json_etag,
        "each form has its own validator"
    );
    let body = html.text().await.expect("html body");
    assert!(
        body.contains("href=\"../../files/alpha/alpha-1.0-py3-none-any.whl#sha256="),
        "{body}"
    );
    assert!(body.contains("data-requires-python=\"&gt;=3.8\""), "{body}");
    assert!(body.contains("data-core-metadata=\"sha256="), "{body}");
    assert!(
        !body.contains(&upstream.addr.to_string()),
        "no upstream URL leaks to clients"
    );

    let revalidated = client
        .get(&url)
        .header("accept", PIP_ACCEPT)
        .header("if-none-match", &json_etag)
        .send()
        .await
        .expect("conditional request");
    assert_eq!(revalidated.status(), 304);
    assert_eq!(
        upstream.hits("simple/alpha/"),
        1,
        "one upstream fetch for all of the above"
    );
}

#[tokio::test]
async fn html_only_upstream_is_served_as_json_with_yanked_and_requires_python() {
    let (_dir, _upstream, granary) = fixture().await;
    let page: serde_json::Value = TestGranary::client()
        .get(granary.url("pypi/simple/beta/"))
        .header("accept", PIP_ACCEPT)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let files = page["files"].as_array().expect("files");
    assert_eq!(files.len(), 3);
    assert_eq!(files[0]["yanked"], "superseded by 1.1");
    assert_eq!(files[1]["yanked"], false);
    assert_eq!(files[2]["requires-python"], ">=4.0");
}

#[tokio::test]
async fn names_are_normalized_by_redirect() {
    let (_dir, _upstream, granary) = fixture().await;
    let client = TestGranary::client();
    for (path, location) in [
        ("pypi/simple/Gamma_Lib/", "/pypi/simple/gamma-lib/"),
        ("pypi/simple/gamma.lib/", "/pypi/simple/gamma-lib/"),
        ("pypi/simple/alpha", "/pypi/simple/alpha/"),
        ("pypi/simple", "/pypi/simple/"),
        ("pypi", "/pypi/"),
    ] {
        let response = client.get(granary.url(path)).send().await.expect("request");
        assert_eq!(response.status(), 308, "{path}");
        assert_eq!(header(&response, "location"), location, "{path}");
    }
}

#[tokio::test]
async fn project_list_in_both_forms() {
    let (_dir, _upstream, granary) = fixture().await;
    let client = TestGranary::client();
    let json: serde_json::Value = client
        .get(granary.url("pypi/simple/"))
        .header("accept", PIP_ACCEPT)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = json["projects"]
        .as_array()
        .expect("projects")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["alpha", "beta", "gamma-lib", "delta"]);
    let html = client
        .get(granary.url("pypi/simple/"))
        .send()
        .await
        .expect("request");
    assert_eq!(header(&html, "x-cache"), "HIT");
    assert!(html
        .text()
        .await
        .expect("body")
        .contains("<a href=\"gamma-lib/\">gamma-lib</a>"));
}

#[tokio::test]
async fn upstream_404_passes_through_and_is_remembered() {
    let (_dir, upstream, granary) = fixture().await;
    let client = TestGranary::client();
    for _ in 0..3 {
        let response = client
            .get(granary.url("pypi/simple/no-such-project/"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 404);
        assert!(response
            .text()
            .await
            .expect("body")
            .contains("no-such-project"));
    }
    assert_eq!(
        upstream.hits("simple/no-such-project/"),
        1,
        "negative result cached"
    );
}

#[tokio::test]
async fn unacceptable_media_type_is_406() {
    let (_dir, _upstream, granary) = fixture().await;
    let response = TestGranary::client()
        .get(granary.url("pypi/simple/alpha/"))
        .header("accept", "image/png")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 406);
    assert!(response
        .text()
        .await
        .expect("body")
        .contains("application/vnd.pypi.simple.v1+json"));
}
