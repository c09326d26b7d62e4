//! The in-memory index tier is bounded by its weigher (`[cache] memory_capacity`):
//! a document's weight must cover the heap it really holds — canonical form, every
//! rendition, and the parsed form a protocol derives from it on first use. The soak
//! found the weight counting about a third of it (a 64 MiB tier would hold ~190 MiB).
//!
//! A binary of its own: it counts every allocation with a global allocator.

use std::alloc::System;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use granary::engine::index::{IndexDocument, Rendition};
use granary::http_cache::{Lifetimes, Validators};
use granary::protocols::pypi::model::{CoreMetadata, DistFile, ProjectPage, Yanked};
use granary::protocols::pypi::rewrite;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed since `region` began.
fn held(region: &Region<'_, System>) -> i64 {
    let change = region.change();
    let grown = i64::try_from(change.bytes_allocated).expect("fits")
        - i64::try_from(change.bytes_deallocated).expect("fits");
    grown + i64::try_from(change.bytes_reallocated).expect("fits")
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

#[test]
fn a_documents_weight_covers_the_memory_it_holds() {
    for files in [3, 40, 2_000] {
        let source = page(files);
        let canonical_bytes = serde_json::to_vec(&source).expect("page");
        let json = rewrite::project_json(&source, "weighed");
        let html = rewrite::project_html(&source, "weighed");
        let region = Region::new(ALLOCATOR);
        let document = Arc::new(IndexDocument {
            found: true,
            canonical: Bytes::from(canonical_bytes),
            renditions: vec![
                Rendition::new("json", Bytes::from(json)),
                Rendition::new("html", Bytes::from(html)),
            ],
            validators: Validators::default(),
            stored_at: SystemTime::UNIX_EPOCH,
            lifetimes: Lifetimes {
                fresh_until: SystemTime::UNIX_EPOCH,
                stale_until: SystemTime::UNIX_EPOCH,
            },
            derived: OnceLock::new(),
        });
        // What a protocol derives on the first file request (the parsed page).
        let parsed = document
            .derived(|canonical| serde_json::from_slice::<ProjectPage>(canonical).expect("parses"));
        drop(parsed);
        let held = held(&region);
        let weight = i64::from(document.weight());
        assert!(
            held <= weight,
            "a page of {files} files holds {held} bytes but weighs {weight}"
        );
        drop(document);
    }
}
