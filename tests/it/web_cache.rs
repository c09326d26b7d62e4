//! The `http` format's whole-response cache: hot pages cached whole for anonymous
//! visitors, everything personal passed through and never stored.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use granary::clock::ManualClock;

use crate::support::{FakeUpstream, Scripted, TestGranary};

const SITE: &str = "\
[repos.site]
format = \"http\"
upstream = \"{upstream}\"
bypass_cookies = [\"remember_token\", \"session\"]

[[repos.site.rules]]
path = \"^/(about|projects|login-page|negotiated)$\"
ttl = \"60s\"
stale_while_revalidate = \"5m\"
vary = [\"Accept\"]
max_body = \"1MiB\"
";

async fn site(upstream: &FakeUpstream) -> (TestGranary, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let granary = TestGranary::with_repos_and_clock(
        &SITE.replace("{upstream}", &upstream.url("")),
        Arc::clone(&clock) as Arc<dyn granary::clock::Clock>,
    )
    .await;
    (granary, clock)
}

fn page(body: &'static str) -> Scripted {
    Scripted::ok(body).header("content-type", "text/html; charset=utf-8")
}

async fn fetch(
    granary: &TestGranary,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String, Option<String>) {
    let mut request = TestGranary::client().request(method, granary.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("response");
    let status = response.status().as_u16();
    let cache = response.headers()["x-cache"]
        .to_str()
        .expect("x-cache")
        .to_owned();
    let age = response
        .headers()
        .get("age")
        .map(|v| v.to_str().expect("age").to_owned());
    (status, cache, response.text().await.expect("body"), age)
}

#[tokio::test]
async fn anonymous_hits_are_cached_whole_and_personal_requests_never_see_or_make_them() {
    let upstream = FakeUpstream::start(None).await;
    upstream.script(
        "about",
        page("<h1>About (anonymous)</h1>").header("x-app", "1"),
    );
    let (granary, clock) = site(&upstream).await;
    let get = reqwest::Method::GET;

    let (status, cache, body, age) = fetch(&granary, get.clone(), "site/about", &[]).await;
    assert_eq!((status, cache.as_str()), (200, "MISS"));
    assert_eq!(body, "<h1>About (anonymous)</h1>");
    assert_eq!(age.as_deref(), Some("0"));
    clock.advance(Duration::from_secs(7));
    let hit = TestGranary::client()
        .get(granary.url("site/about"))
        .send()
        .await
        .expect("hit");
    assert_eq!(hit.headers()["x-cache"], "HIT");
    assert_eq!(hit.headers()["age"], "7");
    assert_eq!(
        hit.headers()["x-app"],
        "1",
        "the stored headers come with it"
    );
    assert_eq!(hit.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        hit.text().await.expect("body"),
        "<h1>About (anonymous)</h1>"
    );
    // HEAD is answered from the GET entry.
    let head = TestGranary::client()
        .head(granary.url("site/about"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.headers()["x-cache"], "HIT");
    assert_eq!(head.headers()["content-length"], "26");
    assert_eq!(upstream.hits("about"), 1);

    // The application now answers logged-in callers personally.
    upstream.script("about", page("<h1>About (for you)</h1>"));
    for personal in [
        ("authorization", "Bearer app-token"),
        ("cookie", "theme=dark; session=abc123"),
        ("cookie", "remember_token=xyz"),
    ] {
        let (status, cache, body, age) =
            fetch(&granary, get.clone(), "site/about", &[personal]).await;
        assert_eq!((status, cache.as_str()), (200, "BYPASS"), "{personal:?}");
        assert_eq!(
            body, "<h1>About (for you)</h1>",
            "{personal:?}: never the shared copy"
        );
        assert_eq!(age, None);
    }
    assert_eq!(
        upstream.hits("about"),
        4,
        "each personal request went upstream"
    );
    assert!(
        upstream
            .authorization("about")
            .iter()
            .any(|a| a.as_deref() == Some("Bearer app-token")),
        "the application's own credentials are passed through to it"
    );
    // ... and none of them was stored: anonymous visitors still get the shared copy.
    let (_, cache, body, _) = fetch(&granary, get.clone(), "site/about", &[]).await;
    assert_eq!(
        (cache.as_str(), body.as_str()),
        ("HIT", "<h1>About (anonymous)</h1>")
    );
    // A cookie that is not personal does not bypass.
    let (_, cache, _, _) = fetch(&granary, get, "site/about", &[("cookie", "theme=dark")]).await;
    assert_eq!(cache, "HIT");
}

#[tokio::test]
async fn set_cookie_and_private_responses_are_never_stored_and_paths_without_a_rule_pass_through() {
    let upstream = FakeUpstream::start(None).await;
    upstream.script(
        "login-page",
        page("<form>").header("set-cookie", "csrf=1; HttpOnly"),
    );
    upstream.script(
        "projects",
        page("<ul>").header("cache-control", "private, max-age=60"),
    );
    upstream.script("dashboard", page("<p>no rule</p>"));
    let (granary, _) = site(&upstream).await;
    for (path, upstream_path) in [
        ("site/login-page", "login-page"),
        ("site/projects", "projects"),
        ("site/dashboard", "dashboard"),
    ] {
        for round in 1..=2 {
            let response = TestGranary::client()
                .get(granary.url(path))
                .send()
                .await
                .expect("response");
            assert_eq!(response.status(), 200);
            assert_ne!(response.headers()["x-cache"], "HIT", "{path} round {round}");
        }
        assert_eq!(upstream.hits(upstream_path), 2, "{path}: never stored");
    }
    let cookie = TestGranary::client()
        .get(granary.url("site/login-page"))
        .send()
        .await
        .expect("response");
    assert_eq!(cookie.headers()["set-cookie"], "csrf=1; HttpOnly");
}

#[tokio::test]
async fn each_vary_value_is_its_own_entry() {
    let upstream = FakeUpstream::start(None).await;
    upstream.script("negotiated", page("<p>html or json</p>"));
    let (granary, _) = site(&upstream).await;
    let get = reqwest::Method::GET;
    for (accept, expected) in [
        ("text/html", "MISS"),
        ("application/json", "MISS"),
        ("text/html", "HIT"),
        ("application/json", "HIT"),
    ] {
        let (_, cache, _, _) = fetch(
            &granary,
            get.clone(),
            "site/negotiated",
            &[("accept", accept)],
        )
        .await;
        assert_eq!(cache, expected, "{accept}");
    }
    assert_eq!(upstream.hits("negotiated"), 2, "HTML and JSON: two entries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_stale_requests_are_served_at_once_while_one_refresh_runs() {
    let upstream = FakeUpstream::start(None).await;
    upstream.script("projects", page("<ul>v1</ul>"));
    let (granary, clock) = site(&upstream).await;
    let (_, cache, _, _) = fetch(&granary, reqwest::Method::GET, "site/projects", &[]).await;
    assert_eq!(cache, "MISS");
    // The refresh's body is held until every stale request is answered (a paced
    // body of about 3 s was not enough on a loaded machine: CI saw the refresh land
    // first).
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    upstream.script(
        "projects",
        Scripted {
            hold_after: Some((0, std::sync::Arc::clone(&gate))),
            ..page("<ul>v2</ul>")
        },
    );
    clock.advance(Duration::from_secs(90));
    let requests = (0..50).map(|_| fetch(&granary, reqwest::Method::GET, "site/projects", &[]));
    for (status, cache, body, _) in futures::future::join_all(requests).await {
        assert_eq!(
            (status, cache.as_str(), body.as_str()),
            (200, "STALE", "<ul>v1</ul>")
        );
    }
    gate.add_permits(1);
    // Once the refresh has landed, the new copy is a hit.
    let mut refreshed = false;
    for _ in 0..500 {
        let (_, cache, body, _) = fetch(&granary, reqwest::Method::GET, "site/projects", &[]).await;
        if (cache.as_str(), body.as_str()) == ("HIT", "<ul>v2</ul>") {
            refreshed = true;
            break;
        }
        assert_eq!(body, "<ul>v1</ul>", "stale until the refresh lands");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refreshed, "the refresh landed within 10 s");
    assert_eq!(
        upstream.hits("projects"),
        2,
        "one refresh for 50 stale requests"
    );
}

#[tokio::test]
async fn forms_pass_through_with_their_bodies() {
    let upstream = FakeUpstream::start(None).await;
    upstream.script("about", page("<h1>About</h1>"));
    let (granary, _) = site(&upstream).await;
    let response = TestGranary::client()
        .post(granary.url("site/about"))
        .body("name=value")
        .send()
        .await
        .expect("post");
    assert_eq!(response.headers()["x-cache"], "BYPASS");
    assert_eq!(upstream.hits("about"), 1);
    let (_, cache, _, _) = fetch(&granary, reqwest::Method::GET, "site/about", &[]).await;
    assert_eq!(cache, "MISS", "a POST stores nothing");
}
