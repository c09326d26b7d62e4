//! The Maven repository proxy: protocol details, and the real `mvn` resolving a
//! project's dependencies (a parent POM, a classifier, a timestamped SNAPSHOT) from a
//! fixture repository made with the JDK's `javac` and `jar`, its plugins from Debian's
//! system Maven repository as a second upstream, then again with a new, empty local
//! repository and both upstreams stopped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{files_under, FakeUpstream, Scripted, TestGranary};

const CORE: &str = "com/example/fixture/fx-core";
/// Where Debian's Java packages install their Maven repository.
pub const DEBIAN_REPOSITORY: &str = "/usr/share/maven-repo";

fn build_repository(dir: &Path) {
    crate::support::run_generator(
        &crate::support::python(),
        "maven/make_repository.py",
        &[dir.as_os_str()],
        &[],
    );
}

async fn fixture() -> (tempfile::TempDir, FakeUpstream, TestGranary) {
    let dir = tempfile::tempdir().expect("dir");
    let repository = dir.path().join("repository");
    build_repository(&repository);
    let upstream = FakeUpstream::start(Some(repository)).await;
    let granary = TestGranary::with_format("maven", &upstream.url(""), "").await;
    (dir, upstream, granary)
}

fn hex_digest<D: sha1::Digest>(bytes: &[u8]) -> String {
    hex::encode(D::digest(bytes))
}

#[tokio::test]
async fn files_are_verified_and_checksum_files_match_the_served_bytes() {
    let (dir, upstream, granary) = fixture().await;
    let jar_path = format!("{CORE}/1.0/fx-core-1.0.jar");
    let on_disk = std::fs::read(dir.path().join("repository").join(&jar_path)).expect("jar");

    let jar = granary.get(&format!("maven/{jar_path}")).await;
    assert_eq!(jar.status(), 200);
    assert_eq!(jar.headers()["x-cache"], "MISS");
    assert_eq!(jar.headers()["content-type"], "application/java-archive");
    let served = jar.bytes().await.expect("bytes");
    assert_eq!(served, on_disk);
    granary.settle().await;

    let expected = [
        ("sha1", hex_digest::<sha1::Sha1>(&served)),
        ("md5", hex_digest::<md5::Md5>(&served)),
        ("sha256", hex_digest::<sha2::Sha256>(&served)),
        ("sha512", hex_digest::<sha2::Sha512>(&served)),
    ];
    for (algorithm, digest) in &expected {
        let checksum = granary.get(&format!("maven/{jar_path}.{algorithm}")).await;
        assert_eq!(checksum.status(), 200, "{algorithm}");
        assert_eq!(checksum.text().await.expect("text"), *digest, "{algorithm}");
    }
    assert_eq!(upstream.hits(&jar_path), 1);
    assert_eq!(
        upstream.hits(&format!("{jar_path}.sha512")),
        1,
        "verified with sha512"
    );
    assert_eq!(upstream.hits(&format!("{jar_path}.sha1")), 1, "and sha1");
    assert_eq!(
        upstream.hits(&format!("{jar_path}.md5")),
        0,
        "checksum files are computed from the served bytes"
    );

    // The upstream's jar no longer matches its own .sha1.
    let util = "com/example/fixture/fx-util/1.0/fx-util-1.0.jar";
    upstream.script(util, Scripted::ok(&b"PK not the jar that was deployed"[..]));
    let stored_before = files_under(&granary.data().join("blobs")).len();
    let tampered = granary.get(&format!("maven/{util}")).await;
    let failed = tampered.status() != 200 || tampered.bytes().await.is_err();
    assert!(failed, "the client must see the mismatch as an error");
    granary.settle().await;
    assert_eq!(
        files_under(&granary.data().join("blobs")).len(),
        stored_before,
        "nothing stored for a checksum mismatch"
    );

    // A checksum file that is not one: the file is refused, not stored unverified.
    let pom = format!("{CORE}/0.9/fx-core-0.9.pom");
    upstream.script(&format!("{pom}.sha1"), Scripted::ok("<html>sign in</html>"));
    let refused = granary.get(&format!("maven/{pom}")).await;
    let failed = refused.status() != 200 || refused.bytes().await.is_err();
    assert!(failed, "a malformed upstream checksum fails the download");
    granary.settle().await;
    assert_eq!(
        files_under(&granary.data().join("blobs")).len(),
        stored_before,
        "nothing stored when the checksum cannot be read"
    );

    // No checksum upstream at all: served and stored, and granary's checksums still
    // describe exactly what it serves.
    let bare = "com/example/fixture/fx-bare/1.0/fx-bare-1.0.jar";
    upstream.script(bare, Scripted::ok(&b"PK a jar without checksums"[..]));
    let body = granary
        .get(&format!("maven/{bare}"))
        .await
        .bytes()
        .await
        .expect("bytes");
    granary.settle().await;
    let sha1 = granary
        .get(&format!("maven/{bare}.sha1"))
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(sha1, hex_digest::<sha1::Sha1>(&body));
}

