//! The upstream HTTP client: one pooled `reqwest` client per repository, with
//! timeouts, bounded retries and credentials that never leave the upstream's origin.
//!
//! This is the only module that makes outbound HTTP requests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderMap, HeaderValue, ACCEPT, IF_MODIFIED_SINCE, IF_NONE_MATCH};
use http::StatusCode;
use tracing::{debug, warn};
use url::Url;

use crate::http_cache::Validators;
use crate::metrics::{Metrics, RepoLabels};

/// Redirects followed for one request, at most.
const MAX_REDIRECTS: usize = 10;

/// Outcomes kept for the error rate.
const HEALTH_WINDOW: Duration = Duration::from_secs(300);
/// Latency samples kept for the percentiles.
const LATENCY_SAMPLES: usize = 512;
/// The longest `Retry-After` waited for before a retry. An upstream that asks for
/// longer is not asked again by this request: the caller answers at once (a stale
/// copy, or the error), and a later request tries again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Health {
    last_success: Option<std::time::SystemTime>,
    last_error: Option<(std::time::SystemTime, String)>,
    /// `(when, succeeded)` within [`HEALTH_WINDOW`], bounded.
    outcomes: std::collections::VecDeque<(Instant, bool)>,
    latencies_ms: std::collections::VecDeque<f64>,
}

/// How an upstream has been doing: for the status page and `/-/ready`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthReport {
    /// Seconds since the Unix epoch.
    pub last_success: Option<u64>,
    pub last_error: Option<(u64, String)>,
    pub requests_5m: usize,
    pub errors_5m: usize,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub bytes_fetched: u64,
}

fn epoch_seconds(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// What [`UpstreamClient::exchange`] received.
#[derive(Debug)]
pub struct Exchanged {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

/// Credentials for the upstream's origin.
#[derive(Clone)]
pub enum UpstreamAuth {
    Basic { username: String, password: String },
    Bearer { token: String },
}

impl fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Basic { .. } => "Basic(<redacted>)",
            Self::Bearer { .. } => "Bearer(<redacted>)",
        })
    }
}

