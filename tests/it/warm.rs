//! `granary warm`: a lockfile written by the real client through one granary warms a
//! second, empty granary at the same address (the binary, over HTTP); then the real
//! client installs from that lockfile with a new, empty cache, and the upstream sees
//! no request after the warm.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{build_pypi_fixture, python, FakeUpstream, GranaryProcess};

/// A free port on 127.0.0.1 (both granaries of a test listen on it in turn, so that
/// the URLs a lockfile records name the second one too), below the kernel's
/// ephemeral range (32768-60999 by default).
///
/// Found by CI: a port from `bind(":0")` is an ephemeral one, and in the minute
/// between the two granaries an outgoing connection of any test (or a listener on
/// port 0) could take it; the second granary then could not bind and exited ("granary
/// logs its address: Disconnected"). No socket is given a port below the range
/// unless it asks for it.
fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000 on 127.0.0.1");
}

fn config(dir: &Path, name: &str, port: u16, format: &str, upstream: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nshutdown_grace = \"2s\"\n\n\
             [repos.{format}]\nformat = \"{format}\"\nupstream = \"{upstream}\"\nretries = 0\n",
            dir.join(format!("{name}-data")).display()
        ),
    )
    .expect("config");
    path
}

/// `granary warm`, returning what it printed; it must succeed.
fn warm(config: &Path, repo: &str, file: &Path) -> String {
    warm_with(config, repo, file, &[])
}

