//! Real `pip` and `uv` against the real `granary` binary, with a fixture upstream built
//! at test time: a cold install, a warm install from fresh client caches with the
//! upstream stopped, then with the upstream hanging, then a clean SIGTERM shutdown.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{
    build_pypi_fixture, files_under, python, Behaviour, FakeUpstream, GranaryProcess,
};

/// The modules the fixture's dependency tree installs, and what must hold of them:
/// beta 1.1 (1.0 is yanked, 2.0 requires Python >= 4), gamma-lib built from its sdist.
pub(crate) const IMPORT_CHECK: &str = "import alpha, beta, gamma_lib, delta; \
    assert beta.VERSION == '1.1', beta.VERSION; \
    assert gamma_lib.BUILT_FROM_SDIST; \
    assert delta.VERSION == '3.0'";

pub(crate) fn uv() -> PathBuf {
    if let Some(path) = std::env::var_os("GRANARY_TEST_UV") {
        return PathBuf::from(path);
    }
    let candidates = [
        std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".cache/granary-ci/venv/bin/uv")),
        Some(PathBuf::from("uv")),
    ];
    for candidate in candidates.into_iter().flatten() {
        if Command::new(&candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return candidate;
        }
    }
    panic!("uv not found: run `bash .ci/run` once (it installs uv) or set GRANARY_TEST_UV");
}

pub(crate) fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Installs `alpha` (and its tree) with `client` into a new target from a new, empty
/// client cache, then imports it.
fn install_and_import(client: &str, index_url: &str, scratch: &Path, round: &str) {
    let target = scratch.join(format!("{client}-{round}-target"));
    let cache = scratch.join(format!("{client}-{round}-cache"));
    let mut command = match client {
        "pip" => {
            let mut command = Command::new(python());
            command
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--index-url",
                    index_url,
                ])
                .arg("--cache-dir")
                .arg(&cache)
                .env("PIP_CONFIG_FILE", "/dev/null");
            command
        }
        "uv" => {
            let mut command = Command::new(uv());
            command
                .args([
                    "pip",
                    "install",
                    "--no-config",
                    "--python",
                    &python(),
                    "--index-url",
                    index_url,
                ])
                .arg("--cache-dir")
                .arg(&cache);
            command
        }
        other => panic!("unknown client {other}"),
    };
    command.arg("--target").arg(&target).arg("alpha");
    run(&mut command, &format!("{client} install ({round})"));
    run(
        Command::new(python())
            .args(["-c", IMPORT_CHECK])
            .env("PYTHONPATH", &target),
        &format!("import after {client} install ({round})"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_and_uv_install_through_granary_then_offline() {
    let scratch = tempfile::tempdir().expect("scratch");
    let fixture = build_pypi_fixture(&scratch.path().join("upstream"));
    let mut upstream = FakeUpstream::start(Some(fixture.clone())).await;
    let data_dir = scratch.path().join("granary-data");
    let config = scratch.path().join("granary.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nshutdown_grace = \"5s\"\n\n[repos.pypi]\nformat = \"pypi\"\nupstream = \"{}\"\n\
             index_ttl = \"1s\"\nupdate_time = \"1s\"\ntimeout = \"2s\"\nretries = 0\n",
            data_dir.display(),
            upstream.url("simple/")
        ),
    )
    .expect("config");
    let granary = GranaryProcess::spawn(&config);
    let index_url = granary.index_url();

    // Cold: both clients through granary.
    for client in ["pip", "uv"] {
        let (index_url, scratch) = (index_url.clone(), scratch.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            install_and_import(client, &index_url, &scratch, "cold");
        })
        .await
        .expect("install task");
    }
    for file in [
        "alpha-1.0-py3-none-any.whl",
        "beta-1.1-py3-none-any.whl",
        "delta-3.0-py3-none-any.whl",
        "gamma_lib-0.5.tar.gz",
    ] {
        assert_eq!(
            upstream.hits(&format!("packages/{file}")),
            1,
            "{file} fetched upstream exactly once"
        );
    }
    assert_eq!(
        upstream.hits("packages/beta-2.0-py3-none-any.whl"),
        0,
        "requires-python excluded it"
    );

    // Upstream stopped, index entries expired: served from granary's cache.
    let upstream_addr = upstream.addr;
    upstream.stop().await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for client in ["pip", "uv"] {
        let (index_url, scratch) = (index_url.clone(), scratch.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            install_and_import(client, &index_url, &scratch, "upstream-stopped");
        })
        .await
        .expect("install task");
    }

    // Upstream hanging: still served, within the configured upstream timeout.
    let hanging = FakeUpstream::start_at(Some(fixture), upstream_addr, Behaviour::Hang).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    {
        let (index_url, scratch) = (index_url.clone(), scratch.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            install_and_import("pip", &index_url, &scratch, "upstream-hanging");
        })
        .await
        .expect("install task");
    }
    assert!(
        hanging.total_hits() > 0,
        "granary did try the hanging upstream"
    );

    let status = tokio::task::spawn_blocking(move || granary.terminate())
        .await
        .expect("terminate");
    assert!(
        status.success(),
        "granary exits cleanly on SIGTERM: {status}"
    );
    assert!(
        files_under(&data_dir.join("tmp")).is_empty(),
        "no temporary files left behind"
    );
}