#[tokio::test]
async fn metadata_and_snapshots_are_index_pages_and_malformed_metadata_is_refused() {
    let (_dir, upstream, granary) = fixture().await;
    let client = TestGranary::client();
    let metadata = format!("{CORE}/maven-metadata.xml");

    let first = granary.get(&format!("maven/{metadata}")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "text/xml");
    let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    let body = first.bytes().await.expect("body");
    assert!(std::str::from_utf8(&body)
        .expect("utf-8")
        .contains("<version>0.9</version>"));
    for _ in 0..3 {
        let again = client
            .get(granary.url(&format!("maven/{metadata}")))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("revalidate");
        assert_eq!(again.status(), 304);
    }
    assert_eq!(
        upstream.hits(&metadata),
        1,
        "fresh metadata costs no upstream request"
    );
    let sha1 = granary
        .get(&format!("maven/{metadata}.sha1"))
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(sha1, hex_digest::<sha1::Sha1>(&body));

    let snapshot = "com/example/fixture/fx-snap/2.0-SNAPSHOT";
    let listing = granary
        .get(&format!("maven/{snapshot}/maven-metadata.xml"))
        .await
        .text()
        .await
        .expect("text");
    assert!(
        listing.contains("<buildNumber>2</buildNumber>"),
        "{listing}"
    );
    let build = format!("{snapshot}/fx-snap-2.0-20261121.111111-2.jar");
    for expected in ["MISS", "HIT"] {
        let response = granary.get(&format!("maven/{build}")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-cache"],
            expected,
            "a build never changes"
        );
        response.bytes().await.expect("body");
        granary.settle().await;
    }

    // A snapshot deployed under its non-unique name (Maven 2 style) changes with each
    // deployment: an index page, served from the cache while fresh.
    let legacy = "com/example/fixture/fx-old/1.0-SNAPSHOT/fx-old-1.0-SNAPSHOT.jar";
    upstream.script(legacy, Scripted::ok(&b"PK legacy snapshot"[..]));
    for expected in ["MISS", "HIT"] {
        let response = granary.get(&format!("maven/{legacy}")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-cache"], expected);
        assert_eq!(
            response.headers()["cache-control"],
            "max-age=0, must-revalidate",
            "clients revalidate snapshots"
        );
    }
    let legacy_sha1 = granary
        .get(&format!("maven/{legacy}.sha1"))
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(legacy_sha1, hex_digest::<sha1::Sha1>(b"PK legacy snapshot"));
    assert_eq!(upstream.hits(legacy), 1);

    // Maven 3.9+ reads the repository's prefix list first.
    upstream.script(
        ".meta/prefixes.txt",
        Scripted::ok("## repository-prefixes/2.0\n/com/example\n"),
    );
    for expected in ["MISS", "HIT"] {
        let prefixes = granary.get("maven/.meta/prefixes.txt").await;
        assert_eq!(prefixes.status(), 200);
        assert_eq!(prefixes.headers()["content-type"], "text/plain");
        assert_eq!(prefixes.headers()["x-cache"], expected);
    }

    let broken = "com/example/fixture/fx-broken/maven-metadata.xml";
    upstream.script(
        broken,
        Scripted::ok("<metadata><versioning><versions><version>1</version></versions>"),
    );
    let refused = granary.get(&format!("maven/{broken}")).await;
    assert_eq!(refused.status(), 502);
    let message = refused.text().await.expect("message");
    assert!(
        message.contains("malformed") && message.contains("maven-metadata.xml"),
        "{message}"
    );
    let login_page = "com/example/fixture/fx-html/maven-metadata.xml";
    upstream.script(
        login_page,
        Scripted::ok("<html><body>sign in</body></html>"),
    );
    let refused = granary.get(&format!("maven/{login_page}")).await;
    assert_eq!(refused.status(), 502);
    assert!(refused
        .text()
        .await
        .expect("message")
        .contains("root element is `html`"));
}

#[tokio::test]
async fn bad_paths_get_clear_errors_and_misses_are_remembered() {
    let (_dir, upstream, granary) = fixture().await;
    let client = TestGranary::client();
    let cases = [
        (
            format!("maven/{CORE}/1.0/..%2f..%2fsecret"),
            400,
            "separator",
        ),
        (format!("maven/{CORE}/1.0/%2e%2e%5cx"), 400, "separator"),
        (
            "maven/etc/passwd".to_owned(),
            400,
            "Maven repository layout",
        ),
        (
            format!("maven/{CORE}/1.0/other-1.0.jar"),
            400,
            "Maven repository layout",
        ),
        ("maven/com/.git/x/1/x-1.jar".to_owned(), 400, "`.git`"),
        (
            format!("maven/{CORE}/1.0/fx%20core-1.0.jar"),
            400,
            "`fx core-1.0.jar`",
        ),
        ("maven/maven-metadata.xml".to_owned(), 400, "layout"),
        (format!("maven/{CORE}/1.0/"), 404, "directory listings"),
        (
            format!("maven/{CORE}/1.0/fx-core-1.0.jar.sha1.md5"),
            400,
            "checksums of checksum files",
        ),
    ];
    for (path, status, says) in &cases {
        let response = granary.get(path).await;
        assert_eq!(response.status(), *status, "{path}");
        let message = response.text().await.expect("message");
        assert!(message.contains(says), "{path}: {message}");
    }
    assert_eq!(upstream.total_hits(), 0, "no bad path reached the upstream");
    let deploy = client
        .put(granary.url(&format!("maven/{CORE}/1.1/fx-core-1.1.jar")))
        .body("jar")
        .send()
        .await
        .expect("put");
    assert_eq!(deploy.status(), 405);

    // Maven asks every repository for every file: misses must be cheap.
    let missing = "org/other/lib/1.0/lib-1.0.pom";
    for _ in 0..3 {
        let response = granary.get(&format!("maven/{missing}")).await;
        assert_eq!(response.status(), 404);
    }
    assert_eq!(upstream.hits(missing), 1, "the 404 is remembered");
    assert_eq!(
        upstream.hits(&format!("{missing}.sha1")),
        0,
        "checksums are looked up only for files the upstream has"
    );
    let missing_metadata = "org/other/lib/maven-metadata.xml";
    for _ in 0..3 {
        let response = granary.get(&format!("maven/{missing_metadata}")).await;
        assert_eq!(response.status(), 404);
    }
    assert_eq!(upstream.hits(missing_metadata), 1);
}

/// The newest version of Debian's maven-dependency-plugin that has a jar.
pub fn debian_dependency_plugin() -> String {
    let dir = Path::new(DEBIAN_REPOSITORY).join("org/apache/maven/plugins/maven-dependency-plugin");
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run scripts/test, which installs Debian's maven, \
                 libmaven-dependency-plugin-java and junit4",
                dir.display()
            )
        })
        .filter_map(std::result::Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|version| {
            dir.join(version)
                .join(format!("maven-dependency-plugin-{version}.jar"))
                .exists()
        })
        .collect();
    versions.sort();
    versions.pop().expect("a maven-dependency-plugin jar")
}

