//! The npm registry proxy: protocol details, and the real npm, pnpm and yarn (v1)
//! installing a fixture tree made with `npm pack`, then again from a new, empty cache
//! with the upstream stopped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{files_under, sha256_hex, FakeUpstream, Scripted, TestGranary};

const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";
const NPM_ACCEPT: &str = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*";

/// Builds the registry fixture into `dir` for an upstream at `base`.
pub(crate) fn build_registry(dir: &Path, base: &str) {
    // `npm pack` writes below HOME: the fixture directory keeps that private.
    crate::support::run_generator(
        "node",
        "npm/make_registry.js",
        &[dir.as_os_str(), base.as_ref()],
        &[("HOME", dir.as_os_str())],
    );
}

async fn fixture() -> (tempfile::TempDir, FakeUpstream, TestGranary) {
    let dir = tempfile::tempdir().expect("dir");
    let registry = dir.path().join("registry");
    let upstream = FakeUpstream::start(Some(registry.clone())).await;
    build_registry(&registry, upstream.url("").trim_end_matches('/'));
    let granary = TestGranary::npm(&upstream.url(""), "").await;
    (dir, upstream, granary)
}

#[tokio::test]
async fn packuments_are_negotiated_rewritten_and_scoped_names_work_both_ways() {
    let (_dir, upstream, granary) = fixture().await;
    let client = TestGranary::client();

    let abbreviated = client
        .get(granary.url("npm/@granary%2fcore"))
        .header("accept", NPM_ACCEPT)
        .send()
        .await
        .expect("request");
    assert_eq!(abbreviated.status(), 200);
    assert_eq!(abbreviated.headers()["content-type"], ABBREVIATED);
    assert!(abbreviated.headers()["vary"]
        .to_str()
        .expect("vary")
        .contains("Accept"));
    let abbreviated: serde_json::Value = abbreviated.json().await.expect("json");
    let version = &abbreviated["versions"]["1.1.0"];
    assert!(
        version.get("description").is_none(),
        "abbreviated form drops it"
    );
    assert_eq!(abbreviated["versions"]["0.9.0"]["deprecated"], "use 1.x");
    let tarball = version["dist"]["tarball"].as_str().expect("tarball");
    assert_eq!(
        tarball,
        format!("http://{}/npm/@granary/core/-/core-1.1.0.tgz", granary.addr)
    );

    let full: serde_json::Value = client
        .get(granary.url("npm/@granary/core"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(
        full["versions"]["1.1.0"]["description"],
        "granary fixture @granary/core"
    );
    assert!(
        !full.to_string().contains(&upstream.addr.to_string()),
        "no upstream URL leaks"
    );
    assert_eq!(
        upstream.hits("@granary%2fcore"),
        1,
        "both spellings and both forms: one fetch"
    );

    let tags: serde_json::Value = client
        .get(granary.url("npm/-/package/dep-b/dist-tags"))
        .send()
        .await
        .expect("tags")
        .json()
        .await
        .expect("json");
    assert_eq!(tags["next"], "2.0.0-beta.1");
    let next: serde_json::Value = client
        .get(granary.url("npm/dep-b/next"))
        .send()
        .await
        .expect("tag")
        .json()
        .await
        .expect("json");
    assert_eq!(next["version"], "2.0.0-beta.1");
    let exact: serde_json::Value = client
        .get(granary.url("npm/dep-a/1.0.0"))
        .send()
        .await
        .expect("version")
        .json()
        .await
        .expect("json");
    assert_eq!(
        exact["dist"]["tarball"],
        format!("http://{}/npm/dep-a/-/dep-a-1.0.0.tgz", granary.addr)
    );

    for (path, status) in [
        ("npm/no-such-package", 404),
        ("npm/dep-a/9.9.9", 404),
        ("npm/Bad%20Name", 400),
        ("npm/.hidden", 400),
        ("npm/@granary%2f..%2f..%2fetc", 400),
        ("npm/@granary/core/-/..%2f..%2fgranary.db", 400),
        ("npm/-/nothing-here", 404),
    ] {
        let response = client.get(granary.url(path)).send().await.expect("request");
        assert_eq!(response.status(), status, "{path}");
    }
}

#[tokio::test]
async fn tarballs_are_verified_against_integrity_and_nothing_bad_is_stored() {
    let upstream = FakeUpstream::start(None).await;
    let good = b"a tarball".to_vec();
    let evil = b"not what the packument says".to_vec();
    let packument = |name: &str, body: &[u8]| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let integrity = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(body))
        );
        Scripted::ok(
            serde_json::json!({
                "name": name, "dist-tags": {"latest": "1.0.0"},
                "versions": {"1.0.0": {"name": name, "version": "1.0.0", "dist": {
                    "tarball": upstream.url(&format!("{name}/-/{name}-1.0.0.tgz")), "integrity": integrity}}}
            })
            .to_string(),
        )
        .header("content-type", "application/json")
    };
    upstream.script("good", packument("good", &good));
    upstream.script("good/-/good-1.0.0.tgz", Scripted::ok(good.clone()));
    upstream.script("evil", packument("evil", &good));
    upstream.script("evil/-/evil-1.0.0.tgz", Scripted::ok(evil));
    upstream.script("cut", packument("cut", &good));
    upstream.script(
        "cut/-/cut-1.0.0.tgz",
        Scripted {
            cut_after: Some(4),
            pace: Some((4, std::time::Duration::from_millis(20))),
            ..Scripted::ok(good.clone())
        },
    );
    let granary = TestGranary::npm(&upstream.url(""), "").await;
    let client = TestGranary::client();

    let first = client
        .get(granary.url("npm/good/-/good-1.0.0.tgz"))
        .send()
        .await
        .expect("tarball");
    assert_eq!(first.headers()["x-cache"], "MISS");
    assert_eq!(first.bytes().await.expect("body"), good);
    granary.settle().await;
    let second = client
        .get(granary.url("npm/good/-/good-1.0.0.tgz"))
        .send()
        .await
        .expect("tarball");
    assert_eq!(second.headers()["x-cache"], "HIT");
    assert_eq!(
        second.headers()["etag"].to_str().expect("etag"),
        format!("\"{}\"", sha256_hex(&good))
    );

    for path in ["npm/evil/-/evil-1.0.0.tgz", "npm/cut/-/cut-1.0.0.tgz"] {
        let response = client.get(granary.url(path)).send().await.expect("tarball");
        let failed = response.status() != 200 || response.bytes().await.is_err();
        assert!(failed, "{path}: the client must see an error");
    }
    granary.settle().await;
    assert_eq!(
        files_under(&granary.data().join("blobs")).len(),
        1,
        "only the good tarball is stored"
    );
    assert!(files_under(&granary.data().join("tmp")).is_empty());
    let unlisted = client
        .get(granary.url("npm/good/-/good-2.0.0.tgz"))
        .send()
        .await
        .expect("unlisted");
    assert_eq!(
        unlisted.status(),
        404,
        "only tarballs the packument names are fetched"
    );
}

