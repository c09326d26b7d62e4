//! `GET /-/api/REPO/PROJECT/VERSION/resolve` against the real clients' own
//! resolution of the same fixtures: cargo's `Cargo.lock`.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use crate::support::{FakeUpstream, TestGranary};

/// An index line of the resolution fixture (index-only: `cargo generate-lockfile`
/// reads no `.crate`).
fn line(name: &str, version: &str, deps: &[Value], features: &Value, yanked: bool) -> Value {
    json!({
        "name": name, "vers": version, "deps": deps, "features": features,
        "cksum": format!("{:064x}", name.len() * 1000 + version.len()), "yanked": yanked,
    })
}

fn dep(name: &str, req: &str) -> Value {
    json!({"name": name, "req": req, "features": [], "optional": false,
           "default_features": true, "target": null, "kind": "normal"})
}

fn with(mut value: Value, key: &str, field: Value) -> Value {
    value[key] = field;
    value
}

fn index_dir(name: &str) -> String {
    match name.len() {
        1 | 2 => format!("{}/{name}", name.len()),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

/// A registry exercising what cargo's resolver decides:
/// - `rx-a` 1.3.0 is yanked: `^1` takes 1.2.0 (2.0.0 is another range);
/// - `rx-b` is asked for its `extra` feature, which switches on its optional `rx-c`;
///   its `serde` feature (optional `rx-d`) is never asked;
/// - `rx-c`: `rx-b` asks `^1.1` (1.4.0 at first), `rx-a` asks `>=1.0, <1.3`: one
///   version per compatible range, so both get 1.2.0;
/// - `rx-old` 0.1.x and 0.2.x are different ranges: both are kept;
/// - `alias` is `rx-f` renamed; `rx-win` only on `cfg(windows)`; `rx-build` a build
///   dependency; `rx-dev` a dev-dependency (never part of a dependent's tree);
///   `rx-opt` optional and off.
fn write_registry(dir: &Path, base: &str) {
    let none = json!({});
    let top_deps = vec![
        with(dep("rx-b", "^0.3"), "features", json!(["extra"])),
        dep("rx-a", "^1"),
        with(dep("rx-win", "^1"), "target", json!("cfg(windows)")),
        dep("rx-old", "^0.1"),
        with(dep("alias", "1"), "package", json!("rx-f")),
        with(dep("rx-build", "^1"), "kind", json!("build")),
        with(dep("rx-dev", "^1"), "kind", json!("dev")),
        with(dep("rx-opt", "^1"), "optional", json!(true)),
    ];
    let crates: Vec<(&str, Vec<Value>)> = vec![
        (
            "rx-top",
            vec![line(
                "rx-top",
                "1.0.0",
                &top_deps,
                &json!({"default": ["std"], "std": [], "opt": ["dep:rx-opt"]}),
                false,
            )],
        ),
        (
            "rx-a",
            vec![
                line("rx-a", "1.0.0", &[], &none, false),
                line(
                    "rx-a",
                    "1.2.0",
                    &[dep("rx-old", "^0.2"), dep("rx-c", ">=1.0, <1.3")],
                    &none,
                    false,
                ),
                line("rx-a", "1.3.0", &[], &none, true),
                line("rx-a", "2.0.0", &[], &none, false),
            ],
        ),
        (
            "rx-b",
            vec![
                line("rx-b", "0.3.0", &[], &none, false),
                line(
                    "rx-b",
                    "0.3.1",
                    &[
                        with(dep("rx-c", "^1.1"), "optional", json!(true)),
                        with(dep("rx-d", "^1"), "optional", json!(true)),
                    ],
                    &json!({"extra": ["dep:rx-c"], "serde": ["rx-d"], "default": []}),
                    false,
                ),
                line("rx-b", "0.4.0", &[], &none, false),
            ],
        ),
        (
            "rx-c",
            ["1.0.0", "1.1.0", "1.2.0", "1.4.0"]
                .iter()
                .map(|v| line("rx-c", v, &[], &none, false))
                .collect(),
        ),
        (
            "rx-old",
            ["0.1.0", "0.1.5", "0.2.0", "0.2.3"]
                .iter()
                .map(|v| line("rx-old", v, &[], &none, false))
                .collect(),
        ),
        (
            "rx-f",
            ["1.0.0", "1.1.0"]
                .iter()
                .map(|v| line("rx-f", v, &[], &none, false))
                .collect(),
        ),
        ("rx-win", vec![line("rx-win", "1.0.0", &[], &none, false)]),
        (
            "rx-build",
            vec![line("rx-build", "1.0.0", &[], &none, false)],
        ),
        ("rx-dev", vec![line("rx-dev", "1.0.0", &[], &none, false)]),
        ("rx-opt", vec![line("rx-opt", "1.0.0", &[], &none, false)]),
        ("rx-d", vec![line("rx-d", "1.0.0", &[], &none, false)]),
    ];
    for (name, lines) in crates {
        let path = dir.join(index_dir(name));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("index dir");
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(&path, text.join("\n") + "\n").expect("index file");
    }
    std::fs::write(
        dir.join("config.json"),
        json!({"dl": format!("{base}files/{{crate}}/{{version}}/download")}).to_string(),
    )
    .expect("config.json");
}

/// `(name, version)` of every package in a `Cargo.lock` but `except`.
fn locked(lockfile: &str, except: &str) -> BTreeSet<(String, String)> {
    let lock: toml::Value = toml::from_str(lockfile).expect("Cargo.lock is TOML");
    lock["package"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name").to_owned(),
                p["version"].as_str().expect("version").to_owned(),
            )
        })
        .filter(|(name, _)| name != except)
        .collect()
}