pub fn write_settings(scratch: &Path, granary: &TestGranary) -> PathBuf {
    write_settings_with(scratch, granary, "settings.xml", "")
}

/// `settings.xml` named `name` for the granary at `root` (`http://host:port/`):
/// central mirrored by its `debian` repository, its `fixture` repository active.
pub fn write_settings_at(scratch: &Path, name: &str, root: &str) -> PathBuf {
    settings_file(
        scratch,
        name,
        "",
        &format!("{root}debian/"),
        &format!("{root}fixture/"),
    )
}

/// `settings.xml` named `name`, with `servers` (Maven's `<servers>` credentials).
fn write_settings_with(
    scratch: &Path,
    granary: &TestGranary,
    name: &str,
    servers: &str,
) -> PathBuf {
    settings_file(
        scratch,
        name,
        servers,
        &granary.url("debian/"),
        &granary.url("fixture/"),
    )
}

fn settings_file(
    scratch: &Path,
    name: &str,
    servers: &str,
    debian: &str,
    fixture: &str,
) -> PathBuf {
    let settings = scratch.join(name);
    std::fs::write(
        &settings,
        format!(
            r"<settings>
  {servers}
  <mirrors>
    <mirror><id>granary-debian</id><mirrorOf>central</mirrorOf><url>{debian}</url></mirror>
  </mirrors>
  <profiles><profile><id>fixture</id>
    <repositories><repository><id>fixture</id><url>{fixture}</url>
      <releases><enabled>true</enabled></releases>
      <snapshots><enabled>true</enabled><updatePolicy>always</updatePolicy></snapshots>
    </repository></repositories>
  </profile></profiles>
  <activeProfiles><activeProfile>fixture</activeProfile></activeProfiles>
</settings>
"
        ),
    )
    .expect("settings.xml");
    settings
}

