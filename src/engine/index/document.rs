//! A stored index document and the forms it is served in.
//!
//! A document holds the protocol's canonical body and, made on first use and then
//! shared by every request: its parsed form and each form served to clients. Nothing
//! is rendered that no client asked for, and a document fetched from the upstream
//! starts with the parsed form its fetch already made, so a miss parses once.

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::IndexSource;
use crate::http_cache::{Lifetimes, Validators};

/// A protocol's parsed form of a canonical body (a project page, a packument).
pub type Parsed = Arc<dyn Any + Send + Sync>;

/// One form of a document as served to clients (e.g. PEP 691 JSON, PEP 503 HTML).
#[derive(Debug, Clone)]
pub struct Rendition {
    /// The protocol's name for this form.
    pub name: &'static str,
    pub body: Bytes,
    /// Our own strong validator: a hash of exactly these bytes.
    pub etag: String,
    /// `etag` as a ready header value (built once, not per response).
    pub etag_header: http::HeaderValue,
    /// When the body holds base-URL markers (npm's absolute tarball URLs): the body
    /// split at them, shared; each response puts its base URL between the parts.
    pub parts: Option<Arc<Vec<Bytes>>>,
}

/// Stands for the base URL clients reach granary at, inside a JSON string value.
pub const BASE_MARKER_TEXT: &str = "\u{0}granary-base\u{0}";
/// [`BASE_MARKER_TEXT`] as it appears in serialized JSON.
pub const BASE_MARKER_SERIALIZED: &[u8] = b"\\u0000granary-base\\u0000";

/// Splits `body` at every base marker, or `None` if it has none.
fn split_at_markers(body: &Bytes) -> Option<Arc<Vec<Bytes>>> {
    let mut parts = Vec::new();
    let mut start = 0;
    for at in memchr::memmem::find_iter(body, BASE_MARKER_SERIALIZED) {
        parts.push(body.slice(start..at));
        start = at + BASE_MARKER_SERIALIZED.len();
    }
    if parts.is_empty() {
        return None;
    }
    parts.push(body.slice(start..));
    Some(Arc::new(parts))
}

impl Rendition {
    #[must_use]
    pub fn new(name: &'static str, body: Bytes) -> Self {
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        let etag_header =
            http::HeaderValue::from_str(&etag).expect("quoted hex is a valid header value");
        let parts = split_at_markers(&body);
        Self {
            name,
            body,
            etag,
            etag_header,
            parts,
        }
    }
}

/// A body built in a `Vec` as shared bytes holding no spare capacity (a `Vec` grown
/// by doubling holds up to twice its length, and `Bytes` would keep all of it for
/// as long as the document is cached).
#[must_use]
pub fn tight(body: impl Into<Vec<u8>>) -> Bytes {
    Bytes::from(body.into().into_boxed_slice())
}

/// Canonical bodies at least this large are parsed and rendered on the blocking
/// pool, not on an async worker (a PyPI page reaches 6 MB, an npm packument tens).
pub const OFFLOAD_BYTES: usize = 256 * 1024;

/// Runs `work` on a document of `bytes` bytes (reading or rendering it): inline
/// when it is small, on the blocking pool from [`OFFLOAD_BYTES`] up.
///
/// # Errors
/// `work`'s error, or that it panicked.
pub async fn sized_work<T: Send + 'static>(
    bytes: usize,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    if bytes < OFFLOAD_BYTES {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| Err("reading or rendering the document panicked".to_owned()))
}

/// What is stored for a document, in every tier.
#[derive(Debug, Clone)]
pub struct StoredParts {
    /// `false`: the upstream said this does not exist.
    pub found: bool,
    /// The protocol's canonical serialized form (upstream URLs, not rewritten).
    pub canonical: Bytes,
    pub validators: Validators,
    pub stored_at: SystemTime,
    pub lifetimes: Lifetimes,
}

/// A stored index document (or negative result) with everything needed to serve it.
pub struct IndexDocument {
    /// `false`: the upstream said this does not exist.
    pub found: bool,
    /// The protocol's canonical serialized form (upstream URLs, not rewritten).
    pub canonical: Bytes,
    pub validators: Validators,
    pub stored_at: SystemTime,
    pub lifetimes: Lifetimes,
    /// A form the protocol derives from `canonical` (a parsed packument), made once
    /// per stored document instead of once per request.
    derived: OnceLock<Parsed>,
    /// Every form the source serves, each rendered when first asked for.
    renditions: Vec<(&'static str, tokio::sync::OnceCell<Rendition>)>,
    /// Renders the forms; `None` for a document without any (a remembered 404).
    source: Option<Arc<dyn IndexSource>>,
    /// A hash of `canonical`, made when first asked for.
    fingerprint: OnceLock<String>,
}

impl std::fmt::Debug for IndexDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexDocument")
            .field("found", &self.found)
            .field("canonical_bytes", &self.canonical.len())
            .field("stored_at", &self.stored_at)
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

impl IndexDocument {
    /// A document whose forms `source` renders on demand; `parsed`, when the fetch
    /// already made it, is the protocol's parsed form of `canonical`.
    #[must_use]
    pub fn new(
        stored: StoredParts,
        source: Option<Arc<dyn IndexSource>>,
        parsed: Option<Parsed>,
    ) -> Self {
        let forms: &[&'static str] = match (&source, stored.found) {
            (Some(source), true) => source.forms(),
            _ => &[],
        };
        let derived = OnceLock::new();
        if let Some(parsed) = parsed {
            let _ = derived.set(parsed);
        }
        Self {
            found: stored.found,
            canonical: stored.canonical,
            validators: stored.validators,
            stored_at: stored.stored_at,
            lifetimes: stored.lifetimes,
            derived,
            renditions: forms
                .iter()
                .map(|form| (*form, tokio::sync::OnceCell::new()))
                .collect(),
            source,
            fingerprint: OnceLock::new(),
        }
    }

