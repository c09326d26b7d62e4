//! Maven resolution against the real `mvn dependency:tree` through granary, on a
//! fixture that exercises what Maven decides: parent properties and management, an
//! imported BOM, nearest-wins and first-declaration ties, scopes (test, provided,
//! runtime), optional dependencies, exclusions, a classifier, a version range, and a
//! project's own `dependencyManagement` overriding transitive versions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::resolve::{post_file, resolved, resolved_lines};
use crate::support::{FakeUpstream, TestGranary};

/// A consumer of `rx-top`, nothing else.
const CONSUMER: &str = r"<project><modelVersion>4.0.0</modelVersion>
<groupId>com.example</groupId><artifactId>consumer</artifactId><version>1</version>
<packaging>pom</packaging>
<dependencies>
  <dependency><groupId>org.rx</groupId><artifactId>rx-top</artifactId><version>1.0</version></dependency>
</dependencies>
</project>
";

/// A project of its own: a test-scoped and an optional direct dependency, and
/// management that overrides two transitive versions (rx-leaf 2.0 → 1.0, and
/// rx-range, which rx-a asks for as `[1.0,2.0)`, → 1.0).
pub const PROJECT: &str = r"<project><modelVersion>4.0.0</modelVersion>
<groupId>com.example</groupId><artifactId>app</artifactId><version>1</version>
<packaging>pom</packaging>
<dependencyManagement><dependencies>
  <dependency><groupId>org.rx</groupId><artifactId>rx-leaf</artifactId><version>1.0</version></dependency>
  <dependency><groupId>org.rx</groupId><artifactId>rx-range</artifactId><version>1.0</version></dependency>
</dependencies></dependencyManagement>
<dependencies>
  <dependency><groupId>org.rx</groupId><artifactId>rx-top</artifactId><version>1.0</version></dependency>
  <dependency><groupId>org.rx</groupId><artifactId>rx-test</artifactId><version>1.0</version><scope>test</scope></dependency>
  <dependency><groupId>org.rx</groupId><artifactId>rx-opt</artifactId><version>1.0</version><optional>true</optional></dependency>
</dependencies>
</project>
";

/// `(group:artifact[:classifier], version)` of every line of a
/// `dependency:tree -DoutputFile` file but the project's own (the first).
fn tree_entries(tree: &str) -> BTreeSet<(String, String)> {
    tree.lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let entry = line
                .trim_start_matches(['|', '+', '-', '\\', ' '])
                .split_whitespace()
                .next()
                .expect("an entry");
            let parts: Vec<&str> = entry.split(':').collect();
            match parts.as_slice() {
                [group, artifact, _type, version, _scope] => {
                    (format!("{group}:{artifact}"), (*version).to_owned())
                }
                [group, artifact, _type, classifier, version, _scope] => (
                    format!("{group}:{artifact}:{classifier}"),
                    (*version).to_owned(),
                ),
                _ => panic!("unexpected tree line `{line}`"),
            }
        })
        .collect()
}

