//! Entry points for the fuzz targets in `fuzz/`: one function per kind of outside
//! input, each running the same code the server runs on it and checking what must
//! hold (no panic; what granary serves reads back as what it read). The unit test
//! below replays the committed corpus through the same functions, so every input a
//! fuzzer ever kept is a regression test on stable Rust.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;
use url::Url;

use crate::engine::DigestAlgorithm;
use crate::protocols::{cargo, maven, npm, pypi};

/// One fuzz target: it takes any bytes and panics on a bug.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/*.rs` file and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("simple_html", simple_html),
    ("simple_json", simple_json),
    ("project_list", project_list),
    ("core_metadata", core_metadata),
    ("packument", packument),
    ("cargo_index", cargo_index),
    ("cargo_config", cargo_config),
    ("maven_metadata", maven_metadata),
    ("maven_checksum", maven_checksum),
    ("maven_pom", maven_pom),
    ("accept", accept),
    ("range", range),
    ("config_file", config_file),
    ("request", request),
];

const PROJECT: &str = "demo";

fn page_base() -> Url {
    Url::parse("http://127.0.0.2/simple/demo/").expect("a valid URL")
}

/// A PEP 503 HTML project page from the upstream.
pub fn simple_html(data: &[u8]) {
    project_page_round_trip(data, false);
}

/// A PEP 691 JSON project page from the upstream.
pub fn simple_json(data: &[u8]) {
    project_page_round_trip(data, true);
}

/// Parses a page as the index source does, renders both forms as served, and reads
/// each form back: a client must see the same files, hashes and yanked marks.
fn project_page_round_trip(data: &[u8], json: bool) {
    let Ok(page) = pypi::parse::project_page(data, json, &page_base(), PROJECT) else {
        return;
    };
    let canonical = serde_json::to_vec(&page).expect("serializing the model cannot fail");
    let page: pypi::model::ProjectPage =
        serde_json::from_slice(&canonical).expect("the canonical form reads back");
    // Granary serves only files whose names it accepts in a file URL.
    let served =
        |page: &pypi::model::ProjectPage| -> Vec<(String, BTreeMap<String, String>, bool)> {
            page.files
                .iter()
                .filter(|f| pypi::keys::is_valid_filename(&f.filename))
                .map(|f| {
                    (
                        f.filename.clone(),
                        f.hashes.clone(),
                        !matches!(f.yanked, pypi::model::Yanked::No),
                    )
                })
                .collect()
        };
    let expected = served(&page);
    let granary_page = Url::parse("http://127.0.0.1/repo/simple/demo/").expect("a valid URL");
    let as_json = pypi::rewrite::project_json(&page, PROJECT);
    let read = pypi::parse::project_page(&as_json, true, &granary_page, PROJECT)
        .expect("the JSON granary renders parses");
    assert_eq!(served(&read), expected, "the JSON form changed the files");
    let as_html = pypi::rewrite::project_html(&page, PROJECT);
    let read = pypi::parse::project_page(&as_html, false, &granary_page, PROJECT)
        .expect("the HTML granary renders parses");
    // HTML carries one hash per file (the strongest), so compare names and marks.
    let names = |files: Vec<(String, BTreeMap<String, String>, bool)>| -> Vec<(String, bool)> {
        files
            .into_iter()
            .map(|(name, _, yanked)| (name, yanked))
            .collect()
    };
    assert_eq!(
        names(served(&read)),
        names(expected),
        "the HTML form changed the files"
    );
}

/// The project list (`/simple/`), in both forms, rendered back.
pub fn project_list(data: &[u8]) {
    for json in [false, true] {
        if let Ok(list) = pypi::parse::project_list(data, json) {
            let _ = pypi::rewrite::list_json(&list);
            let _ = pypi::rewrite::list_html(&list);
        }
    }
}