    /// The same document with new validators and lifetimes (a `304 Not Modified`):
    /// everything already parsed and rendered is kept.
    #[must_use]
    pub fn renewed(
        &self,
        validators: Validators,
        stored_at: SystemTime,
        lifetimes: Lifetimes,
    ) -> Self {
        let derived = OnceLock::new();
        if let Some(parsed) = self.derived.get() {
            let _ = derived.set(Arc::clone(parsed));
        }
        Self {
            found: self.found,
            canonical: self.canonical.clone(),
            validators,
            stored_at,
            lifetimes,
            derived,
            renditions: self.renditions.clone(),
            source: self.source.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }

    /// The protocol's parsed form of this document, made by `make` on first use and
    /// shared by every later request. One protocol reads a given document, so it is
    /// always asked for with the same type.
    ///
    /// # Panics
    /// When asked for with a type other than the one made first.
    pub fn derived<T: Any + Send + Sync>(&self, make: impl FnOnce(&Bytes) -> T) -> Arc<T> {
        let any = self.derived.get_or_init(|| Arc::new(make(&self.canonical)));
        Arc::clone(any)
            .downcast::<T>()
            .unwrap_or_else(|_| panic!("a document's derived form is read with one type"))
    }

    /// The form `name`, rendered on first use (on the blocking pool when the
    /// document is large) and shared by every later request.
    ///
    /// # Errors
    /// When the document has no such form or the canonical body cannot be rendered.
    pub async fn rendition(self: &Arc<Self>, name: &str) -> Result<Rendition, String> {
        let Some((form, cell)) = self.renditions.iter().find(|(form, _)| *form == name) else {
            return Err(format!("the document has no `{name}` form"));
        };
        let form = *form;
        cell.get_or_try_init(|| async {
            let this = Arc::clone(self);
            let render = move || {
                let source = this
                    .source
                    .as_ref()
                    .expect("a document with forms has a source");
                source
                    .render(&this, form)
                    .map(|body| Rendition::new(form, body))
            };
            sized_work(self.canonical.len(), render).await
        })
        .await
        .cloned()
    }

    /// A form already rendered, if it is (no rendering, no waiting).
    #[must_use]
    pub fn rendered(&self, name: &str) -> Option<&Rendition> {
        self.renditions
            .iter()
            .find(|(form, _)| *form == name)
            .and_then(|(_, cell)| cell.get())
    }

    /// A strong fingerprint of the canonical body: equal for equal content, whenever
    /// and wherever it was fetched.
    #[must_use]
    pub fn fingerprint(&self) -> &str {
        self.fingerprint
            .get_or_init(|| fingerprint_of(&self.canonical))
    }

    /// What the in-memory tier counts this document as (bytes, approximately).
    ///
    /// Besides the canonical form it counts every form it may be served in (each
    /// counted as 1.25 times the canonical body, rendered or not, since the weight
    /// is taken at insertion), the parsed form a protocol derives (measured at 3.9
    /// to 4.2 times the canonical JSON for project pages of 40 to 2,000 files: two
    /// small maps and six strings per file; counted as four times) and the entry's own
    /// structures. Without the derived form the tier held about three times its
    /// configured bound (found by the soak); `tests/index_weight.rs` measures all
    /// of it with a counting allocator.
    #[must_use]
    pub fn weight(&self) -> u32 {
        const ENTRY_OVERHEAD: usize = 4096;
        let canonical = self.canonical.len();
        let forms = canonical.saturating_mul(self.renditions.len()) / 4 * 5;
        let derived = canonical.saturating_mul(4);
        let bytes = canonical
            .saturating_add(forms)
            .saturating_add(derived)
            .saturating_add(ENTRY_OVERHEAD);
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// The fingerprint of a canonical body ([`IndexDocument::fingerprint`]).
#[must_use]
pub fn fingerprint_of(canonical: &[u8]) -> String {
    hex::encode(&Sha256::digest(canonical)[..16])
}
