//! The status page as HTML: server-rendered, no script, charts as inline SVG, one
//! column on a phone and a grid on a laptop. It reloads itself every 15 seconds.

use std::fmt::Write as _;

use html_escape::encode_text as text;

use super::{Counts, RepoStatus, StatusReport, View};

const STYLE: &str = r#"
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --card:#fff; --bg:#f5f7fa;
        --good:#2f855a; --warn:#b7791f; --bad:#c53030; --accent:#2b6cb0; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--ink); background:var(--bg); }
header { padding:16px 20px; background:var(--ink); color:#fff; display:flex; flex-wrap:wrap;
         gap:8px 24px; align-items:baseline; }
header h1 { margin:0; font-size:20px; }
header span { color:#cbd2d9; font-size:13px; }
main { padding:16px; display:grid; align-items:start; gap:16px; grid-template-columns:repeat(auto-fit,minmax(340px,1fr)); }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; min-width:0; }
h2 { margin:0 0 10px; font-size:16px; display:flex; justify-content:space-between; gap:8px; flex-wrap:wrap; }
h2 small { color:var(--muted); font-weight:normal; font-size:12px; overflow-wrap:anywhere; }
.figures { display:grid; grid-template-columns:repeat(3,1fr); gap:8px; margin-bottom:10px; }
.figure { background:var(--bg); border-radius:6px; padding:8px; }
.figure b { display:block; font-size:20px; }
.figure span { color:var(--muted); font-size:12px; }
table { width:100%; border-collapse:collapse; font-size:13px; }
th, td { text-align:left; padding:4px 6px; border-bottom:1px solid var(--line); overflow-wrap:anywhere; }
th { color:var(--muted); font-weight:600; white-space:nowrap; }
td.n { text-align:right; font-variant-numeric:tabular-nums; }
.state { font-weight:600; }
.up { color:var(--good); } .degraded, .offline { color:var(--warn); } .down { color:var(--bad); }
.chart { width:100%; height:64px; display:block; margin:4px 0 10px; }
.caption { color:var(--muted); font-size:12px; }
.bar { height:10px; background:var(--line); border-radius:5px; overflow:hidden; }
.bar i { display:block; height:100%; background:var(--accent); }
.full { grid-column:1/-1; }
"#;

/// A table row: its label and how to read it from a window's counts.
type Row = (&'static str, fn(&Counts) -> String);

/// The page for `report`.
#[must_use]
pub fn render(report: &StatusReport) -> String {
    let mut html = String::with_capacity(32 * 1024);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"15\"><title>granary status</title>\
         <style>{STYLE}</style></head><body><header><h1>granary</h1>\
         <span>status at {} UTC</span><span>{} view</span></header><main>",
        format_time(report.generated_at),
        match report.view {
            View::Full => "full",
            View::Summary => "summary",
        }
    );
    for repo in &report.repos {
        repo_section(&mut html, repo);
    }
    storage_section(&mut html, report);
    activity_section(&mut html, report);
    engines_section(&mut html, report);
    html.push_str("</main></body></html>\n");
    html
}