fn write_project(scratch: &Path) -> PathBuf {
    let project = scratch.join("project");
    std::fs::create_dir_all(&project).expect("project");
    let dependency = |artifact: &str, version: &str, classifier: &str| {
        format!(
            "<dependency><groupId>com.example.fixture</groupId><artifactId>{artifact}</artifactId>\
             <version>{version}</version>{classifier}</dependency>"
        )
    };
    std::fs::write(
        project.join("pom.xml"),
        format!(
            r"<project>
  <modelVersion>4.0.0</modelVersion>
  <groupId>com.example</groupId><artifactId>app</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>{}{}{}</dependencies>
</project>
",
            dependency("fx-util", "1.0", ""),
            dependency("fx-core", "1.0", "<classifier>sources</classifier>"),
            dependency("fx-snap", "2.0-SNAPSHOT", ""),
        ),
    )
    .expect("pom.xml");
    project
}

/// `mvn dependency:resolve` with an empty local repository.
pub fn mvn_resolve(project: &Path, settings: &Path, local: &Path, plugin_version: &str) {
    let output = mvn_resolve_output(project, settings, local, plugin_version);
    assert!(
        output.status.success(),
        "mvn failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn mvn_resolve_output(
    project: &Path,
    settings: &Path,
    local: &Path,
    plugin_version: &str,
) -> std::process::Output {
    let home = local.with_extension("home");
    std::fs::create_dir_all(&home).expect("home");
    Command::new("mvn")
        .args(["-B", "-s"])
        .arg(settings)
        .arg(format!("-Dmaven.repo.local={}", local.display()))
        .arg(format!(
            "org.apache.maven.plugins:maven-dependency-plugin:{plugin_version}:resolve"
        ))
        .current_dir(project)
        .env("HOME", &home)
        .output()
        .expect("mvn runs (scripts/test installs Debian's maven)")
}

/// Runs the resolved classes: "43 2" is fx-core 1.0 and the snapshot's second build.
fn check_resolved(local: &Path) {
    let group = local.join("com/example/fixture");
    let classpath = [
        "fx-util/1.0/fx-util-1.0.jar",
        "fx-core/1.0/fx-core-1.0.jar",
        "fx-snap/2.0-SNAPSHOT/fx-snap-2.0-SNAPSHOT.jar",
    ]
    .map(|jar| group.join(jar).display().to_string())
    .join(":");
    assert!(group.join("fx-core/1.0/fx-core-1.0-sources.jar").exists());
    assert!(group
        .join("fx-snap/2.0-SNAPSHOT/fx-snap-2.0-20261121.111111-2.jar")
        .exists());
    let output = Command::new("java")
        .args(["-cp", &classpath, "com.example.fixture.util.Util"])
        .output()
        .expect("java runs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "43 2",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mvn_resolves_through_granary_then_with_the_upstreams_stopped() {
    let plugin_version = debian_dependency_plugin();
    let dir = tempfile::tempdir().expect("dir");
    let scratch = dir.path().to_path_buf();
    build_repository(&scratch.join("repository"));
    let mut fixture_upstream = FakeUpstream::start(Some(scratch.join("repository"))).await;
    let mut debian_upstream = FakeUpstream::start(Some(PathBuf::from(DEBIAN_REPOSITORY))).await;
    let granary = TestGranary::with_repos(&format!(
        "[repos.fixture]\nformat = \"maven\"\nupstream = \"{}\"\n\n[repos.debian]\nformat = \"maven\"\nupstream = \"{}\"\n",
        fixture_upstream.url(""),
        debian_upstream.url("")
    ))
    .await;
    let settings = write_settings(&scratch, &granary);
    let project = write_project(&scratch);

    let (p, s, local, v) = (
        project.clone(),
        settings.clone(),
        scratch.join("local-1"),
        plugin_version.clone(),
    );
    tokio::task::spawn_blocking(move || {
        mvn_resolve(&p, &s, &local, &v);
        check_resolved(&local);
    })
    .await
    .expect("first round");
    assert_eq!(
        fixture_upstream.hits(&format!("{CORE}/1.0/fx-core-1.0.jar")),
        1
    );
    granary.settle().await;

    // A new machine: empty local repository, and neither upstream answers.
    fixture_upstream.stop().await;
    debian_upstream.stop().await;
    let local = scratch.join("local-2");
    tokio::task::spawn_blocking(move || {
        mvn_resolve(&project, &settings, &local, &plugin_version);
        check_resolved(&local);
    })
    .await
    .expect("offline round");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_stampede_costs_one_upstream_request_per_file() {
    let (dir, upstream, granary) = fixture().await;
    let jar = format!("{CORE}/0.9/fx-core-0.9.jar");
    let bytes = std::fs::read(dir.path().join("repository").join(&jar)).expect("jar");
    // Slow enough that every client arrives while the one download is under way.
    upstream.script(
        &jar,
        Scripted {
            pace: Some((64, std::time::Duration::from_millis(10))),
            ..Scripted::ok(bytes.clone())
        },
    );
    let path = format!("maven/{jar}");
    let responses = futures::future::join_all(
        (0..50).map(|_| async { granary.get(&path).await.bytes().await }),
    )
    .await;
    for body in responses {
        assert_eq!(body.expect("complete body"), bytes);
    }
    assert_eq!(upstream.hits(&jar), 1, "one download for 50 clients");
    assert_eq!(
        upstream.hits(&format!("{jar}.sha1")),
        1,
        "one checksum fetch"
    );
    assert_eq!(
        upstream.hits(&format!("{jar}.sha512")),
        1,
        "one probe for the checksum the upstream does not publish"
    );
}

#[tokio::test]
async fn expired_metadata_is_served_stale_while_the_upstream_is_down() {
    let dir = tempfile::tempdir().expect("dir");
    let repository = dir.path().join("repository");
    build_repository(&repository);
    let mut upstream = FakeUpstream::start(Some(repository)).await;
    // Every document is past its TTL as soon as it is stored.
    let granary = TestGranary::with_format(
        "maven",
        &upstream.url(""),
        "index_ttl = \"0s\"\nupdate_time = \"10m\"",
    )
    .await;
    let metadata = format!("maven/{CORE}/maven-metadata.xml");
    let first = granary.get(&metadata).await;
    assert_eq!(first.headers()["x-cache"], "MISS");
    let body = first.text().await.expect("body");

    upstream.stop().await;
    let offline = granary.get(&metadata).await;
    assert_eq!(offline.status(), 200);
    assert_eq!(offline.headers()["x-cache"], "STALE");
    assert_eq!(offline.text().await.expect("body"), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mvn_authenticates_to_a_private_repository_with_its_settings_server_and_is_refused_without()
{
    let plugin_version = debian_dependency_plugin();
    let dir = tempfile::tempdir().expect("dir");
    let scratch = dir.path().to_path_buf();
    build_repository(&scratch.join("repository"));
    let fixture_upstream = FakeUpstream::start(Some(scratch.join("repository"))).await;
    let debian_upstream = FakeUpstream::start(Some(PathBuf::from(DEBIAN_REPOSITORY))).await;
    let granary = TestGranary::with_top_level_and_repos(
        &crate::support::one_user_auth("maven-secret"),
        &format!(
            "[repos.fixture]\nformat = \"maven\"\nupstream = \"{}\"\naccess = [\"alice\"]\n\n\
             [repos.debian]\nformat = \"maven\"\nupstream = \"{}\"\n",
            fixture_upstream.url(""),
            debian_upstream.url("")
        ),
    )
    .await;
    let project = write_project(&scratch);
    let without = write_settings(&scratch, &granary);
    let with = write_settings_with(
        &scratch,
        &granary,
        "settings-alice.xml",
        "<servers><server><id>fixture</id><username>alice</username><password>maven-secret</password></server></servers>",
    );

    let (p, s, local, v) = (
        project.clone(),
        without,
        scratch.join("local-refused"),
        plugin_version.clone(),
    );
    let refused = tokio::task::spawn_blocking(move || mvn_resolve_output(&p, &s, &local, &v))
        .await
        .expect("mvn");
    assert!(!refused.status.success(), "no credentials: refused");
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(stdout.contains("401"), "{stdout}");

    let local = scratch.join("local-alice");
    tokio::task::spawn_blocking(move || {
        mvn_resolve(&project, &with, &local, &plugin_version);
        check_resolved(&local);
    })
    .await
    .expect("mvn with credentials");
    assert!(
        fixture_upstream
            .authorization(&format!("{CORE}/1.0/fx-core-1.0.jar"))
            .iter()
            .all(Option::is_none),
        "Maven's credentials never reach the upstream"
    );
}
