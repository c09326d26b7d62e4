//! The cargo sparse registry proxy: protocol details, and the real `cargo` resolving,
//! fetching and building a project against a fixture registry made with
//! `cargo package`, then again with a new, empty `CARGO_HOME` and the upstream stopped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{files_under, FakeUpstream, Scripted, TestGranary};

/// Builds the fixture registry into `dir` for an upstream at `base`.
pub(crate) fn build_registry(dir: &Path, base: &str) {
    crate::support::run_generator(
        &crate::support::python(),
        "cargo/make_registry.py",
        &[dir.as_os_str(), base.as_ref()],
        &[],
    );
}

async fn fixture() -> (tempfile::TempDir, FakeUpstream, TestGranary) {
    let dir = tempfile::tempdir().expect("dir");
    let registry = dir.path().join("registry");
    let upstream = FakeUpstream::start(Some(registry.clone())).await;
    build_registry(&registry, &upstream.url(""));
    let granary = TestGranary::with_format("cargo", &upstream.url(""), "").await;
    (dir, upstream, granary)
}

#[tokio::test]
async fn config_points_cargo_at_granary_and_index_files_revalidate_without_the_upstream() {
    let (_dir, upstream, granary) = fixture().await;
    let client = TestGranary::client();

    let config: serde_json::Value = granary
        .get("cargo/config.json")
        .await
        .json()
        .await
        .expect("json");
    let mount = granary.url("cargo");
    assert_eq!(config["dl"], format!("{mount}/api/v1/crates"));
    assert_eq!(config["api"], mount);

    let first = granary.get("cargo/fx/-c/fx-core").await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache"], "MISS");
    let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    let body = first.text().await.expect("body");
    assert_eq!(body.lines().count(), 3, "three versions: {body}");
    assert!(body.contains("\"yanked\":true"), "yanked flag kept: {body}");

    // cargo revalidates every index file it uses on every resolve.
    for _ in 0..5 {
        let again = client
            .get(granary.url("cargo/fx/-c/fx-core"))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("revalidation");
        assert_eq!(again.status(), 304);
        assert_eq!(again.headers()["etag"], etag.as_str());
    }
    assert_eq!(
        upstream.hits("fx/-c/fx-core"),
        1,
        "fresh index files are revalidated by granary alone"
    );

    // An upstream that sends Last-Modified: cargo may revalidate with that instead.
    let date = "Sat, 21 Nov 2026 10:00:00 GMT";
    upstream.script(
        "2/zz",
        Scripted::ok(format!(
            "{{\"name\":\"zz\",\"vers\":\"1.0.0\",\"deps\":[],\"cksum\":\"{}\",\"features\":{{}},\"yanked\":false}}\n",
            "0".repeat(64)
        ))
        .header("last-modified", date),
    );
    let dated = granary.get("cargo/2/zz").await;
    assert_eq!(dated.headers()["last-modified"], date);
    for (since, status) in [(date, 304), ("Fri, 20 Nov 2026 10:00:00 GMT", 200)] {
        let response = client
            .get(granary.url("cargo/2/zz"))
            .header("if-modified-since", since)
            .send()
            .await
            .expect("conditional");
        assert_eq!(response.status(), status, "{since}");
    }

    let short = granary.get("cargo/3/f/fxq").await;
    assert_eq!(short.status(), 200);
    for path in ["cargo/1/z", "cargo/2/fx"] {
        assert_eq!(granary.get(path).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn downloads_are_verified_against_the_index_checksum_and_bad_names_are_refused() {
    let (_dir, upstream, granary) = fixture().await;
    let client = TestGranary::client();

    let download = granary
        .get("cargo/api/v1/crates/fx-core/1.0.1/download")
        .await;
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["x-cache"], "MISS");
    let bytes = download.bytes().await.expect("bytes");
    assert_eq!(&bytes[..2], b"\x1f\x8b", "a gzip'd .crate");
    assert_eq!(
        upstream.hits("files/fx/-c/fx-core/fx-core-1.0.1.crate"),
        1,
        "the upstream URL comes from its dl template"
    );
    granary.settle().await;
    let again = granary
        .get("cargo/api/v1/crates/fx-core/1.0.1/download")
        .await;
    assert_eq!(again.headers()["x-cache"], "HIT");
    assert_eq!(again.bytes().await.expect("bytes"), bytes);

    // The upstream serves other bytes than the index's cksum promises.
    upstream.script(
        "files/fx/-c/fx-core/fx-core-1.0.0.crate",
        Scripted::ok(&b"\x1f\x8b not the packaged crate"[..]),
    );
    let stored_before = files_under(&granary.data().join("blobs")).len();
    let tampered = granary
        .get("cargo/api/v1/crates/fx-core/1.0.0/download")
        .await;
    let failed = tampered.status() != 200 || tampered.bytes().await.is_err();
    assert!(failed, "the client must see the mismatch as an error");
    granary.settle().await;
    assert_eq!(
        files_under(&granary.data().join("blobs")).len(),
        stored_before,
        "nothing stored for a checksum mismatch"
    );

    let cases = [
        (
            "cargo/api/v1/crates/fx-core/9.9.9/download",
            404,
            "no version",
        ),
        (
            "cargo/api/v1/crates/fx..core/1.0.0/download",
            400,
            "not a valid crate name",
        ),
        (
            "cargo/api/v1/crates/fx-core/1.0.0%2f..%2fx/download",
            400,
            "separator",
        ),
        (
            "cargo/api/v1/crates/fx-core/1.0%20.0/download",
            400,
            "not a valid crate version",
        ),
        ("cargo/3/a/a.b", 400, "not a valid crate name"),
        ("cargo/zz/yy/serde", 404, "se/rd/serde"),
        ("cargo/fx/-c/FX-CORE", 404, "fx/-c/fx-core"),
        ("cargo/1/..%2fconfig.json", 400, "separator"),
        ("cargo/ab/se/absent", 404, "does not exist upstream"),
        ("cargo/api/v1/crates/new", 404, "publish"),
    ];
    for (path, status, says) in cases {
        let response = granary.get(path).await;
        assert_eq!(response.status(), status, "{path}");
        let message = response.text().await.expect("message");
        assert!(message.contains(says), "{path}: {message}");
    }
    let upload = client
        .put(granary.url("cargo/api/v1/crates/new"))
        .send()
        .await
        .expect("put");
    assert_eq!(upload.status(), 405);

    // An unknown crate is remembered: the second probe costs no upstream request.
    let absent_hits = upstream.hits("ab/se/absent");
    granary.get("cargo/ab/se/absent").await;
    assert_eq!(upstream.hits("ab/se/absent"), absent_hits);
}

/// `cargo` of this toolchain, with a private `CARGO_HOME` whose only source is
/// `registry` (crates-io replaced, as users configure a mirror).
pub(crate) fn cargo(project: &Path, cargo_home: &Path, registry: &str, args: &[&str]) {
    let output = cargo_with(project, cargo_home, registry, None, args);
    assert!(
        output.status.success(),
        "cargo {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// [`cargo`], returning its output; with `token`, the registry is a `[registries]`
/// entry that cargo authenticates to with `CARGO_REGISTRIES_GRANARY_TOKEN` through
/// its `cargo:token` credential provider.
fn cargo_with(
    project: &Path,
    cargo_home: &Path,
    registry: &str,
    token: Option<&str>,
    args: &[&str],
) -> std::process::Output {
    std::fs::create_dir_all(cargo_home).expect("cargo home");
    let source = if token.is_some() {
        format!("[registries.granary]\nindex = \"sparse+{registry}\"\ncredential-provider = [\"cargo:token\"]\n")
    } else {
        format!("[source.granary]\nregistry = \"sparse+{registry}\"\n")
    };
    std::fs::write(
        cargo_home.join("config.toml"),
        format!("[source.crates-io]\nreplace-with = \"granary\"\n\n{source}\n[net]\nretry = 0\n"),
    )
    .expect("cargo config");
    let mut command = Command::new(env!("CARGO"));
    command
        .args(args)
        .current_dir(project)
        .env("CARGO_HOME", cargo_home)
        .env("CARGO_TARGET_DIR", project.join("target"))
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CARGO_REGISTRIES_GRANARY_TOKEN")
        .env_remove("RUSTFLAGS");
    if let Some(token) = token {
        command.env("CARGO_REGISTRIES_GRANARY_TOKEN", token);
    }
    command.output().expect("cargo runs")
}

pub(crate) fn new_project(scratch: &Path, name: &str) -> PathBuf {
    let project = scratch.join(name);
    std::fs::create_dir_all(project.join("src")).expect("project");
    std::fs::write(
        project.join("Cargo.toml"),
        "[package]\nname = \"fx-app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nfx-util = \"0.2\"\n\n[workspace]\n",
    )
    .expect("Cargo.toml");
    std::fs::write(
        project.join("src/main.rs"),
        "fn main() { println!(\"{}\", fx_util::util()); }\n",
    )
    .expect("main.rs");
    project
}

/// Runs the built program: 101003 means fx-core 1.0.1 was chosen over the yanked 1.1.0.
pub(crate) fn check_program(project: &Path) {
    let output = Command::new(project.join("target/debug/fx-app"))
        .output()
        .expect("the built program runs");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "101003");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_resolves_fetches_and_builds_through_granary_then_with_the_upstream_stopped() {
    let (dir, mut upstream, granary) = fixture().await;
    let scratch = dir.path().to_path_buf();
    let registry = granary.url("cargo/");

    let first = new_project(&scratch, "first");
    let (project, home, reg) = (first.clone(), scratch.join("home-1"), registry.clone());
    tokio::task::spawn_blocking(move || {
        cargo(&project, &home, &reg, &["generate-lockfile"]);
        cargo(&project, &home, &reg, &["fetch"]);
        cargo(&project, &home, &reg, &["build", "--offline"]);
        check_program(&project);
    })
    .await
    .expect("first round");
    let lockfile = std::fs::read_to_string(first.join("Cargo.lock")).expect("lockfile");
    assert!(
        lockfile.contains("name = \"fx-core\"\nversion = \"1.0.1\""),
        "{lockfile}"
    );
    for file in [
        "files/fx/-c/fx-core/fx-core-1.0.1.crate",
        "files/fx/-u/fx-util/fx-util-0.2.0.crate",
        "files/3/f/fxq/fxq-0.1.0.crate",
        "files/2/fx/fx-0.3.0.crate",
        "files/1/z/z-0.1.0.crate",
    ] {
        assert_eq!(upstream.hits(file), 1, "{file} fetched upstream once");
    }
    assert_eq!(
        upstream.hits("files/fx/-c/fx-core/fx-core-1.1.0.crate"),
        0,
        "the yanked version is never downloaded"
    );
    granary.settle().await;

    // A new machine: empty CARGO_HOME, no lockfile, and the upstream is gone.
    upstream.stop().await;
    let second = new_project(&scratch, "second");
    let (project, home, reg) = (second.clone(), scratch.join("home-2"), registry.clone());
    tokio::task::spawn_blocking(move || {
        cargo(&project, &home, &reg, &["generate-lockfile"]);
        cargo(&project, &home, &reg, &["fetch"]);
        cargo(&project, &home, &reg, &["build"]);
        check_program(&project);
    })
    .await
    .expect("offline round");
    assert_eq!(
        std::fs::read_to_string(second.join("Cargo.lock")).expect("lockfile"),
        lockfile,
        "the same resolution from granary alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_stampede_costs_one_upstream_request_per_file() {
    let (dir, upstream, granary) = fixture().await;
    let file = "files/fx/-u/fx-util/fx-util-0.2.0.crate";
    let bytes = std::fs::read(dir.path().join("registry").join(file)).expect("crate");
    upstream.script(
        file,
        Scripted {
            pace: Some((64, std::time::Duration::from_millis(10))),
            ..Scripted::ok(bytes.clone())
        },
    );
    let path = "cargo/api/v1/crates/fx-util/0.2.0/download";
    let responses =
        futures::future::join_all((0..50).map(|_| async { granary.get(path).await.bytes().await }))
            .await;
    for body in responses {
        assert_eq!(body.expect("complete body"), bytes);
    }
    assert_eq!(upstream.hits(file), 1, "one download for 50 clients");
    assert_eq!(upstream.hits("fx/-u/fx-util"), 1, "one index file fetch");
    assert_eq!(upstream.hits("config.json"), 1, "one config.json fetch");
}

#[tokio::test]
async fn expired_index_files_are_served_stale_while_the_upstream_is_down() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = dir.path().join("registry");
    let mut upstream = FakeUpstream::start(Some(registry.clone())).await;
    build_registry(&registry, &upstream.url(""));
    // Every index file is past its TTL as soon as it is stored.
    let granary = TestGranary::with_format(
        "cargo",
        &upstream.url(""),
        "index_ttl = \"0s\"\nupdate_time = \"10m\"",
    )
    .await;
    let first = granary.get("cargo/fx/-c/fx-core").await;
    assert_eq!(first.headers()["x-cache"], "MISS");
    let body = first.text().await.expect("body");

    upstream.stop().await;
    let offline = granary.get("cargo/fx/-c/fx-core").await;
    assert_eq!(offline.status(), 200);
    assert_eq!(offline.headers()["x-cache"], "STALE");
    assert_eq!(offline.text().await.expect("body"), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_authenticates_to_a_private_registry_with_its_token_and_is_refused_without() {
    let dir = tempfile::tempdir().expect("dir");
    let registry_dir = dir.path().join("registry");
    let upstream = FakeUpstream::start(Some(registry_dir.clone())).await;
    build_registry(&registry_dir, &upstream.url(""));
    let granary = TestGranary::with_format_and_top_level(
        "cargo",
        &upstream.url(""),
        &crate::support::one_user_auth("unused"),
        "access = \"authenticated\"",
    )
    .await;
    let token = granary.token_for("alice").await;
    let registry = granary.url("cargo/");

    // What cargo is told: authenticate, and where to log in.
    let anonymous = granary.get("cargo/config.json").await;
    assert_eq!(anonymous.status(), 401);
    let challenge = anonymous.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(challenge.starts_with("Cargo login_url="), "{challenge}");
    let config: serde_json::Value = TestGranary::client()
        .get(granary.url("cargo/config.json"))
        .header("authorization", &token)
        .send()
        .await
        .expect("config")
        .json()
        .await
        .expect("json");
    assert_eq!(config["auth-required"], true);

    let scratch = dir.path().to_path_buf();
    let (project, home, reg) = (
        new_project(&scratch, "private"),
        scratch.join("home-private"),
        registry.clone(),
    );
    let refused = {
        let (project, home, reg) = (project.clone(), scratch.join("home-none"), reg.clone());
        tokio::task::spawn_blocking(move || {
            cargo_with(
                &project,
                &home,
                &reg,
                Some("granary_not-a-valid-token"),
                &["generate-lockfile"],
            )
        })
        .await
        .expect("cargo")
    };
    assert!(!refused.status.success(), "a wrong token is refused");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401"), "{stderr}");

    tokio::task::spawn_blocking(move || {
        for args in [
            &["generate-lockfile"][..],
            &["fetch"],
            &["build", "--offline"],
        ] {
            let output = cargo_with(&project, &home, &reg, Some(&token), args);
            assert!(
                output.status.success(),
                "cargo {args:?} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        check_program(&project);
    })
    .await
    .expect("cargo with its token");
    assert!(
        upstream
            .authorization("config.json")
            .iter()
            .all(Option::is_none),
        "cargo's token never reaches the upstream"
    );
}
