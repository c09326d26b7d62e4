//! `granary warm`: fills a running granary with everything a build needs, read from
//! lockfiles, by asking it over HTTP for what a real client would ask (so whatever
//! granary does for clients — verification, single flight, rewriting — happens once
//! now, and the build can later run with the upstream cut off).
//!
//! What to fetch comes from [`crate::protocols::warm_plan`]; this module runs the
//! fetches with bounded parallelism, reports progress and sums up.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use http::header::{ACCEPT, AUTHORIZATION};

use crate::protocols::warm::WarmFetch;

/// What one fetch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// granary fetched it from the upstream now.
    Fetched,
    /// granary had it already.
    Cached,
    /// It failed: the status or transport error, and granary's message.
    Failed(String),
}

/// One finished fetch, as progress reports it.
#[derive(Debug, Clone)]
pub struct Done {
    pub path: String,
    pub outcome: Outcome,
    pub bytes: u64,
}

/// The totals of a warm run.
#[derive(Debug, Default)]
pub struct Summary {
    pub fetched: usize,
    pub cached: usize,
    /// Path → reason.
    pub failed: BTreeMap<String, String>,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Summary {
    #[must_use]
    pub fn total(&self) -> usize {
        self.fetched + self.cached + self.failed.len()
    }
}

/// Where and how to ask granary.
#[derive(Debug, Clone)]
pub struct Target {
    /// The repository's mount point, ending with `/`, e.g. `http://127.0.0.1:8080/npm/`
    /// (in process, only its path is used).
    pub base: url::Url,
    /// Sent as `Authorization` (e.g. `Bearer …`) when the repository is private.
    pub authorization: Option<String>,
    /// Fetches at once.
    pub parallel: usize,
    pub transport: Transport,
}

/// How warm requests reach granary.
#[derive(Clone)]
pub enum Transport {
    /// Over HTTP, to a running granary.
    Http,
    /// Through the router of the granary in this process (`POST /-/api/REPO/warm`):
    /// the same handlers as clients reach, without a socket.
    InProcess(axum::Router),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http => "Http",
            Self::InProcess(_) => "InProcess",
        })
    }
}

/// A reply's status, whether granary had it, and its body.
struct Reply {
    status: http::StatusCode,
    cached: bool,
    body: futures::stream::BoxStream<'static, Result<bytes::Bytes, String>>,
}

impl Reply {
    fn new(
        status: http::StatusCode,
        headers: &http::HeaderMap,
        body: futures::stream::BoxStream<'static, Result<bytes::Bytes, String>>,
    ) -> Self {
        let cached = headers
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.eq_ignore_ascii_case("miss"));
        Self {
            status,
            cached,
            body,
        }
    }

    async fn whole(mut self) -> Result<Vec<u8>, String> {
        let mut whole = Vec::new();
        while let Some(chunk) = self.body.next().await {
            whole.extend_from_slice(&chunk?);
        }
        Ok(whole)
    }
}

/// GETs `url` through `target`'s transport.
async fn get(
    client: &reqwest::Client,
    target: &Target,
    url: url::Url,
    accept: Option<&str>,
) -> Result<Reply, String> {
    send(client, target, http::Method::GET, url, accept, None).await
}

/// Sends `method` `url` (with `body`, if any) through `target`'s transport, with
/// its credentials.
async fn send(
    client: &reqwest::Client,
    target: &Target,
    method: http::Method,
    url: url::Url,
    accept: Option<&str>,
    body: Option<String>,
) -> Result<Reply, String> {
    match &target.transport {
        Transport::Http => {
            let mut request = client.request(method, url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(authorization) = &target.authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            if let Some(body) = body {
                request = request.body(body);
            }
            let response = request
                .send()
                .await
                .map_err(|error| format!("granary did not answer: {error}"))?;
            let (status, headers) = (response.status(), response.headers().clone());
            Ok(Reply::new(
                status,
                &headers,
                response
                    .bytes_stream()
                    .map(|chunk| chunk.map_err(|error| error.to_string()))
                    .boxed(),
            ))
        }
        Transport::InProcess(router) => {
            use tower::ServiceExt as _;
            let path = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            };
            let mut request = http::Request::builder().method(method).uri(path);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(authorization) = &target.authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            let request = request
                .body(body.map_or_else(axum::body::Body::empty, axum::body::Body::from))
                .map_err(|error| format!("not a request: {error}"))?;
            let response = router
                .clone()
                .oneshot(request)
                .await
                .map_err(|error| format!("granary did not answer: {error}"))?;
            let (parts, body) = response.into_parts();
            Ok(Reply::new(
                parts.status,
                &parts.headers,
                body.into_data_stream()
                    .map(|chunk| chunk.map_err(|error| error.to_string()))
                    .boxed(),
            ))
        }
    }
}

