//! The per-request layer: one structured log line and one metrics sample for every
//! request, with the repository, route, status and cache result.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::info;

use super::respond::X_CACHE;
use super::state::{AppState, Repository};
use crate::metrics::RequestLabels;

pub(super) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let (repo, route) = classify(&state, request.uri().path());
    // The log line is the only user of these; skip the copies when it is off.
    let logged = tracing::enabled!(tracing::Level::INFO).then(|| {
        (
            request.method().clone(),
            truncate(request.uri().path(), 256).to_owned(),
        )
    });
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let cache_status = response
        .headers()
        .get(X_CACHE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            repo,
            route,
            status,
        })
        .inc();
    let Some((method, path)) = logged else {
        return response;
    };
    info!(
        %method,
        %path,
        repo,
        route,
        status,
        cache_status = %cache_status,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// Repository and a low-cardinality route label for a path.
fn classify(state: &AppState, path: &str) -> (&'static str, &'static str) {
    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or("");
    if first == "-" {
        return ("-", "ops");
    }
    let Some(repo) = state.repos.get(first) else {
        return ("unknown", "other");
    };
    let route = match repo {
        Repository::Pypi(_) => match (segments.next(), segments.next()) {
            (Some("simple"), None | Some("")) => "project_list",
            (Some("simple"), Some(_)) => "project",
            (Some("files"), _) => "file",
            _ => "other",
        },
        Repository::Npm(_) => match segments.next() {
            Some("-") => "registry",
            _ if path.contains("/-/") => "tarball",
            _ => "packument",
        },
        Repository::Cargo(_) => match segments.next() {
            Some("config.json") => "config",
            Some("api") if path.ends_with("/download") => "crate",
            Some("api") => "api",
            _ => "index_file",
        },
        Repository::Maven(_) => {
            let name = path.rsplit('/').next().unwrap_or("");
            if name.starts_with("maven-metadata.xml") {
                "metadata"
            } else if [".sha1", ".md5", ".sha256", ".sha512"]
                .iter()
                .any(|suffix| name.ends_with(suffix))
            {
                "checksum"
            } else {
                "file"
            }
        }
    };
    (repo.label(), route)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}
