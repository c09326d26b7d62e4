//! Access control: who may read a private repository, each client's own way of
//! sending credentials, and no private byte ever reaching a caller without access.

use std::time::Duration;

use base64::Engine as _;
use granary::access::{hash_password, new_token, token_hash};
use granary::metadata::ApiTokenRecord;

use crate::support::{one_file_page, FakeUpstream, Scripted, TestGranary};

/// Users alice (group team), carol (no group) and root (admin); the repository
/// `pypi` readable by `group:team` only.
async fn private_granary(upstream: &FakeUpstream) -> TestGranary {
    let top_level = format!(
        "[auth]\nadmins = [\"root\"]\n[auth.groups]\nteam = [\"alice\"]\n\
         [auth.users.alice]\npassword_hash = \"{}\"\n\
         [auth.users.carol]\npassword_hash = \"{}\"\n\
         [auth.users.root]\npassword_hash = \"{}\"\n",
        hash_password("alice-secret").expect("hash"),
        hash_password("carol-secret").expect("hash"),
        hash_password("root-secret").expect("hash"),
    );
    TestGranary::start_with_top_level(
        &upstream.url("simple/"),
        &top_level,
        "access = [\"group:team\"]",
    )
    .await
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn get(granary: &TestGranary, path: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = TestGranary::client().get(granary.url(path));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.expect("response")
}

#[tokio::test]
async fn a_private_repository_answers_only_callers_with_access_and_leaks_nothing() {
    let upstream = FakeUpstream::start(None).await;
    let body = b"private wheel bytes".repeat(1000);
    upstream.script(
        "simple/secret/",
        one_file_page("secret", "secret-1.0.tar.gz", &body),
    );
    upstream.script("dl/secret-1.0.tar.gz", Scripted::ok(body.clone()));
    let granary = private_granary(&upstream).await;
    let page = "pypi/simple/secret/";
    let file = "pypi/files/secret/secret-1.0.tar.gz";
    let alice = basic("alice", "alice-secret");

    // A fetches the document and the artifact: they are cached.
    let response = get(&granary, page, Some(&alice)).await;
    assert_eq!(response.status(), 200);
    let response = get(&granary, file, Some(&alice)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        body.as_slice()
    );
    granary.settle().await;

    for path in [page, file] {
        // Anonymous B: 401 with a challenge, never the bytes.
        let response = get(&granary, path, None).await;
        assert_eq!(response.status(), 401, "{path}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
        let text = response.text().await.expect("body");
        assert!(
            text.contains("repository `pypi` needs credentials"),
            "{text}"
        );
        assert!(!text.contains("private wheel"), "{text}");
        // Wrong password: 401.
        let response = get(&granary, path, Some(&basic("alice", "wrong"))).await;
        assert_eq!(response.status(), 401, "{path}");
        // Unknown user: 401.
        let response = get(&granary, path, Some(&basic("mallory", "x"))).await;
        assert_eq!(response.status(), 401, "{path}");
        // Authenticated without access: 403 naming the repository.
        let response = get(&granary, path, Some(&basic("carol", "carol-secret"))).await;
        assert_eq!(response.status(), 403, "{path}");
        let text = response.text().await.expect("body");
        assert!(
            text.contains("user `carol` may not read repository `pypi`"),
            "{text}"
        );
        // The admin role reads everything.
        let response = get(&granary, path, Some(&basic("root", "root-secret"))).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    // The upstream never saw a client's credentials.
    for path in ["simple/secret/", "dl/secret-1.0.tar.gz"] {
        assert!(
            upstream.authorization(path).iter().all(Option::is_none),
            "{path}: {:?}",
            upstream.authorization(path)
        );
    }
}

#[tokio::test]
async fn api_tokens_work_as_each_client_sends_them_until_they_expire() {
    let upstream = FakeUpstream::start(None).await;
    let body = b"tokened".repeat(100);
    upstream.script("simple/tok/", one_file_page("tok", "tok-1.0.tar.gz", &body));
    upstream.script("dl/tok-1.0.tar.gz", Scripted::ok(body.clone()));
    let granary = private_granary(&upstream).await;
    let store = &granary.state.metadata;
    let token = new_token();
    store
        .put_api_token(&ApiTokenRecord {
            hash: token_hash(&token),
            user: "alice".to_owned(),
            created_at: std::time::SystemTime::now(),
            expires_at: None,
        })
        .await
        .expect("token");
    let expired = new_token();
    store
        .put_api_token(&ApiTokenRecord {
            hash: token_hash(&expired),
            user: "alice".to_owned(),
            created_at: std::time::SystemTime::now() - Duration::from_secs(7200),
            expires_at: Some(std::time::SystemTime::now() - Duration::from_secs(3600)),
        })
        .await
        .expect("token");
    let page = "pypi/simple/tok/";
    // pip and uv: `__token__` as the user name; npm: Bearer; cargo: the bare token.
    for value in [
        basic("__token__", &token),
        format!("Bearer {token}"),
        token.clone(),
    ] {
        let response = get(&granary, page, Some(&value)).await;
        assert_eq!(response.status(), 200, "{}", &value[..10]);
    }
    for value in [
        basic("__token__", &expired),
        format!("Bearer {expired}"),
        expired.clone(),
        format!("Bearer {}", new_token()),
    ] {
        let response = get(&granary, page, Some(&value)).await;
        assert_eq!(response.status(), 401, "an expired or unknown token");
    }
}

#[tokio::test]
async fn a_repository_whose_upstream_needs_credentials_is_private_by_default() {
    let upstream = FakeUpstream::start(None).await;
    upstream.script("simple/x/", one_file_page("x", "x-1.0.tar.gz", b"x"));
    let granary = TestGranary::pypi(
        &upstream.url("simple/"),
        "auth = { username = \"up\", password = \"stream\" }",
    )
    .await;
    let response = get(&granary, "pypi/simple/x/", None).await;
    assert_eq!(response.status(), 401);
    // A public repository reads no credentials: whatever a client sends, it is served.
    let public = TestGranary::pypi(&upstream.url("simple/"), "").await;
    assert_eq!(get(&public, "pypi/simple/x/", None).await.status(), 200);
    assert_eq!(
        get(&public, "pypi/simple/x/", Some(&basic("nobody", "x")))
            .await
            .status(),
        200
    );
}
