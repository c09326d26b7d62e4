//! Badges (`/-/badge/REPO/PROJECT/KIND.svg|json`) from the cached metadata of all
//! four formats: the facts of every kind, one lookup per project and stage, images
//! rendered once per content, caching headers, hostile input, access control, and
//! the drawing checked in a real browser against golden SVGs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use granary::clock::{Clock, ManualClock, SystemClock};
use granary::metrics::StageLabels;

use crate::support::{run_generator, Behaviour, FakeUpstream, TestGranary};

/// The four upstreams of the badge fixture and a granary with one repository each
/// (`pypi`, `npm`, `cargo`, `maven`).
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pypi: FakeUpstream,
    npm: FakeUpstream,
    granary: TestGranary,
}

async fn fixture(clock: Arc<dyn Clock>, top_level: &str, repo_extra: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().to_path_buf();
    run_generator(
        &crate::support::python(),
        "badges/make_projects.py",
        &[root.as_os_str()],
        &[],
    );
    let pypi = FakeUpstream::start(Some(root.join("pypi"))).await;
    let npm = FakeUpstream::start(Some(root.join("npm"))).await;
    let cargo = FakeUpstream::start(Some(root.join("cargo"))).await;
    let maven = FakeUpstream::start(Some(root.join("maven"))).await;
    let repos = format!(
        "[repos.pypi]\nformat = \"pypi\"\nupstream = \"{}\"\n{repo_extra}\n\n\
         [repos.npm]\nformat = \"npm\"\nupstream = \"{}\"\n\n\
         [repos.cargo]\nformat = \"cargo\"\nupstream = \"{}\"\n\n\
         [repos.maven]\nformat = \"maven\"\nupstream = \"{}\"\n",
        pypi.url("simple/"),
        npm.url(""),
        cargo.url(""),
        maven.url(""),
    );
    // The other upstreams stay up for the whole test.
    std::mem::forget(cargo);
    std::mem::forget(maven);
    let granary = TestGranary::with_top_level_and_repos_and_clock(top_level, &repos, clock).await;
    Fixture {
        _dir: dir,
        root,
        pypi,
        npm,
        granary,
    }
}

async fn plain_fixture() -> Fixture {
    fixture(Arc::new(SystemClock), "", "").await
}

/// The shields endpoint JSON of a badge.
async fn json_badge(granary: &TestGranary, path: &str) -> serde_json::Value {
    let response = granary.get(&format!("-/badge/{path}.json")).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("badge JSON")
}

fn lookups(granary: &TestGranary, stage: &'static str) -> u64 {
    granary
        .state
        .metrics
        .badge_fact_lookups
        .get_or_create(&StageLabels { stage })
        .get()
}