/// Runs `command`, returning its output (for runs expected to fail).
fn output_of(command: &mut Command) -> std::process::Output {
    command.output().expect("client runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_and_uv_authenticate_to_a_private_index_each_their_own_way() {
    let scratch = tempfile::tempdir().expect("scratch");
    let fixture = build_pypi_fixture(&scratch.path().join("upstream"));
    let upstream = FakeUpstream::start(Some(fixture)).await;
    let password = "pip-and-uv-secret";
    let config = scratch.path().join("granary.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nlog = \"debug\"\n\n{}\n\
             [repos.pypi]\nformat = \"pypi\"\nupstream = \"{}\"\naccess = \"authenticated\"\n",
            scratch.path().join("granary-data").display(),
            crate::support::one_user_auth(password),
            upstream.url("simple/")
        ),
    )
    .expect("config");
    let granary = GranaryProcess::spawn(&config);
    let plain = granary.index_url();
    let with_credentials = plain.replacen("http://", &format!("http://alice:{password}@"), 1);
    let base = scratch.path().to_path_buf();

    let pip_base = base.clone();
    let pip = move |index: &str, home: &Path, round: &str| {
        let base = &pip_base;
        let mut command = Command::new(python());
        command
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(["--index-url", index])
            .arg("--cache-dir")
            .arg(base.join(format!("pip-{round}-cache")))
            .arg("--target")
            .arg(base.join(format!("pip-{round}-target")))
            .arg("alpha")
            .env("PIP_CONFIG_FILE", "/dev/null")
            .env("HOME", home)
            .env_remove("NETRC");
        command
    };
    let home_plain = base.join("home-plain");
    let home_netrc = base.join("home-netrc");
    std::fs::create_dir_all(&home_plain).expect("home");
    std::fs::create_dir_all(&home_netrc).expect("home");
    let netrc = home_netrc.join(".netrc");
    std::fs::write(
        &netrc,
        format!("machine 127.0.0.1 login alice password {password}\n"),
    )
    .expect(".netrc");
    std::fs::set_permissions(
        &netrc,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .expect("netrc mode");
    let (plain2, with2, home_plain2, home_netrc2, pip2) = (
        plain.clone(),
        with_credentials.clone(),
        home_plain.clone(),
        home_netrc.clone(),
        pip.clone(),
    );
    tokio::task::spawn_blocking(move || {
        // No credentials: refused.
        let refused = output_of(&mut pip2(&plain2, &home_plain2, "refused"));
        assert!(
            !refused.status.success(),
            "pip without credentials is refused"
        );
        // pip reports a 401 without credentials as "no versions"; granary's log shows
        // what it answered (checked below).
        // Credentials in the index URL.
        run(
            &mut pip2(&with2, &home_plain2, "url"),
            "pip, credentials in the URL",
        );
        // Credentials in ~/.netrc.
        run(
            &mut pip2(&plain2, &home_netrc2, "netrc"),
            "pip, credentials in .netrc",
        );
    })
    .await
    .expect("pip");

    // uv: a named index, credentials from UV_INDEX_<NAME>_USERNAME/PASSWORD.
    let (plain3, base3) = (plain.clone(), base.clone());
    tokio::task::spawn_blocking(move || {
        let uv_install = |round: &str, credentials: bool| {
            let mut command = Command::new(uv());
            command
                .args(["pip", "install", "--no-config", "--python", &python()])
                .args(["--default-index", &format!("private={plain3}")])
                .arg("--cache-dir")
                .arg(base3.join(format!("uv-{round}-cache")))
                .arg("--target")
                .arg(base3.join(format!("uv-{round}-target")))
                .arg("alpha")
                .env_remove("UV_INDEX_PRIVATE_USERNAME")
                .env_remove("UV_INDEX_PRIVATE_PASSWORD");
            if credentials {
                command
                    .env("UV_INDEX_PRIVATE_USERNAME", "alice")
                    .env("UV_INDEX_PRIVATE_PASSWORD", password);
            }
            command
        };
        let refused = output_of(&mut uv_install("refused", false));
        assert!(
            !refused.status.success(),
            "uv without credentials is refused"
        );
        run(
            &mut uv_install("env", true),
            "uv, credentials from the environment",
        );
        run(
            Command::new(python())
                .args(["-c", IMPORT_CHECK])
                .env("PYTHONPATH", base3.join("uv-env-target")),
            "import after uv install",
        );
    })
    .await
    .expect("uv");

    // A token made by `granary token create`, used as pip's `__token__` password.
    let created = Command::new(env!("CARGO_BIN_EXE_granary"))
        .args(["token", "create", "--config"])
        .arg(&config)
        .args(["--user", "alice", "--expires", "1h"])
        .output()
        .expect("granary token create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let token = String::from_utf8(created.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(token.starts_with("granary_"), "{token}");
    let with_token = plain.replacen("http://", &format!("http://__token__:{token}@"), 1);
    let (home, pip3) = (home_plain.clone(), pip);
    tokio::task::spawn_blocking(move || {
        run(
            &mut pip3(&with_token, &home, "token"),
            "pip, a token as __token__'s password",
        );
    })
    .await
    .expect("pip with a token");

    // No secret in the logs: not the password, not its hash, not the token.
    let log = granary.log_text();
    assert!(
        log.contains("status=401"),
        "the clients without credentials were answered 401"
    );
    assert!(
        log.contains("\"request\"") || log.contains("request"),
        "the log is captured"
    );
    assert!(!log.contains(password), "the password was logged");
    assert!(!log.contains("$argon2"), "the password hash was logged");
    assert!(!log.contains(&token), "the token was logged");
    assert!(
        !log.contains(&token["granary_".len()..]),
        "the token was logged"
    );
    assert!(
        !log.contains("YWxpY2"),
        "a Basic credential (base64 of `alice:`) was logged"
    );
}
