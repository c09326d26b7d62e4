//! `POST /-/api/REPO/warm?file=NAME`: a running granary warms itself from a lockfile
//! posted to it (admin role), running the fetches of `granary warm` through its own
//! routes in process.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use super::authorize::readable_repo;
use super::error::ApiError;
use super::state::AppState;

/// The routes in-process warm requests go through: every route without the bound on
/// requests in flight (the posting request holds a turn already). The router puts
/// them in each request's extensions.
#[derive(Clone)]
pub(super) struct InProcessRoutes(pub(super) axum::Router);

/// Largest lockfile `POST /-/api/REPO/warm` reads (the route's body limit).
pub(super) const MAX_WARM_FILE: usize = 64 * 1024 * 1024;
/// Fetches at once for `POST /-/api/REPO/warm`, unless `parallel` says otherwise.
const WARM_PARALLEL: usize = 8;

/// `POST /-/api/REPO/warm?file=NAME[&parallel=N]` (admin role): fetches everything the
/// lockfile in the body names, as `granary warm` does, through this process's own
/// routes (access control, verification and single flight as for clients). Answers
/// the summary as JSON: `200` when everything was fetched or cached, `502` when
/// something failed (each failure with its reason).
pub(super) async fn warm(
    state: &AppState,
    routes: InProcessRoutes,
    repo_name: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    super::admin::authorize(state, headers).await?;
    let repo = match readable_repo(state, repo_name, headers).await? {
        Ok(repo) => repo,
        Err(refusal) => return Ok(refusal),
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let file_name = value("file").ok_or_else(|| {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            "expected ?file=NAME: the lockfile's file name, which says its format",
        )
    })?;
    let parallel = match value("parallel") {
        None => WARM_PARALLEL,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .ok_or_else(|| {
                ApiError::client(StatusCode::BAD_REQUEST, "`parallel`: a number from 1 to 64")
            })?,
    };
    let text = std::str::from_utf8(body).map_err(|error| {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            format!("the lockfile is not UTF-8: {error}"),
        )
    })?;
    let format = crate::config::Format::named(repo.format()).ok_or_else(|| {
        ApiError::internal(format!("repository `{repo_name}` names no known format"))
    })?;
    let plan = if crate::protocols::warm_needs_resolution(format, file_name, text) {
        resolved_plan(state, repo_name, repo, format, value("target"), text).await?
    } else {
        crate::protocols::warm_plan(format, file_name, text)
            .map_err(|reason| ApiError::client(StatusCode::BAD_REQUEST, reason))?
    };
    let base = url::Url::parse(&format!("http://granary.invalid/{repo_name}/"))
        .map_err(|error| ApiError::internal(format!("no mount point: {error}")))?;
    let target = crate::warm::Target {
        base,
        // The caller's credentials, for private repositories.
        authorization: headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        parallel,
        transport: crate::warm::Transport::InProcess(routes.0),
    };
    let summary = crate::warm::run(&target, plan, |_, _| {}).await;
    tracing::info!(
        repo = repo_name,
        file = file_name,
        fetched = summary.fetched,
        cached = summary.cached,
        failed = summary.failed.len(),
        "warmed"
    );
    let status = if summary.failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    let answer = serde_json::json!({
        "files": summary.total(),
        "fetched": summary.fetched,
        "cached": summary.cached,
        "failed": summary.failed,
        "bytes": summary.bytes,
        "seconds": summary.elapsed.as_secs_f64(),
    });
    Ok((status, axum::Json(answer)).into_response())
}

/// The plan of a file granary resolves first (unpinned requirements, a `pom.xml`):
/// resolved in process, as `POST /-/api/REPO/resolve` would, then each pin's fetches.
async fn resolved_plan(
    state: &AppState,
    repo_name: &str,
    repo: &std::sync::Arc<dyn crate::protocols::Protocol>,
    format: crate::config::Format,
    target: Option<&str>,
    text: &str,
) -> Result<Vec<crate::protocols::warm::WarmFetch>, ApiError> {
    let options = crate::protocols::resolution::ResolveOptions {
        max_depth: None,
        include_optional: false,
        target: target.map(str::to_owned),
    };
    let (resolved, _) =
        super::resolve_file::resolve_file(state, repo_name, repo, &options, false, text).await?;
    let (pins, warnings) = crate::warm::pins_of_graph(&resolved.body)
        .map_err(|reason| ApiError::client(StatusCode::UNPROCESSABLE_ENTITY, reason))?;
    for warning in warnings {
        tracing::warn!(repo = repo_name, %warning, "warm: resolution warning");
    }
    crate::protocols::warm_plan_of_pins(format, &pins)
        .map_err(|reason| ApiError::client(StatusCode::BAD_REQUEST, reason))
}
