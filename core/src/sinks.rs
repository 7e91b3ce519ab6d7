//! Data sinks: where a function's results go after each successful invocation (FunLess's
//! `sinks` field: `[{"type": "couchdb", "params": {"url", "username", "password"}}]`, plus a
//! generic `webhook`).
//!
//! Delivery never blocks an invocation: the result is queued (bounded: [`QUEUE`] results and
//! [`QUEUE_BYTES`] per sink, and [`CORE_QUEUE_BYTES`] over every sink of the Core, beyond
//! which results are dropped, counted and the reason shown as the sink's `last_error`) and a
//! deliverer per
//! sink POSTs the queued results in order. A failed delivery is retried with exponential
//! backoff (200 ms doubling to 30 s) until it succeeds, so a sink that is down receives
//! everything once it is back; a sink answering 4xx other than 408/429 refuses the document,
//! which is counted and skipped.
//!
//! Each deliverer is a supervised actor (a child of the Core's `sinks` supervisor). The queue
//! is not its state but shared with it, and a result leaves the queue only once delivered
//! (or refused): a deliverer that crashes mid-delivery is restarted and sends that result
//! again, so nothing queued is lost (a result may arrive twice, never zero times).
//!
//! Sinks reach only what the Core's [`EgressPolicy`] allows, checked on every delivery (after
//! DNS resolution, see `egress.rs`); a failed delivery's error says only that the sink could
//! not be reached, never why (which would tell a user whether a port answers).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use funless_actors::supervisor::{ChildSpec, service};
use funless_api::types::SinkInfo;
use serde_json::Value;
use tokio::sync::Notify;

use crate::children::DynamicChildren;
use crate::egress::EgressPolicy;

/// Results queued per sink before new ones are dropped.
pub const QUEUE: usize = 10_000;
/// Bytes of results queued per sink before new ones are dropped.
pub const QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Bytes of results queued over every sink of the Core before new ones are dropped.
pub const CORE_QUEUE_BYTES: usize = 64 * 1024 * 1024;
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    /// `couchdb` or `webhook`.
    pub kind: &'static str,
    /// The URL results are POSTed to (a CouchDB database URL for `couchdb`).
    pub url: String,
    /// Basic-auth credentials, if any.
    pub credentials: Option<(String, String)>,
}

/// Parses FunLess's `sinks` value (a list of `{"type", "params"}`, or one such object).
pub fn parse(sinks: &Value) -> Result<Vec<Sink>, String> {
    crate::events::parse_list(sinks, "sinks", parse_one)
}

fn parse_one(sink: &Value) -> Result<Sink, String> {
    let kind = match sink["type"].as_str() {
        Some("couchdb") => "couchdb",
        Some("webhook") => "webhook",
        Some(other) => {
            return Err(format!(
                "unknown sink type {other:?} (supported: couchdb, webhook)"
            ));
        }
        None => return Err("missing \"type\"".into()),
    };
    let params = &sink["params"];
    let url = params["url"]
        .as_str()
        .ok_or_else(|| format!("{kind} needs params.url"))?;
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("params.url {url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("params.url {url:?} must be an http(s) URL"));
    }
    let credentials = match (params["username"].as_str(), params["password"].as_str()) {
        (Some(user), Some(password)) => Some((user.to_string(), password.to_string())),
        (None, None) => None,
        _ => return Err("params.username and params.password go together".into()),
    };
    Ok(Sink {
        kind,
        url: url.to_string(),
        credentials,
    })
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
    queued: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A sink's queue: results wait here, in order, until delivered.
struct Queue {
    items: Mutex<VecDeque<String>>,
    bytes: AtomicUsize,
    /// Bytes queued over every sink of the Core.
    core: Arc<AtomicUsize>,
    ready: Notify,
}

/// Why a result was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    Sink,
    Core,
}