/// A wheel's `METADATA` (or an sdist's `PKG-INFO`), through dependency extraction.
///
/// `pep508_rs` panics on some malformed requirements, and granary catches those
/// panics on purpose (`pypi::dependencies::parse_requirement`). libFuzzer's panic
/// hook aborts on every panic, caught or not, so this target puts the default hook
/// back: a panic that escapes still aborts the run (libfuzzer-sys catches it at the
/// top and aborts), one granary catches does not.
pub fn core_metadata(data: &[u8]) {
    static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    let text = String::from_utf8_lossy(data);
    let fields = pypi::core_metadata::CoreMetadataFields::parse(&text);
    for sdist in [false, true] {
        let _ = pypi::dependencies::from_core_metadata(&fields, sdist);
    }
}

/// An npm packument: checked, rendered in both forms and per version, and every
/// version's dependencies extracted.
pub fn packument(data: &[u8]) {
    let Ok(packument) = npm::source::parse(data) else {
        return;
    };
    let full = npm::rewrite::full(&packument, "repo", "demo");
    serde_json::from_slice::<Value>(&full).expect("the full packument served is JSON");
    let abbreviated = npm::rewrite::abbreviated(&packument, "repo", "demo");
    serde_json::from_slice::<Value>(&abbreviated).expect("the abbreviated packument is JSON");
    if let Some(versions) = packument.get("versions").and_then(Value::as_object) {
        for (version, document) in versions {
            if let Some(one) = npm::rewrite::version(&packument, version, "repo", "demo") {
                serde_json::from_slice::<Value>(&one).expect("a version document is JSON");
            }
            let _ = npm::dependencies::from_version(document);
        }
    }
}

/// A cargo sparse-index file: parsed, each line's dependencies extracted, and each
/// entry's download URL built from both kinds of `dl` template.
pub fn cargo_index(data: &[u8]) {
    if let Ok(entries) = cargo::index::parse_index_file(data, "demo") {
        for entry in &entries {
            let _ = cargo::index::download_url("http://127.0.0.2/api/v1/crates", entry);
            let _ = cargo::index::download_url(
                "http://127.0.0.2/{prefix}/{lowerprefix}/{crate}/{version}/{sha256-checksum}",
                entry,
            );
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            if let Ok(value) = serde_json::from_str::<Value>(line) {
                let _ = cargo::dependencies::from_index_line(&value);
            }
        }
    }
}

/// A cargo registry's `config.json`, checked and rewritten as served.
pub fn cargo_config(data: &[u8]) {
    if let Ok(config) = cargo::index::parse_config(data) {
        for auth_required in [false, true] {
            let served = cargo::index::rewrite_config(&config, "repo", auth_required);
            serde_json::from_slice::<Value>(&served).expect("the config served is JSON");
        }
    }
}

/// A `maven-metadata.xml`, checked before it is stored.
pub fn maven_metadata(data: &[u8]) {
    let _ = maven::check::metadata_xml(data);
}

/// A Maven checksum file of each algorithm; what is accepted is a hex digest.
pub fn maven_checksum(data: &[u8]) {
    for algorithm in [
        DigestAlgorithm::Sha256,
        DigestAlgorithm::Sha512,
        DigestAlgorithm::Sha1,
        DigestAlgorithm::Md5,
    ] {
        if let Ok(digest) = maven::check::checksum_file(data, algorithm) {
            assert!(
                digest.bytes().all(|b| b.is_ascii_hexdigit()),
                "accepted a checksum that is not hex: {digest:?}"
            );
        }
    }
}

/// A POM, parsed for its dependencies, with every version interpolated.
pub fn maven_pom(data: &[u8]) {
    if let Ok(pom) = maven::pom::Pom::parse(data) {
        for dependency in pom.dependencies.iter().chain(&pom.managed) {
            if let Some(version) = &dependency.version {
                let _ = maven::dependencies::interpolate(version, &pom.properties);
            }
        }
    }
}

/// An `Accept` header, negotiated as the Simple API does.
pub fn accept(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = pypi::negotiate::negotiate(Some(&text));
}

