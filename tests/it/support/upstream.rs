//! `FakeUpstream`: an axum app on 127.0.0.1:0 that serves a fixture directory with
//! PEP 691 negotiation, plus scripted responses (status, headers, slow or cut bodies).
//! It counts requests per path so stampede tests can assert exactly one, and can be
//! told to hang or fail, or be stopped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::StatusCode;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How the whole upstream behaves right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Accept the request and never answer.
    Hang,
    /// Answer every request with this status.
    Fail(StatusCode),
}

/// A scripted response for one path.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// Send the body in chunks of this size with this pause between them.
    pub pace: Option<(usize, Duration)>,
    /// Announce the full length but stop after this many bytes, then break the connection.
    pub cut_after: Option<usize>,
    /// Instead of `body`, send `body` over and over until this many bytes went out
    /// (large bodies without holding them in memory).
    pub repeat_to: Option<u64>,
    /// After this many bytes, wait for a permit of the semaphore before the rest.
    pub hold_after: Option<(usize, Arc<tokio::sync::Semaphore>)>,
}

impl Scripted {
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: body.into(),
            pace: None,
            cut_after: None,
            repeat_to: None,
            hold_after: None,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

#[derive(Default)]
struct FakeState {
    dir: Option<PathBuf>,
    routes: Mutex<HashMap<String, Scripted>>,
    hits: Mutex<HashMap<String, usize>>,
    /// The `Authorization` header of each request, by path.
    authorization: Mutex<HashMap<String, Vec<Option<String>>>>,
    /// Statuses to answer, in order, before behaving normally (per path).
    queued_statuses: Mutex<HashMap<String, Vec<StatusCode>>>,
    /// When each scripted body was completely sent.
    finished: Arc<Mutex<HashMap<String, Instant>>>,
    behaviour: Mutex<Option<Behaviour>>,
}

/// A running fake upstream.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    state: Arc<FakeState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts serving `dir` (if any) on an ephemeral loopback port.
    pub async fn start(dir: Option<PathBuf>) -> Self {
        Self::start_at(
            dir,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Behaviour::Normal,
        )
        .await
    }