fn repo_section(html: &mut String, repo: &RepoStatus) {
    let id = text(&repo.name);
    let _ = write!(
        html,
        "<section id=\"repo-{id}\"><h2>{id} <small>{} · {} · {}</small></h2>",
        text(repo.format),
        if repo.scope == "cluster" {
            "all replicas"
        } else {
            "this replica"
        },
        text(&repo.upstream)
    );
    let _ = write!(
        html,
        "<div class=\"figures\">\
         <div class=\"figure\"><b data-k=\"hit-ratio-hour\">{}</b><span>hit ratio, last hour</span></div>\
         <div class=\"figure\"><b data-k=\"requests-hour\">{}</b><span>requests, last hour</span></div>\
         <div class=\"figure\"><b data-k=\"saved-hour\">{}</b><span>served from cache, last hour</span></div>\
         </div>",
        percent(repo.hit_ratio_hour),
        repo.last_hour.requests,
        bytes(repo.last_hour.bytes_from_cache),
    );
    html.push_str("<div class=\"caption\">hit ratio per minute, last hour</div>");
    html.push_str(&ratio_chart(&repo.hit_ratio_per_minute));
    html.push_str("<div class=\"caption\">bytes served from cache per minute, last hour</div>");
    html.push_str(&bar_chart(&repo.bytes_from_cache_per_minute));
    html.push_str("<table><tr><th></th><th>minute</th><th>hour</th><th>day</th></tr>");
    let rows: [Row; 6] = [
        ("requests", |c| c.requests.to_string()),
        ("hits", |c| c.hits.to_string()),
        ("misses", |c| c.misses.to_string()),
        ("errors", |c| c.errors.to_string()),
        ("from cache", |c| bytes(c.bytes_from_cache)),
        ("served", |c| bytes(c.bytes_served)),
    ];
    for (label, value) in rows {
        let _ = write!(
            html,
            "<tr><th>{label}</th><td class=\"n\" data-k=\"{key}-minute\">{}</td>\
             <td class=\"n\" data-k=\"{key}-hour\">{}</td><td class=\"n\" data-k=\"{key}-day\">{}</td></tr>",
            value(&repo.last_minute),
            value(&repo.last_hour),
            value(&repo.last_day),
            key = label.replace(' ', "-"),
        );
    }
    html.push_str("</table>");
    let health = &repo.upstream_health;
    let state = if repo.offline_documents > 0 {
        (
            "offline",
            format!(
                "offline: {} served stale while the upstream fails",
                repo.offline_documents
            ),
        )
    } else if health.errors_5m > 0 {
        (
            "degraded",
            format!(
                "{} of {} requests failed (5 min)",
                health.errors_5m, health.requests_5m
            ),
        )
    } else {
        ("up", format!("{} requests (5 min)", health.requests_5m))
    };
    let _ =
        write!(
        html,
        "<table><tr><th>upstream</th><td class=\"state {}\" data-k=\"upstream-state\">{}</td></tr>\
         <tr><th>latency p50 / p95</th><td>{} / {}</td></tr>\
         <tr><th>fetched upstream</th><td data-k=\"fetched\">{}</td></tr>\
         <tr><th>last success</th><td>{}</td></tr>\
         <tr><th>last error</th><td data-k=\"last-error\">{}</td></tr></table>",
        state.0,
        text(&state.1),
        millis(health.latency_p50_ms),
        millis(health.latency_p95_ms),
        bytes(health.bytes_fetched),
        health.last_success.map_or_else(|| "–".to_owned(), format_time),
        health.last_error.as_ref().map_or_else(
            || "–".to_owned(),
            |(at, message)| format!("{} UTC: {}", format_time(*at), text(message))
        ),
    );
    if let Some(top) = &repo.top_projects {
        html.push_str(
            "<table><tr><th>top projects, last hour</th><th class=\"n\">requests</th></tr>",
        );
        for (project, count) in top {
            let _ = write!(
                html,
                "<tr><td data-k=\"project\">{}</td><td class=\"n\">{count}</td></tr>",
                text(project)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</section>");
}

fn storage_section(html: &mut String, report: &StatusReport) {
    let storage = &report.storage;
    let used = match (storage.stored_bytes, storage.max_bytes) {
        #[allow(clippy::cast_precision_loss)] // a display ratio
        (Some(stored), Some(max)) if max > 0 => (stored as f64 / max as f64).min(1.0),
        _ => 0.0,
    };
    let _ = write!(
        html,
        "<section id=\"storage\"><h2>storage</h2>\
         <div class=\"bar\"><i style=\"width:{:.1}%\"></i></div>\
         <table><tr><th>stored</th><td data-k=\"stored-bytes\">{}</td></tr>\
         <tr><th>blobs</th><td data-k=\"stored-blobs\">{}</td></tr>\
         <tr><th>bound (storage.max_size)</th><td>{}</td></tr>\
         <tr><th>evicted</th><td>{} blobs, {}</td></tr>\
         <tr><th>in temporary files</th><td>{}</td></tr></table></section>",
        used * 100.0,
        storage
            .stored_bytes
            .map_or_else(|| "unknown".to_owned(), bytes),
        storage
            .stored_blobs
            .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
        storage.max_bytes.map_or_else(|| "none".to_owned(), bytes),
        storage.evicted_blobs,
        bytes(storage.evicted_bytes),
        bytes(storage.temp_bytes),
    );
}

fn activity_section(html: &mut String, report: &StatusReport) {
    let now = &report.now;
    let _ = write!(
        html,
        "<section id=\"activity\"><h2>now <small>{} fills, {} queued, {} refreshes</small></h2>\
         <table><tr><th>downloading</th><th class=\"n\">progress</th><th class=\"n\">rate</th><th class=\"n\">readers</th></tr>",
        now.fills.len(),
        now.fills_queued,
        now.refreshes
    );
    if now.fills.is_empty() {
        html.push_str("<tr><td colspan=\"4\">nothing</td></tr>");
    }
    for fill in &now.fills {
        let progress = fill.total.map_or_else(
            || bytes(fill.written),
            |total| format!("{} of {}", bytes(fill.written), bytes(total)),
        );
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a display rate
        let rate = bytes(fill.bytes_per_second as u64);
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"n\">{progress}</td><td class=\"n\">{rate}/s</td><td class=\"n\">{}</td></tr>",
            text(&fill.key),
            fill.readers
        );
    }
    html.push_str("</table></section>");
}

fn engines_section(html: &mut String, report: &StatusReport) {
    html.push_str("<section id=\"engines\"><h2>engines</h2><table><tr><th>engine</th><th>state</th><th class=\"n\">latency</th></tr>");
    for engine in &report.engines {
        let _ = write!(
            html,
            "<tr><td>{} <small>({})</small></td><td class=\"state {}\">{}{}</td><td class=\"n\">{}</td></tr>",
            engine.name,
            text(&engine.kind),
            engine.state,
            engine.state,
            engine
                .error
                .as_ref()
                .map_or_else(String::new, |e| format!(": {}", text(e))),
            millis(engine.latency_ms)
        );
    }
    html.push_str("</table></section>");
}

/// A line of the hit ratio per minute (gaps where there was no traffic).
fn ratio_chart(points: &[Option<f64>]) -> String {
    let width = 300.0;
    let height = 60.0;
    #[allow(clippy::cast_precision_loss)] // at most 60 points
    let step = width / (points.len().max(2) - 1) as f64;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {height}\" preserveAspectRatio=\"none\" role=\"img\" \
         aria-label=\"hit ratio per minute\"><rect width=\"{width}\" height=\"{height}\" fill=\"#f5f7fa\"/>"
    );
    let mut path = String::new();
    for (index, point) in points.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let x = index as f64 * step;
        match point {
            Some(ratio) => {
                let y = height - ratio * (height - 4.0) - 2.0;
                let _ = write!(
                    path,
                    "{}{x:.1},{y:.1} ",
                    if path.is_empty() || path.ends_with('|') {
                        "M"
                    } else {
                        "L"
                    }
                );
            }
            None => path.push('|'),
        }
    }
    let path = path
        .split('|')
        .filter(|segment| !segment.trim().is_empty())
        .map(|segment| {
            let segment = segment.trim();
            if segment.starts_with('M') {
                segment.to_owned()
            } else {
                format!("M{}", &segment[1..])
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let _ = write!(
        svg,
        "<path d=\"{path}\" fill=\"none\" stroke=\"#2f855a\" stroke-width=\"2\" vector-effect=\"non-scaling-stroke\"/>"
    );
    // Every minute with traffic is also a dot, so a lone minute shows.
    for (index, point) in points.iter().enumerate() {
        if let Some(ratio) = point {
            #[allow(clippy::cast_precision_loss)]
            let x = index as f64 * step;
            let y = height - ratio * (height - 4.0) - 2.0;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"4\" height=\"4\" fill=\"#2f855a\"/>",
                (x - 2.0).clamp(0.0, width - 4.0),
                y - 2.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Bars of bytes per minute, scaled to the largest.
fn bar_chart(values: &[u64]) -> String {
    let width = 300.0;
    let height = 60.0;
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    #[allow(clippy::cast_precision_loss)]
    let slot = width / values.len().max(1) as f64;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {height}\" preserveAspectRatio=\"none\" role=\"img\" \
         aria-label=\"bytes served from cache per minute\"><rect width=\"{width}\" height=\"{height}\" fill=\"#f5f7fa\"/>"
    );
    for (index, value) in values.iter().enumerate() {
        if *value == 0 {
            continue;
        }
        #[allow(clippy::cast_precision_loss)]
        let bar = (*value as f64 / max as f64) * (height - 2.0);
        #[allow(clippy::cast_precision_loss)]
        let x = index as f64 * slot;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\" fill=\"#2b6cb0\"/>",
            height - bar,
            (slot - 1.0).max(0.5)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "–".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn millis(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |ms| format!("{ms:.1} ms"))
}

/// Bytes for people: `1.5 MiB`.
#[must_use]
pub fn bytes(value: u64) -> String {
    bytesize::ByteSize::b(value).to_string_as(false)
}

/// `HH:MM:SS` of a Unix time (UTC).
fn format_time(seconds: u64) -> String {
    let day = seconds % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}
