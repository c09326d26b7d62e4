//! Prometheus metrics, one registry per server instance (so tests running several
//! servers in one process do not share counters). Rendered at `/-/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// A configured repository's name (a bounded set, interned at start-up), or
    /// `-` / `unknown`.
    pub repo: &'static str,
    pub route: &'static str,
    pub status: u16,
}

/// `category` and `format` only: never a package name, which would explode cardinality.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub category: &'static str,
    pub format: &'static str,
    pub cache_status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub category: &'static str,
    pub format: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoLabels {
    pub repo: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric granary exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub cache_results: Family<CacheLabels, Counter>,
    pub coalesced_requests: Family<CategoryLabels, Counter>,
    pub upstream_latency: HistogramFamily<RepoLabels>,
    pub upstream_requests: Family<RepoLabels, Counter>,
    pub upstream_errors: Family<RepoLabels, Counter>,
    pub upstream_in_flight: Gauge,
    pub bytes_served: Family<RepoLabels, Counter>,
    pub integrity_failures: Family<RepoLabels, Counter>,
    pub redis_errors: Counter,
    pub redis_up: Gauge,
    pub cross_replica_waits: Counter,
    /// Downloads in flight on another replica that this one streamed from it.
    pub cross_replica_streams: Counter,
    /// Artifact downloads waiting for a turn (`max_concurrent_fills`), per repository.
    pub fills_queued: Family<RepoLabels, Gauge>,
    /// Requests that panicked (answered 500).
    pub panics: Counter,
    /// Badge fact lookups (each reads index documents and metadata), per stage.
    pub badge_fact_lookups: Family<StageLabels, Counter>,
    /// Badge images rendered (a content-keyed cache miss).
    pub badge_renders: Counter,
    /// Published artifacts by what dependency extraction made of them.
    pub dependency_extractions: Family<OutcomeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("granary");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests served, by repository, route and status",
            requests.clone(),
        );
        let cache_results = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_results",
            "Cache decisions: hit, miss, stale, revalidated, bypass",
            cache_results.clone(),
        );
        let coalesced_requests = Family::<CategoryLabels, Counter>::default();
        registry.register(
            "coalesced_requests",
            "Requests that joined an upstream fetch already in flight",
            coalesced_requests.clone(),
        );
        let upstream_latency: HistogramFamily<RepoLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_response_seconds",
            "Time to the upstream's response headers",
            upstream_latency.clone(),
        );
        let upstream_requests = Family::<RepoLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Requests sent upstream (each retry counts)",
            upstream_requests.clone(),
        );
        let upstream_errors = Family::<RepoLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream requests that failed to connect, timed out or answered 5xx",
            upstream_errors.clone(),
        );
        let upstream_in_flight = Gauge::default();
        registry.register(
            "upstream_in_flight",
            "Upstream fetches in flight",
            upstream_in_flight.clone(),
        );
        let bytes_served = Family::<RepoLabels, Counter>::default();
        registry.register(
            "served_bytes",
            "Artifact bytes sent to clients",
            bytes_served.clone(),
        );
        let integrity_failures = Family::<RepoLabels, Counter>::default();
        registry.register(
            "integrity_failures",
            "Artifacts whose bytes did not match the index's hash",
            integrity_failures.clone(),
        );
        let redis_errors = Counter::default();
        registry.register(
            "redis_errors",
            "Redis operations that failed or timed out (the replica fell back to its own tiers)",
            redis_errors.clone(),
        );
        let redis_up = Gauge::default();
        registry.register(
            "redis_up",
            "1 when the last Redis operation succeeded",
            redis_up.clone(),
        );
        let cross_replica_waits = Counter::default();
        registry.register(
            "cross_replica_waits",
            "Artifact requests that waited for another replica's download",
            cross_replica_waits.clone(),
        );
        let cross_replica_streams = Counter::default();
        registry.register(
            "cross_replica_streams",
            "Artifact downloads in flight on another replica streamed from it",
            cross_replica_streams.clone(),
        );
        let fills_queued = Family::<RepoLabels, Gauge>::default();
        registry.register(
            "fills_queued",
            "Artifact downloads waiting for a turn under max_concurrent_fills",
            fills_queued.clone(),
        );
        let panics = Counter::default();
        registry.register(
            "request_panics",
            "Requests whose handler panicked (answered 500)",
            panics.clone(),
        );
        let badge_fact_lookups = Family::<StageLabels, Counter>::default();
        registry.register(
            "badge_fact_lookups",
            "Lookups of the facts behind badges (one serves every badge of a project's stage)",
            badge_fact_lookups.clone(),
        );
        let badge_renders = Counter::default();
        registry.register(
            "badge_renders",
            "Badge images rendered (misses of the content-keyed image cache)",
            badge_renders.clone(),
        );
        let dependency_extractions = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "dependency_extractions",
            "Published artifacts by extraction outcome: complete, partial, unknown, already (digest extracted before), not_applicable, failed, missed",
            dependency_extractions.clone(),
        );
        Self {
            registry: Arc::new(registry),
            dependency_extractions,
            badge_fact_lookups,
            badge_renders,
            fills_queued,
            panics,
            redis_errors,
            redis_up,
            cross_replica_waits,
            cross_replica_streams,
            requests,
            cache_results,
            coalesced_requests,
            upstream_latency,
            upstream_requests,
            upstream_errors,
            upstream_in_flight,
            bytes_served,
            integrity_failures,
        }
    }

    /// The Prometheus text exposition of every metric.
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    pub fn record_cache(
        &self,
        category: &'static str,
        format: &'static str,
        cache_status: &'static str,
    ) {
        self.cache_results
            .get_or_create(&CacheLabels {
                category,
                format,
                cache_status,
            })
            .inc();
    }

    pub fn record_coalesced(&self, category: &'static str, format: &'static str) {
        self.coalesced_requests
            .get_or_create(&CategoryLabels { category, format })
            .inc();
    }
}
