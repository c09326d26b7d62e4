//! The in-memory index tier is bounded by its weigher (`[cache] memory_capacity`):
//! a document's weight must cover the heap it really holds — canonical form, every
//! rendition, and the parsed form a protocol derives from it on first use. The soak
//! found the weight counting about a third of it (a 64 MiB tier would hold ~190 MiB).
//!
//! A binary of its own: it counts every allocation with a global allocator.

use std::alloc::System;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use granary::engine::index::{IndexDocument, IndexSource, StoredParts};
use granary::engine::{UpstreamClient, UpstreamOptions};
use granary::http_cache::{Lifetimes, Validators};
use granary::metrics::Metrics;
use granary::protocols::pypi::model::{CoreMetadata, DistFile, ProjectPage, Yanked};
use granary::protocols::pypi::source::ProjectSource;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed since `region` began (`stats_alloc` counts a
/// `realloc`'s growth in `bytes_allocated` and its shrinking in `bytes_deallocated`
/// already).
fn held(region: &Region<'_, System>) -> i64 {
    let change = region.change();
    i64::try_from(change.bytes_allocated).expect("fits")
        - i64::try_from(change.bytes_deallocated).expect("fits")
}

fn page(files: usize) -> ProjectPage {
    ProjectPage {
        name: "weighed".to_owned(),
        api_version: "1.1".to_owned(),
        files: (0..files)
            .map(|n| {
                let filename = format!("weighed-1.{n}-py3-none-any.whl");
                DistFile {
                    url: format!("http://127.0.0.1:9/packages/ab/cd/{filename}"),
                    filename,
                    hashes: BTreeMap::from([("sha256".to_owned(), format!("{n:064x}"))]),
                    requires_python: Some(">=3.8".to_owned()),
                    yanked: Yanked::No,
                    core_metadata: CoreMetadata::Available(BTreeMap::from([(
                        "sha256".to_owned(),
                        format!("{:064x}", n + 1),
                    )])),
                    gpg_sig: None,
                    size: Some(10_000 + n as u64),
                    upload_time: None,
                }
            })
            .collect(),
        versions: None,
    }
}

/// The PyPI source, as the server builds it (its upstream is never asked).
fn pypi_source() -> Arc<dyn IndexSource> {
    let upstream = UpstreamClient::new(
        UpstreamOptions {
            repo: "pypi".to_owned(),
            root: url::Url::parse("http://127.0.0.1:9/simple/").expect("url"),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            retries: 0,
            auth: None,
            max_concurrent_fills: 1,
            allowed_hosts: Vec::new(),
            only_allowed_hosts: false,
        },
        Metrics::new(),
    )
    .expect("client");
    Arc::new(ProjectSource {
        upstream,
        project: "weighed".to_owned(),
    })
}

#[test]
fn a_documents_weight_covers_the_memory_it_holds() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _context = runtime.enter();
    // The blocking pool's thread is started before anything is counted.
    runtime
        .block_on(tokio::task::spawn_blocking(|| ()))
        .expect("blocking pool");
    let source = pypi_source();
    for files in [3, 40, 2_000] {
        let page = page(files);
        let canonical = Bytes::from(serde_json::to_vec(&page).expect("page"));
        let region = Region::new(ALLOCATOR);
        let document = Arc::new(IndexDocument::new(
            StoredParts {
                found: true,
                canonical,
                validators: Validators::default(),
                stored_at: SystemTime::UNIX_EPOCH,
                lifetimes: Lifetimes {
                    fresh_until: SystemTime::UNIX_EPOCH,
                    stale_until: SystemTime::UNIX_EPOCH,
                },
            },
            Some(Arc::clone(&source)),
            None,
        ));
        // Everything a document comes to hold: both forms clients ask for, and the
        // parsed page they are rendered from (and file requests read).
        for form in source.forms() {
            runtime
                .block_on(document.rendition(form))
                .expect("rendered");
        }
        assert!(document.rendered("json").is_some() && document.rendered("html").is_some());
        let held = held(&region);
        let weight = i64::from(document.weight());
        assert!(
            held <= weight,
            "a page of {files} files holds {held} bytes but weighs {weight}"
        );
        drop(document);
    }
}
