//! The worker's Prometheus metrics: invocations and their duration by where the code came
//! from (cold-start accounting), compilations and disk loads, and the cache's state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use funless_actors::protocol::CodeSource;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cache::CodeCache;

/// Labels of the invocation counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    /// `memory` (warm), `disk` (disk-warm) or `compiled` (cold).
    source: String,
    /// `ok` or `error`.
    outcome: String,
}

/// Labels of the duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

pub(crate) fn source_name(source: CodeSource) -> &'static str {
    match source {
        CodeSource::Memory => "memory",
        CodeSource::Disk => "disk",
        CodeSource::Compiled => "compiled",
    }
}

fn duration_histogram() -> Histogram {
    // 10 µs .. ~80 s.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 24))
}

/// Handles to the worker's metrics.
pub(crate) struct WorkerMetrics {
    registry: Mutex<Registry>,
    invocations: Family<InvocationLabels, Counter>,
    durations: Family<SourceLabels, Histogram, fn() -> Histogram>,
    pub(crate) compilations: Counter,
    pub(crate) disk_loads: Counter,
    pub(crate) disk_discards: Counter,
    pub(crate) moved_to_pool: Counter,
}

/// Reads the cache and in-flight count at each scrape.
#[derive(Debug)]
struct StateCollector {
    cache: Arc<CodeCache>,
    in_flight: Arc<AtomicU64>,
}

fn encode_const(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.cache.stats();
        let gauge = |v: u64| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
        encode_const(
            &mut encoder,
            "cache_entries",
            "Compiled modules held in memory",
            &gauge(stats.entries),
        )?;
        encode_const(
            &mut encoder,
            "cache_bytes",
            "Bytes of compiled code held in memory",
            &gauge(stats.bytes),
        )?;
        encode_const(
            &mut encoder,
            "cache_capacity_bytes",
            "Byte threshold of the in-memory cache",
            &gauge(stats.capacity),
        )?;
        encode_const(
            &mut encoder,
            "cache_hits",
            "Cache lookups that found the code",
            &ConstCounter::new(stats.hits),
        )?;
        encode_const(
            &mut encoder,
            "cache_misses",
            "Cache lookups that did not",
            &ConstCounter::new(stats.misses),
        )?;
        encode_const(
            &mut encoder,
            "cache_evictions",
            "Modules evicted to stay under the threshold",
            &ConstCounter::new(stats.evictions),
        )?;
        encode_const(
            &mut encoder,
            "in_flight",
            "Invocations running now",
            &gauge(self.in_flight.load(Ordering::Relaxed)),
        )?;
        Ok(())
    }
}

impl WorkerMetrics {
    pub(crate) fn new(cache: Arc<CodeCache>, in_flight: Arc<AtomicU64>) -> Self {
        let mut registry = Registry::with_prefix("funless_worker");
        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "invocations",
            "Invocations by code source (memory = warm, disk = disk-warm, compiled = cold) and outcome",
            invocations.clone(),
        );
        let durations = Family::<SourceLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register(
            "invocation_duration_seconds",
            "Time from request to answer on the worker, by code source",
            durations.clone(),
        );
        let compilations = Counter::default();
        registry.register(
            "compilations",
            "Modules compiled from Wasm",
            compilations.clone(),
        );
        let disk_loads = Counter::default();
        registry.register(
            "disk_loads",
            "Precompiled modules loaded from disk",
            disk_loads.clone(),
        );
        let disk_discards = Counter::default();
        registry.register(
            "disk_discards",
            "Precompiled files found corrupt or incompatible and removed",
            disk_discards.clone(),
        );
        let moved_to_pool = Counter::default();
        registry.register(
            "invocations_moved",
            "Invocations whose guest used up a time slice and finished on the compute pool",
            moved_to_pool.clone(),
        );
        registry.register_collector(Box::new(StateCollector { cache, in_flight }));
        Self {
            registry: Mutex::new(registry),
            invocations,
            durations,
            compilations,
            disk_loads,
            disk_discards,
            moved_to_pool,
        }
    }

    pub(crate) fn invocation(&self, source: CodeSource, ok: bool, seconds: f64) {
        let source = source_name(source).to_string();
        self.invocations
            .get_or_create(&InvocationLabels {
                source: source.clone(),
                outcome: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
        self.durations
            .get_or_create(&SourceLabels { source })
            .observe(seconds);
    }

    pub(crate) fn encode(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}
