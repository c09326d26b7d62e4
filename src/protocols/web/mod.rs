//! The `http` format: a plain HTTP upstream (a web application or a JSON API), mounted at `/<repo>/`,
//! with a whole-response cache driven by route rules (the router-cache pattern):
//! hot pages are cached whole for anonymous visitors; everything personal passes
//! through.
//!
//! For each request:
//! - **bypass** (passed through, never served from the cache, never stored): a method
//!   other than `GET`/`HEAD`, an `Authorization` header, or any of the repository's
//!   `bypass_cookies`;
//! - else the first rule whose `path` regex matches decides: no rule, pass through;
//! - a rule's response is cached under the method, the normalized path and query,
//!   and the values of the rule's `vary` headers, through the same engine as index
//!   documents (single flight, stale-while-revalidate with one refresh, the shared
//!   tiers, the metadata store so a restart keeps it);
//! - only `200` (and `404` if the rule gives `not_found_ttl`) is stored, never a
//!   response with `Set-Cookie`, `Cache-Control: private | no-store`, `Vary: *`, or a
//!   body over `max_body`; such a response is handed to the request that fetched it
//!   only, and other requests waiting for it fetch their own.
//!
//! A hit does one regex match (the rule) and one key hash; the stored status,
//! headers and body are parsed once per stored response and shared by every hit.

mod stored;

use std::sync::Arc;
use std::time::Duration;

use ::http::header::{HeaderName, AUTHORIZATION, COOKIE};
use ::http::{HeaderMap, Method, StatusCode};
use async_trait::async_trait;
use bytes::Bytes;
use regex::Regex;
use sha2::{Digest as _, Sha256};

use super::{
    path, Protocol, ProtocolRequest, Reply, RepoSettings, RequestContext, RequestError,
    ResponseReply,
};
use crate::engine::index::Parsed;
use crate::engine::{
    CacheKey, CacheStatus, Category, Fetched, IndexDocument, IndexRequest, IndexSource, ProxyError,
    UpstreamClient, UpstreamError,
};
use crate::http_cache::{FreshnessPolicy, Validators};
pub use stored::StoredResponse;

/// The key format label.
pub const FORMAT: &str = "http";
/// Largest body passed through (requests and responses that are not cached).
const MAX_PASSTHROUGH_BODY: usize = 64 * 1024 * 1024;
/// Bound on one passed-through exchange.
const PASSTHROUGH_TIMEOUT: Duration = Duration::from_secs(60);

/// One route rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub path: Regex,
    pub ttl: Duration,
    pub stale_while_revalidate: Duration,
    pub vary: Vec<HeaderName>,
    pub max_body: usize,
    /// Cache `404`s too, this long.
    pub not_found_ttl: Option<Duration>,
    /// The upstream's `s-maxage` / `max-age` bound the TTL (and `max-age=0` means
    /// not stored).
    pub respect_upstream: bool,
}

/// One plain HTTP repository.
#[derive(Debug, Clone)]
pub struct HttpRepo {
    pub settings: RepoSettings,
    pub rules: Arc<Vec<Rule>>,
    pub bypass_cookies: Arc<Vec<String>>,
}

super::derefs_to_settings!(HttpRepo);

#[async_trait]
impl Protocol for HttpRepo {
    fn settings(&self) -> &RepoSettings {
        &self.settings
    }

