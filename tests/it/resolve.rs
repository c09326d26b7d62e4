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

fn resolved(graph: &Value) -> BTreeSet<(String, String)> {
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
    let linux: Value = granary
        .get("-/api/cargo/rx-top/1.0.0/resolve?target=x86_64-unknown-linux-gnu")
        .await
        .json()
        .await
        .expect("JSON");
    let mut expected = by_cargo.clone();
    expected.remove(&("rx-win".to_owned(), "1.0.0".to_owned()));
    assert_eq!(resolved(&linux), expected);
    let shallow: Value = granary
        .get("-/api/cargo/rx-top/1.0.0/resolve?max_depth=1&include_optional=true")
        .await
        .json()
        .await
        .expect("JSON");
    let shallow = resolved(&shallow);
    assert!(shallow.contains(&("rx-opt".to_owned(), "1.0.0".to_owned())));
    assert!(
        !shallow.iter().any(|(name, _)| name == "rx-c"),
        "{shallow:?}"
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
