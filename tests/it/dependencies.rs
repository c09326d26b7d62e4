//! Issue #13, part 1: dependencies extracted from every stored artifact, once per
//! digest, and served at `/-/api/REPO/PROJECT/VERSION/dependencies`.

use std::time::Duration;

use base64::Engine as _;
use sha2::Digest as _;

use crate::support::{
    build_pypi_fixture, sha256_hex, Engines, FakeUpstream, Scripted, TestGranary,
};

/// The API's answer once extraction recorded it (polled: extraction runs off the
/// request path, a moment after the artifact is stored).
async fn extracted(granary: &TestGranary, path: &str) -> serde_json::Value {
    for _ in 0..100 {
        let response = granary.get(&format!("-/api/{path}/dependencies")).await;
        if response.status() == 200 {
            return response.json().await.expect("json");
        }
        assert_eq!(response.status(), 404, "{path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path}: nothing extracted within 5 s");
}

fn extraction_count(granary: &TestGranary, outcome: &'static str) -> u64 {
    granary
        .state
        .metrics
        .dependency_extractions
        .get_or_create(&granary::metrics::OutcomeLabels { outcome })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypi_wheels_and_their_pep_658_files_once_per_digest_and_sdists_per_pep_643() {
    let dir = tempfile::tempdir().expect("dir");
    build_pypi_fixture(dir.path());
    let upstream = FakeUpstream::start(Some(dir.path().to_path_buf())).await;
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let client = TestGranary::client();
    let fetch = |path: &'static str| {
        let client = client.clone();
        let url = granary.url(path);
        async move {
            let response = client.get(url).send().await.expect("response");
            assert_eq!(response.status(), 200, "{path}");
            response.bytes().await.expect("body")
        }
    };
    // As pip and uv do: the PEP 658 file first. Its dependencies are recorded under
    // the wheel's digest, from the project page.
    fetch("pypi/simple/alpha/").await;
    fetch("pypi/files/alpha/alpha-1.0-py3-none-any.whl.metadata").await;
    let answer = extracted(&granary, "pypi/alpha/1.0").await;
    let wheel =
        std::fs::read(dir.path().join("packages/alpha-1.0-py3-none-any.whl")).expect("wheel");
    let artifact = &answer["artifacts"][0];
    assert_eq!(artifact["digest"], sha256_hex(&wheel));
    assert_eq!(artifact["filename"], "alpha-1.0-py3-none-any.whl");
    assert_eq!(artifact["status"], "complete");
    assert_eq!(artifact["attributes"]["requires_python"], ">=3.8");
    let dependencies: Vec<(String, String, String)> = artifact["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().expect("name").to_owned(),
                d["requirement"].as_str().expect("requirement").to_owned(),
                d["kind"].as_str().expect("kind").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        dependencies,
        [
            ("beta".to_owned(), ">=1.0".to_owned(), "runtime".to_owned()),
            ("gamma-lib".to_owned(), String::new(), "runtime".to_owned()),
        ]
    );
    // The wheel itself has that digest: not extracted again.
    let already = extraction_count(&granary, "already");
    fetch("pypi/files/alpha/alpha-1.0-py3-none-any.whl").await;
    granary.settle().await;
    for _ in 0..100 {
        if extraction_count(&granary, "already") > already {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(extraction_count(&granary, "already"), already + 1);
    assert_eq!(extracted(&granary, "pypi/alpha/1.0").await, answer);
    // A non-normalized name finds the same release.
    assert_eq!(
        extracted(&granary, "pypi/Alpha/1.0").await["artifacts"],
        answer["artifacts"]
    );

    // An sdist with Metadata-Version 2.1: not binding, so unknown, never "none".
    fetch("pypi/simple/gamma-lib/").await;
    fetch("pypi/files/gamma-lib/gamma_lib-0.5.tar.gz").await;
    let sdist = extracted(&granary, "pypi/gamma-lib/0.5").await;
    assert_eq!(sdist["artifacts"][0]["status"], "unknown");
    assert!(sdist["artifacts"][0]["reason"]
        .as_str()
        .expect("reason")
        .contains("PEP 643"));

    // Not stored yet: a 404 that says why; bad names: 400.
    let missing = granary.get("-/api/pypi/delta/3.0/dependencies").await;
    assert_eq!(missing.status(), 404);
    assert!(missing
        .text()
        .await
        .expect("body")
        .contains("fetch it through granary first"));
    assert_eq!(
        granary
            .get("-/api/pypi/bad..name!/1.0/dependencies")
            .await
            .status(),
        400
    );
    assert_eq!(
        granary.get("-/api/pypi/alpha/1.0/nonsense").await.status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_tarballs_take_their_dependencies_from_the_packument() {
    let upstream = FakeUpstream::start(None).await;
    let tarball = b"not really a tarball, but the bytes the packument vouches for".to_vec();
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&tarball))
    );
    let packument = serde_json::json!({
        "name": "@acme/widget",
        "dist-tags": {"latest": "1.2.0"},
        "versions": {"1.2.0": {
            "name": "@acme/widget", "version": "1.2.0",
            "dependencies": {"left": "^1.0.0", "fsevents": "^2.3.0"},
            "optionalDependencies": {"fsevents": "^2.3.0"},
            "peerDependencies": {"react": ">=17"},
            "peerDependenciesMeta": {"react": {"optional": true}},
            "os": ["darwin", "linux"],
            "engines": {"node": ">=18"},
            "dist": {"tarball": upstream.url("@acme/widget/-/widget-1.2.0.tgz"), "integrity": integrity}
        }}
    });
    upstream.script(
        "@acme%2fwidget",
        Scripted::ok(packument.to_string()).header("content-type", "application/json"),
    );
    upstream.script("@acme/widget/-/widget-1.2.0.tgz", Scripted::ok(tarball));
    let granary = TestGranary::npm(&upstream.url(""), "").await;
    assert_eq!(granary.get("npm/@acme%2fwidget").await.status(), 200);
    let response = granary.get("npm/@acme/widget/-/widget-1.2.0.tgz").await;
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await;
    let answer = extracted(&granary, "npm/@acme/widget/1.2.0").await;
    let artifact = &answer["artifacts"][0];
    assert_eq!(artifact["filename"], "widget-1.2.0.tgz");
    assert_eq!(artifact["attributes"]["os"][1], "linux");
    assert_eq!(artifact["attributes"]["engines"]["node"], ">=18");
    let kinds: Vec<(&str, &str, bool)> = artifact["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().expect("name"),
                d["kind"].as_str().expect("kind"),
                d["optional"].as_bool().expect("bool"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("left", "runtime", false),
            ("fsevents", "optional", true),
            ("react", "peer", true)
        ]
    );
}

/// PostgreSQL: the status row and every dependency row of an artifact are written by
/// one statement (counted by statement-level triggers), and a digest recorded once
/// is not written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_statement_per_artifact_on_postgresql() {
    use granary::metadata::{MetadataStore, PostgresMetadataStore, PostgresOptions};
    use granary::protocols::dependencies::{Dependency, Extraction, ExtractionStatus};
    let Some(engines) = Engines::from_env("one_statement_per_artifact_on_postgresql") else {
        return;
    };
    let url = engines.database().await;
    let store = PostgresMetadataStore::open(&PostgresOptions {
        url: url.clone(),
        pool_size: 2,
        pool_overflow: 0,
        acquire_timeout: Duration::from_secs(10),
    })
    .await
    .expect("store");
    let client = sqlx::PgPool::connect(&url).await.expect("connect");
    for sql in [
        "CREATE TABLE statement_count (tbl TEXT PRIMARY KEY, n BIGINT NOT NULL)",
        "CREATE FUNCTION count_statement() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO statement_count VALUES (TG_TABLE_NAME, 1) ON CONFLICT (tbl) DO UPDATE SET n = statement_count.n + 1; \
         RETURN NULL; END $$",
        "CREATE TRIGGER count_extractions AFTER INSERT ON extractions FOR EACH STATEMENT EXECUTE FUNCTION count_statement()",
        "CREATE TRIGGER count_dependencies AFTER INSERT ON dependencies FOR EACH STATEMENT EXECUTE FUNCTION count_statement()",
    ] {
        sqlx::query(sql).execute(&client).await.expect(sql);
    }
    let extraction = |n: usize| Extraction {
        digest: format!("{n:064x}"),
        repo: "pypi".to_owned(),
        format: "pypi".to_owned(),
        project: format!("p{n}"),
        version: "1.0".to_owned(),
        filename: format!("p{n}-1.0-py3-none-any.whl"),
        status: ExtractionStatus::Complete,
        reason: None,
        extractor_version: 1,
        attributes: serde_json::json!({"requires_python": ">=3.9"}),
        dependencies: (0..20)
            .map(|d| Dependency {
                name: format!("dep{d}"),
                requirement: ">=1".to_owned(),
                kind: "runtime".to_owned(),
                marker: (d % 2 == 0).then(|| "python_version >= '3.9'".to_owned()),
                optional: false,
                details: serde_json::json!({"extras": []}),
            })
            .collect(),
    };
    for n in 0..3 {
        store.put_extraction(&extraction(n)).await.expect("put");
    }
    let count = |table: &'static str| {
        let client = client.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT n FROM statement_count WHERE tbl = $1")
                .bind(table)
                .fetch_one(&client)
                .await
                .expect("count")
        }
    };
    assert_eq!(count("extractions").await, 3);
    assert_eq!(
        count("dependencies").await,
        3,
        "one statement per artifact, not per dependency"
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dependencies")
        .fetch_one(&client)
        .await
        .expect("rows");
    assert_eq!(rows, 60);
    // The same digest again (say, another extractor run): nothing changes.
    let mut again = extraction(0);
    again.dependencies.truncate(1);
    store.put_extraction(&again).await.expect("put");
    let read = store
        .extractions_of("pypi", "p0", "1.0")
        .await
        .expect("read");
    assert_eq!(read, vec![extraction(0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maven_poms_are_made_effective_through_their_parents() {
    let dir = tempfile::tempdir().expect("dir");
    let repository = dir.path().join("repository");
    crate::support::run_generator(
        &crate::support::python(),
        "maven/make_repository.py",
        &[repository.as_os_str()],
        &[],
    );
    let upstream = FakeUpstream::start(Some(repository)).await;
    let granary = TestGranary::with_format("maven", &upstream.url(""), "").await;
    // fx-util's POM declares fx-core without a version: fx-parent's
    // dependencyManagement supplies it (the parent is fetched through granary).
    let response = granary
        .get("maven/com/example/fixture/fx-util/1.0/fx-util-1.0.pom")
        .await;
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await;
    let answer = extracted(&granary, "maven/com.example.fixture:fx-util/1.0").await;
    let artifact = &answer["artifacts"][0];
    assert_eq!(artifact["status"], "complete", "{artifact}");
    assert_eq!(
        artifact["dependencies"][0]["name"],
        "com.example.fixture:fx-core"
    );
    assert_eq!(artifact["dependencies"][0]["requirement"], "1.0");
    assert_eq!(artifact["dependencies"][0]["kind"], "compile");
    assert_eq!(
        upstream.hits("com/example/fixture/fx-parent/1.0/fx-parent-1.0.pom"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maven_imported_boms_and_properties_supply_versions_and_what_is_missing_is_partial() {
    use sha1::Digest as _;
    let upstream = FakeUpstream::start(None).await;
    let serve = |path: &str, body: String| {
        upstream.script(
            &format!("{path}.sha1"),
            Scripted::ok(hex::encode(sha1::Sha1::digest(body.as_bytes()))),
        );
        upstream.script(path, Scripted::ok(body));
    };
    serve(
        "org/acme/bom/2/bom-2.pom",
        "<project><groupId>org.acme</groupId><artifactId>bom</artifactId><version>2</version><packaging>pom</packaging>\
         <dependencyManagement><dependencies>\
         <dependency><groupId>org.acme</groupId><artifactId>from-bom</artifactId><version>7.1</version><scope>runtime</scope></dependency>\
         </dependencies></dependencyManagement></project>"
            .to_owned(),
    );
    serve(
        "org/acme/app/1.0/app-1.0.pom",
        "<project><groupId>org.acme</groupId><artifactId>app</artifactId><version>1.0</version>\
         <properties><own.version>3.${minor}</own.version><minor>4</minor></properties>\
         <dependencyManagement><dependencies>\
         <dependency><groupId>org.acme</groupId><artifactId>bom</artifactId><version>2</version><type>pom</type><scope>import</scope></dependency>\
         </dependencies></dependencyManagement>\
         <dependencies>\
         <dependency><groupId>org.acme</groupId><artifactId>from-bom</artifactId></dependency>\
         <dependency><groupId>${project.groupId}</groupId><artifactId>own</artifactId><version>${own.version}</version><optional>true</optional></dependency>\
         <dependency><groupId>org.acme</groupId><artifactId>orphan</artifactId></dependency>\
         </dependencies></project>"
            .to_owned(),
    );
    let granary = TestGranary::with_format("maven", &upstream.url(""), "").await;
    let response = granary.get("maven/org/acme/app/1.0/app-1.0.pom").await;
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await;
    let answer = extracted(&granary, "maven/org.acme:app/1.0").await;
    let artifact = &answer["artifacts"][0];
    assert_eq!(artifact["status"], "partial");
    assert!(artifact["reason"]
        .as_str()
        .expect("reason")
        .contains("no version for org.acme:orphan"));
    let found: Vec<(&str, &str, &str, bool)> = artifact["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().expect("name"),
                d["requirement"].as_str().expect("requirement"),
                d["kind"].as_str().expect("kind"),
                d["optional"].as_bool().expect("optional"),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("org.acme:from-bom", "7.1", "runtime", false),
            ("org.acme:own", "3.4", "compile", true),
        ]
    );
}