    fn format(&self) -> &'static str {
        FORMAT
    }

    /// The path as the client sent it (one element), after the shared checks
    /// (`.`/`..`, separators, control characters).
    fn segments(&self, rest: &str) -> Result<Vec<String>, RequestError> {
        path::segments(rest)?;
        Ok(vec![rest.to_owned()])
    }

    /// Forms and API calls are passed through with their bodies.
    fn max_body(&self, method: &Method) -> Option<usize> {
        (method != Method::GET && method != Method::HEAD).then_some(MAX_PASSTHROUGH_BODY)
    }

    fn route_label(&self, rest: &str) -> &'static str {
        let path = format!("/{}", rest.split('?').next().unwrap_or(""));
        if self.rules.iter().any(|rule| rule.path.is_match(&path)) {
            "cached"
        } else {
            "passthrough"
        }
    }

    fn project_index_key(&self, path: &str) -> Result<CacheKey, RequestError> {
        Err(RequestError::NotFound(format!(
            "`{path}`: an http repository is purged as a whole"
        )))
    }

    async fn handle(
        &self,
        context: &RequestContext<'_>,
        request: ProtocolRequest,
    ) -> Result<Reply, RequestError> {
        let rest = request.segments.first().map_or("", String::as_str);
        let path = format!("/{rest}");
        let headers = context.headers;
        let cacheable_method = request.method == Method::GET || request.method == Method::HEAD;
        let rule = self.rules.iter().find(|rule| rule.path.is_match(&path));
        let personal = headers.contains_key(AUTHORIZATION) || self.has_bypass_cookie(headers);
        let (Some(rule), true, false) = (rule, cacheable_method, personal) else {
            return self.pass_through(&path, request, headers).await;
        };
        let query = request.query.as_deref().map(normalize_query);
        let vary_values: Vec<(HeaderName, Option<String>)> = rule
            .vary
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                )
            })
            .collect();
        let key = self.response_key(&path, query.as_deref(), &vary_values);
        let mut url = self.upstream.root().join(rest).map_err(|e| {
            RequestError::BadRequest(format!("`{path}` gives no upstream URL: {e}"))
        })?;
        url.set_query(query.as_deref());
        let lookup = context
            .engine
            .index
            .lookup(IndexRequest {
                key,
                policy: FreshnessPolicy {
                    ttl: rule.ttl,
                    // The engine serves stale for 2 × update_time past the TTL.
                    update_time: (rule.stale_while_revalidate / 2).max(Duration::from_millis(1)),
                    max_staleness: None,
                },
                negative_ttl: rule.not_found_ttl.unwrap_or(Duration::ZERO),
                source: Arc::new(ResponseSource {
                    upstream: Arc::clone(&self.upstream),
                    url,
                    forwarded: vary_values,
                    rule: rule.clone(),
                }),
            })
            .await;
        let lookup = match lookup {
            Ok(lookup) => lookup,
            // Another request fetched a response that must not be shared: fetch our own.
            Err(error) if matches!(*error, ProxyError::NotShareable { .. }) => {
                return self.pass_through(&path, request, headers).await;
            }
            Err(error) => return Err(RequestError::Proxy(error)),
        };
        let stored = lookup
            .document
            .derived(|canonical| StoredResponse::decode(canonical).unwrap_or_default());
        let age = context.engine.index.age_of(&lookup.document);
        Ok(Reply::Response(ResponseReply {
            status: stored.status,
            headers: Arc::clone(&stored.headers),
            body: stored.body.clone(),
            cache_status: lookup.status,
            age: Some(age),
        }))
    }
}

impl HttpRepo {
    /// Builds the repository from its settings and rules.
    #[must_use]
    pub fn new(settings: RepoSettings, rules: Vec<Rule>, bypass_cookies: Vec<String>) -> Self {
        Self {
            settings,
            rules: Arc::new(rules),
            bypass_cookies: Arc::new(bypass_cookies),
        }
    }