#[tokio::test]
async fn registry_endpoints_pass_through_and_fail_fast_when_the_upstream_is_gone() {
    let mut upstream = FakeUpstream::start(None).await;
    upstream.script(
        "-/ping",
        Scripted::ok("{}").header("content-type", "application/json"),
    );
    upstream.script(
        "-/npm/v1/security/advisories/bulk",
        Scripted::ok("{}").header("content-type", "application/json"),
    );
    let granary = TestGranary::npm(&upstream.url(""), "").await;
    let client = TestGranary::client();
    let ping = client
        .get(granary.url("npm/-/ping"))
        .send()
        .await
        .expect("ping");
    assert_eq!(ping.status(), 200);
    assert_eq!(ping.headers()["x-cache"], "BYPASS");
    let audit = client
        .post(granary.url("npm/-/npm/v1/security/advisories/bulk"))
        .body("{}")
        .send()
        .await
        .expect("audit");
    assert_eq!(audit.status(), 200);
    client
        .get(granary.url("npm/-/ping"))
        .send()
        .await
        .expect("ping");
    assert_eq!(upstream.hits("-/ping"), 2, "never cached");
    upstream.stop().await;
    let gone = client
        .get(granary.url("npm/-/ping"))
        .send()
        .await
        .expect("ping");
    assert_eq!(gone.status(), 503);
    assert!(gone.text().await.expect("body").contains("error"));
    let post_elsewhere = client
        .post(granary.url("npm/dep-a"))
        .send()
        .await
        .expect("post");
    assert_eq!(post_elsewhere.status(), 405);
}

pub(crate) fn client_binary(variable: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let cached = std::env::var_os("HOME").map(|home| {
        PathBuf::from(home)
            .join(".cache/granary-ci/node/node_modules/.bin")
            .join(name)
    });
    match cached {
        Some(path) if path.exists() => path,
        _ => panic!("{name} not found: run scripts/test (it installs it) or set {variable}"),
    }
}