/// Resolves a requirements file through granary (`POST /-/api/REPO/resolve`, at
/// `api`, e.g. `http://127.0.0.1:8080/-/api/pypi/resolve?target=3.12`): the
/// (name, version) of every package the file's tree holds, and the resolution's
/// errors about single packages (e.g. an sdist whose dependencies are unknown
/// without building it), which do not stop the warm.
///
/// # Errors
/// granary's refusal, a file whose requirements cannot all be met (the reason, as
/// the resolver says it), or a transport failure.
pub async fn resolve_pins(target: &Target, api: url::Url, file: String) -> Result<Pins, String> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let reply = send(
        &client,
        target,
        http::Method::POST,
        api.clone(),
        None,
        Some(file),
    )
    .await
    .map_err(|e| format!("POST {api}: {e}"))?;
    let status = reply.status;
    let text = reply
        .whole()
        .await
        .map_err(|e| format!("POST {api}: {e}"))?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    if let Some(error) = lines.iter().find(|l| l["type"] == "error") {
        return Err(format!("resolving failed ({status}): {}", error["message"]));
    }
    if !status.is_success() {
        return Err(format!("resolving failed: {status}: {text}"));
    }
    let done = lines
        .iter()
        .find(|l| l["type"] == "done")
        .ok_or_else(|| "the resolution's answer ended early".to_owned())?;
    pins_of(
        lines.iter().filter(|l| l["type"] == "node"),
        &done["errors"],
    )
}

/// `(name, version)` of every package a resolution chose, and its warnings.
pub type Pins = (Vec<(String, String)>, Vec<String>);

/// The pins of a resolution's JSON answer (`GET …/resolve`'s graph), as
/// [`resolve_pins`] gives them.
///
/// # Errors
/// A root that does not resolve (the reason, as the resolver says it).
pub fn pins_of_graph(graph: &[u8]) -> Result<Pins, String> {
    let graph: serde_json::Value =
        serde_json::from_slice(graph).map_err(|e| format!("a resolution is not JSON: {e}"))?;
    pins_of(
        graph["nodes"].as_array().into_iter().flatten(),
        &graph["errors"],
    )
}

/// `(name, version)` of every node but the root, and the resolution's errors; an
/// error on the root fails.
fn pins_of<'a>(
    nodes: impl Iterator<Item = &'a serde_json::Value> + Clone,
    errors: &serde_json::Value,
) -> Result<Pins, String> {
    let texts = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let root_errors: Vec<String> = nodes
        .clone()
        .filter(|l| l["relation"] == "SELF")
        .flat_map(|l| texts(&l["errors"]))
        .collect();
    if !root_errors.is_empty() {
        return Err(format!(
            "the requirements do not resolve: {}",
            root_errors.join("; ")
        ));
    }
    let pins = nodes
        .filter(|l| l["relation"] != "SELF")
        .filter_map(|l| {
            Some((
                l["name"].as_str()?.to_owned(),
                l["version"].as_str()?.to_owned(),
            ))
        })
        .collect();
    Ok((pins, texts(errors)))
}

/// Runs `plan` (and whatever its documents name) against `target`; `progress` hears of
/// each finished fetch, with the number known so far.
pub async fn run(
    target: &Target,
    plan: Vec<WarmFetch>,
    mut progress: impl FnMut(&Done, usize),
) -> Summary {
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<WarmFetch> = VecDeque::new();
    for fetch in plan {
        if seen.insert(fetch.path.clone()) {
            queue.push_back(fetch);
        }
    }
    let mut summary = Summary::default();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < target.parallel.max(1) {
            let Some(fetch) = queue.pop_front() else {
                break;
            };
            running.push(fetch_one(&client, target, fetch));
        }
        let Some((done, more)) = running.next().await else {
            break;
        };
        for fetch in more {
            if seen.insert(fetch.path.clone()) {
                queue.push_back(fetch);
            }
        }
        summary.bytes += done.bytes;
        match &done.outcome {
            Outcome::Fetched => summary.fetched += 1,
            Outcome::Cached => summary.cached += 1,
            Outcome::Failed(reason) => {
                summary.failed.insert(done.path.clone(), reason.clone());
            }
        }
        progress(&done, seen.len());
    }
    summary.elapsed = started.elapsed();
    summary
}

/// GETs one path; reads an expanding document whole, streams anything else through
/// (counting bytes) without keeping it.
async fn fetch_one(
    client: &reqwest::Client,
    target: &Target,
    fetch: WarmFetch,
) -> (Done, Vec<WarmFetch>) {
    let failed = |reason: String| {
        (
            Done {
                path: fetch.path.clone(),
                outcome: Outcome::Failed(reason),
                bytes: 0,
            },
            Vec::new(),
        )
    };
    let url = match target.base.join(&fetch.path) {
        Ok(url) => url,
        Err(error) => return failed(format!("not a path: {error}")),
    };
    let mut reply = match get(client, target, url, fetch.accept).await {
        Ok(reply) => reply,
        Err(reason) => return failed(reason),
    };
    let (status, cached) = (reply.status, reply.cached);
    if !status.is_success() {
        let body = reply.whole().await.unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        let message = body.lines().next().unwrap_or("").trim();
        return failed(format!("{status}: {message}"));
    }
    let (bytes, more) = if let Some(expand) = &fetch.expand {
        match reply.whole().await {
            Ok(body) => match expand(&body) {
                Ok(more) => (body.len() as u64, more),
                Err(reason) => return failed(reason),
            },
            Err(error) => return failed(format!("the body broke off: {error}")),
        }
    } else {
        let mut bytes = 0u64;
        while let Some(chunk) = reply.body.next().await {
            match chunk {
                Ok(chunk) => bytes += chunk.len() as u64,
                Err(error) => return failed(format!("the body broke off: {error}")),
            }
        }
        (bytes, Vec::new())
    };
    (
        Done {
            path: fetch.path,
            outcome: if cached {
                Outcome::Cached
            } else {
                Outcome::Fetched
            },
            bytes,
        },
        more,
    )
}