/// A `Range` header against bodies of several sizes: a span is never empty and never
/// reaches past the body.
pub fn range(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for size in [0, 1, 100, u64::MAX] {
        if let Some(span) = crate::server::respond::parse_range(&text, size) {
            assert!(
                span.start <= span.end && span.end <= size,
                "{text:?} on {size} bytes gave {span:?}"
            );
        }
    }
}

/// A configuration file.
pub fn config_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::from_toml(text);
    }
}

/// A request (`METHOD /path` on the first line, then `Name: value` header lines)
/// through the whole router, with one repository of every format whose upstream
/// refuses connections: path decoding, routing, each protocol's path rules, header
/// handling and error mapping. A panic or a 500 is a bug.
pub fn request(data: &[u8]) {
    use tower::ServiceExt as _;

    let Some((method, uri, headers)) = request_parts(data) else {
        return;
    };
    let (runtime, app) = request_app();
    let mut request = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let Ok(request) = request.body(axum::body::Body::empty()) else {
        return;
    };
    let status = runtime.block_on(async {
        let response = app
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let _ = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024).await;
        status
    });
    assert_ne!(status, http::StatusCode::INTERNAL_SERVER_ERROR);
}

type Parts = (
    http::Method,
    http::Uri,
    Vec<(http::HeaderName, http::HeaderValue)>,
);

fn request_parts(data: &[u8]) -> Option<Parts> {
    let mut lines = data.split(|b| *b == b'\n');
    let first = lines.next()?;
    let text = std::str::from_utf8(first).ok()?;
    let (method, target) = text.split_once(' ')?;
    let method = http::Method::from_bytes(method.as_bytes()).ok()?;
    let uri = http::Uri::try_from(target.trim_end_matches('\r')).ok()?;
    uri.path().starts_with('/').then_some(())?;
    let headers = lines
        .filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            let name = http::HeaderName::from_bytes(&line[..colon]).ok()?;
            let value = http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
            Some((name, value))
        })
        .collect();
    Some((method, uri, headers))
}

fn request_app() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static APP: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let data_dir = std::env::temp_dir().join(format!("granary-fuzz-{}", std::process::id()));
        let config = format!(
            r#"
data_dir = "{}"
admin_token = "fuzz-admin-token"
[repos.py]
format = "pypi"
upstream = "http://127.0.0.1:9/simple/"
retries = 0
[repos.js]
format = "npm"
upstream = "http://127.0.0.1:9/"
retries = 0
[repos.rs]
format = "cargo"
upstream = "http://127.0.0.1:9/index/"
retries = 0
[repos.jv]
format = "maven"
upstream = "http://127.0.0.1:9/maven2/"
retries = 0
[repos.web]
format = "http"
upstream = "http://127.0.0.1:9/"
retries = 0
[[repos.web.rules]]
path = "^/"
ttl = "1m"
[repos.private]
format = "pypi"
upstream = "http://127.0.0.1:9/simple/"
retries = 0
access = ["alice"]
[auth.users.alice]
password_hash = "{}"
"#,
            data_dir.display(),
            crate::access::hash_password("fuzz-password").expect("a password hash")
        );
        let config = crate::config::from_toml(&config).expect("the fuzzing configuration");
        let state = runtime
            .block_on(crate::server::state::AppState::build(&config))
            .expect("the fuzzing server state");
        let app = crate::server::router::router(state);
        (runtime, app)
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays every committed corpus input (and every crash input kept beside it)
    /// through its target: what once crashed stays fixed.
    #[test]
    fn the_committed_fuzz_corpus_replays_cleanly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut replayed = 0usize;
        for (name, target) in super::TARGETS {
            let folder = root.join(name);
            let entries =
                std::fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
            let mut count = 0usize;
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                let data = std::fs::read(&path).expect("a corpus file");
                assert!(
                    std::panic::catch_unwind(|| target(&data)).is_ok(),
                    "{name}: {} fails",
                    path.display()
                );
                count += 1;
            }
            assert!(count > 0, "{name}: the corpus folder is empty");
            replayed += count;
        }
        eprintln!("replayed {replayed} corpus inputs");
    }
}