impl Full {
    fn reason(self) -> String {
        match self {
            Full::Sink => format!(
                "results dropped: this sink's queue is full ({QUEUE} results or {} MiB)",
                QUEUE_BYTES >> 20
            ),
            Full::Core => format!(
                "results dropped: the Core's sink queues are full ({} MiB in all)",
                CORE_QUEUE_BYTES >> 20
            ),
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // Results still queued when a sink is replaced or stopped are gone: give their bytes
        // back to the Core's bound.
        self.core
            .fetch_sub(self.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new(core: Arc<AtomicUsize>) -> Self {
        Self {
            items: Mutex::default(),
            bytes: AtomicUsize::new(0),
            core,
            ready: Notify::new(),
        }
    }

    /// Adds a result unless the queue, or the Core's queues together, are full.
    fn push(&self, document: &str) -> Result<(), Full> {
        let mut items = self.lock();
        let bytes = self.bytes.load(Ordering::Relaxed);
        if items.len() >= QUEUE || bytes + document.len() > QUEUE_BYTES {
            return Err(Full::Sink);
        }
        let reserved = self
            .core
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |core| {
                (core + document.len() <= CORE_QUEUE_BYTES).then_some(core + document.len())
            });
        if reserved.is_err() {
            return Err(Full::Core);
        }
        self.bytes.fetch_add(document.len(), Ordering::Relaxed);
        items.push_back(document.to_string());
        drop(items);
        self.ready.notify_one();
        Ok(())
    }

    /// The oldest result, left in the queue (waits for one).
    async fn front(&self) -> String {
        loop {
            let notified = self.ready.notified();
            if let Some(first) = self.lock().front() {
                return first.clone();
            }
            notified.await;
        }
    }

    /// Removes the oldest result, once it is delivered or refused.
    fn pop(&self) {
        if let Some(done) = self.lock().pop_front() {
            self.bytes.fetch_sub(done.len(), Ordering::Relaxed);
            self.core.fetch_sub(done.len(), Ordering::Relaxed);
        }
    }
}

struct Running {
    sink: Sink,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
}

/// Totals over every sink, for the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Results delivered.
    pub delivered: u64,
    /// Attempts that failed (and were retried).
    pub failed_attempts: u64,
    /// Results dropped: refused by the sink, or over a queue bound.
    pub dropped: u64,
    /// Bytes queued over every sink.
    pub queued_bytes: u64,
}

/// Every function's sinks, by (stored module, name).
pub struct Sinks {
    /// The egress policy and an HTTP client that resolves names under it.
    egress: RwLock<(EgressPolicy, reqwest::Client)>,
    /// Bytes queued over every sink.
    core_bytes: Arc<AtomicUsize>,
    running: RwLock<HashMap<(String, String), Vec<Running>>>,
    children: Arc<DynamicChildren>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sinks")
    }
}

impl Default for Sinks {
    fn default() -> Self {
        let policy = EgressPolicy::default();
        Self {
            egress: RwLock::new((policy.clone(), http_client(&policy))),
            core_bytes: Arc::default(),
            running: RwLock::default(),
            children: DynamicChildren::new(
                "sinks",
                "sink deliverers: one actor per function sink, draining its queue in order",
            ),
        }
    }
}

/// An HTTP client whose every connection goes through the policy's resolver.
fn http_client(policy: &EgressPolicy) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .dns_resolver(policy.resolver())
        // A redirect could lead anywhere: sinks are called at their own URL only.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

impl Sinks {
    /// Applies an egress policy to sinks set from now on (the Core sets it before any).
    pub fn set_egress(&self, policy: EgressPolicy) {
        let client = http_client(&policy);
        *self.egress.write().unwrap_or_else(|p| p.into_inner()) = (policy, client);
    }

