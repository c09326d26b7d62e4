//! The bytes a document is answered with, made once and shared: templated documents
//! put together per base URL, and every document's gzip form.
//!
//! A document of megabytes compressed per response costs tens of milliseconds of CPU
//! each time (a 5.6 MB project page: about 60 ms), which is most of what a client
//! asking with `Accept-Encoding: gzip` (every package manager does) waits for. Here each
//! validator's gzip form is made once. A small one is made at once. A large one is
//! made on the blocking pool when it is asked for a second time, and answered
//! uncompressed until then (always acceptable to a client): no client waits for
//! compression, and a page fetched once — the cold install, which has 32 of them to
//! fetch on the same cores — is never compressed at all.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::ACCEPT_ENCODING;
use http::HeaderMap;

/// Bodies up to this size are compressed while their first request waits (well
/// under a millisecond); larger ones on the blocking pool, behind the response.
const COMPRESS_INLINE_BYTES: usize = 64 * 1024;

/// Bodies smaller than this are not worth compressing.
pub(super) const MIN_COMPRESSED_BYTES: usize = 1024;

/// Assembled and compressed documents by their validator (which covers the document
/// and, for a templated one, its base URL). Bounded in bytes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DocumentBodies {
    assembled: moka::sync::Cache<String, Bytes>,
    gzipped: moka::sync::Cache<String, Bytes>,
    /// Validators of large bodies asked for with gzip once.
    asked_once: moka::sync::Cache<String, ()>,
    /// Validators whose gzip form is being made.
    compressing: Arc<Mutex<HashSet<String>>>,
}

/// How many large bodies' first gzip requests are remembered.
const ASKED_ONCE_REMEMBERED: u64 = 16 * 1024;

fn bounded(capacity_bytes: u64) -> moka::sync::Cache<String, Bytes> {
    moka::sync::Cache::builder()
        .max_capacity(capacity_bytes)
        .weigher(|key: &String, body: &Bytes| {
            u32::try_from(key.len() + body.len()).unwrap_or(u32::MAX)
        })
        .build()
}

impl DocumentBodies {
    /// Holds at most `capacity_bytes` of assembled documents and as much again of
    /// compressed ones.
    #[must_use]
    pub fn new(capacity_bytes: u64) -> Self {
        Self {
            assembled: bounded(capacity_bytes),
            gzipped: bounded(capacity_bytes),
            asked_once: moka::sync::Cache::new(ASKED_ONCE_REMEMBERED),
            compressing: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The parts with `base` between them, made once per `validator`.
    pub(super) fn assemble(&self, validator: &str, parts: &[Bytes], base: &[u8]) -> Bytes {
        if let Some(body) = self.assembled.get(validator) {
            return body;
        }
        let length = parts.iter().map(Bytes::len).sum::<usize>() + base.len() * (parts.len() - 1);
        let mut body = Vec::with_capacity(length);
        for (index, part) in parts.iter().enumerate() {
            if index > 0 {
                body.extend_from_slice(base);
            }
            body.extend_from_slice(part);
        }
        let body = Bytes::from(body);
        self.assembled.insert(validator.to_owned(), body.clone());
        body
    }

    /// The gzip form of `body` (whose validator is `validator`) if it is ready or
    /// small enough to make now; otherwise `None`, and from its second request on
    /// it is being made for the requests that follow.
    pub(super) fn gzipped(&self, validator: &str, body: &Bytes) -> Option<Bytes> {
        if let Some(gzipped) = self.gzipped.get(validator) {
            return Some(gzipped);
        }
        if body.len() <= COMPRESS_INLINE_BYTES {
            let gzipped = gzip(body);
            self.gzipped.insert(validator.to_owned(), gzipped.clone());
            return Some(gzipped);
        }
        if self.asked_once.get(validator).is_none() {
            self.asked_once.insert(validator.to_owned(), ());
            return None;
        }
        let first = self
            .compressing
            .lock()
            .expect("the set of compressions is never poisoned")
            .insert(validator.to_owned());
        if first {
            let (this, validator, body) = (self.clone(), validator.to_owned(), body.clone());
            tokio::task::spawn_blocking(move || {
                this.gzipped.insert(validator.clone(), gzip(&body));
                this.compressing
                    .lock()
                    .expect("the set of compressions is never poisoned")
                    .remove(&validator);
            });
        }
        None
    }
}

/// `body` compressed with gzip at the default level.
fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    encoder
        .write_all(body)
        .expect("writing to a Vec cannot fail");
    crate::engine::index::tight(encoder.finish().expect("writing to a Vec cannot fail"))
}

/// Whether the request's `Accept-Encoding` takes gzip (RFC 9110 §12.5.3: `gzip`,
/// `x-gzip` or `*`, with a non-zero weight).
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for coding in value.split(',') {
            let mut parameters = coding.split(';');
            let name = parameters.next().unwrap_or_default().trim();
            let weighted = parameters
                .filter_map(|p| p.trim().strip_prefix("q="))
                .all(|q| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0));
            if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                return weighted;
            }
            if name == "*" {
                star = Some(weighted);
            }
        }
    }
    star.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn headers(accept_encoding: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, accept_encoding.parse().expect("value"));
        headers
    }

    #[test]
    fn gzip_is_taken_when_named_or_starred_with_a_weight() {
        assert!(accepts_gzip(&headers("gzip, deflate")));
        assert!(accepts_gzip(&headers("br;q=1.0, gzip;q=0.8, *;q=0.1")));
        assert!(accepts_gzip(&headers("deflate, *")));
        assert!(!accepts_gzip(&headers("gzip;q=0, *")));
        assert!(!accepts_gzip(&headers("br, deflate")));
        assert!(!accepts_gzip(&headers("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn a_large_body_is_compressed_once_when_asked_for_again() {
        let bodies = DocumentBodies::new(64 << 20);
        let body = Bytes::from("<a href=\"x\">x</a>\n".repeat(20_000));
        assert!(body.len() > COMPRESS_INLINE_BYTES);
        assert!(
            bodies.gzipped("\"v1\"", &body).is_none(),
            "the first request does not wait"
        );
        assert!(
            bodies.compressing.lock().expect("set").is_empty()
                && bodies.gzipped.get("\"v1\"").is_none(),
            "a body asked for once is not compressed"
        );
        let mut ready = None;
        for _ in 0..500 {
            ready = bodies.gzipped("\"v1\"", &body);
            if ready.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let gzipped = ready.expect("compressed within 5 s");
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&gzipped[..])
            .read_to_end(&mut unpacked)
            .expect("gzip");
        assert_eq!(unpacked, body);
        assert!(gzipped.len() < body.len() / 10);
        let small = Bytes::from_static(b"small enough to compress at once: small enough");
        assert!(bodies.gzipped("\"v2\"", &small).is_some());
    }
}