/// `mvn dependency:tree` of `pom`, with an empty local repository.
fn mvn_tree(scratch: &Path, name: &str, pom: &str, settings: &Path, plugin: &str) -> String {
    let project = scratch.join(name);
    std::fs::create_dir_all(&project).expect("project");
    std::fs::write(project.join("pom.xml"), pom).expect("pom.xml");
    let (local, home, out) = (
        scratch.join(format!("{name}-local")),
        scratch.join(format!("{name}-home")),
        project.join("tree.txt"),
    );
    std::fs::create_dir_all(&home).expect("home");
    let output = Command::new("mvn")
        .args(["-B", "-s"])
        .arg(settings)
        .arg(format!("-Dmaven.repo.local={}", local.display()))
        .arg(format!(
            "org.apache.maven.plugins:maven-dependency-plugin:{plugin}:tree"
        ))
        .arg(format!("-DoutputFile={}", out.display()))
        .current_dir(&project)
        .env("HOME", &home)
        .output()
        .expect("mvn runs (scripts/test installs Debian's maven)");
    assert!(
        output.status.success(),
        "mvn dependency:tree failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(out).expect("the tree mvn wrote")
}

/// What `mvn dependency:tree` lists for `pom` (the tree, and its entries), which must
/// hold each of `expected` (so the fixture exercises what it claims to).
async fn listed_by_mvn(
    scratch: &Path,
    name: &'static str,
    pom: &'static str,
    settings: &Path,
    plugin: &str,
    expected: Vec<(String, String)>,
) -> (String, BTreeSet<(String, String)>) {
    let (s, st, p) = (
        scratch.to_path_buf(),
        settings.to_path_buf(),
        plugin.to_owned(),
    );
    let tree = tokio::task::spawn_blocking(move || mvn_tree(&s, name, pom, &st, &p))
        .await
        .expect("mvn");
    let by_mvn = tree_entries(&tree);
    for expected in expected {
        assert!(by_mvn.contains(&expected), "{expected:?} in\n{tree}");
    }
    (tree, by_mvn)
}

fn entry(name: &str, version: &str) -> (String, String) {
    (format!("org.rx:{name}"), version.to_owned())
}

/// The resolution fixture's repository, generated in `scratch`.
fn resolution_repository(scratch: &Path) -> PathBuf {
    let repository = scratch.join("repository");
    crate::support::run_generator(
        &crate::support::python(),
        "maven/make_resolution_repository.py",
        &[repository.as_os_str()],
        &[],
    );
    repository
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maven_resolution_equals_what_mvn_dependency_tree_lists() {
    let plugin = crate::maven::debian_dependency_plugin();
    let dir = tempfile::tempdir().expect("dir");
    let scratch = dir.path().to_path_buf();
    let repository = resolution_repository(&scratch);
    let fixture = FakeUpstream::start(Some(repository)).await;
    let debian = FakeUpstream::start(Some(PathBuf::from(crate::maven::DEBIAN_REPOSITORY))).await;
    let granary = TestGranary::with_repos(&format!(
        "[repos.fixture]\nformat = \"maven\"\nupstream = \"{}\"\n\n\
         [repos.debian]\nformat = \"maven\"\nupstream = \"{}\"\n",
        fixture.url(""),
        debian.url("")
    ))
    .await;
    let settings = crate::maven::write_settings(&scratch, &granary);

    // A consumer of rx-top: what mvn lists is what granary resolves for rx-top.
    let (tree, by_mvn) = listed_by_mvn(
        &scratch,
        "consumer",
        CONSUMER,
        &settings,
        &plugin,
        vec![
            entry("rx-shared", "1.0"),
            entry("rx-range", "1.5"),
            entry("rx-leaf", "2.0"),
            entry("rx-bommed", "3.0"),
            ("org.rx:rx-native:linux".to_owned(), "1.0".to_owned()),
        ],
    )
    .await;
    let response = granary.get("-/api/fixture/org.rx:rx-top/1.0/resolve").await;
    assert_eq!(response.status(), 200);
    let graph: Value = response.json().await.expect("JSON");
    assert_eq!(
        resolved(&graph),
        by_mvn,
        "granary vs mvn dependency:tree:\n{graph:#}\n{tree}"
    );
    assert!(
        graph["errors"].as_array().expect("errors").is_empty(),
        "{graph}"
    );
    assert_eq!(graph["target"], "default");
    // Scopes derive along the path: rx-b is runtime, so is what it brings.
    let nodes = graph["nodes"].as_array().expect("nodes");
    let id = |name: &str| {
        nodes
            .iter()
            .find(|n| n["name"] == format!("org.rx:{name}"))
            .unwrap_or_else(|| panic!("{name} in {graph}"))["id"]
            .clone()
    };
    let edges = graph["edges"].as_array().expect("edges");
    assert!(
        edges
            .iter()
            .any(|e| e["from"] == id("rx-b") && e["to"] == id("rx-deep") && e["kind"] == "runtime"),
        "{graph}"
    );
    assert!(
        edges
            .iter()
            .any(|e| e["to"] == id("rx-range") && e["requirement"] == "[1.0,2.0)"),
        "{graph}"
    );

    // The project's own pom.xml, posted: its test and optional dependencies, and
    // its management of transitive versions.
    let (tree, by_mvn) = listed_by_mvn(
        &scratch,
        "app",
        PROJECT,
        &settings,
        &plugin,
        vec![
            entry("rx-leaf", "1.0"),
            entry("rx-range", "1.0"),
            entry("rx-testdep", "1.0"),
            entry("rx-opt", "1.0"),
        ],
    )
    .await;
    let (status, lines) = post_file(&granary, "-/api/fixture/resolve", PROJECT).await;
    assert_eq!(status, 200, "{lines:?}");
    assert_eq!(lines[0]["name"], "com.example:app");
    assert_eq!(
        resolved_lines(&lines),
        by_mvn,
        "granary vs mvn dependency:tree:\n{lines:#?}\n{tree}"
    );

    // A POM the upstream fails to serve is an error on its node, and the answer is
    // not kept: once the upstream serves it, the next request has it.
    let late = PROJECT.replace(
        "<artifactId>rx-opt</artifactId>",
        "<artifactId>rx-managed</artifactId>",
    );
    fixture.queue_statuses(
        "org/rx/rx-managed/1.0/rx-managed-1.0.pom",
        &[reqwest::StatusCode::SERVICE_UNAVAILABLE; 3],
    );
    let (status, lines) = post_file(&granary, "-/api/fixture/resolve", &late).await;
    assert_eq!(status, 200, "{lines:?}");
    let done = lines.last().expect("done");
    assert!(
        done["errors"].to_string().contains("rx-managed"),
        "the failed POM is said: {done}"
    );
    let (status, lines) = post_file(&granary, "-/api/fixture/resolve", &late).await;
    assert_eq!(status, 200, "{lines:?}");
    let done = lines.last().expect("done");
    assert_eq!(
        done["errors"],
        json!([]),
        "resolved again, now readable: {lines:#?}"
    );

    // Bad input is a clear 4xx.
    let (status, lines) = post_file(&granary, "-/api/fixture/resolve", "<project").await;
    assert_eq!(
        (status, &lines[0]["type"]),
        (400, &json!("error")),
        "{lines:?}"
    );
    for (path, status) in [
        ("-/api/fixture/org.rx:rx-top/9.9/resolve", 404),
        ("-/api/fixture/org.rx:no-such/1.0/resolve", 404),
        ("-/api/fixture/rx-top/1.0/resolve", 400),
        ("-/api/fixture/org.rx:rx-top/1.0/resolve?target=linux", 400),
    ] {
        let response = granary.get(path).await;
        assert_eq!(response.status(), status, "{path}");
    }
}

/// The NDJSON lines of a response as they come, chunk by chunk.
struct LineReader {
    response: reqwest::Response,
    pending: Vec<u8>,
    lines: Vec<Value>,
}

impl LineReader {
    async fn post(granary: &TestGranary, path: &str, file: &str) -> Self {
        let response = crate::resolve::post(granary, path, file).await;
        assert_eq!(response.status(), 200);
        Self {
            response,
            pending: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Reads until `enough` holds of the lines read, or the body ends; `false` if it
    /// ended first.
    async fn until(&mut self, enough: impl Fn(&[Value]) -> bool) -> bool {
        while !enough(&self.lines) {
            let Some(chunk) = self.response.chunk().await.expect("a chunk") else {
                return false;
            };
            self.pending.extend_from_slice(&chunk);
            while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                self.lines
                    .push(serde_json::from_slice(&line).expect("each line is JSON"));
            }
        }
        true
    }

    async fn read_to_the_end(mut self) -> Vec<Value> {
        self.until(|_| false).await;
        assert!(self.pending.is_empty(), "a partial last line");
        self.lines
    }
}

/// The lines as a set of their texts (the order of a streamed answer's lines is not
/// that of a cached one's).
fn line_set(lines: &[Value]) -> BTreeSet<String> {
    lines.iter().map(Value::to_string).collect()
}

fn depths(lines: &[Value]) -> BTreeSet<u64> {
    lines
        .iter()
        .filter(|l| l["type"] == "node")
        .map(|l| l["depth"].as_u64().expect("depth"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pom_xml_resolution_streams_each_level_once_final_to_every_caller() {
    let dir = tempfile::tempdir().expect("dir");
    let repository = resolution_repository(dir.path());
    let fixture = FakeUpstream::start(Some(repository.clone())).await;
    // rx-deep is at depth 3: its POM is held until the callers have read the levels
    // above it.
    let held = "org/rx/rx-deep/1.0/rx-deep-1.0.pom";
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut scripted =
        crate::support::Scripted::ok(std::fs::read(repository.join(held)).expect("the held POM"));
    scripted.hold_after = Some((0, std::sync::Arc::clone(&gate)));
    fixture.script(&format!("/{held}"), scripted);
    let granary = TestGranary::with_repos(&format!(
        "[repos.fixture]\nformat = \"maven\"\nupstream = \"{}\"\n",
        fixture.url("")
    ))
    .await;

    // The first caller starts the resolution, the second joins it: both read levels
    // 0 to 2 (the project, its 3 direct and 7 indirect dependencies) while the
    // upstream still holds the POM of a level-3 node, and neither has `done`.
    let levels_above_held =
        |lines: &[Value]| lines.iter().filter(|l| l["type"] == "node").count() >= 11;
    let bound = std::time::Duration::from_secs(60);
    let mut first = LineReader::post(&granary, "-/api/fixture/resolve", PROJECT).await;
    assert_eq!(first.response.headers()["x-cache"], "MISS");
    let read = tokio::time::timeout(bound, first.until(levels_above_held)).await;
    assert_eq!(
        read,
        Ok(true),
        "the first caller read no line before the held POM was served: {:#?}",
        first.lines
    );
    let before_the_end = |early: &[Value]| {
        assert!(
            early.iter().all(|l| l["type"] != "done"),
            "lines came only with the end: {early:#?}"
        );
        assert_eq!(depths(early), BTreeSet::from([0, 1, 2]), "{early:#?}");
        assert_eq!(early[0]["name"], "com.example:app");
    };
    before_the_end(&first.lines);
    let mut second = LineReader::post(&granary, "-/api/fixture/resolve", PROJECT).await;
    assert_eq!(second.response.headers()["x-cache"], "MISS");
    let read = tokio::time::timeout(bound, second.until(levels_above_held)).await;
    assert_eq!(
        read,
        Ok(true),
        "the joining caller read no line before the held POM was served: {:#?}",
        second.lines
    );
    before_the_end(&second.lines);
    assert_eq!(
        fixture.hits(&format!("/{held}")),
        1,
        "one flight, one fetch"
    );
    assert_eq!(line_set(&first.lines), line_set(&second.lines));

    gate.add_permits(1);
    let first = tokio::time::timeout(bound, first.read_to_the_end())
        .await
        .expect("the first caller's lines end");
    let second = tokio::time::timeout(bound, second.read_to_the_end())
        .await
        .expect("the joining caller's lines end");
    assert_eq!(first.last().expect("done")["type"], "done", "{first:#?}");
    assert_eq!(line_set(&first), line_set(&second));
    assert_eq!(first.len(), second.len());

    // What was streamed is the answer: the same lines as the cached one (a `HIT`),
    // which is also what mvn lists (the other test compares that one).
    let response = crate::resolve::post(&granary, "-/api/fixture/resolve", PROJECT).await;
    assert_eq!(response.headers()["x-cache"], "HIT");
    assert!(
        response.content_length().is_some(),
        "a whole answer has a length"
    );
    let cached: Vec<Value> = response
        .text()
        .await
        .expect("body")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    assert_eq!(line_set(&first), line_set(&cached));
    assert_eq!(first.len(), cached.len(), "no line twice");
    assert!(depths(&cached).contains(&3));

    // From a warm cache (a new key: every POM in memory, nothing waits on the
    // upstream) the lines still stream: the root's line is sent before the answer
    // ends, so the body is chunked rather than sent whole with a length.
    let mut warm =
        LineReader::post(&granary, "-/api/fixture/resolve?max_depth=1000", PROJECT).await;
    assert_eq!(warm.response.headers()["x-cache"], "MISS");
    assert!(
        warm.response.content_length().is_none(),
        "a warm resolution was sent whole, not as it resolved"
    );
    assert!(warm.until(|lines| !lines.is_empty()).await);
    assert_eq!(line_set(&warm.read_to_the_end().await), line_set(&cached));
}
