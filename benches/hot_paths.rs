//! Micro-benchmarks of the hot pure functions: parsing upstream Simple API pages in
//! both forms, rendering both forms, name normalization, key building and `Accept`
//! negotiation. `cargo bench` prints each; bench/run measures the whole server.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use granary::engine::{CacheKey, Category};
use granary::protocols::pypi::{keys, negotiate, parse, rewrite};
use std::fmt::Write as _;

use url::Url;

/// An upstream page with `files` links, as large projects have.
fn upstream_html(files: usize) -> String {
    let mut html = String::from("<!DOCTYPE html><html><body>\n");
    for i in 0..files {
        writeln!(
            html,
            "<a href=\"../../packages/demo-{i}.0.tar.gz#sha256={:064x}\" data-requires-python=\"&gt;=3.8\" data-dist-info-metadata=\"sha256={:064x}\">demo-{i}.0.tar.gz</a><br/>",
            i, i + 1
        )
        .expect("writing to a String cannot fail");
    }
    html.push_str("</body></html>\n");
    html
}

fn bench_parse_and_render(c: &mut Criterion) {
    let base = Url::parse("http://upstream.test/simple/demo/").expect("url");
    for files in [50, 2000] {
        let html = upstream_html(files);
        let page = parse::project_page(html.as_bytes(), false, &base, "demo").expect("parse");
        let json = rewrite::project_json(&page, "demo");
        let mut group = c.benchmark_group(format!("pypi_page_{files}_files"));
        group.throughput(Throughput::Bytes(html.len() as u64));
        group.bench_function("parse_html", |b| {
            b.iter(|| parse::project_page(black_box(html.as_bytes()), false, &base, "demo"));
        });
        group.bench_function("parse_json", |b| {
            b.iter(|| parse::project_page(black_box(&json), true, &base, "demo"));
        });
        group.bench_function("render_html", |b| {
            b.iter(|| rewrite::project_html(black_box(&page), "demo"));
        });
        group.bench_function("render_json", |b| {
            b.iter(|| rewrite::project_json(black_box(&page), "demo"));
        });
        group.finish();
    }
}

fn bench_names_and_keys(c: &mut Criterion) {
    c.bench_function("normalize_name", |b| {
        b.iter(|| keys::normalize(black_box("Zope.Interface_Extra--Tools")));
    });
    c.bench_function("valid_name", |b| {
        b.iter(|| keys::is_valid_project_name(black_box("zope.interface")));
    });
    c.bench_function("cache_key", |b| {
        b.iter(|| {
            CacheKey::new(
                Category::Index,
                "pypi",
                black_box("pypi"),
                black_box("zope-interface"),
            )
        });
    });
    let pip_accept = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
    c.bench_function("negotiate_accept", |b| {
        b.iter(|| negotiate::negotiate(black_box(Some(pip_accept))));
    });
}

/// What the badge image cache saves: drawing a badge, against finding it by its
/// content key (hashing the inputs) in the in-memory tier.
fn bench_badges(c: &mut Criterion) {
    use granary::badges::image::{Drawing, ImageCache, ImageFormat};
    let drawing = Drawing {
        format: ImageFormat::Svg,
        style: "flat",
        label: "python".to_owned(),
        message: "3.9 | 3.10 | 3.11 | 3.12 | 3.13".to_owned(),
        color: "blue".to_owned(),
        label_color: None,
        is_error: false,
    };
    c.bench_function("badge_render_svg", |b| b.iter(|| drawing.render()));
    let cache = ImageCache::new(granary::metrics::Metrics::new());
    let _ = cache.get_or_render(&drawing.content_key(), &drawing);
    c.bench_function("badge_content_key_and_cached_image", |b| {
        b.iter(|| cache.get_or_render(&drawing.content_key(), &drawing));
    });
}

criterion_group!(
    benches,
    bench_parse_and_render,
    bench_names_and_keys,
    bench_badges
);
criterion_main!(benches);
