//! A whole response as the cache keeps it: status, end-to-end headers and body, in
//! one value (a JSON header line, then the raw body), and the rules that decide
//! whether a response may be stored at all.

use std::sync::Arc;
use std::time::Duration;

use ::http::header::{HeaderName, HeaderValue, CACHE_CONTROL, SET_COOKIE, VARY};
use ::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Rule;

/// Headers that describe one connection, not the response (RFC 9110 §7.6.1), and
/// the ones granary recomputes.
const NOT_STORED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "x-cache",
];

/// A response, whole.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: StatusCode,
    pub headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    pub body: Bytes,
}

impl Default for StoredResponse {
    fn default() -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            headers: Arc::default(),
            body: Bytes::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    status: u16,
    /// Values as bytes: header values need not be UTF-8.
    headers: Vec<(String, Vec<u8>)>,
}

impl StoredResponse {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let envelope = Envelope {
            v: 1,
            status: self.status.as_u16(),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
                .collect(),
        };
        let mut out =
            serde_json::to_vec(&envelope).expect("serializing a plain struct cannot fail");
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out
    }

    /// The response in `canonical`, or `None` if it is not one.
    #[must_use]
    pub fn decode(canonical: &Bytes) -> Option<Self> {
        let split = canonical.iter().position(|b| *b == b'\n')?;
        let envelope: Envelope = serde_json::from_slice(&canonical[..split]).ok()?;
        if envelope.v != 1 {
            return None;
        }
        let headers = envelope
            .headers
            .into_iter()
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::from_bytes(name.as_bytes()).ok()?,
                    HeaderValue::from_bytes(&value).ok()?,
                ))
            })
            .collect();
        Some(Self {
            status: StatusCode::from_u16(envelope.status).ok()?,
            headers: Arc::new(headers),
            body: canonical.slice(split + 1..),
        })
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    NOT_STORED.contains(&name.as_str())
}

/// A response's headers minus hop-by-hop ones and those granary sets itself.
#[must_use]
pub(super) fn storable_headers(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// A request's headers to forward upstream: minus hop-by-hop ones and `Host`
/// (the upstream's own is used).
#[must_use]
pub(super) fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut forwarded = HeaderMap::new();
    for (name, value) in headers {
        if !is_hop_by_hop(name) && name != ::http::header::HOST {
            forwarded.append(name.clone(), value.clone());
        }
    }
    forwarded
}

/// How long `response` may be kept under `rule`, or `None` if it must not be stored.
#[must_use]
pub(super) fn storable_for(
    response: &StoredResponse,
    upstream_headers: &HeaderMap,
    rule: &Rule,
) -> Option<Duration> {
    let ttl = match response.status {
        StatusCode::OK => rule.ttl,
        StatusCode::NOT_FOUND => rule.not_found_ttl?,
        _ => return None,
    };
    if response.body.len() > rule.max_body || upstream_headers.contains_key(SET_COOKIE) {
        return None;
    }
    if upstream_headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|field| field.trim() == "*"))
    {
        return None;
    }
    let directives: Vec<String> = upstream_headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    if directives
        .iter()
        .any(|d| d == "private" || d == "no-store" || d.starts_with("private="))
    {
        return None;
    }
    if !rule.respect_upstream {
        return Some(ttl);
    }
    // A shared cache reads s-maxage first (RFC 9111 §5.2.2.10), then max-age.
    let seconds = |prefix: &str| {
        directives.iter().find_map(|d| {
            d.strip_prefix(prefix)
                .and_then(|v| v.trim_matches('"').parse::<u64>().ok())
        })
    };
    match seconds("s-maxage=").or_else(|| seconds("max-age=")) {
        Some(0) => None,
        Some(upstream) => Some(ttl.min(Duration::from_secs(upstream))),
        None if directives.iter().any(|d| d == "no-cache") => None,
        None => Some(ttl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        Rule {
            path: regex::Regex::new("^/").expect("regex"),
            ttl: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(300),
            vary: Vec::new(),
            max_body: 1024,
            not_found_ttl: None,
            respect_upstream: true,
        }
    }

    fn response(status: u16, body: &'static [u8]) -> StoredResponse {
        StoredResponse {
            status: StatusCode::from_u16(status).expect("status"),
            headers: Arc::default(),
            body: Bytes::from_static(body),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn what_may_be_stored_and_for_how_long() {
        let ok = response(200, b"hello");
        let rule = rule();
        assert_eq!(
            storable_for(&ok, &headers(&[]), &rule),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            storable_for(&ok, &headers(&[("set-cookie", "a=b")]), &rule),
            None
        );
        assert_eq!(
            storable_for(&ok, &headers(&[("cache-control", "private")]), &rule),
            None
        );
        assert_eq!(
            storable_for(&ok, &headers(&[("cache-control", "no-store")]), &rule),
            None
        );
        assert_eq!(
            storable_for(&ok, &headers(&[("vary", "Accept, *")]), &rule),
            None
        );
        assert_eq!(
            storable_for(
                &ok,
                &headers(&[("cache-control", "public, max-age=10")]),
                &rule
            ),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            storable_for(
                &ok,
                &headers(&[("cache-control", "max-age=10, s-maxage=30")]),
                &rule
            ),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            storable_for(&ok, &headers(&[("cache-control", "max-age=0")]), &rule),
            None
        );
        assert_eq!(
            storable_for(&response(500, b""), &headers(&[]), &rule),
            None
        );
        assert_eq!(
            storable_for(&response(404, b""), &headers(&[]), &rule),
            None
        );
        let with_404 = Rule {
            not_found_ttl: Some(Duration::from_secs(5)),
            ..rule.clone()
        };
        assert_eq!(
            storable_for(&response(404, b""), &headers(&[]), &with_404),
            Some(Duration::from_secs(5))
        );
        let big = StoredResponse {
            body: Bytes::from(vec![0; 2048]),
            ..ok
        };
        assert_eq!(storable_for(&big, &headers(&[]), &rule), None);
    }

    #[test]
    fn responses_round_trip_with_non_utf8_headers() {
        let stored = StoredResponse {
            status: StatusCode::OK,
            headers: Arc::new(vec![
                (
                    HeaderName::from_static("content-type"),
                    HeaderValue::from_static("text/html"),
                ),
                (
                    HeaderName::from_static("x-odd"),
                    HeaderValue::from_bytes(&[0xe9, b'a']).expect("value"),
                ),
            ]),
            body: Bytes::from_static(b"<p>\nbody\n</p>"),
        };
        let decoded = StoredResponse::decode(&Bytes::from(stored.encode())).expect("decodes");
        assert_eq!(decoded.status, StatusCode::OK);
        assert_eq!(decoded.headers, stored.headers);
        assert_eq!(decoded.body, stored.body);
    }
}