    /// Starts on a given address (to replace a stopped upstream on the same port).
    pub async fn start_at(dir: Option<PathBuf>, addr: SocketAddr, behaviour: Behaviour) -> Self {
        let state = Arc::new(FakeState {
            dir,
            behaviour: Mutex::new(Some(behaviour)),
            ..FakeState::default()
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind fake upstream");
        let addr = listener.local_addr().expect("local addr");
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    pub fn script(&self, path: &str, response: Scripted) {
        self.state
            .routes
            .lock()
            .expect("routes")
            .insert(format!("/{}", path.trim_start_matches('/')), response);
    }

    /// Requests seen for `path`.
    pub fn hits(&self, path: &str) -> usize {
        let key = format!("/{}", path.trim_start_matches('/'));
        self.state
            .hits
            .lock()
            .expect("hits")
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    /// When the scripted body for `path` was last sent completely.
    pub fn finished_at(&self, path: &str) -> Option<Instant> {
        let key = format!("/{}", path.trim_start_matches('/'));
        self.state
            .finished
            .lock()
            .expect("finished")
            .get(&key)
            .copied()
    }

    /// The `Authorization` headers seen for `path`.
    pub fn authorization(&self, path: &str) -> Vec<Option<String>> {
        let key = format!("/{}", path.trim_start_matches('/'));
        self.state
            .authorization
            .lock()
            .expect("auth")
            .get(&key)
            .cloned()
            .unwrap_or_default()
    }

    /// Answers the next requests for `path` with these statuses first.
    pub fn queue_statuses(&self, path: &str, statuses: &[StatusCode]) {
        let key = format!("/{}", path.trim_start_matches('/'));
        self.state
            .queued_statuses
            .lock()
            .expect("queue")
            .insert(key, statuses.to_vec());
    }

    /// Requests seen, by path, in path order.
    pub fn hit_counts(&self) -> std::collections::BTreeMap<String, usize> {
        self.state
            .hits
            .lock()
            .expect("hits")
            .iter()
            .map(|(path, count)| (path.clone(), *count))
            .collect()
    }

    /// Requests seen in total.
    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().expect("hits").values().sum()
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().expect("behaviour") = Some(behaviour);
    }

    /// Stops accepting and closes idle connections; afterwards connections are refused.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn handle(State(state): State<Arc<FakeState>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    *state
        .hits
        .lock()
        .expect("hits")
        .entry(path.clone())
        .or_default() += 1;
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state
        .authorization
        .lock()
        .expect("auth")
        .entry(path.clone())
        .or_default()
        .push(authorization);
    let queued = state
        .queued_statuses
        .lock()
        .expect("queue")
        .get_mut(&path)
        .and_then(|q| {
            if q.is_empty() {
                None
            } else {
                Some(q.remove(0))
            }
        });
    if let Some(status) = queued {
        return (status, "queued status").into_response();
    }
    let behaviour = state
        .behaviour
        .lock()
        .expect("behaviour")
        .unwrap_or(Behaviour::Normal);
    match behaviour {
        Behaviour::Normal => {}
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Behaviour::Fail(status) => return (status, "scripted failure").into_response(),
    }
    let scripted = state.routes.lock().expect("routes").get(&path).cloned();
    if let Some(Scripted {
        repeat_to: Some(total),
        body,
        ..
    }) = scripted.clone()
    {
        return repeated_response(body, total);
    }
    if let Some(scripted) = scripted {
        return scripted_response(scripted, Arc::clone(&state.finished), path);
    }
    match &state.dir {
        Some(dir) => serve_dir(dir, &path, &request),
        None => (StatusCode::NOT_FOUND, "no such fixture").into_response(),
    }
}

fn scripted_response(
    scripted: Scripted,
    finished: Arc<Mutex<HashMap<String, Instant>>>,
    path: String,
) -> Response {
    let length = scripted.body.len();
    let body = scripted.body.clone();
    let chunk_size = scripted.pace.map_or(64 * 1024, |(size, _)| size.max(1));
    let pause = scripted.pace.map(|(_, pause)| pause);
    let cut_after = scripted.cut_after;
    let hold_after = scripted.hold_after.clone();
    let stream = futures::stream::unfold(0usize, move |offset| {
        let body = body.clone();
        let finished = Arc::clone(&finished);
        let path = path.clone();
        let hold_after = hold_after.clone();
        async move {
            let end = cut_after.unwrap_or(body.len()).min(body.len());
            if offset >= end {
                if cut_after.is_some() && offset < body.len() {
                    // Break the connection mid-body.
                    return Some((Err(std::io::Error::other("scripted cut")), usize::MAX));
                }
                return None;
            }
            if offset == usize::MAX {
                return None;
            }
            if let Some(pause) = pause {
                if offset > 0 {
                    tokio::time::sleep(pause).await;
                }
            }
            let mut next = (offset + chunk_size).min(end);
            if let Some((at, gate)) = &hold_after {
                if offset == *at {
                    let _ = gate.acquire().await;
                }
                if offset < *at {
                    next = next.min(*at);
                }
            }
            if next == body.len() {
                finished
                    .lock()
                    .expect("finished")
                    .insert(path, Instant::now());
            }
            Some((Ok::<_, std::io::Error>(body.slice(offset..next)), next))
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = scripted.status;
    response.headers_mut().insert(CONTENT_LENGTH, length.into());
    for (name, value) in scripted.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("valid scripted header"));
    }
    response
}

fn repeated_response(pattern: Bytes, total: u64) -> Response {
    let stream = futures::stream::unfold(0u64, move |sent| {
        let pattern = pattern.clone();
        async move {
            if sent >= total {
                return None;
            }
            let length = u64::try_from(pattern.len())
                .expect("fits")
                .min(total - sent);
            let chunk = pattern.slice(..usize::try_from(length).expect("fits"));
            Some((Ok::<_, std::io::Error>(chunk), sent + length))
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(CONTENT_LENGTH, total.into());
    response
}

fn serve_dir(dir: &std::path::Path, path: &str, request: &Request) -> Response {
    let relative = path.trim_start_matches('/');
    if relative.split('/').any(|s| s == "..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let wants_json = request
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("vnd.pypi.simple.v1+json"));
    let (file, content_type) = if relative.ends_with('/') || relative.is_empty() {
        let json = dir.join(relative).join("index.json");
        if wants_json && json.exists() {
            (json, "application/vnd.pypi.simple.v1+json")
        } else {
            (dir.join(relative).join("index.html"), "text/html")
        }
    } else if dir.join(relative).join("index.json").is_file() {
        // An npm packument: `<name>/index.json` (so tarballs can live below it).
        (dir.join(relative).join("index.json"), "application/json")
    } else {
        (dir.join(relative), "application/octet-stream")
    };
    let Ok(bytes) = std::fs::read(&file) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = format!("\"{}\"", &crate::support::sha256_hex(&bytes)[..16]);
    if request
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        return (StatusCode::NOT_MODIFIED, [(ETAG, etag)]).into_response();
    }
    (
        [(CONTENT_TYPE, content_type.to_owned()), (ETAG, etag)],
        bytes,
    )
        .into_response()
}