    /// The egress policy in force.
    pub fn egress(&self) -> EgressPolicy {
        self.egress
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// The `sinks` supervisor, as a child of the Core's root.
    pub fn child_spec(&self) -> ChildSpec {
        self.children.child_spec()
    }

    /// Replaces a function's sinks (none: stops them; results still queued are dropped).
    pub fn set(&self, module: &str, name: &str, sinks: Vec<Sink>) {
        let key = (module.to_string(), name.to_string());
        let prefix = format!("{module}.{name}.");
        self.children.remove(&prefix);
        let mut started = Vec::with_capacity(sinks.len());
        let (policy, http) = self
            .egress
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (i, sink) in sinks.into_iter().enumerate() {
            let queue = Arc::new(Queue::new(self.core_bytes.clone()));
            let counters = Arc::new(Counters::default());
            let job = {
                let (http, sink, queue, counters, policy) = (
                    http.clone(),
                    sink.clone(),
                    queue.clone(),
                    counters.clone(),
                    policy.clone(),
                );
                move || {
                    let (http, sink, queue, counters, policy) = (
                        http.clone(),
                        sink.clone(),
                        queue.clone(),
                        counters.clone(),
                        policy.clone(),
                    );
                    async move {
                        deliver(http, policy, sink, queue, counters).await;
                        Ok(())
                    }
                }
            };
            self.children.put(service(
                format!("{prefix}{i}"),
                format!("{} sink {}", sink.kind, sink.url),
                job,
            ));
            started.push(Running {
                sink,
                queue,
                counters,
            });
        }
        let mut running = self.running.write().unwrap_or_else(|p| p.into_inner());
        if started.is_empty() {
            running.remove(&key);
        } else {
            running.insert(key, started);
        }
    }

    /// Stops a function's sinks.
    pub fn remove(&self, module: &str, name: &str) {
        self.set(module, name, Vec::new());
    }

    /// Stops the sinks of every function of a module.
    pub fn remove_module(&self, module: &str) {
        self.children.remove(&format!("{module}."));
        let mut running = self.running.write().unwrap_or_else(|p| p.into_inner());
        running.retain(|(m, _), _| m != module);
    }

    /// Queues a result for the function's sinks, if it has any (never waits).
    pub fn send(&self, module: &str, name: &str, output_json: &str) {
        let running = self.running.read().unwrap_or_else(|p| p.into_inner());
        // Most functions have no sinks: skip building the key.
        if running.is_empty() {
            return;
        }
        let Some(list) = running.get(&(module.to_string(), name.to_string())) else {
            return;
        };
        for sink in list {
            match sink.queue.push(output_json) {
                Ok(()) => {
                    sink.counters.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(full) => {
                    sink.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    let reason = full.reason();
                    tracing::warn!(sink = %sink.sink.url, %reason, "sink result dropped");
                    *sink
                        .counters
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(reason);
                }
            }
        }
    }

    /// The state of a function's sinks.
    pub fn info(&self, module: &str, name: &str) -> Vec<SinkInfo> {
        let running = self.running.read().unwrap_or_else(|p| p.into_inner());
        running
            .get(&(module.to_string(), name.to_string()))
            .map(|list| {
                list.iter()
                    .map(|r| {
                        let c = &r.counters;
                        let delivered = c.delivered.load(Ordering::Relaxed);
                        let refused = c.refused.load(Ordering::Relaxed);
                        SinkInfo {
                            kind: r.sink.kind.to_string(),
                            url: r.sink.url.clone(),
                            delivered,
                            pending: c
                                .queued
                                .load(Ordering::Relaxed)
                                .saturating_sub(delivered + refused),
                            failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
                            dropped: refused + c.dropped.load(Ordering::Relaxed),
                            last_error: c
                                .last_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .clone(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Totals over every sink.
    pub fn totals(&self) -> Totals {
        let running = self.running.read().unwrap_or_else(|p| p.into_inner());
        let start = Totals {
            queued_bytes: self.core_bytes.load(Ordering::Relaxed) as u64,
            ..Totals::default()
        };
        running.values().flatten().fold(start, |mut t, r| {
            let c = &r.counters;
            t.delivered += c.delivered.load(Ordering::Relaxed);
            t.failed_attempts += c.failed_attempts.load(Ordering::Relaxed);
            t.dropped += c.refused.load(Ordering::Relaxed) + c.dropped.load(Ordering::Relaxed);
            t
        })
    }
}

/// Posts each queued result in order, retrying each until the sink takes it; a result leaves
/// the queue only then. Runs until its actor stops.
async fn deliver(
    http: reqwest::Client,
    policy: EgressPolicy,
    sink: Sink,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
) {
    loop {
        let document = queue.front().await;
        let mut backoff = BACKOFF_START;
        loop {
            // Address literals do not go through the resolver: check them here.
            if let Err(e) = check_url(&policy, &sink.url) {
                counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                *counters
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            let mut request = http
                .post(&sink.url)
                .header("content-type", "application/json")
                .body(document.clone());
            if let Some((user, password)) = &sink.credentials {
                request = request.basic_auth(user, Some(password));
            }
            let error = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    queue.pop();
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    *counters
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = None;
                    break;
                }
                Ok(response) => {
                    let status = response.status();
                    let permanent = status.is_client_error()
                        && status != reqwest::StatusCode::REQUEST_TIMEOUT
                        && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
                    if permanent {
                        queue.pop();
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        let why = format!("{} refused a result: {status}", sink.url);
                        tracing::warn!(%why, "sink refused a result; skipped");
                        *counters
                            .last_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(why);
                        break;
                    }
                    format!("answered {status}")
                }
                Err(e) => delivery_error(&e),
            };
            counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(sink = %sink.url, %error, retry_in = ?backoff, "sink delivery failed");
            *counters
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(error);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Checks a sink's URL against the egress policy (its host, when an address is written).
pub fn check_url(policy: &EgressPolicy, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    policy.check_host(host).map_err(|e| e.to_string())
}

/// What a user learns of a failed delivery: the policy's refusal, or only that the sink could
/// not be reached (refused, reset, timed out and unresolved alike).
fn delivery_error(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if let Some(refusal) = error.downcast_ref::<crate::egress::EgressError>() {
            return refusal.to_string();
        }
        source = error.source();
    }
    "cannot reach the sink".into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_funless_sinks_and_names_what_is_wrong() {
        let sinks = json!([
            {"type": "couchdb", "params": {"url": "http://127.0.0.1:5984/results", "username": "u", "password": "p"}},
            {"type": "webhook", "params": {"url": "https://example.org/hook"}},
        ]);
        let parsed = parse(&sinks).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].credentials, Some(("u".into(), "p".into())));
        let bad = |v: Value| parse(&v).unwrap_err();
        assert!(bad(json!([{"type": "s3", "params": {}}])).contains("unknown sink type"));
        assert!(bad(json!([{"type": "webhook", "params": {}}])).contains("params.url"));
        assert!(
            bad(json!([{"type": "webhook", "params": {"url": "ftp://x/y"}}])).contains("http(s)")
        );
        assert!(
            bad(json!([{"type": "couchdb", "params": {"url": "http://x/db", "username": "u"}}]))
                .contains("together")
        );
    }
}