fn max_age(response: &reqwest::Response) -> u64 {
    let value = response
        .headers()
        .get("cache-control")
        .expect("cache-control")
        .to_str()
        .expect("ascii");
    let age = value
        .strip_prefix("max-age=")
        .and_then(|rest| rest.split(',').next())
        .expect("max-age first");
    assert!(
        value.ends_with(&format!("s-maxage={age}")),
        "shared caches get the same lifetime: {value}"
    );
    age.parse().expect("seconds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_every_format_says_what_the_cached_metadata_says() {
    let f = plain_fixture().await;
    let expected = [
        // PyPI: the latest non-yanked, non-pre-release version (1.1.0 is yanked,
        // 2.0.0rc1 a pre-release); License-Expression wins over License and the
        // classifiers; classifier versions in version order.
        ("pypi/alpha-lib/version", "pypi", "v1.0.0", "blue"),
        ("pypi/alpha-lib/wheel", "wheel", "yes", "brightgreen"),
        ("pypi/alpha-lib/format", "format", "wheel", "brightgreen"),
        ("pypi/alpha-lib/requires-python", "python", ">=3.9", "blue"),
        ("pypi/alpha-lib/released", "released", "2024-03-01", "blue"),
        ("pypi/alpha-lib/license", "license", "MIT", "green"),
        (
            "pypi/alpha-lib/python-versions",
            "python",
            "3.9 | 3.10 | 3.11",
            "blue",
        ),
        (
            "pypi/alpha-lib/implementation",
            "implementation",
            "cpython",
            "blue",
        ),
        ("pypi/alpha-lib/status", "status", "stable", "brightgreen"),
        // A non-normalized name is the same project.
        ("pypi/Alpha_Lib/version", "pypi", "v1.0.0", "blue"),
        // No PEP 658 file: the licence comes from the wheel's METADATA; the
        // implementation from its cp311 tag.
        ("pypi/beta-tool/license", "license", "Apache", "green"),
        (
            "pypi/beta-tool/implementation",
            "implementation",
            "cpython",
            "blue",
        ),
        ("pypi/beta-tool/status", "status", "beta", "yellow"),
        ("pypi/beta-tool/wheel", "wheel", "yes", "brightgreen"),
        // An sdist only: no wheel, and its metadata is not read (never built).
        ("pypi/gamma-src/wheel", "wheel", "no", "red"),
        ("pypi/gamma-src/format", "format", "source", "orange"),
        ("pypi/gamma-src/license", "license", "unknown", "lightgrey"),
        (
            "pypi/gamma-src/released",
            "released",
            "unknown",
            "lightgrey",
        ),
        // npm: the `latest` dist-tag (not the newer `next`), a legacy licence object.
        ("npm/widget/version", "npm", "v1.2.0", "blue"),
        ("npm/widget/license", "license", "MIT", "green"),
        ("npm/widget/node", "node", ">=18", "brightgreen"),
        ("npm/widget/types", "types", "included", "blue"),
        ("npm/same-03/types", "types", "missing", "lightgrey"),
        // cargo: highest not yanked, not pre-release; MSRV from the index; licence
        // from that version's Cargo.toml inside the .crate.
        ("cargo/tool-kit/version", "crate", "v0.10.0", "blue"),
        ("cargo/tool-kit/msrv", "msrv", "1.70", "blue"),
        (
            "cargo/tool-kit/license",
            "license",
            "MIT OR Apache-2.0",
            "green",
        ),
        // Maven: `<release>`, not the snapshot `<latest>`; the licence from the
        // grandparent POM.
        (
            "maven/org.example:lib-core/version",
            "maven",
            "v1.1",
            "blue",
        ),
        (
            "maven/org.example:lib-core/license",
            "license",
            "Apache-2.0",
            "green",
        ),
    ];
    for (path, label, message, color) in expected {
        let badge = json_badge(&f.granary, path).await;
        assert_eq!(
            (
                badge["label"].as_str(),
                badge["message"].as_str(),
                badge["color"].as_str()
            ),
            (Some(label), Some(message), Some(color)),
            "{path}: {badge}"
        );
        assert_eq!(badge["schemaVersion"], 1);
        assert_eq!(badge["isError"], false, "{path}");
    }
    // An SVG says the same, accessibly.
    let response = f.granary.get("-/badge/npm/widget/license.svg").await;
    assert_eq!(
        response.headers()["content-type"],
        "image/svg+xml;charset=utf-8"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let svg = response.text().await.expect("svg");
    assert!(svg.contains("aria-label=\"license: MIT\""), "{svg}");
    assert!(svg.contains("<title>license: MIT</title>"), "{svg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lookup_serves_a_projects_badges_and_equal_badges_are_rendered_once() {
    let f = plain_fixture().await;
    let (index_before, release_before) =
        (lookups(&f.granary, "index"), lookups(&f.granary, "release"));
    // Five badges from the project page: one lookup, one upstream request for it.
    let kinds = ["version", "wheel", "format", "requires-python", "released"];
    let paths = kinds.map(|kind| format!("-/badge/pypi/alpha-lib/{kind}.svg"));
    let requests = paths.iter().map(|path| f.granary.get(path));
    for response in futures::future::join_all(requests).await {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(lookups(&f.granary, "index") - index_before, 1);
    // Four from the latest release's core metadata: one more lookup.
    for kind in ["license", "python-versions", "implementation", "status"] {
        let response = f
            .granary
            .get(&format!("-/badge/pypi/alpha-lib/{kind}.svg"))
            .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(lookups(&f.granary, "index") - index_before, 1);
    assert_eq!(lookups(&f.granary, "release") - release_before, 1);
    assert_eq!(f.pypi.hits("simple/alpha-lib/"), 1);
    assert_eq!(
        f.pypi
            .hits("packages/alpha_lib-1.0.0-py3-none-any.whl.metadata"),
        1
    );
    assert_eq!(
        f.pypi.hits("packages/alpha_lib-1.0.0-py3-none-any.whl"),
        0,
        "with a PEP 658 file the wheel is not fetched"
    );

    // Twenty MIT-licensed packages: twenty lookups, one image (in a style not drawn
    // yet: alpha-lib's flat "license: MIT" above is already the same image).
    let renders = f.granary.state.metrics.badge_renders.get();
    let mut bodies = std::collections::HashSet::new();
    for n in 0..20 {
        let response = f
            .granary
            .get(&format!(
                "-/badge/npm/same-{n:02}/license.svg?style=flat-square"
            ))
            .await;
        assert_eq!(response.status(), 200);
        bodies.insert(response.bytes().await.expect("body"));
    }
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        f.granary.state.metrics.badge_renders.get() - renders,
        1,
        "the same badge of twenty projects is rendered once"
    );
    assert_eq!(f.npm.total_hits(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_headers_etags_and_cache_seconds() {
    let f = plain_fixture().await;
    let response = f.granary.get("-/badge/npm/widget/version.svg").await;
    assert_eq!(max_age(&response), 300, "a version badge: five minutes");
    let etag = response.headers()["etag"].clone();
    let response = f.granary.get("-/badge/npm/widget/license.svg").await;
    assert_eq!(max_age(&response), 3600, "a licence badge: an hour");

    // cacheSeconds lengthens, never shortens, and is capped at a day.
    for (seconds, expected) in [(10, 300), (7200, 7200), (10_000_000, 86_400)] {
        let response = f
            .granary
            .get(&format!(
                "-/badge/npm/widget/version.svg?cacheSeconds={seconds}"
            ))
            .await;
        assert_eq!(max_age(&response), expected, "cacheSeconds={seconds}");
    }

    // The ETag is the image's content key: a match gets 304 and no body; another
    // style is another image.
    let not_modified = TestGranary::client()
        .get(f.granary.url("-/badge/npm/widget/version.svg"))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .expect("response");
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()["etag"], etag);
    assert!(not_modified.bytes().await.expect("body").is_empty());
    let other = f
        .granary
        .get("-/badge/npm/widget/version.svg?style=plastic")
        .await;
    assert_eq!(other.status(), 200);
    assert_ne!(other.headers()["etag"], etag);

    // An error badge is cached a minute at most, whatever is asked.
    let missing = f
        .granary
        .get("-/badge/npm/no-such-package/version.svg?cacheSeconds=86400")
        .await;
    assert_eq!(missing.status(), 200, "an error is still a badge");
    assert_eq!(max_age(&missing), 60);
    let missing = json_badge(&f.granary, "npm/no-such-package/version").await;
    assert_eq!(missing["message"], "not found");
    assert_eq!(missing["isError"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_expires_and_stale_facts_answer_at_once_while_the_upstream_is_down() {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let f = fixture(
        Arc::clone(&clock) as Arc<dyn Clock>,
        "",
        "negative_ttl = \"30s\"\nretries = 0\ntimeout = \"2s\"",
    )
    .await;

    // Not there yet: "not found", believed for a minute.
    assert_eq!(
        json_badge(&f.granary, "pypi/late-comer/version").await["message"],
        "not found"
    );
    let page = std::fs::read(f.root.join("pypi/simple/gamma-src/index.json")).expect("page");
    let page = String::from_utf8(page)
        .expect("utf-8")
        .replace("gamma-src", "late-comer");
    std::fs::create_dir_all(f.root.join("pypi/simple/late-comer")).expect("dir");
    std::fs::write(f.root.join("pypi/simple/late-comer/index.json"), page).expect("write");
    clock.advance(Duration::from_secs(40));
    assert_eq!(
        json_badge(&f.granary, "pypi/late-comer/version").await["message"],
        "not found",
        "within the minute the answer stands"
    );
    clock.advance(Duration::from_secs(21));
    assert_eq!(
        json_badge(&f.granary, "pypi/late-comer/version").await["message"],
        "v0.3.0",
        "after a minute it is looked up again"
    );

    // A version badge seen once, then the upstream hangs: past its five minutes the
    // badge still answers at once, from the stale facts, for at most a minute.
    assert_eq!(
        json_badge(&f.granary, "pypi/alpha-lib/version").await["message"],
        "v1.0.0"
    );
    f.pypi.set_behaviour(Behaviour::Hang);
    clock.advance(Duration::from_secs(6 * 60));
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        f.granary.get("-/badge/pypi/alpha-lib/version.svg"),
    )
    .await
    .expect("a stale badge does not wait for the upstream");
    assert_eq!(response.status(), 200);
    assert!(max_age(&response) <= 60);
    assert!(response.text().await.expect("svg").contains("v1.0.0"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // A project never seen while the upstream is down: "unavailable", not cached long.
    let response = tokio::time::timeout(
        Duration::from_secs(60),
        f.granary.get("-/badge/pypi/never-seen/version.json"),
    )
    .await
    .expect("the upstream timeout bounds it");
    assert_eq!(max_age(&response), 60);
    let badge: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        (badge["message"].as_str(), badge["isError"].as_bool()),
        (Some("unavailable"), Some(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_labels_and_colours_are_escaped_or_refused() {
    let f = plain_fixture().await;
    let svg = f
        .granary
        .get("-/badge/npm/widget/version.svg?label=%3Cscript%3Ealert(1)%3C%2Fscript%3E%22%27%26")
        .await;
    assert_eq!(svg.status(), 200);
    assert!(svg.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .starts_with("default-src 'none'"));
    let svg = svg.text().await.expect("svg");
    assert!(!svg.contains("<script"), "{svg}");
    assert!(
        svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&apos;&amp;")
            || svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"),
        "{svg}"
    );

    for (query, refused) in [
        ("color=red%22%20onload%3D%22alert(1)", "color"),
        ("labelColor=url(%23x)", "labelColor"),
        ("color=expression(alert(1))", "color"),
        ("style=neon", "style"),
        ("cacheSeconds=soon", "cacheSeconds"),
        (&format!("label={}", "x".repeat(65)), "label"),
        ("label=a%0Ab", "label"),
    ] {
        let response = f
            .granary
            .get(&format!("-/badge/npm/widget/version.svg?{query}"))
            .await;
        assert_eq!(response.status(), 400, "{query}");
        let body = response.text().await.expect("body");
        assert!(body.contains(refused), "{query}: {body}");
    }
    let unknown = f.granary.get("-/badge/npm/widget/stars.svg").await;
    assert_eq!(unknown.status(), 404);
    assert!(unknown
        .text()
        .await
        .expect("body")
        .contains("version, license, node, types"));
    assert_eq!(
        f.granary
            .get("-/badge/pypi/bad..name!/version.svg")
            .await
            .status(),
        400
    );
    assert_eq!(
        f.granary
            .get("-/badge/nowhere/x/version.svg")
            .await
            .status(),
        404
    );
    assert_eq!(
        f.granary
            .get("-/badge/npm/widget/version.png")
            .await
            .status(),
        404
    );
    // A very long fact is cut, not drawn across the page.
    let colours = f
        .granary
        .get("-/badge/npm/widget/version.json?color=ff00aa&labelColor=rgb(1,2,3)")
        .await;
    let colours: serde_json::Value = colours.json().await.expect("json");
    assert_eq!(
        (colours["color"].as_str(), colours["labelColor"].as_str()),
        (Some("ff00aa"), Some("rgb(1,2,3)"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_badge_of_a_private_repository_is_refused_like_the_repository() {
    let top_level = crate::support::one_user_auth("alice-secret");
    let f = fixture(Arc::new(SystemClock), &top_level, "access = [\"alice\"]").await;
    let anonymous = f.granary.get("-/badge/pypi/alpha-lib/version.svg").await;
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    assert_eq!(
        f.pypi.total_hits(),
        0,
        "nothing is looked up for a refused caller"
    );
    let allowed = TestGranary::client()
        .get(f.granary.url("-/badge/pypi/alpha-lib/version.svg"))
        .basic_auth("alice", Some("alice-secret"))
        .send()
        .await
        .expect("response");
    assert_eq!(allowed.status(), 200);
    // The public repositories beside it answer anyone.
    assert_eq!(
        f.granary
            .get("-/badge/npm/widget/version.svg")
            .await
            .status(),
        200
    );
}

// ------------------------------------------------------------------ drawing

/// Pixels between the rows of the screenshot page.
const ROW: u32 = 40;

const STYLES: [&str; 5] = ["flat", "flat-square", "plastic", "for-the-badge", "social"];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/badges")
}

/// The declared `width` of an SVG badge, in whole pixels (for-the-badge widths
/// have halves).
fn svg_width(svg: &str) -> u32 {
    let at = svg.find("width=\"").expect("a width") + 7;
    let end = svg[at..].find('"').expect("closing quote");
    let width = &svg[at..at + end];
    width
        .split('.')
        .next()
        .and_then(|whole| whole.parse().ok())
        .unwrap_or_else(|| panic!("`{width}` is not a width"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_style_matches_its_golden_svg_and_draws_its_size_and_colours_in_a_browser() {
    let f = plain_fixture().await;
    let update = std::env::var_os("GRANARY_UPDATE_GOLDEN").is_some();
    let mut widths = Vec::new();
    for style in STYLES {
        let svg = f
            .granary
            .get(&format!("-/badge/npm/widget/license.svg?style={style}"))
            .await
            .text()
            .await
            .expect("svg");
        let golden = golden_dir().join(format!("license-mit-{style}.svg"));
        if update {
            std::fs::create_dir_all(golden_dir()).expect("golden dir");
            std::fs::write(&golden, &svg).expect("write golden");
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (GRANARY_UPDATE_GOLDEN=1 writes it)",
                golden.display()
            )
        });
        assert_eq!(
            svg,
            expected,
            "style {style} differs from {}",
            golden.display()
        );
        widths.push(svg_width(&svg));
    }

    // A page with one badge per row, screenshotted by headless Chromium.
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("badges");
    std::fs::create_dir_all(&out).expect("artefact dir");
    let mut images = String::new();
    for (row, style) in STYLES.iter().enumerate() {
        let top = 10 + ROW * u32::try_from(row).expect("row");
        let src = f
            .granary
            .url(&format!("-/badge/npm/widget/license.svg?style={style}"));
        write!(
            images,
            "<img style=\"position:absolute;left:10px;top:{top}px\" src=\"{src}\">"
        )
        .expect("a String takes writes");
    }
    let page = out.join("styles.html");
    std::fs::write(
        &page,
        format!(
            "<!doctype html><html><body style=\"margin:0;background:#fff\">{images}</body></html>"
        ),
    )
    .expect("page");
    let screenshot = out.join("styles.png");
    let _ = std::fs::remove_file(&screenshot);
    let (page_url, shot) = (format!("file://{}", page.display()), screenshot.clone());
    let output = tokio::task::spawn_blocking(move || {
        crate::status::headless(&[
            "--force-device-scale-factor=1",
            "--window-size=400,220",
            "--virtual-time-budget=5000",
            &format!("--screenshot={}", shot.display()),
            &page_url,
        ])
    })
    .await
    .expect("chromium");
    assert!(
        screenshot.exists(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&screenshot).expect("png"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut pixels).expect("png frame");
    let channels = info.color_type.samples();
    let pixel = |x: u32, y: u32| {
        let at = (y as usize * info.width as usize + x as usize) * channels;
        [pixels[at], pixels[at + 1], pixels[at + 2]]
    };
    let close = |a: [u8; 3], b: [u8; 3], tolerance: i16| {
        a.iter()
            .zip(b)
            .all(|(x, y)| (i16::from(*x) - i16::from(y)).abs() <= tolerance)
    };
    for (row, (style, width)) in STYLES.iter().zip(&widths).enumerate() {
        let top = 10 + ROW * u32::try_from(row).expect("row");
        // Two pixels below the top edge: background only, no text.
        let y = top + 2;
        let drawn: Vec<u32> = (0..info.width)
            .filter(|&x| !close(pixel(x, y), [255, 255, 255], 3))
            .collect();
        let (first, last) = (drawn.first().copied(), drawn.last().copied());
        let rendered = last.zip(first).map(|(l, f)| l - f + 1);
        // Rounded corners may leave the very first/last column light.
        assert!(
            rendered.is_some_and(|r| r.abs_diff(*width) <= 2)
                && first.is_some_and(|x| x.abs_diff(10) <= 1),
            "{style}: drawn from {first:?} to {last:?}, declared {width} wide"
        );
        if matches!(*style, "flat-square" | "for-the-badge") {
            // No gradient: exactly the label grey and the licence green.
            assert!(
                close(pixel(14, y), [0x55, 0x55, 0x55], 2),
                "{style} label: {:?}",
                pixel(14, y)
            );
            assert!(
                close(pixel(10 + width - 4, y), [0x97, 0xca, 0x00], 2),
                "{style} message: {:?}",
                pixel(10 + width - 4, y)
            );
        } else if matches!(*style, "flat" | "plastic") {
            // Under a light gradient: still grey on the left, green on the right.
            let (left, right) = (pixel(14, top + 10), pixel(10 + width - 4, top + 10));
            assert!(
                left[0].abs_diff(left[2]) < 12 && left[0] < 140,
                "{style} label: {left:?}"
            );
            assert!(
                right[1] > right[0] + 25 && right[1] > right[2] + 80,
                "{style} message: {right:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_asked_once_per_ten_seconds_not_once_per_view() {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let f = fixture(Arc::clone(&clock) as Arc<dyn Clock>, "", "retries = 0").await;
    f.pypi
        .set_behaviour(Behaviour::Fail(http::StatusCode::INTERNAL_SERVER_ERROR));
    for _ in 0..5 {
        let badge = json_badge(&f.granary, "pypi/alpha-lib/version").await;
        assert_eq!(badge["message"], "unavailable");
    }
    assert_eq!(
        f.pypi.hits("simple/alpha-lib/"),
        1,
        "five views, one upstream request"
    );
    clock.advance(Duration::from_secs(11));
    f.pypi.set_behaviour(Behaviour::Normal);
    let badge = json_badge(&f.granary, "pypi/alpha-lib/version").await;
    assert_eq!(
        badge["message"], "v1.0.0",
        "ten seconds on, it is asked again"
    );
}
