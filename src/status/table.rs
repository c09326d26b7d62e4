//! `granary status`: the status report as plain text tables for a terminal. It reads
//! the JSON a (possibly newer or older) server sent, so a missing field prints as `–`.

use std::fmt::Write as _;

use serde_json::Value;

use super::page::bytes;

fn number(value: &Value) -> String {
    value
        .as_u64()
        .map_or_else(|| "–".to_owned(), |n| n.to_string())
}

fn size(value: &Value) -> String {
    value.as_u64().map_or_else(|| "–".to_owned(), bytes)
}

fn percent(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "–".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// The report as text.
#[must_use]
pub fn render(report: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>9} {:>8} {:>8} {:>11} {:>8}  upstream",
        "repository", "req/hour", "hit/hr", "hit/day", "from cache", "errors"
    );
    for repo in report["repos"].as_array().into_iter().flatten() {
        let health = &repo["upstream_health"];
        let upstream = if repo["offline_documents"].as_u64().unwrap_or(0) > 0 {
            format!("offline ({} stale)", number(&repo["offline_documents"]))
        } else if health["errors_5m"].as_u64().unwrap_or(0) > 0 {
            format!(
                "degraded: {} of {} failed (5 min); last: {}",
                number(&health["errors_5m"]),
                number(&health["requests_5m"]),
                health["last_error"][1].as_str().unwrap_or("–")
            )
        } else {
            "up".to_owned()
        };
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>8} {:>8} {:>11} {:>8}  {upstream}",
            repo["name"].as_str().unwrap_or("?"),
            number(&repo["last_hour"]["requests"]),
            percent(&repo["hit_ratio_hour"]),
            percent(&repo["hit_ratio_day"]),
            size(&repo["last_hour"]["bytes_from_cache"]),
            number(&repo["last_hour"]["errors"]),
        );
    }
    let storage = &report["storage"];
    let _ = writeln!(
        out,
        "\nstorage: {} in {} blobs (bound {}), {} evicted, {} in temporary files",
        size(&storage["stored_bytes"]),
        number(&storage["stored_blobs"]),
        storage["max_bytes"]
            .as_u64()
            .map_or_else(|| "none".to_owned(), bytes),
        number(&storage["evicted_blobs"]),
        size(&storage["temp_bytes"]),
    );
    let now = &report["now"];
    let fills = now["fills"].as_array().map_or(0, Vec::len);
    let _ = writeln!(
        out,
        "now: {fills} fills, {} queued, {} refreshes",
        number(&now["fills_queued"]),
        number(&now["refreshes"]),
    );
    for fill in now["fills"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {} {} of {} ({} readers)",
            fill["key"].as_str().unwrap_or("?"),
            size(&fill["written"]),
            size(&fill["total"]),
            number(&fill["readers"]),
        );
    }
    out.push_str("engines:");
    for engine in report["engines"].as_array().into_iter().flatten() {
        let _ = write!(
            out,
            " {} {} ({});",
            engine["name"].as_str().unwrap_or("?"),
            engine["state"].as_str().unwrap_or("?"),
            engine["kind"].as_str().unwrap_or("?"),
        );
    }
    out.push('\n');
    out
}