    fn has_bypass_cookie(&self, headers: &HeaderMap) -> bool {
        if self.bypass_cookies.is_empty() {
            return false;
        }
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|cookies| cookies.split(';'))
            .filter_map(|pair| pair.split_once('=').map(|(name, _)| name.trim()))
            .any(|name| self.bypass_cookies.iter().any(|c| c == name))
    }

    /// `granary:response:http:<repo>:<hash of GET, path, query, vary values>`.
    fn response_key(
        &self,
        path: &str,
        query: Option<&str>,
        vary: &[(HeaderName, Option<String>)],
    ) -> CacheKey {
        let mut hasher = Sha256::new();
        hasher.update(b"GET\n");
        hasher.update(path.as_bytes());
        hasher.update(b"?");
        hasher.update(query.unwrap_or("").as_bytes());
        for (name, value) in vary {
            hasher.update(b"\n");
            hasher.update(name.as_str().as_bytes());
            hasher.update(b":");
            hasher.update(value.as_deref().unwrap_or("").as_bytes());
        }
        CacheKey::new(
            Category::Index,
            FORMAT,
            &self.name,
            &hex::encode(&hasher.finalize()[..16]),
        )
    }

    /// Forwards the request as it came (minus hop-by-hop headers) and returns the
    /// upstream's answer; nothing is stored.
    async fn pass_through(
        &self,
        path: &str,
        request: ProtocolRequest,
        headers: &HeaderMap,
    ) -> Result<Reply, RequestError> {
        let mut url = self
            .upstream
            .root()
            .join(path.trim_start_matches('/'))
            .map_err(|e| {
                RequestError::BadRequest(format!("`{path}` gives no upstream URL: {e}"))
            })?;
        url.set_query(request.query.as_deref());
        let forwarded = stored::end_to_end(headers);
        let response = self
            .upstream
            .exchange(
                request.method,
                &url,
                forwarded,
                request.body,
                PASSTHROUGH_TIMEOUT,
                MAX_PASSTHROUGH_BODY,
            )
            .await
            .map_err(|e| RequestError::Proxy(Arc::new(e.into())))?;
        Ok(Reply::Response(ResponseReply {
            status: response.status,
            headers: Arc::new(stored::storable_headers(&response.headers)),
            body: response.body,
            cache_status: CacheStatus::Bypass,
            age: None,
        }))
    }
}

/// `a=1&b=2` with its pairs sorted, so the same query in another order is one entry.
fn normalize_query(query: &str) -> String {
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort_unstable();
    pairs.join("&")
}

/// Fetches one cacheable response.
struct ResponseSource {
    upstream: Arc<UpstreamClient>,
    url: url::Url,
    /// The rule's `vary` headers with the request's values, sent upstream.
    forwarded: Vec<(HeaderName, Option<String>)>,
    rule: Rule,
}

#[async_trait]
impl IndexSource for ResponseSource {
    async fn fetch(&self, validators: &Validators) -> Result<Fetched, UpstreamError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.forwarded {
            if let Some(value) = value.as_deref().and_then(|v| v.parse().ok()) {
                headers.insert(name.clone(), value);
            }
        }
        if let Some(etag) = validators.etag.as_deref().and_then(|v| v.parse().ok()) {
            headers.insert(::http::header::IF_NONE_MATCH, etag);
        }
        if let Some(date) = validators
            .last_modified
            .as_deref()
            .and_then(|v| v.parse().ok())
        {
            headers.insert(::http::header::IF_MODIFIED_SINCE, date);
        }
        let response = self
            .upstream
            .exchange(
                Method::GET,
                &self.url,
                headers,
                Bytes::new(),
                PASSTHROUGH_TIMEOUT,
                MAX_PASSTHROUGH_BODY,
            )
            .await?;
        let header = |name: ::http::HeaderName| {
            response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let validators = Validators {
            etag: header(::http::header::ETAG),
            last_modified: header(::http::header::LAST_MODIFIED),
        };
        if response.status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified { validators });
        }
        let stored = StoredResponse {
            status: response.status,
            headers: Arc::new(stored::storable_headers(&response.headers)),
            body: response.body,
        };
        let canonical = Bytes::from(stored.encode());
        let ttl = stored::storable_for(&stored, &response.headers, &self.rule);
        let parsed = Some(Arc::new(stored) as Parsed);
        match ttl {
            Some(ttl) => Ok(Fetched::Document {
                canonical,
                validators,
                ttl: Some(ttl),
                parsed,
            }),
            None => Ok(Fetched::Uncacheable { canonical, parsed }),
        }
    }

    fn check(&self, canonical: &Bytes) -> Result<Option<Parsed>, String> {
        let stored =
            StoredResponse::decode(canonical).ok_or_else(|| "not a stored response".to_owned())?;
        Ok(Some(Arc::new(stored)))
    }

    /// Served whole from the stored response (its derived form), not as a rendition.
    fn forms(&self) -> &'static [&'static str] {
        &[]
    }

    fn render(&self, _document: &IndexDocument, form: &str) -> Result<Bytes, String> {
        Err(format!("a stored response has no `{form}` form"))
    }

    fn format_version(&self) -> u32 {
        1
    }
}