/// Runs a client in `project` with a private HOME and cache, pointed at `registry`.
pub(crate) fn run_client(
    program: &Path,
    args: &[&str],
    project: &Path,
    registry: &str,
    scratch: &Path,
) {
    let output = run_client_with(program, args, project, registry, scratch, "");
    assert!(
        output.status.success(),
        "{} {args:?} failed:\n{}\n{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// [`run_client`] with `npmrc` as the user's `.npmrc` (credentials), returning the
/// output.
fn run_client_with(
    program: &Path,
    args: &[&str],
    project: &Path,
    registry: &str,
    scratch: &Path,
    npmrc: &str,
) -> std::process::Output {
    let home = tempfile::tempdir_in(scratch).expect("home");
    let cache = tempfile::tempdir_in(scratch).expect("cache");
    std::fs::write(home.path().join(".npmrc"), npmrc).expect(".npmrc");
    Command::new(program)
        .args(args)
        .current_dir(project)
        .env("HOME", home.path())
        .env("npm_config_userconfig", home.path().join(".npmrc"))
        .env("npm_config_registry", registry)
        .env("npm_config_cache", cache.path())
        .env("npm_config_store_dir", cache.path().join("store"))
        .env("npm_config_cache_dir", cache.path().join("pnpm-cache"))
        .env("YARN_CACHE_FOLDER", cache.path().join("yarn"))
        .env("npm_config_fund", "false")
        .env("npm_config_audit", "false")
        .env("npm_config_update_notifier", "false")
        .output()
        .expect("client runs")
}

pub(crate) fn check_require(project: &Path) {
    let check = "const core = require('@granary/core'); const b = require('dep-b'); const t = require('dep-t'); \
                 if (core.version !== '1.1.0') throw new Error('core ' + core.version); \
                 if (b.version !== '2.0.0-beta.1') throw new Error('dep-b ' + b.version); \
                 if (t.name !== 'dep-t') throw new Error('dep-t');";
    let status = Command::new("node")
        .args(["-e", check])
        .current_dir(project)
        .status()
        .expect("node runs");
    assert!(status.success(), "require failed in {}", project.display());
}

pub(crate) fn new_project(scratch: &Path, name: &str) -> PathBuf {
    let project = scratch.join(name);
    std::fs::create_dir_all(&project).expect("project");
    std::fs::write(
        project.join("package.json"),
        r#"{"name": "granary-e2e", "version": "1.0.0", "private": true,
            "dependencies": {"@granary/core": "^1.0.0", "dep-t": "^1.0.0", "dep-b": "next"}}"#,
    )
    .expect("package.json");
    project
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_pnpm_and_yarn_install_through_granary_then_offline_from_their_lockfiles() {
    let (dir, mut upstream, granary) = fixture().await;
    let scratch = dir.path().to_path_buf();
    let registry = granary.url("npm/");
    let clients = [
        ("npm", PathBuf::from("npm"), vec!["install"], vec!["ci"]),
        (
            "pnpm",
            client_binary("GRANARY_TEST_PNPM", "pnpm"),
            vec!["install", "--no-frozen-lockfile"],
            vec!["install", "--frozen-lockfile"],
        ),
        (
            "yarn",
            client_binary("GRANARY_TEST_YARN", "yarn"),
            vec!["install", "--non-interactive"],
            vec!["install", "--frozen-lockfile", "--non-interactive"],
        ),
    ];
    let mut lockfiles = Vec::new();
    for (name, program, first, _) in &clients {
        let project = new_project(&scratch, &format!("{name}-first"));
        let (program, first, registry, scratch, project2) = (
            program.clone(),
            first.clone(),
            registry.clone(),
            scratch.clone(),
            project.clone(),
        );
        tokio::task::spawn_blocking(move || {
            run_client(&program, &first, &project2, &registry, &scratch);
            check_require(&project2);
        })
        .await
        .expect("install task");
        lockfiles.push(project);
    }
    let fetched = upstream.total_hits();
    assert!(
        upstream.hits("dep-a/-/dep-a-1.1.0.tgz") == 1,
        "each tarball fetched upstream once for all three clients"
    );

    upstream.stop().await;
    for ((name, program, _, second), first_project) in clients.iter().zip(&lockfiles) {
        // The lockfile written by the first install, a new empty cache, no upstream.
        let project = scratch.join(format!("{name}-offline"));
        std::fs::create_dir_all(&project).expect("project");
        for file in [
            "package.json",
            "package-lock.json",
            "pnpm-lock.yaml",
            "yarn.lock",
        ] {
            if first_project.join(file).exists() {
                std::fs::copy(first_project.join(file), project.join(file)).expect("copy lockfile");
            }
        }
        let (program, second, registry, scratch, project2) = (
            program.clone(),
            second.clone(),
            registry.clone(),
            scratch.clone(),
            project.clone(),
        );
        tokio::task::spawn_blocking(move || {
            run_client(&program, &second, &project2, &registry, &scratch);
            check_require(&project2);
        })
        .await
        .expect("offline install task");
    }
    assert_eq!(
        upstream.total_hits(),
        fetched,
        "the offline round was served by granary alone"
    );
}

#[tokio::test]
async fn large_packuments_are_compressed_per_accept_encoding() {
    let upstream = FakeUpstream::start(None).await;
    let versions: serde_json::Map<String, serde_json::Value> = (0..2000)
        .map(|i| {
            let version = format!("1.0.{i}");
            let document = serde_json::json!({
                "name": "big", "version": version, "description": "a package with many versions",
                "dist": {"tarball": upstream.url(&format!("big/-/big-{version}.tgz")), "shasum": "00"}
            });
            (version, document)
        })
        .collect();
    let packument = serde_json::json!({"name": "big", "dist-tags": {"latest": "1.0.1999"}, "versions": versions});
    upstream.script(
        "big",
        Scripted::ok(packument.to_string()).header("content-type", "application/json"),
    );
    let granary = TestGranary::npm(&upstream.url(""), "").await;
    let client = TestGranary::client();
    let plain = client
        .get(granary.url("npm/big"))
        .send()
        .await
        .expect("plain");
    assert!(plain.headers().get("content-encoding").is_none());
    let plain_length = plain.bytes().await.expect("body").len();
    for encoding in ["gzip", "br"] {
        // A large document's gzip form is made once, behind its first request
        // (answered as is meanwhile); it is served from then on.
        let mut compressed = None;
        for _ in 0..100 {
            let response = client
                .get(granary.url("npm/big"))
                .header("accept-encoding", encoding)
                .send()
                .await
                .expect("compressed");
            if let Some(served) = response.headers().get("content-encoding") {
                assert_eq!(served, encoding);
                compressed = Some(response);
                break;
            }
            assert_eq!(encoding, "gzip", "br is made per response");
            assert_eq!(response.bytes().await.expect("body").len(), plain_length);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let compressed = compressed.expect("compressed within 5 s");
        let length = compressed.bytes().await.expect("body").len();
        assert!(
            length * 5 < plain_length,
            "{encoding}: {length} vs {plain_length} bytes"
        );
    }
    assert_eq!(upstream.hits("big"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_authenticates_to_a_private_registry_with_its_auth_token_and_is_refused_without() {
    let dir = tempfile::tempdir().expect("dir");
    let registry_dir = dir.path().join("registry");
    let upstream = FakeUpstream::start(Some(registry_dir.clone())).await;
    build_registry(&registry_dir, upstream.url("").trim_end_matches('/'));
    let granary = TestGranary::with_format_and_top_level(
        "npm",
        &upstream.url(""),
        &crate::support::one_user_auth("unused"),
        "access = \"authenticated\"",
    )
    .await;
    let token = granary.token_for("alice").await;
    let registry = granary.url("npm/");
    let scratch = dir.path().to_path_buf();
    // npm's own form: the token scoped to the registry's host and path.
    let scoped = registry.trim_start_matches("http:");
    let npmrc = format!("{scoped}:_authToken={token}\n");

    let refused_project = new_project(&scratch, "npm-refused");
    let (reg, sc) = (registry.clone(), scratch.clone());
    let refused = tokio::task::spawn_blocking(move || {
        run_client_with(
            Path::new("npm"),
            &["install"],
            &refused_project,
            &reg,
            &sc,
            "",
        )
    })
    .await
    .expect("npm");
    assert!(!refused.status.success(), "no token: refused");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("401") || stderr.contains("E401"),
        "{stderr}"
    );

    let project = new_project(&scratch, "npm-private");
    let (reg, sc, proj) = (registry.clone(), scratch.clone(), project.clone());
    let output = tokio::task::spawn_blocking(move || {
        run_client_with(Path::new("npm"), &["install"], &proj, &reg, &sc, &npmrc)
    })
    .await
    .expect("npm");
    assert!(
        output.status.success(),
        "npm install with _authToken failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    check_require(&project);
    assert!(
        upstream
            .authorization("@granary%2fcore")
            .iter()
            .chain(upstream.authorization("@granary/core").iter())
            .all(Option::is_none),
        "the client's token never reaches the upstream"
    );
}

// Assembled packuments are kept per base URL: a client reaching granary under another
// name never gets tarball links with the first client's host, and a repeat is
// byte-identical.
#[tokio::test]
async fn each_host_gets_its_own_tarball_links_and_repeats_are_identical() {
    let (_dir, _upstream, granary) = fixture().await;
    let client = TestGranary::client();
    let mut bodies = Vec::new();
    for host in ["first.test:4873", "second.test:4873", "first.test:4873"] {
        let body = client
            .get(granary.url("npm/@granary/core"))
            .header("host", host)
            .header("accept", "application/json")
            .send()
            .await
            .expect("packument")
            .text()
            .await
            .expect("body");
        let other = if host.starts_with("first") {
            "second.test"
        } else {
            "first.test"
        };
        assert!(
            body.contains(&format!("\"http://{host}/npm/@granary/core/-/")),
            "{host}"
        );
        assert!(!body.contains(other), "{host} got {other}'s links");
        bodies.push(body);
    }
    assert_eq!(bodies[0], bodies[2], "the same host gets the same bytes");
}
