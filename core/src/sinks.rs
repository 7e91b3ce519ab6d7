//! Data sinks: where a function's results go after each successful invocation (FunLess's
//! `sinks` field: `[{"type": "couchdb", "params": {"url", "username", "password"}}]`, plus a
//! generic `webhook`).
//!
//! Delivery never blocks an invocation on a sink: the result is written to the store (one row
//! per sink, `store/sink_deliveries.rs`) and queued (bounded: [`QUEUE`] results and
//! [`QUEUE_BYTES`] per sink, and [`CORE_QUEUE_BYTES`] over every sink of the Core, beyond
//! which results are dropped, counted and the reason shown as the sink's `last_error`), and a
//! deliverer per sink POSTs the queued results in order. A failed delivery is retried with
//! exponential backoff (200 ms doubling to 30 s) until it succeeds, so a sink that is down
//! receives everything once it is back; a sink answering 4xx other than 408/429 refuses the
//! document, which is counted and skipped.
//!
//! Each deliverer is a supervised actor (a child of the Core's `sinks` supervisor). The queue
//! is not its state but shared with it, and a result leaves the queue only once delivered
//! (or refused): a deliverer that crashes mid-delivery is restarted and sends that result
//! again. A result's row goes once it left the queue; while it waits, the `sink-keeper` child
//! ([`keeper`]) keeps the row's heartbeat, and a Core that dies leaves rows whose heartbeat
//! stops, which a live Core (another one sharing PostgreSQL, or the same one restarted) takes
//! over and delivers. So a queued result is delivered at least once: it may arrive twice
//! (a Core that died after delivering it, before deleting its row), never zero times, unless
//! a bound dropped it or its sink was removed.
//!
//! Sinks reach only what the Core's [`EgressPolicy`] allows, checked on every delivery (after
//! DNS resolution, see `egress.rs`); a failed delivery's error says only that the sink could
//! not be reached, never why (which would tell a user whether a port answers).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use funless_actors::supervisor::{ChildSpec, service};
use funless_api::types::SinkInfo;
use serde_json::Value;

use crate::children::DynamicChildren;
use crate::egress::EgressPolicy;
use crate::store::{SinkDeliveryRow, SinkTarget, Store};

pub mod keeper;
mod queue;
use queue::{Finished, Queue, Queued};

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

/// A function's sinks as they run, in the function's order.
type Running = Arc<[RunningSink]>;

struct RunningSink {
    sink: Sink,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
}

impl RunningSink {
    /// Queues a result, or counts it dropped; answers whether it was queued.
    fn push(&self, queued: Queued) -> bool {
        match self.queue.push(queued) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(full) => {
                self.dropped(full);
                false
            }
        }
    }

    fn dropped(&self, full: queue::Full) {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        let reason = full.reason();
        tracing::warn!(sink = %self.sink.url, %reason, "sink result dropped");
        *self
            .counters
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }
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
    running: RwLock<HashMap<(String, String), Running>>,
    children: Arc<DynamicChildren>,
    /// Where queued results are kept until delivered, and this Core's name on their rows.
    store: Store,
    core: String,
    /// Rows whose results left their queue, for the keeper to delete.
    finished: Arc<Finished>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sinks")
    }
}

