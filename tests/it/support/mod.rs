//! Test support: a fake upstream registry and a granary on an ephemeral port.

pub mod engines;
pub mod faults;
pub mod granary;
pub mod process;
pub mod upstream;

pub use engines::Engines;
pub use granary::TestGranary;
pub use process::GranaryProcess;
pub use upstream::{Behaviour, FakeUpstream, Scripted};

use std::path::{Path, PathBuf};

/// Builds the PyPI fixture (real wheels, an sdist, both index forms) into `dir`.
pub fn build_pypi_fixture(dir: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pypi/make_index.py");
    let status = std::process::Command::new(python())
        .arg(&script)
        .arg(dir)
        .status()
        .expect("python3 runs the fixture generator");
    assert!(status.success(), "fixture generator failed");
    dir.to_path_buf()
}

/// Runs a fixture generator under `tests/fixtures/` with `program` (python3, node)
/// with `args` and extra environment `envs`; panics with its stderr when it fails.
pub fn run_generator(
    program: &str,
    script: &str,
    args: &[&std::ffi::OsStr],
    envs: &[(&str, &std::ffi::OsStr)],
) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(script);
    let output = std::process::Command::new(program)
        .arg(&script)
        .args(args)
        .env("CARGO", env!("CARGO"))
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The Python interpreter used for fixtures and pip.
pub fn python() -> String {
    std::env::var("GRANARY_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Files below `dir`, recursively (for "nothing was stored" checks).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// sha256 hex of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A PEP 691 project page listing one file, `filename`, at `../../dl/<filename>`, with
/// the SHA-256 of `body`.
pub fn one_file_page(project: &str, filename: &str, body: &[u8]) -> Scripted {
    Scripted::ok(
        serde_json::json!({
            "meta": {"api-version": "1.0"}, "name": project,
            "files": [{"filename": filename, "url": format!("../../dl/{filename}"), "hashes": {"sha256": sha256_hex(body)}}]
        })
        .to_string(),
    )
    .header("content-type", "application/vnd.pypi.simple.v1+json")
}

/// `[auth]` settings with one user, `alice`, whose password is `password`.
pub fn one_user_auth(password: &str) -> String {
    format!(
        "[auth]\n[auth.users.alice]\npassword_hash = \"{}\"\n",
        ::granary::access::hash_password(password).expect("hash")
    )
}