/// `granary warm` with `extra` options.
fn warm_with(config: &Path, repo: &str, file: &Path, extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_granary"))
        .args(["warm", "--config"])
        .arg(config)
        .args(["--repo", repo])
        .args(extra)
        .arg(file)
        .output()
        .expect("granary warm runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "granary warm failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The summary line's counts: (files, fetched, cached, failed).
fn counts(report: &str) -> (usize, usize, usize, usize) {
    let line = report
        .lines()
        .find(|l| l.starts_with("warmed "))
        .unwrap_or_else(|| panic!("no summary in:\n{report}"));
    // warmed N files in S s: F fetched from the upstream, C already cached, X failed; …
    let before = |word: &str| -> usize {
        let at = line
            .find(word)
            .unwrap_or_else(|| panic!("no `{word}` in {line}"));
        line[..at]
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count before `{word}` in {line}"))
    };
    (
        before(" files"),
        before(" fetched"),
        before(" already cached"),
        before(" failed"),
    )
}

/// Warms `second` from `lockfile` twice: first everything comes from the upstream
/// (nothing fails; an index document may be reported already cached when a download
/// that needs it ran first, as the fetches run in parallel — CI saw cargo's
/// `fx-core` index file so), then everything is already cached. Returns the number
/// of files.
fn warm_twice(config: &Path, repo: &str, lockfile: &Path) -> usize {
    warm_twice_with(config, repo, lockfile, &[])
}

/// [`warm_twice`] with `extra` options.
fn warm_twice_with(config: &Path, repo: &str, lockfile: &Path, extra: &[&str]) -> usize {
    let first = warm_with(config, repo, lockfile, extra);
    let (files, fetched, cached, failed) = counts(&first);
    assert!(files > 0, "{first}");
    assert_eq!((fetched + cached, failed), (files, 0), "{first}");
    // Each lockfile names at least as many artifacts as index documents.
    assert!(
        fetched * 2 >= files,
        "at least the artifacts came from the upstream: {first}"
    );
    let again = warm_with(config, repo, lockfile, extra);
    assert_eq!(counts(&again), (files, 0, files, 0), "{again}");
    files
}

/// `pip install -r requirements` (with `extra` options) into a new target from an
/// empty cache through `index`, then the fixture's import check.
fn pip_install_and_import(index: &str, requirements: &Path, scratch: &Path, extra: &[&str]) {
    let target = tempfile::tempdir_in(scratch).expect("target");
    let cache = tempfile::tempdir_in(scratch).expect("pip cache");
    crate::e2e_clients::run(
        Command::new(python())
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(["--index-url", index])
            .args(extra)
            .arg("-r")
            .arg(requirements)
            .arg("--cache-dir")
            .arg(cache.path())
            .arg("--target")
            .arg(target.path())
            .env("PIP_CONFIG_FILE", "/dev/null"),
        "pip install -r",
    );
    crate::e2e_clients::run(
        Command::new(python())
            .args(["-c", crate::e2e_clients::IMPORT_CHECK])
            .env("PYTHONPATH", target.path()),
        "import after pip install -r",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_ci_from_a_warmed_granary_asks_the_upstream_nothing() {
    let setup = NpmSetup::new().await;
    let (scratch, upstream, first) = (setup.scratch.clone(), &setup.upstream, &setup.first);
    let (port, second) = (setup.port, setup.second.clone());
    let registry = format!("http://127.0.0.1:{port}/npm/");

    let project = npm_lock_through(first, &scratch, "locked", &registry).await;

    let granary = GranaryProcess::spawn(&second);
    let lockfile = project.join("package-lock.json");
    let files = tokio::task::spawn_blocking(move || warm_twice(&second, "npm", &lockfile))
        .await
        .expect("warm");
    let after_warm = upstream.total_hits();

    npm_ci_elsewhere(&project, &scratch, &registry).await;
    assert_eq!(
        upstream.total_hits(),
        after_warm,
        "npm ci needed nothing the warm ({files} files) did not fetch"
    );
    drop(granary);
}

/// The npm fixture registry behind a fake upstream, and the configurations of two
/// granaries on the same port: one to lock through, one to warm.
struct NpmSetup {
    _dir: tempfile::TempDir,
    scratch: PathBuf,
    upstream: FakeUpstream,
    port: u16,
    first: PathBuf,
    second: PathBuf,
}

impl NpmSetup {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let scratch = dir.path().to_path_buf();
        let registry_dir = scratch.join("registry");
        let upstream = FakeUpstream::start(Some(registry_dir.clone())).await;
        crate::npm::build_registry(&registry_dir, upstream.url("").trim_end_matches('/'));
        let port = free_port();
        let first = config(&scratch, "first", port, "npm", &upstream.url(""));
        let second = config(&scratch, "second", port, "npm", &upstream.url(""));
        Self {
            _dir: dir,
            scratch,
            upstream,
            port,
            first,
            second,
        }
    }
}

/// A new npm project installed through a granary started from `config` (stopped
/// afterwards): its directory, with the `package-lock.json` npm wrote.
async fn npm_lock_through(config: &Path, scratch: &Path, name: &str, registry: &str) -> PathBuf {
    let project = crate::npm::new_project(scratch, name);
    let granary = GranaryProcess::spawn(config);
    let (p, r, s) = (project.clone(), registry.to_owned(), scratch.to_path_buf());
    tokio::task::spawn_blocking(move || {
        crate::npm::run_client(Path::new("npm"), &["install"], &p, &r, &s);
    })
    .await
    .expect("install");
    tokio::task::spawn_blocking(move || granary.terminate())
        .await
        .expect("stop the first granary");
    project
}

/// `npm ci` of `project`'s manifest and lockfile, copied to a new directory, with an
/// empty cache, then the fixture's require check.
async fn npm_ci_elsewhere(project: &Path, scratch: &Path, registry: &str) {
    let offline = scratch.join("offline");
    std::fs::create_dir_all(&offline).expect("project");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(project.join(file), offline.join(file)).expect("copy");
    }
    let (p, r, s) = (offline, registry.to_owned(), scratch.to_path_buf());
    tokio::task::spawn_blocking(move || {
        crate::npm::run_client(Path::new("npm"), &["ci"], &p, &r, &s);
        crate::npm::check_require(&p);
    })
    .await
    .expect("npm ci");
}

/// `POST /-/api/npm/warm?file=package-lock.json` with `token`; the status and JSON.
async fn post_warm(
    registry_root: &str,
    token: Option<&str>,
    file: &str,
    lockfile: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{registry_root}-/api/npm/warm?file={file}"))
        .body(lockfile);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("response");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

// Issue #13: warming by POSTing a lockfile to a running granary (admin role), through
// its own routes in process; then `npm ci` asks the upstream nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_ci_after_a_lockfile_was_posted_to_warm_asks_the_upstream_nothing() {
    let setup = NpmSetup::new().await;
    let (scratch, upstream, first) = (setup.scratch.clone(), &setup.upstream, &setup.first);
    let (port, second) = (setup.port, setup.second.clone());
    let text = std::fs::read_to_string(&second).expect("config");
    std::fs::write(
        &second,
        format!("admin_token = \"warm-admin-token\"\n{text}"),
    )
    .expect("config");
    let root = format!("http://127.0.0.1:{port}/");
    let registry = format!("{root}npm/");

    let project = npm_lock_through(first, &scratch, "posted", &registry).await;

    let granary = GranaryProcess::spawn(&second);
    let lockfile = std::fs::read(project.join("package-lock.json")).expect("lockfile");
    let before = upstream.total_hits();
    let (status, refused) = post_warm(&root, None, "package-lock.json", lockfile.clone()).await;
    assert_eq!(status, 401, "the admin role is required: {refused}");
    let (status, unknown) = post_warm(
        &root,
        Some("warm-admin-token"),
        "yarn.lock.bak",
        lockfile.clone(),
    )
    .await;
    assert_eq!(status, 400, "a file name that names no format: {unknown}");
    assert_eq!(
        upstream.total_hits(),
        before,
        "nothing fetched for refused requests"
    );

    let (status, first_run) = post_warm(
        &root,
        Some("warm-admin-token"),
        "package-lock.json",
        lockfile.clone(),
    )
    .await;
    assert_eq!(status, 200, "{first_run}");
    let files = first_run["files"].as_u64().expect("files");
    assert!(files > 0, "{first_run}");
    assert_eq!(first_run["fetched"].as_u64(), Some(files), "{first_run}");
    assert_eq!(first_run["failed"], serde_json::json!({}), "{first_run}");
    let (status, again) = post_warm(
        &root,
        Some("warm-admin-token"),
        "package-lock.json",
        lockfile,
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["cached"].as_u64(),
        Some(files),
        "all cached now: {again}"
    );
    let after_warm = upstream.total_hits();

    npm_ci_elsewhere(&project, &scratch, &registry).await;
    assert_eq!(
        upstream.total_hits(),
        after_warm,
        "npm ci needed nothing the posted warm ({files} files) did not fetch"
    );
    drop(granary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_builds_locked_from_a_warmed_granary_asking_the_upstream_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let scratch = dir.path().to_path_buf();
    let registry_dir = scratch.join("registry");
    let upstream = FakeUpstream::start(Some(registry_dir.clone())).await;
    crate::cargo::build_registry(&registry_dir, &upstream.url(""));
    let port = free_port();
    let first = config(&scratch, "first", port, "cargo", &upstream.url(""));
    let second = config(&scratch, "second", port, "cargo", &upstream.url(""));
    let registry = format!("http://127.0.0.1:{port}/cargo/");

    let project = crate::cargo::new_project(&scratch, "locked");
    let granary = GranaryProcess::spawn(&first);
    let (p, r, home) = (project.clone(), registry.clone(), scratch.join("home-1"));
    tokio::task::spawn_blocking(move || {
        crate::cargo::cargo(&p, &home, &r, &["generate-lockfile"]);
    })
    .await
    .expect("lockfile");
    tokio::task::spawn_blocking(move || granary.terminate())
        .await
        .expect("stop the first granary");

    let granary = GranaryProcess::spawn(&second);
    let lockfile = project.join("Cargo.lock");
    let files = tokio::task::spawn_blocking(move || warm_twice(&second, "cargo", &lockfile))
        .await
        .expect("warm");
    let after_warm = upstream.total_hits();

    let (p, r, home) = (project.clone(), registry.clone(), scratch.join("home-2"));
    tokio::task::spawn_blocking(move || {
        crate::cargo::cargo(&p, &home, &r, &["build", "--locked"]);
        crate::cargo::check_program(&p);
    })
    .await
    .expect("cargo build --locked");
    assert_eq!(
        upstream.total_hits(),
        after_warm,
        "cargo needed nothing the warm ({files} files) did not fetch"
    );
    drop(granary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_installs_a_compiled_requirements_file_from_a_warmed_granary_asking_the_upstream_nothing(
) {
    let dir = tempfile::tempdir().expect("dir");
    let scratch = dir.path().to_path_buf();
    let fixture = build_pypi_fixture(&scratch.join("upstream"));
    let upstream = FakeUpstream::start(Some(fixture)).await;
    let port = free_port();
    let first = config(&scratch, "first", port, "pypi", &upstream.url("simple/"));
    let second = config(&scratch, "second", port, "pypi", &upstream.url("simple/"));
    let index_url = format!("http://127.0.0.1:{port}/pypi/simple/");

    // `uv pip compile` pins the whole tree through the first granary.
    let granary = GranaryProcess::spawn(&first);
    let requirements = scratch.join("requirements.txt");
    let (index, input, output) = (
        index_url.clone(),
        scratch.join("requirements.in"),
        requirements.clone(),
    );
    std::fs::write(&input, "alpha\n").expect("requirements.in");
    tokio::task::spawn_blocking(move || {
        crate::e2e_clients::run(
            Command::new(crate::e2e_clients::uv())
                .args(["pip", "compile", "--no-config", "--python", &python()])
                .args(["--index-url", &index, "--generate-hashes", "--output-file"])
                .arg(&output)
                .arg(&input),
            "uv pip compile",
        );
    })
    .await
    .expect("compile");
    tokio::task::spawn_blocking(move || granary.terminate())
        .await
        .expect("stop the first granary");
    let pinned = std::fs::read_to_string(&requirements).expect("requirements.txt");
    assert!(pinned.contains("beta==1.1"), "{pinned}");

    let granary = GranaryProcess::spawn(&second);
    let lockfile = requirements.clone();
    let files = tokio::task::spawn_blocking(move || warm_twice(&second, "pypi", &lockfile))
        .await
        .expect("warm");
    let after_warm = upstream.total_hits();

    let (index, s2) = (index_url.clone(), scratch.clone());
    tokio::task::spawn_blocking(move || {
        pip_install_and_import(&index, &requirements, &s2, &["--require-hashes"]);
    })
    .await
    .expect("pip install");
    assert_eq!(
        upstream.total_hits(),
        after_warm,
        "pip needed nothing the warm ({files} files) did not fetch"
    );
    drop(granary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpinned_requirements_file_is_resolved_by_granary_then_warmed() {
    let dir = tempfile::tempdir().expect("dir");
    let scratch = dir.path().to_path_buf();
    let fixture = build_pypi_fixture(&scratch.join("upstream"));
    let upstream = FakeUpstream::start(Some(fixture)).await;
    let port = free_port();
    let config = config(&scratch, "only", port, "pypi", &upstream.url("simple/"));
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!("admin_token = \"warm-admin-token\"\n{text}"),
    )
    .expect("config");
    let index_url = format!("http://127.0.0.1:{port}/pypi/simple/");
    let granary = GranaryProcess::spawn(&config);

    // Not pinned: granary's resolver pins the tree (alpha, beta 1.1, gamma-lib,
    // delta) before the warm fetches it.
    let requirements = scratch.join("requirements.txt");
    std::fs::write(&requirements, "alpha  # the app\n").expect("requirements.txt");
    let (c, r) = (config.clone(), requirements.clone());
    let report = tokio::task::spawn_blocking(move || warm(&c, "pypi", &r))
        .await
        .expect("warm");
    assert!(
        report.contains("resolved by granary to 4 pinned packages"),
        "{report}"
    );
    // gamma-lib is an sdist of metadata 2.1: its dependencies are unknown unbuilt.
    assert!(report.contains("warning: gamma-lib 0.5"), "{report}");
    let (files, _, _, failed) = counts(&report);
    assert!(files >= 8, "{report}");
    assert_eq!(failed, 0, "{report}");
    // Posted to the running granary, the same file is resolved in process and
    // warms the same files, all cached by now.
    let response = reqwest::Client::new()
        .post(granary.url("-/api/pypi/warm?file=requirements.txt"))
        .bearer_auth("warm-admin-token")
        .body("alpha  # the app\n")
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let posted: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(posted["files"].as_u64(), Some(files as u64), "{posted}");
    assert_eq!(posted["cached"], posted["files"], "{posted}");
    let after_warm = upstream.total_hits();

    let s2 = scratch.clone();
    tokio::task::spawn_blocking(move || {
        pip_install_and_import(&index_url, &requirements, &s2, &[]);
    })
    .await
    .expect("pip install");
    assert_eq!(
        upstream.total_hits(),
        after_warm,
        "pip needed nothing the warm ({files} files) did not fetch"
    );
    drop(granary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pnpm_and_yarn_install_frozen_from_a_granary_warmed_from_their_lockfiles() {
    let dir = tempfile::tempdir().expect("dir");
    let scratch = dir.path().to_path_buf();
    let registry_dir = scratch.join("registry");
    let upstream = FakeUpstream::start(Some(registry_dir.clone())).await;
    crate::npm::build_registry(&registry_dir, upstream.url("").trim_end_matches('/'));
    let clients = [
        (
            "pnpm",
            crate::npm::client_binary("GRANARY_TEST_PNPM", "pnpm"),
            vec!["install", "--no-frozen-lockfile"],
            vec!["install", "--frozen-lockfile"],
            "pnpm-lock.yaml",
        ),
        (
            "yarn",
            crate::npm::client_binary("GRANARY_TEST_YARN", "yarn"),
            vec!["install", "--non-interactive"],
            vec!["install", "--frozen-lockfile", "--non-interactive"],
            "yarn.lock",
        ),
    ];
    for (name, program, first_args, frozen_args, lockfile_name) in clients {
        // The client writes its lockfile through one granary…
        let port = free_port();
        let first = config(
            &scratch,
            &format!("{name}-first"),
            port,
            "npm",
            &upstream.url(""),
        );
        let second = config(
            &scratch,
            &format!("{name}-second"),
            port,
            "npm",
            &upstream.url(""),
        );
        let registry = format!("http://127.0.0.1:{port}/npm/");
        let project = crate::npm::new_project(&scratch, &format!("{name}-locked"));
        let granary = GranaryProcess::spawn(&first);
        let (prog, args, p, r, s) = (
            program.clone(),
            first_args,
            project.clone(),
            registry.clone(),
            scratch.clone(),
        );
        tokio::task::spawn_blocking(move || crate::npm::run_client(&prog, &args, &p, &r, &s))
            .await
            .expect("install");
        tokio::task::spawn_blocking(move || granary.terminate())
            .await
            .expect("stop the first granary");

        // …warms a second, empty one at the same address…
        let granary = GranaryProcess::spawn(&second);
        let lockfile = project.join(lockfile_name);
        let files = tokio::task::spawn_blocking(move || warm_twice(&second, "npm", &lockfile))
            .await
            .expect("warm");
        let after_warm = upstream.total_hits();

        // …and the frozen install from an empty cache asks the upstream nothing.
        let offline = scratch.join(format!("{name}-offline"));
        std::fs::create_dir_all(&offline).expect("project");
        for file in ["package.json", lockfile_name] {
            std::fs::copy(project.join(file), offline.join(file)).expect("copy");
        }
        let (prog, args, p, r, s) = (
            program.clone(),
            frozen_args,
            offline.clone(),
            registry.clone(),
            scratch.clone(),
        );
        tokio::task::spawn_blocking(move || {
            crate::npm::run_client(&prog, &args, &p, &r, &s);
            crate::npm::check_require(&p);
        })
        .await
        .expect("frozen install");
        assert_eq!(
            upstream.total_hits(),
            after_warm,
            "{name} needed nothing the warm ({files} files) did not fetch"
        );
        drop(granary);
    }
}

/// Runs uv with an empty cache of its own (under `scratch`) in `dir`; the project's
/// `pyproject.toml` is its only configuration (no user or system files).
fn uv_in(dir: &Path, scratch: &Path, args: &[&str], what: &str) {
    let cache = tempfile::tempdir_in(scratch).expect("uv cache");
    let config_home = tempfile::tempdir_in(scratch).expect("config home");
    crate::e2e_clients::run(
        Command::new(crate::e2e_clients::uv())
            .args(args)
            .current_dir(dir)
            .env("UV_CACHE_DIR", cache.path())
            .env("XDG_CONFIG_HOME", config_home.path())
            .env_remove("UV_INDEX_URL")
            .env_remove("UV_DEFAULT_INDEX")
            .env_remove("VIRTUAL_ENV"),
        what,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uv_sync_and_pylock_installs_from_a_granary_warmed_from_uv_lock_and_pylock_toml() {
    let dir = tempfile::tempdir().expect("dir");
    let scratch = dir.path().to_path_buf();
    let fixture = build_pypi_fixture(&scratch.join("upstream"));
    let upstream = FakeUpstream::start(Some(fixture)).await;
    let port = free_port();
    let index_url = format!("http://127.0.0.1:{port}/pypi/simple/");
    let project = scratch.join("app");
    std::fs::create_dir_all(&project).expect("project");
    std::fs::write(
        project.join("pyproject.toml"),
        format!(
            "[project]\nname = \"app\"\nversion = \"0.1.0\"\nrequires-python = \">=3.8\"\n\
             dependencies = [\"alpha\"]\n\n[tool.uv]\npackage = false\n\n\
             [[tool.uv.index]]\nurl = \"{index_url}\"\ndefault = true\n"
        ),
    )
    .expect("pyproject.toml");

    // uv locks and exports through one granary.
    let first = config(&scratch, "first", port, "pypi", &upstream.url("simple/"));
    let granary = GranaryProcess::spawn(&first);
    let (p, s) = (project.clone(), scratch.clone());
    tokio::task::spawn_blocking(move || {
        uv_in(&p, &s, &["lock", "--python", &python()], "uv lock");
        uv_in(
            &p,
            &s,
            &[
                "export",
                "--frozen",
                "--format",
                "pylock.toml",
                "-o",
                "pylock.toml",
            ],
            "uv export --format pylock.toml",
        );
    })
    .await
    .expect("lock");
    tokio::task::spawn_blocking(move || granary.terminate())
        .await
        .expect("stop the first granary");

    for (round, lockfile) in ["uv.lock", "pylock.toml"].into_iter().enumerate() {
        // A new, empty granary at the same address, warmed from the lockfile…
        let second = config(
            &scratch,
            &format!("second-{round}"),
            port,
            "pypi",
            &upstream.url("simple/"),
        );
        let granary = GranaryProcess::spawn(&second);
        let path = project.join(lockfile);
        let files = tokio::task::spawn_blocking(move || warm_twice(&second, "pypi", &path))
            .await
            .expect("warm");
        let after_warm = upstream.total_hits();

        // …installs what it locks with an empty cache, asking the upstream nothing.
        let offline = scratch.join(format!("offline-{round}"));
        std::fs::create_dir_all(&offline).expect("offline project");
        for file in ["pyproject.toml", lockfile] {
            std::fs::copy(project.join(file), offline.join(file)).expect("copy");
        }
        let (p, s) = (offline.clone(), scratch.clone());
        tokio::task::spawn_blocking(move || {
            let site = if lockfile == "uv.lock" {
                uv_in(
                    &p,
                    &s,
                    &["sync", "--frozen", "--python", &python()],
                    "uv sync --frozen",
                );
                p.join(".venv")
            } else {
                let target = p.join("target");
                let target_arg = target.to_string_lossy().into_owned();
                uv_in(
                    &p,
                    &s,
                    &[
                        "pip",
                        "install",
                        "--python",
                        &python(),
                        "--target",
                        &target_arg,
                        "-r",
                        "pylock.toml",
                    ],
                    "uv pip install -r pylock.toml",
                );
                target
            };
            let (program, pythonpath) = if lockfile == "uv.lock" {
                (site.join("bin/python"), None)
            } else {
                (PathBuf::from(python()), Some(site))
            };
            let mut check = Command::new(program);
            check.args(["-c", crate::e2e_clients::IMPORT_CHECK]);
            if let Some(path) = pythonpath {
                check.env("PYTHONPATH", path);
            }
            crate::e2e_clients::run(&mut check, "import after installing from the lockfile");
        })
        .await
        .expect("install");
        assert_eq!(
            upstream.total_hits(),
            after_warm,
            "installing from {lockfile} needed nothing the warm ({files} files) did not fetch"
        );
        drop(granary);
    }
}

/// Configuration of a granary with the Maven resolution fixture as `fixture` and
/// Debian's Maven repository (mvn's plugins) as `debian`.
fn maven_config(dir: &Path, name: &str, fixture: &str, debian: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\nshutdown_grace = \"2s\"\n\
             admin_token = \"warm-admin-token\"\n\n\
             [repos.fixture]\nformat = \"maven\"\nupstream = \"{fixture}\"\nretries = 0\n\n\
             [repos.debian]\nformat = \"maven\"\nupstream = \"{debian}\"\nretries = 0\n",
            free_port(),
            dir.join(format!("{name}-data")).display()
        ),
    )
    .expect("config");
    path
}

// Issue #13: a project's pom.xml is resolved by granary, then warmed (by `granary
// warm` over HTTP, by `POST /-/api/REPO/warm`, and by `granary warm --in-process`
// with no granary running); `mvn
// dependency:resolve` from an empty local repository then asks the fixture's upstream
// nothing. Debian's repository, which serves mvn its plugins, stays up: plugins are
// not what a pom.xml's dependencies name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mvn_resolves_a_pom_xml_from_a_granary_warmed_from_it_asking_the_upstream_nothing() {
    let plugin = crate::maven::debian_dependency_plugin();
    let dir = tempfile::tempdir().expect("dir");
    let scratch = dir.path().to_path_buf();
    let repository = scratch.join("repository");
    crate::support::run_generator(
        &python(),
        "maven/make_resolution_repository.py",
        &[repository.as_os_str()],
        &[],
    );
    let upstream = FakeUpstream::start(Some(repository)).await;
    let debian = FakeUpstream::start(Some(PathBuf::from(crate::maven::DEBIAN_REPOSITORY))).await;
    let project = scratch.join("project");
    std::fs::create_dir_all(&project).expect("project");
    let pom = project.join("pom.xml");
    std::fs::write(&pom, crate::maven_resolve::PROJECT).expect("pom.xml");

    for round in ["cli", "posted", "in-process"] {
        let config = maven_config(&scratch, round, &upstream.url(""), &debian.url(""));
        let before = upstream.total_hits();
        // In process: no granary runs while it warms (each run opens the stores
        // itself, so the second finds what the first stored).
        let files_in_process = if round == "in-process" {
            let (c, p) = (config.clone(), pom.clone());
            Some(
                tokio::task::spawn_blocking(move || {
                    warm_twice_with(&c, "fixture", &p, &["--in-process"])
                })
                .await
                .expect("warm"),
            )
        } else {
            None
        };
        let granary = GranaryProcess::spawn(&config);
        let files = if let Some(files) = files_in_process {
            files
        } else if round == "cli" {
            let (c, p) = (config.clone(), pom.clone());
            tokio::task::spawn_blocking(move || warm_twice(&c, "fixture", &p))
                .await
                .expect("warm")
        } else {
            let post = || async {
                let response = reqwest::Client::new()
                    .post(granary.url("-/api/fixture/warm?file=pom.xml"))
                    .bearer_auth("warm-admin-token")
                    .body(crate::maven_resolve::PROJECT)
                    .send()
                    .await
                    .expect("response");
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.expect("JSON");
                (status, body)
            };
            let (status, first) = post().await;
            assert_eq!(status, 200, "{first}");
            assert_eq!(first["failed"], serde_json::json!({}), "{first}");
            let (status, again) = post().await;
            assert_eq!(status, 200, "{again}");
            assert_eq!(again["cached"], again["files"], "all cached now: {again}");
            usize::try_from(first["files"].as_u64().expect("files")).expect("count")
        };
        // Each of the 14 resolved artifacts: its POM and its jar.
        assert_eq!(files, 28, "{round}");
        assert!(upstream.total_hits() > before, "{round}: the warm fetched");
        let after_warm = upstream.hit_counts();

        let settings =
            crate::maven::write_settings_at(&scratch, &format!("{round}.xml"), &granary.url(""));
        let (p, local, v) = (
            project.clone(),
            scratch.join(format!("{round}-local")),
            plugin.clone(),
        );
        tokio::task::spawn_blocking(move || {
            crate::maven::mvn_resolve(&p, &settings, &local, &v);
            assert!(local
                .join("org/rx/rx-native/1.0/rx-native-1.0-linux.jar")
                .exists());
            assert!(local
                .join("org/rx/rx-testdep/1.0/rx-testdep-1.0.jar")
                .exists());
        })
        .await
        .expect("mvn dependency:resolve");
        assert_eq!(
            upstream.hit_counts(),
            after_warm,
            "{round}: mvn needed nothing the warm ({files} files) did not fetch"
        );
        drop(granary);
    }
}