/// Whether a result taken over from the store was queued (see [`Sinks::adopt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// Queued for its sink.
    Queued,
    /// Over a queue bound: dropped, and counted.
    Dropped,
    /// The function has no such sink running here.
    NoSink,
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
    /// No sinks yet; queued results are kept in `store`, under this Core's name `core`.
    pub fn new(store: Store, core: String) -> Self {
        let policy = EgressPolicy::default();
        Self {
            egress: RwLock::new((policy.clone(), http_client(&policy))),
            core_bytes: Arc::default(),
            running: RwLock::default(),
            children: DynamicChildren::new(
                "sinks",
                "sink deliverers: one actor per function sink, draining its queue in order",
            ),
            store,
            core,
            finished: Arc::default(),
        }
    }

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
            let queue = Arc::new(Queue::new(self.core_bytes.clone(), self.finished.clone()));
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
            started.push(RunningSink {
                sink,
                queue,
                counters,
            });
        }
        let mut running = self.running.write().unwrap_or_else(|p| p.into_inner());
        if started.is_empty() {
            running.remove(&key);
        } else {
            running.insert(key, started.into());
        }
    }

    /// As [`Sinks::set`], unless the function's sinks already are exactly these (then they
    /// go on undisturbed, their queues and counts kept).
    pub fn ensure(&self, module: &str, name: &str, sinks: Vec<Sink>) {
        let same = self
            .running_of(module, name)
            .map_or(sinks.is_empty(), |running| {
                running.len() == sinks.len()
                    && running.iter().zip(&sinks).all(|(r, s)| &r.sink == s)
            });
        if !same {
            self.set(module, name, sinks);
        }
    }

    /// The functions (module, name) that have sinks.
    pub fn functions(&self) -> Vec<(String, String)> {
        let running = self.running.read().unwrap_or_else(|p| p.into_inner());
        running.keys().cloned().collect()
    }

    fn running_of(&self, module: &str, name: &str) -> Option<Running> {
        let running = self.running.read().unwrap_or_else(|p| p.into_inner());
        // Most functions have no sinks: skip building the key.
        if running.is_empty() {
            return None;
        }
        running
            .get(&(module.to_string(), name.to_string()))
            .cloned()
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

    /// Queues a result for the function's sinks, if it has any, after writing it to the
    /// store (one row per sink) so that it outlives this Core; a store that is away leaves it
    /// queued in memory only, which is logged. Never waits for a sink.
    pub async fn send(&self, module: &str, name: &str, output_json: &str) {
        let Some(list) = self.running_of(module, name) else {
            return;
        };
        let document = bytes::Bytes::copy_from_slice(output_json.as_bytes());
        // Results over a bound are dropped before they are written.
        let mut room = Vec::with_capacity(list.len());
        for (position, sink) in list.iter().enumerate() {
            match sink.queue.has_room(document.len()) {
                Ok(()) => room.push(position),
                Err(full) => sink.dropped(full),
            }
        }
        if room.is_empty() {
            return;
        }
        let targets: Vec<SinkTarget> = room
            .iter()
            .map(|&position| SinkTarget {
                position,
                kind: list[position].sink.kind,
                url: &list[position].sink.url,
            })
            .collect();
        let now = crate::store::now_ms();
        let stored = self
            .store
            .insert_sink_deliveries(&self.core, module, name, &targets, output_json, now)
            .await;
        let ids = match stored {
            Ok(ids) => ids.into_iter().map(Some).collect(),
            Err(e) => {
                tracing::warn!(function = %format!("{module}/{name}"), error = %e, "cannot store a result for the function's sinks: it waits in this Core's memory only");
                vec![None; room.len()]
            }
        };
        for (position, id) in room.into_iter().zip(ids) {
            list[position].push(Queued {
                id,
                document: document.clone(),
            });
        }
    }

    /// Queues a result taken over from the store (queued by a Core that stopped) for the
    /// function's sink at its position, if one of the same kind and URL runs here.
    pub fn adopt(&self, row: &SinkDeliveryRow) -> Adopted {
        let sink = self
            .running_of(&row.module, &row.function)
            .and_then(|list| {
                let position = usize::try_from(row.position).ok()?;
                list.get(position)
                    .filter(|r| r.sink.kind == row.kind && r.sink.url == row.url)
                    .map(|_| (list.clone(), position))
            });
        let Some((list, position)) = sink else {
            return Adopted::NoSink;
        };
        let queued = Queued {
            id: Some(row.id),
            document: bytes::Bytes::from(row.document.clone()),
        };
        if list[position].push(queued) {
            Adopted::Queued
        } else {
            Adopted::Dropped
        }
    }

    /// Records that the stored result `id` is done with (delivered elsewhere, or its sink is
    /// gone), for the keeper to delete.
    pub fn forget_stored(&self, id: i64) {
        self.finished.add(id);
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
        running
            .values()
            .flat_map(|list| list.iter())
            .fold(start, |mut t, r| {
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