/// How to reach one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// The repository this client serves (a metrics label).
    pub repo: String,
    /// The index root; credentials go only to this URL's origin.
    pub root: Url,
    pub connect_timeout: Duration,
    /// Bound on a whole index fetch and on each read of an artifact body.
    pub timeout: Duration,
    /// Extra attempts after a connect error or a 502/503/504.
    pub retries: u32,
    pub auth: Option<UpstreamAuth>,
    /// Artifact downloads running at once from this upstream; more wait their turn.
    pub max_concurrent_fills: usize,
    /// Hosts besides the upstream's own that may be fetched from even though they
    /// are not public.
    pub allowed_hosts: Vec<String>,
    /// Fetch from the upstream's host and `allowed_hosts` only.
    pub only_allowed_hosts: bool,
}

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{upstream}` could not be reached: {reason}")]
    Unreachable { upstream: String, reason: String },
    #[error("upstream `{upstream}` did not answer within {timeout:?}")]
    TimedOut { upstream: String, timeout: Duration },
    #[error("upstream `{upstream}` answered {status}")]
    Status { upstream: String, status: u16 },
    #[error("upstream `{upstream}` sent a malformed document: {reason}")]
    Malformed { upstream: String, reason: String },
    #[error("upstream `{upstream}` broke off the body: {reason}")]
    Body { upstream: String, reason: String },
    #[error("not fetching `{upstream}`: {reason}")]
    Refused { upstream: String, reason: String },
}

impl UpstreamError {
    /// Whether this is the upstream being slow rather than broken (504 rather than 502).
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::TimedOut { .. })
    }
}

/// What a failed send means. A redirect that the policy stopped (a loop, too many
/// hops, a host granary may not fetch from) and a response head that does not parse
/// are the upstream's answer, not transport failures: they are not retried.
fn classify(error: &reqwest::Error, upstream: String, timeout: Duration) -> UpstreamError {
    if error.is_timeout() {
        UpstreamError::TimedOut { upstream, timeout }
    } else if error.is_redirect() {
        UpstreamError::Refused {
            upstream,
            reason: error_chain(error),
        }
    } else if is_malformed_response(error) {
        // A response that is not HTTP (enormous or broken headers) is the
        // upstream's answer too: asking again gets the same.
        UpstreamError::Malformed {
            upstream,
            reason: error_chain(error),
        }
    } else {
        UpstreamError::Unreachable {
            upstream,
            reason: error_chain(error),
        }
    }
}

/// An index document's body with its `Content-Encoding` undone (granary asks for
/// none, but some servers compress anyway): gzip and deflate, decompressed to at most
/// `max_bytes` (a decompression bomb stops there); anything else is refused.
fn decode_content(
    body: bytes::Bytes,
    encoding: Option<&str>,
    max_bytes: usize,
) -> Result<bytes::Bytes, String> {
    use std::io::Read;
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    let mut decoded = Vec::new();
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let read = match encoding.as_deref() {
        None | Some("" | "identity") => return Ok(body),
        Some("gzip" | "x-gzip") => flate2::read::MultiGzDecoder::new(&body[..])
            .take(limit)
            .read_to_end(&mut decoded),
        Some("deflate") => flate2::read::ZlibDecoder::new(&body[..])
            .take(limit)
            .read_to_end(&mut decoded),
        Some(other) => return Err(format!("unsupported `Content-Encoding: {other}`")),
    };
    let encoding = encoding.unwrap_or_default();
    read.map_err(|e| format!("`Content-Encoding: {encoding}`, but the body does not decode: {e}"))?;
    if decoded.len() > max_bytes {
        return Err(format!(
            "document larger than {max_bytes} bytes once decompressed (`Content-Encoding: {encoding}`)"
        ));
    }
    Ok(decoded.into())
}

/// Whether hyper could not parse the upstream's response head.
fn is_malformed_response(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            return true;
        }
        source = current.source();
    }
    false
}

/// An index document as the upstream answered it.
#[derive(Debug)]
pub enum UpstreamDocument {
    Body {
        body: bytes::Bytes,
        content_type: Option<String>,
        /// Where the body came from, after redirects (the base for relative links).
        final_url: Url,
        validators: Validators,
    },
    NotModified(Validators),
    NotFound,
}

/// What kind of request this is; index fetches get a whole-request timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Index,
    Artifact,
}

/// A pooled client for one upstream.
#[derive(Debug)]
pub struct UpstreamClient {
    options: UpstreamOptions,
    http: reqwest::Client,
    metrics: Metrics,
    labels: RepoLabels,
    in_flight: AtomicU64,
    consecutive_failures: AtomicU64,
    /// Where this client may fetch from.
    policy: Arc<crate::engine::host_policy::HostPolicy>,
    /// Recent outcomes and latencies, for the status page.
    health: std::sync::Mutex<Health>,
    /// Body bytes received from this upstream (artifacts and documents).
    bytes_fetched: AtomicU64,
    /// Bounds concurrent artifact downloads (fills outlive their clients, so without
    /// it one client asking for N cold files and leaving starts N downloads at once).
    fill_permits: Arc<tokio::sync::Semaphore>,
}

impl UpstreamClient {
    /// Builds the pooled client.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn new(options: UpstreamOptions, metrics: Metrics) -> Result<Arc<Self>, reqwest::Error> {
        let policy = Arc::new(crate::engine::host_policy::HostPolicy::new(
            &options.root,
            &options.allowed_hosts,
            options.only_allowed_hosts,
        ));
        let redirect_policy = Arc::clone(&policy);
        let http = reqwest::Client::builder()
            .user_agent(concat!("granary/", env!("CARGO_PKG_VERSION")))
            // Every address a name resolves to, and every redirect hop, is checked.
            .dns_resolver(Arc::new(crate::engine::host_policy::PolicyResolver(
                Arc::clone(&policy),
            )))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
                } else if let Err(reason) = redirect_policy.check(attempt.url()) {
                    attempt.error(format!("redirect refused: {reason}"))
                } else {
                    attempt.follow()
                }
            }))
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            .tcp_nodelay(true)
            .build()?;
        let labels = RepoLabels {
            repo: options.repo.clone(),
        };
        Ok(Arc::new(Self {
            http,
            metrics,
            labels,
            in_flight: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            policy,
            health: std::sync::Mutex::new(Health::default()),
            bytes_fetched: AtomicU64::new(0),
            fill_permits: Arc::new(tokio::sync::Semaphore::new(
                options.max_concurrent_fills.max(1),
            )),
            options,
        }))
    }

    #[must_use]
    pub fn root(&self) -> &Url {
        &self.options.root
    }

    /// The upstream as it may appear in messages: no credentials, no query.
    #[must_use]
    pub fn display_root(&self) -> String {
        display_url(&self.options.root)
    }

    /// A turn to download an artifact; waits (counted as queued) while
    /// `max_concurrent_fills` downloads from this upstream run.
    pub async fn fill_permit(&self) -> tokio::sync::OwnedSemaphorePermit {
        if let Ok(permit) = Arc::clone(&self.fill_permits).try_acquire_owned() {
            return permit;
        }
        let queued = self
            .metrics
            .fills_queued
            .get_or_create(&self.labels)
            .clone();
        queued.inc();
        let permit = Arc::clone(&self.fill_permits).acquire_owned().await;
        queued.dec();
        permit.expect("the fill semaphore is never closed")
    }

    /// Records the outcome of one upstream request (an error's message without
    /// credentials: [`UpstreamError`]'s display never has them).
    pub fn record_outcome(&self, error: Option<&str>) {
        let mut health = self.health.lock().expect("health is never poisoned");
        let now = Instant::now();
        match error {
            None => health.last_success = Some(std::time::SystemTime::now()),
            Some(message) => {
                health.last_error = Some((std::time::SystemTime::now(), message.to_owned()));
            }
        }
        health.outcomes.push_back((now, error.is_none()));
        while health
            .outcomes
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > HEALTH_WINDOW)
            || health.outcomes.len() > 100_000
        {
            health.outcomes.pop_front();
        }
    }

    /// Counts body bytes received from the upstream.
    pub fn record_bytes(&self, bytes: u64) {
        self.bytes_fetched.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The upstream's recent health.
    #[must_use]
    pub fn health(&self) -> HealthReport {
        let health = self.health.lock().expect("health is never poisoned");
        let now = Instant::now();
        let recent: Vec<bool> = health
            .outcomes
            .iter()
            .filter(|(at, _)| now.duration_since(*at) <= HEALTH_WINDOW)
            .map(|(_, ok)| *ok)
            .collect();
        let mut latencies: Vec<f64> = health.latencies_ms.iter().copied().collect();
        latencies.sort_by(f64::total_cmp);
        let percentile = |p: f64| {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            latencies.get(index).copied()
        };
        HealthReport {
            last_success: health.last_success.map(epoch_seconds),
            last_error: health
                .last_error
                .as_ref()
                .map(|(at, message)| (epoch_seconds(*at), message.clone())),
            requests_5m: recent.len(),
            errors_5m: recent.iter().filter(|ok| !**ok).count(),
            latency_p50_ms: percentile(0.5),
            latency_p95_ms: percentile(0.95),
            bytes_fetched: self.bytes_fetched.load(Ordering::Relaxed),
        }
    }

    /// One request's latency, in the metrics histogram and the status page's samples.
    fn record_latency(&self, elapsed: Duration) {
        self.metrics
            .upstream_latency
            .get_or_create(&self.labels)
            .observe(elapsed.as_secs_f64());
        let mut health = self.health.lock().expect("health is never poisoned");
        if health.latencies_ms.len() >= LATENCY_SAMPLES {
            health.latencies_ms.pop_front();
        }
        health
            .latencies_ms
            .push_back(elapsed.as_secs_f64() * 1000.0);
    }

    /// Fills waiting for a turn; for `/-/ready`.
    #[must_use]
    pub fn fills_queued(&self) -> i64 {
        self.metrics.fills_queued.get_or_create(&self.labels).get()
    }

    /// Requests currently in flight and consecutive failures; for `/-/ready`.
    #[must_use]
    pub fn pool_status(&self) -> (u64, u64) {
        (
            self.in_flight.load(Ordering::Relaxed),
            self.consecutive_failures.load(Ordering::Relaxed),
        )
    }

    /// GETs `url`, retrying connect errors and 502/503/504/429 with backoff, waiting at
    /// least what `Retry-After` asks (not retrying when that is over
    /// [`MAX_RETRY_AFTER`]). Any status is returned as a response; only transport
    /// failures are errors.
    ///
    /// # Errors
    /// When the upstream cannot be reached or does not answer in time.
    pub async fn get(
        &self,
        url: &Url,
        kind: RequestKind,
        accept: Option<&str>,
        validators: &Validators,
    ) -> Result<reqwest::Response, UpstreamError> {
        let headers = Self::request_headers(accept, validators);
        let mut attempt = 0;
        loop {
            let result = self.send_once(url, kind, headers.clone()).await;
            let mut retry_after = None;
            let retryable = match &result {
                Err(UpstreamError::Unreachable { .. }) => true,
                Ok(response) => match response.status() {
                    StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => true,
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                        // RFC 9110 §10.2.3: the upstream says when to come back.
                        retry_after = retry_after_of(response.headers(), SystemTime::now());
                        retry_after.is_none_or(|wait| wait <= MAX_RETRY_AFTER)
                    }
                    _ => false,
                },
                Err(_) => false,
            };
            let failed = retryable || result.is_err();
            match &result {
                Ok(response) if failed || response.status().is_server_error() => {
                    self.record_outcome(Some(&format!(
                        "{} answered {}",
                        display_url(url),
                        response.status()
                    )));
                }
                Err(error) => self.record_outcome(Some(&error.to_string())),
                Ok(_) => self.record_outcome(None),
            }
            if failed {
                self.metrics
                    .upstream_errors
                    .get_or_create(&self.labels)
                    .inc();
                self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
            } else {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            if !retryable || attempt >= self.options.retries {
                return result;
            }
            attempt += 1;
            let backoff = (Duration::from_millis(100) * 2u32.saturating_pow(attempt - 1))
                .max(retry_after.unwrap_or_default());
            debug!(upstream = %display_url(url), attempt, ?backoff, "retrying upstream request");
            tokio::time::sleep(backoff).await;
        }
    }

    fn request_headers(accept: Option<&str>, validators: &Validators) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept.and_then(|a| HeaderValue::from_str(a).ok()) {
            headers.insert(ACCEPT, accept);
        }
        if let Some(etag) = validators
            .etag
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(IF_NONE_MATCH, etag);
        }
        if let Some(date) = validators
            .last_modified
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(IF_MODIFIED_SINCE, date);
        }
        headers
    }

    /// Refuses URLs the host policy does not allow, before any connection.
    fn check_allowed(&self, url: &Url) -> Result<(), UpstreamError> {
        self.policy
            .check(url)
            .map_err(|reason| UpstreamError::Refused {
                upstream: display_url(url),
                reason,
            })
    }

    async fn send_once(
        &self,
        url: &Url,
        kind: RequestKind,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.check_allowed(url)?;
        let mut request = self.http.get(url.clone()).headers(headers);
        // Credentials go to the configured origin only: file links may point at other
        // hosts, which must never see them.
        if let Some(auth) = &self.options.auth {
            if url.origin() == self.options.root.origin() {
                request = match auth {
                    UpstreamAuth::Basic { username, password } => {
                        request.basic_auth(username, Some(password))
                    }
                    UpstreamAuth::Bearer { token } => request.bearer_auth(token),
                };
            }
        }
        if kind == RequestKind::Index {
            request = request.timeout(self.options.timeout);
        }
        self.metrics
            .upstream_requests
            .get_or_create(&self.labels)
            .inc();
        self.metrics.upstream_in_flight.inc();
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = request.send().await;
        self.metrics.upstream_in_flight.dec();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.record_latency(started.elapsed());
        result.map_err(|error| {
            let upstream = display_url(url);
            warn!(%upstream, error = %error_chain(&error), "upstream request failed");
            classify(&error, upstream, self.options.timeout)
        })
    }

    /// GETs an index document and reads it whole, at most `max_bytes`: the one way
    /// every protocol fetches what the index cache stores. 404 and 410 are
    /// [`UpstreamDocument::NotFound`]; other non-success statuses are errors.
    ///
    /// # Errors
    /// Transport failures, unexpected statuses and bodies over `max_bytes`.
    pub async fn get_document(
        &self,
        url: &Url,
        accept: Option<&str>,
        validators: &Validators,
        max_bytes: usize,
    ) -> Result<UpstreamDocument, UpstreamError> {
        let response = self
            .get(url, RequestKind::Index, accept, validators)
            .await?;
        let status = response.status();
        let header = |name: http::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let validators = Validators {
            etag: header(http::header::ETAG),
            last_modified: header(http::header::LAST_MODIFIED),
        };
        if status == StatusCode::NOT_MODIFIED {
            return Ok(UpstreamDocument::NotModified(validators));
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(UpstreamDocument::NotFound);
        }
        if !status.is_success() {
            return Err(UpstreamError::Status {
                upstream: display_url(url),
                status: status.as_u16(),
            });
        }
        let content_type = header(http::header::CONTENT_TYPE);
        let content_encoding = header(http::header::CONTENT_ENCODING);
        let final_url = response.url().clone();
        let mut body = bytes::BytesMut::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk.map_err(|e| self.body_error(url, &e))?;
            if body.len() + chunk.len() > max_bytes {
                return Err(UpstreamError::Malformed {
                    upstream: display_url(url),
                    reason: format!("document larger than {max_bytes} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        self.record_bytes(body.len() as u64);
        let body = decode_content(body.freeze(), content_encoding.as_deref(), max_bytes).map_err(
            |reason| UpstreamError::Malformed {
                upstream: display_url(url),
                reason,
            },
        )?;
        Ok(UpstreamDocument::Body {
            body,
            content_type,
            final_url,
            validators,
        })
    }

    /// One request as a client made it (a web application's page, form or API call):
    /// `headers` are sent as given (never `repos.NAME.auth`: these are the client's
    /// own), no retries, bounded by `timeout`, the body read whole up to `max_bytes`.
    ///
    /// # Errors
    /// When the upstream cannot be reached in time, or its body is over `max_bytes`.
    pub async fn exchange(
        &self,
        method: http::Method,
        url: &Url,
        headers: HeaderMap,
        body: bytes::Bytes,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Exchanged, UpstreamError> {
        self.check_allowed(url)?;
        let upstream = display_url(url);
        let mut request = self
            .http
            .request(method, url.clone())
            .headers(headers)
            .timeout(timeout);
        if !body.is_empty() {
            request = request.body(body);
        }
        self.metrics
            .upstream_requests
            .get_or_create(&self.labels)
            .inc();
        let started = Instant::now();
        let response = request.send().await.map_err(|error| {
            let error = self.send_error(&upstream, timeout, &error);
            self.record_outcome(Some(&error.to_string()));
            error
        })?;
        self.record_latency(started.elapsed());
        if response.status().is_server_error() {
            self.record_outcome(Some(&format!("{upstream} answered {}", response.status())));
        } else {
            self.record_outcome(None);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = bytes::BytesMut::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk.map_err(|e| self.body_error(url, &e))?;
            if body.len() + chunk.len() > max_bytes {
                return Err(UpstreamError::Malformed {
                    upstream,
                    reason: format!("response larger than {max_bytes} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        self.record_bytes(body.len() as u64);
        Ok(Exchanged {
            status,
            headers,
            body: body.freeze(),
        })
    }

    /// A failed send (one that got no response), counted, as the error callers see.
    fn send_error(
        &self,
        upstream: &str,
        timeout: Duration,
        error: &reqwest::Error,
    ) -> UpstreamError {
        self.metrics
            .upstream_errors
            .get_or_create(&self.labels)
            .inc();
        classify(error, upstream.to_owned(), timeout)
    }

    /// Forwards one request that must not be cached (npm's ping, search, audit): no
    /// retries, a short `timeout`, the body read whole (bounded).
    ///
    /// # Errors
    /// When the upstream cannot be reached in time.
    pub async fn forward(
        &self,
        method: http::Method,
        url: &Url,
        body: bytes::Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Option<String>, bytes::Bytes), UpstreamError> {
        self.check_allowed(url)?;
        let mut request = self.http.request(method, url.clone()).timeout(timeout);
        if !body.is_empty() {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(UpstreamAuth::Bearer { token }) = &self.options.auth {
            if url.origin() == self.options.root.origin() {
                request = request.bearer_auth(token);
            }
        }
        self.metrics
            .upstream_requests
            .get_or_create(&self.labels)
            .inc();
        let upstream = display_url(url);
        let response = request
            .send()
            .await
            .map_err(|error| self.send_error(&upstream, timeout, &error))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|e| self.body_error(url, &e))?;
        Ok((status, content_type, body))
    }

    /// Maps a body-read error to an [`UpstreamError`].
    #[must_use]
    pub fn body_error(&self, url: &Url, error: &reqwest::Error) -> UpstreamError {
        let upstream = display_url(url);
        if error.is_timeout() {
            UpstreamError::TimedOut {
                upstream,
                timeout: self.options.timeout,
            }
        } else {
            UpstreamError::Body {
                upstream,
                reason: error_chain(error),
            }
        }
    }
}

/// `scheme://host[:port]/path`: what an upstream URL may show in logs and messages.
#[must_use]
pub fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How long a `Retry-After` header asks to wait, from `now`: delta-seconds or an
/// HTTP date (RFC 9110 §10.2.3); `None` when absent or unreadable.
fn retry_after_of(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use http::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    use super::retry_after_of;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).expect("a header"));
        headers
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after_of(&with("3"), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(retry_after_of(&with(" 0 "), now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            retry_after_of(&with(&later), now),
            Some(Duration::from_secs(7))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(retry_after_of(&with(&earlier), now), Some(Duration::ZERO));
        assert_eq!(retry_after_of(&with("soon"), now), None);
        assert_eq!(retry_after_of(&with("-1"), now), None);
        assert_eq!(retry_after_of(&HeaderMap::new(), now), None);
    }
}
