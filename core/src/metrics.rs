//! The Core's Prometheus metrics (served on `/metrics`).

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of one function's invocations.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvocationLabels {
    /// Module name.
    pub module: String,
    /// Function name.
    pub function: String,
    /// `ok`, `function_error`, `no_worker`, `timeout`, `worker_lost`, ...
    pub outcome: String,
}

/// Labels of the invocations of a function with a canary.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryLabels {
    /// Module name.
    pub module: String,
    /// Function name.
    pub function: String,
    /// The version that ran.
    pub version: String,
    /// `stable` (the current version) or `canary`.
    pub track: String,
    /// As [`InvocationLabels::outcome`].
    pub outcome: String,
}

/// Labels of a latency series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    /// Module name.
    pub module: String,
    /// Function name.
    pub function: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~100 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 22,
    ))
}

/// Handles to every metric; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    invocations: Family<InvocationLabels, Counter>,
    canary_invocations: Family<CanaryLabels, Counter>,
    latency: Family<FunctionLabels, Histogram, fn() -> Histogram>,
    workers: Gauge,
    workers_lost: Counter,
    retries: Counter,
    connectors: Gauge,
    connectors_connected: Gauge,
    event_messages: Counter,
    sink_results: Family<OutcomeLabels, Gauge>,
    gossip_datagrams: Family<OutcomeLabels, Gauge>,
    quota_refusals: Family<QuotaLabels, Counter>,
    gossip: Arc<Mutex<Option<Arc<funless_actors::discovery::GossipStats>>>>,
}

/// Labels of the sink totals.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `failed_attempt` or `dropped`.
    pub outcome: String,
}

/// Labels of the quota refusals.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    /// `modules`, `functions`, `stored_bytes`, `sinks`, `connectors` or
    /// `concurrent_invocations`.
    pub quota: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("funless");
        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "invocations",
            "Invocations by module, function and outcome",
            invocations.clone(),
        );
        let canary_invocations = Family::<CanaryLabels, Counter>::default();
        registry.register(
            "canary_invocations",
            "Invocations of functions with a canary, by version, side of the split and outcome",
            canary_invocations.clone(),
        );
        let latency = Family::<FunctionLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "invocation_duration_seconds",
            "Whole-path invocation latency seen by the Core",
            latency.clone(),
        );
        let workers = Gauge::default();
        registry.register(
            "workers_connected",
            "Workers connected now",
            workers.clone(),
        );
        let workers_lost = Counter::default();
        registry.register(
            "workers_lost",
            "Workers declared lost (silent past the heartbeat time-out, or disconnected)",
            workers_lost.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "invocation_retries",
            "Invocations run again on another worker because theirs was lost mid-call",
            retries.clone(),
        );
        let connectors = Gauge::default();
        registry.register(
            "event_connectors",
            "Event connectors (MQTT, NATS, cron) of functions",
            connectors.clone(),
        );
        let connectors_connected = Gauge::default();
        registry.register(
            "event_connectors_connected",
            "Event connectors connected to their broker (or scheduled) now",
            connectors_connected.clone(),
        );
        let event_messages = Counter::default();
        registry.register(
            "event_messages",
            "Messages and schedule ticks that started an invocation",
            event_messages.clone(),
        );
        let sink_results = Family::<OutcomeLabels, Gauge>::default();
        registry.register(
            "sink_results",
            "Results of the sinks running now: delivered, failed attempts (retried), dropped",
            sink_results.clone(),
        );
        let gossip_datagrams = Family::<OutcomeLabels, Gauge>::default();
        registry.register(
            "gossip_datagrams",
            "Gossip datagrams received (with --gossip): accepted, undecryptable (another cookie), malformed, stale, replayed",
            gossip_datagrams.clone(),
        );
        let quota_refusals = Family::<QuotaLabels, Counter>::default();
        registry.register(
            "quota_refusals",
            "Creates, uploads and invocations refused with 429 by a per-subject quota, by quota",
            quota_refusals.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            sink_results,
            gossip_datagrams,
            quota_refusals,
            gossip: Arc::default(),
            invocations,
            canary_invocations,
            latency,
            workers,
            workers_lost,
            retries,
            connectors,
            connectors_connected,
            event_messages,
        }
    }

    /// Counts one invocation and, when it ran, its latency.
    pub fn invocation(&self, module: &str, function: &str, outcome: &str, seconds: Option<f64>) {
        self.invocations
            .get_or_create(&InvocationLabels {
                module: module.to_string(),
                function: function.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        if let Some(seconds) = seconds {
            self.latency
                .get_or_create(&FunctionLabels {
                    module: module.to_string(),
                    function: function.to_string(),
                })
                .observe(seconds);
        }
    }

    /// Counts an invocation of a function with a canary.
    pub fn canary_invocation(
        &self,
        module: &str,
        function: &str,
        version: i64,
        track: &str,
        outcome: &str,
    ) {
        self.canary_invocations
            .get_or_create(&CanaryLabels {
                module: module.to_string(),
                function: function.to_string(),
                version: version.to_string(),
                track: track.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Sets the number of connected workers.
    pub fn set_workers(&self, n: usize) {
        self.workers.set(n as i64);
    }

    /// Counts a worker declared lost.
    pub fn worker_lost(&self) {
        self.workers_lost.inc();
    }

    /// Sets the connector gauges.
    pub fn set_connectors(&self, connected: usize, total: usize) {
        self.connectors_connected.set(connected as i64);
        self.connectors.set(total as i64);
    }

    /// Sets the sink totals.
    pub fn set_sinks(&self, totals: crate::sinks::Totals) {
        for (outcome, n) in [
            ("delivered", totals.delivered),
            ("failed_attempt", totals.failed_attempts),
            ("dropped", totals.dropped),
        ] {
            self.sink_results
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.into(),
                })
                .set(n as i64);
        }
    }

    /// Counts a message (or tick) that started an invocation.
    pub fn event_message(&self) {
        self.event_messages.inc();
    }

    /// Counts a refusal by the per-subject quota `quota`.
    pub fn quota_refused(&self, quota: &str) {
        self.quota_refusals
            .get_or_create(&QuotaLabels {
                quota: quota.to_string(),
            })
            .inc();
    }

    /// Counts an invocation retried on another worker.
    pub fn retry(&self) {
        self.retries.inc();
    }

    /// Reports the counts of this gossip announcer from now on.
    pub fn attach_gossip(&self, stats: Arc<funless_actors::discovery::GossipStats>) {
        *self.gossip.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats);
    }

    /// Registers a metric kept by another part of the Core (the service manager's).
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .register(name, help, metric);
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let gossip = self
            .gossip
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(stats) = gossip {
            for (outcome, n) in stats.snapshot() {
                self.gossip_datagrams
                    .get_or_create(&OutcomeLabels {
                        outcome: outcome.into(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}