pub fn resolved(graph: &Value) -> BTreeSet<(String, String)> {
    graph["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().expect("name").to_owned(),
                n["version"].as_str().expect("version").to_owned(),
            )
        })
        .collect()
}

/// The resolve API's JSON answer at `path`.
async fn graph_at(granary: &TestGranary, path: &str) -> Value {
    granary.get(path).await.json().await.expect("JSON")
}

/// `file` posted to `path`, the response as it begins.
pub async fn post(granary: &TestGranary, path: &str, file: &str) -> reqwest::Response {
    TestGranary::client()
        .post(granary.url(path))
        .body(file.to_owned())
        .send()
        .await
        .expect("POST")
}

/// `POST /-/api/REPO/resolve` with `file`: the status and the NDJSON lines.
pub async fn post_file(granary: &TestGranary, path: &str, file: &str) -> (u16, Vec<Value>) {
    let response = post(granary, path, file).await;
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/x-ndjson",
        "{path}"
    );
    let text = response.text().await.expect("body");
    let lines = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    (status, lines)
}

/// The nodes of an NDJSON answer but its root, which must end with `done`.
pub fn resolved_lines(lines: &[Value]) -> BTreeSet<(String, String)> {
    let done = lines.last().expect("a last line");
    assert_eq!(done["type"], "done", "{lines:?}");
    let nodes: Vec<&Value> = lines.iter().filter(|l| l["type"] == "node").collect();
    assert_eq!(done["nodes"], nodes.len());
    assert_eq!(nodes[0]["relation"], "SELF");
    nodes[1..]
        .iter()
        .map(|n| {
            (
                n["name"].as_str().expect("name").to_owned(),
                n["version"].as_str().expect("version").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_resolution_equals_what_cargo_generate_lockfile_writes() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = dir.path().join("registry");
    let upstream = FakeUpstream::start(Some(registry.clone())).await;
    write_registry(&registry, &upstream.url(""));
    let granary = TestGranary::with_format("cargo", &upstream.url(""), "").await;

    // What cargo itself writes for a project depending on rx-top.
    let project = dir.path().join("app");
    std::fs::create_dir_all(project.join("src")).expect("project");
    std::fs::write(
        project.join("Cargo.toml"),
        "[package]\nname = \"rx-app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\nrx-top = \"1\"\n\n[workspace]\n",
    )
    .expect("Cargo.toml");
    std::fs::write(project.join("src/main.rs"), "fn main() {}\n").expect("main.rs");
    let (p, home, reg) = (
        project.clone(),
        dir.path().join("home"),
        granary.url("cargo/"),
    );
    tokio::task::spawn_blocking(move || {
        crate::cargo::cargo(&p, &home, &reg, &["generate-lockfile"]);
    })
    .await
    .expect("generate-lockfile");
    let lockfile = std::fs::read_to_string(project.join("Cargo.lock")).expect("Cargo.lock");
    let by_cargo = locked(&lockfile, "rx-app");

    // Serving reads the index file first (a badge): resolving it afterwards shares
    // its parsed form (they once asked for two kinds, and the second panicked).
    let badge = granary.get("-/badge/cargo/rx-top/version.svg").await;
    assert_eq!(badge.status(), 200);
    let response = granary.get("-/api/cargo/rx-top/1.0.0/resolve").await;
    assert_eq!(response.status(), 200);
    let graph: Value = response.json().await.expect("JSON");
    assert_eq!(graph["target"], "all", "{graph}");
    assert_eq!(
        resolved(&graph),
        by_cargo,
        "granary vs Cargo.lock:\n{graph:#}\n{lockfile}"
    );
    assert!(
        graph["errors"].as_array().expect("errors").is_empty(),
        "{graph}"
    );
    // The renamed dependency is an edge to the real crate; relations and digests.
    let nodes = graph["nodes"].as_array().expect("nodes");
    let id = |name: &str| {
        nodes
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {graph}"))["id"]
            .clone()
    };
    assert_eq!(nodes[0]["name"], "rx-top");
    assert_eq!(nodes[0]["relation"], "SELF");
    assert!(graph["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .any(|e| e["from"] == id("rx-top") && e["to"] == id("rx-f") && e["requirement"] == "1"));
    let rx_c = nodes.iter().find(|n| n["name"] == "rx-c").expect("rx-c");
    assert_eq!(rx_c["relation"], "INDIRECT");
    assert_eq!(rx_c["digest"].as_str().map(str::len), Some(64));

    // For one platform, `cfg(windows)` dependencies drop out; depth and optional.
    let linux: Value = graph_at(
        &granary,
        "-/api/cargo/rx-top/1.0.0/resolve?target=x86_64-unknown-linux-gnu",
    )
    .await;
    let mut expected = by_cargo.clone();
    expected.remove(&("rx-win".to_owned(), "1.0.0".to_owned()));
    assert_eq!(resolved(&linux), expected);
    let shallow: Value = graph_at(
        &granary,
        "-/api/cargo/rx-top/1.0.0/resolve?max_depth=1&include_optional=true",
    )
    .await;
    let shallow = resolved(&shallow);
    assert!(shallow.contains(&("rx-opt".to_owned(), "1.0.0".to_owned())));
    assert!(
        !shallow.iter().any(|(name, _)| name == "rx-c"),
        "{shallow:?}"
    );

    // The project's own manifest, posted: what cargo locked for it.
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).expect("Cargo.toml");
    let (status, lines) = post_file(&granary, "-/api/cargo/resolve", &manifest).await;
    assert_eq!(status, 200, "{lines:?}");
    assert_eq!(lines[0]["name"], "rx-app");
    assert_eq!(resolved_lines(&lines), by_cargo, "{lines:#?}");
    let (status, lines) = post_file(&granary, "-/api/cargo/resolve", "[dependencies\n").await;
    assert_eq!(
        (status, &lines[0]["type"]),
        (400, &json!("error")),
        "{lines:?}"
    );

    // Bad input is a clear 4xx.
    for (path, status) in [
        ("-/api/cargo/rx-top/9.9.9/resolve", 404),
        ("-/api/cargo/no-such-crate/1.0.0/resolve", 404),
        (
            "-/api/cargo/rx-top/1.0.0/resolve?target=no-such-triple",
            400,
        ),
        ("-/api/cargo/rx-top/1.0.0/resolve?max_depth=deep", 400),
        ("-/api/cargo/rx-top/1.0.0/resolve?colour=blue", 400),
    ] {
        let response = granary.get(path).await;
        assert_eq!(response.status(), status, "{path}");
    }
}

fn base64_of_sha512(text: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(text.as_bytes()))
}

/// A packument of the npm resolution fixture (packuments only: `npm install
/// --package-lock-only` fetches no tarball).
fn packument(base: &str, name: &str, tags: &Value, versions: &[(&str, Value)]) -> Value {
    let versions: serde_json::Map<String, Value> = versions
        .iter()
        .map(|(version, extra)| {
            let mut document = json!({
                "name": name, "version": version,
                "dist": {
                    "tarball": format!("{base}{name}/-/{name}-{version}.tgz"),
                    "shasum": format!("{:040x}", name.len() * 100 + version.len()),
                    // Distinct per version: npm takes equal integrity for the same package.
                    "integrity": format!("sha512-{}", base64_of_sha512(&format!("{name}@{version}"))),
                },
            });
            for (key, value) in extra.as_object().expect("an object") {
                document[key] = value.clone();
            }
            ((*version).to_owned(), document)
        })
        .collect();
    json!({"name": name, "dist-tags": tags, "versions": versions})
}

/// The npm fixture:
/// - `rn-a`: `latest` is 1.1.0, so `^1.0.0` takes it over the higher 1.2.0;
/// - `rn-c`: `rn-a` takes 1.5.0 to the top; `rn-b` pins 1.0.0, which nests under it;
/// - `rn-d`: `rn-opt` (processed first) places 1.0.0 at the top, and `rn-peer`'s
///   `^1.0.0` is satisfied by that copy (no 1.3.0);
/// - `rn-e`: its `latest` (1.1.0) is deprecated, so `^1.0.0` takes 1.0.0;
/// - `rn-tag`: asked by its `next` dist-tag (a pre-release);
/// - `rn-opt`: an optional dependency for darwin only; `rn-peer` a peer dependency;
///   `rn-peer-opt` an optional peer (not installed).
fn write_npm_registry(dir: &Path, base: &str) {
    let none = json!({});
    let packuments = vec![
        packument(
            base,
            "rn-top",
            &json!({"latest": "1.0.0"}),
            &[(
                "1.0.0",
                json!({
                    "dependencies": {"rn-a": "^1.0.0", "rn-b": "~2.1.0", "rn-tag": "next", "rn-e": "^1.0.0"},
                    "optionalDependencies": {"rn-opt": "^1.0.0"},
                    "peerDependencies": {"rn-peer": "^3.0.0", "rn-peer-opt": "^1.0.0"},
                    "peerDependenciesMeta": {"rn-peer-opt": {"optional": true}},
                }),
            )],
        ),
        packument(
            base,
            "rn-a",
            &json!({"latest": "1.1.0"}),
            &[
                ("1.0.0", none.clone()),
                ("1.1.0", json!({"dependencies": {"rn-c": "^1.0.0"}})),
                ("1.2.0", none.clone()),
                ("2.0.0-beta.1", none.clone()),
            ],
        ),
        packument(
            base,
            "rn-b",
            &json!({"latest": "2.2.0"}),
            &[
                ("2.0.0", none.clone()),
                ("2.1.0", none.clone()),
                ("2.1.3", json!({"dependencies": {"rn-c": "1.0.0"}})),
                ("2.2.0", none.clone()),
            ],
        ),
        packument(
            base,
            "rn-c",
            &json!({"latest": "1.5.0"}),
            &[("1.0.0", none.clone()), ("1.5.0", none.clone())],
        ),
        packument(
            base,
            "rn-d",
            &json!({"latest": "1.3.0"}),
            &[("1.0.0", none.clone()), ("1.3.0", none.clone())],
        ),
        packument(
            base,
            "rn-e",
            &json!({"latest": "1.1.0"}),
            &[
                ("1.0.0", none.clone()),
                ("1.1.0", json!({"deprecated": "broken, use 1.0.0"})),
            ],
        ),
        packument(
            base,
            "rn-tag",
            &json!({"latest": "1.0.0", "next": "2.0.0-rc.1"}),
            &[("1.0.0", none.clone()), ("2.0.0-rc.1", none.clone())],
        ),
        packument(
            base,
            "rn-opt",
            &json!({"latest": "1.0.0"}),
            &[(
                "1.0.0",
                json!({"os": ["darwin"], "dependencies": {"rn-d": "1.0.0"}}),
            )],
        ),
        packument(
            base,
            "rn-peer",
            &json!({"latest": "3.1.0"}),
            &[
                ("3.0.0", none.clone()),
                ("3.1.0", json!({"dependencies": {"rn-d": "^1.0.0"}})),
            ],
        ),
        packument(
            base,
            "rn-peer-opt",
            &json!({"latest": "1.0.0"}),
            &[("1.0.0", none.clone())],
        ),
    ];
    for packument in packuments {
        let name = packument["name"].as_str().expect("name");
        std::fs::create_dir_all(dir.join(name)).expect("dir");
        std::fs::write(dir.join(name).join("index.json"), packument.to_string())
            .expect("packument");
    }
}

/// `(name, version)` of every package in a `package-lock.json` (its `packages`, the
/// project itself left out).
fn npm_locked(lockfile: &str) -> BTreeSet<(String, String)> {
    let lock: Value = serde_json::from_str(lockfile).expect("JSON");
    lock["packages"]
        .as_object()
        .expect("packages")
        .iter()
        .filter(|(location, _)| !location.is_empty())
        .map(|(location, entry)| {
            let name = location.rsplit("node_modules/").next().expect("a name");
            (
                name.to_owned(),
                entry["version"].as_str().expect("version").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_resolution_equals_what_npm_install_package_lock_only_writes() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = dir.path().join("registry");
    let upstream = FakeUpstream::start(Some(registry.clone())).await;
    write_npm_registry(&registry, &upstream.url(""));
    // Index documents expire after 3 s, so a change upstream reaches granary.
    let granary = TestGranary::npm(&upstream.url(""), "index_ttl = \"3s\"").await;

    let project = dir.path().join("app");
    std::fs::create_dir_all(&project).expect("project");
    std::fs::write(
        project.join("package.json"),
        r#"{"name": "rn-app", "version": "1.0.0", "private": true, "dependencies": {"rn-top": "1.0.0"}}"#,
    )
    .expect("package.json");
    let (p, r, s) = (
        project.clone(),
        granary.url("npm/"),
        dir.path().to_path_buf(),
    );
    tokio::task::spawn_blocking(move || {
        crate::npm::run_client(
            Path::new("npm"),
            &["install", "--package-lock-only", "--ignore-scripts"],
            &p,
            &r,
            &s,
        );
    })
    .await
    .expect("npm install --package-lock-only");
    let lockfile = std::fs::read_to_string(project.join("package-lock.json")).expect("lockfile");
    let by_npm = npm_locked(&lockfile);

    let graph: Value = graph_at(&granary, "-/api/npm/rn-top/1.0.0/resolve").await;
    // Cached whole while the packuments it read are unchanged (and fresh).
    let again = granary.get("-/api/npm/rn-top/1.0.0/resolve").await;
    assert_eq!(again.headers()["x-cache"], "HIT");
    assert_eq!(again.json::<Value>().await.expect("JSON"), graph);
    assert_eq!(graph["target"], "all", "{graph}");
    assert_eq!(
        resolved(&graph),
        by_npm,
        "granary vs package-lock.json:\n{graph:#}\n{lockfile}"
    );
    assert!(
        graph["errors"].as_array().expect("errors").is_empty(),
        "{graph}"
    );
    let peer = graph["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["kind"] == "peer")
        .expect("a peer edge");
    assert_eq!(peer["requirement"], "^3.0.0");

    // The project's own package.json, posted: what npm locked for it.
    let package_json = std::fs::read_to_string(project.join("package.json")).expect("package.json");
    let (status, lines) = post_file(&granary, "-/api/npm/resolve", &package_json).await;
    assert_eq!(status, 200, "{lines:?}");
    assert_eq!(lines[0]["name"], "rn-app");
    assert_eq!(resolved_lines(&lines), by_npm, "{lines:#?}");
    let (status, _) = post_file(&granary, "-/api/npm/resolve", "[1, 2]").await;
    assert_eq!(status, 400);

    // On linux, the darwin-only optional dependency (and what only it needs) drops out.
    let linux: Value = graph_at(&granary, "-/api/npm/rn-top/1.0.0/resolve?target=linux-x64").await;
    let linux = resolved(&linux);
    assert!(!linux.iter().any(|(name, _)| name == "rn-opt"), "{linux:?}");
    assert!(
        linux.contains(&("rn-d".to_owned(), "1.3.0".to_owned())),
        "{linux:?}"
    );
    let with_optional_peers: Value = graph_at(
        &granary,
        "-/api/npm/rn-top/1.0.0/resolve?include_optional=true",
    )
    .await;
    assert!(
        resolved(&with_optional_peers).contains(&("rn-peer-opt".to_owned(), "1.0.0".to_owned()))
    );
    let response = granary
        .get("-/api/npm/rn-top/1.0.0/resolve?target=linux")
        .await;
    assert_eq!(response.status(), 400);

    // Recomputing on demand is for the admin role.
    let refresh = granary
        .get("-/api/npm/rn-top/1.0.0/resolve?refresh=true")
        .await;
    assert_ne!(refresh.status(), 200, "refresh=true without the admin role");
    // A new `latest` of rn-c upstream: once granary's copy is refreshed, the cached
    // resolution no longer holds and the next one takes it.
    let newer = packument(
        &upstream.url(""),
        "rn-c",
        &json!({"latest": "1.6.0"}),
        &[
            ("1.0.0", json!({})),
            ("1.5.0", json!({})),
            ("1.6.0", json!({})),
        ],
    );
    std::fs::write(registry.join("rn-c/index.json"), newer.to_string()).expect("packument");
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let graph: Value = graph_at(&granary, "-/api/npm/rn-top/1.0.0/resolve").await;
        seen = resolved(&graph);
        if seen.contains(&("rn-c".to_owned(), "1.6.0".to_owned())) {
            break;
        }
    }
    assert!(
        seen.contains(&("rn-c".to_owned(), "1.6.0".to_owned())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("rn-c".to_owned(), "1.0.0".to_owned())),
        "rn-b's pin stays"
    );
}

/// Pins of a `uv pip compile` output: `name==version` lines.
fn compiled(requirements: &str) -> BTreeSet<(String, String)> {
    requirements
        .lines()
        .filter_map(|line| line.split_once("=="))
        .map(|(name, version)| {
            (
                name.trim().to_owned(),
                version
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypi_resolution_equals_what_uv_pip_compile_pins() {
    let dir = tempfile::tempdir().expect("dir");
    let fixture = dir.path().join("upstream");
    crate::support::run_generator(
        &crate::support::python(),
        "pypi/make_index.py",
        &[fixture.as_os_str(), "--resolution".as_ref()],
        &[],
    );
    let upstream = FakeUpstream::start(Some(fixture)).await;
    let granary = TestGranary::with_format("pypi", &upstream.url("simple/"), "").await;

    // What uv pins through granary for Python 3.11 on Linux.
    let (input, output) = (
        dir.path().join("requirements.in"),
        dir.path().join("out.txt"),
    );
    std::fs::write(&input, "rp-top==1.0\n").expect("requirements.in");
    let (index, cache) = (granary.url("pypi/simple/"), dir.path().join("uv-cache"));
    let (i, o) = (input.clone(), output.clone());
    tokio::task::spawn_blocking(move || {
        crate::e2e_clients::run(
            std::process::Command::new(crate::e2e_clients::uv())
                .args(["pip", "compile", "--no-config", "--python-version", "3.11"])
                .args(["--python-platform", "x86_64-unknown-linux-gnu"])
                .args(["--python", &crate::support::python()])
                .args(["--index-url", &index, "--output-file"])
                .arg(&o)
                .arg(&i)
                .env("UV_CACHE_DIR", &cache),
            "uv pip compile",
        );
    })
    .await
    .expect("compile");
    let pinned = std::fs::read_to_string(&output).expect("uv's output");
    let by_uv = compiled(&pinned);
    assert!(
        by_uv.contains(&("rp-e".to_owned(), "2.0".to_owned())),
        "{pinned}"
    );

    let response = granary
        .get("-/api/pypi/rp-top/1.0/resolve?target=3.11-linux-x86_64")
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-cache"],
        "MISS",
        "the first resolution is made"
    );
    let graph: Value = response.json().await.expect("JSON");
    assert_eq!(graph["target"], "3.11-linux-x86_64", "{graph}");
    assert_eq!(
        resolved(&graph),
        by_uv,
        "granary vs uv pip compile:\n{graph:#}\n{pinned}"
    );
    assert!(
        graph["errors"].as_array().expect("errors").is_empty(),
        "{graph}"
    );
    let nodes = graph["nodes"].as_array().expect("nodes");
    let node = |name: &str| {
        nodes
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {graph}"))
    };
    assert_eq!(node("rp-top")["relation"], "SELF");
    assert_eq!(node("rp-speed")["relation"], "INDIRECT");
    assert_eq!(node("rp-shared")["relation"], "DIRECT");
    assert_eq!(node("rp-a")["digest"].as_str().map(str::len), Some(64));
    // The extra's requirement is the edge from rp-b to rp-speed.
    assert!(
        graph["edges"].as_array().expect("edges").iter().any(|e| {
            e["from"] == node("rp-b")["id"]
                && e["to"] == node("rp-speed")["id"]
                && e["requirement"] == "rp-speed; extra == 'fast'"
        }),
        "{graph}"
    );
    let again = granary
        .get("-/api/pypi/rp-top/1.0/resolve?target=3.11-linux-x86_64")
        .await;
    assert_eq!(again.headers()["x-cache"], "HIT");

    // On Windows, the `sys_platform == 'win32'` requirement comes in; the default
    // target is stated.
    let windows = graph_at(
        &granary,
        "-/api/pypi/rp-top/1.0/resolve?target=3.11-windows-x86_64",
    )
    .await;
    let mut expected = by_uv.clone();
    expected.insert(("rp-d".to_owned(), "1.0".to_owned()));
    assert_eq!(resolved(&windows), expected, "{windows:#}");
    let default = graph_at(&granary, "-/api/pypi/rp-top/1.0/resolve").await;
    assert_eq!(default["target"], "3.12-linux-x86_64");

    // A requirements file, posted: unpinned, with comments and pip's options.
    let (status, lines) = post_file(
        &granary,
        "-/api/pypi/resolve?target=3.11-linux-x86_64",
        "# what the app needs\n--index-url http://127.0.0.1:9/ignored/\nrp-top \\\n    --hash=sha256:00  # pinned by uv\n",
    )
    .await;
    assert_eq!(status, 200, "{lines:?}");
    assert_eq!(lines[0]["name"], "requirements.txt");
    assert_eq!(resolved_lines(&lines), by_uv, "{lines:#?}");
    for (file, why) in [
        ("-r other.txt\n", "names another file"),
        ("rp-top\nnot a requirement!\n", "line 2"),
        ("# nothing\n", "names no requirement"),
    ] {
        let (status, lines) = post_file(&granary, "-/api/pypi/resolve", file).await;
        assert_eq!(status, 400, "{file}");
        assert_eq!(lines[0]["type"], "error");
        assert!(
            lines[0]["message"].as_str().expect("message").contains(why),
            "{file}: {lines:?}"
        );
    }

    // A version that cannot be satisfied says why, naming the requirement.
    let conflict = graph_at(&granary, "-/api/pypi/rp-bad/1.0/resolve?target=3.11").await;
    let errors = conflict["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{conflict:#}");
    let explanation = errors[0].as_str().expect("text");
    assert!(
        explanation.contains("rp-shared") && explanation.contains("rp-a"),
        "{explanation}"
    );
    for (path, status) in [
        ("-/api/pypi/rp-top/9.9/resolve", 404),
        ("-/api/pypi/no-such-project/1.0/resolve", 404),
        ("-/api/pypi/rp-top/1.0/resolve?target=2.7", 400),
        ("-/api/pypi/rp-top/1.0/resolve?target=3.11-plan9", 400),
        ("-/api/pypi/rp-top/not..a..version/resolve", 400),
    ] {
        let response = granary.get(path).await;
        assert_eq!(response.status(), status, "{path}");
    }
}

/// `GET` with the answer's `X-Cache` and body.
async fn resolve_at(url: String) -> (String, Value) {
    let response = TestGranary::client()
        .get(url)
        .send()
        .await
        .expect("resolve");
    assert_eq!(response.status(), 200);
    let cache = response.headers()["x-cache"]
        .to_str()
        .expect("ascii")
        .to_owned();
    (cache, response.json().await.expect("JSON"))
}

// Issue #13: resolutions are kept in the metadata store too. A restarted granary
// answers from it (checked against the documents it read, which it finds stored),
// until one of those documents is no longer the copy the answer read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_resolution_is_answered_after_a_restart_until_a_document_it_read_changes() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = dir.path().join("registry");
    let upstream = FakeUpstream::start(Some(registry.clone())).await;
    write_registry(&registry, &upstream.url(""));
    let config = dir.path().join("granary.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"resolve-admin\"\n\n\
             [repos.cargo]\nformat = \"cargo\"\nupstream = \"{}\"\n",
            dir.path().join("data").display(),
            upstream.url("")
        ),
    )
    .expect("config");
    let path = "-/api/cargo/rx-top/1.0.0/resolve?target=x86_64-unknown-linux-gnu";

    let granary = crate::support::GranaryProcess::spawn(&config);
    let (cache, first) = resolve_at(granary.url(path)).await;
    assert_eq!(cache, "MISS");
    tokio::task::spawn_blocking(move || granary.terminate())
        .await
        .expect("stop");

    // A new process: memory is empty, the kept answer and its documents are stored.
    let granary = crate::support::GranaryProcess::spawn(&config);
    let hits = upstream.total_hits();
    let (cache, again) = resolve_at(granary.url(path)).await;
    assert_eq!(cache, "HIT", "answered from the metadata store");
    assert_eq!(again, first);
    assert_eq!(
        upstream.total_hits(),
        hits,
        "nothing was fetched to check it"
    );

    // A document it read is purged: the kept answer no longer holds.
    let purged = TestGranary::client()
        .delete(granary.url("-/cache/cargo/rx-c"))
        .bearer_auth("resolve-admin")
        .send()
        .await
        .expect("purge");
    assert_eq!(purged.status(), 200);
    let (cache, anew) = resolve_at(granary.url(path)).await;
    assert_eq!(cache, "MISS", "resolved again");
    assert_eq!(resolved(&anew), resolved(&first));
    drop(granary);
}
