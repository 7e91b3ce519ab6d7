//! Records of invocations ("activations"): result or error, timing, worker and logs, kept in
//! the Core's memory for a bounded time, count and size, so a caller of an asynchronous
//! invocation can fetch its outcome and anyone can see what their functions did.
//!
//! Recording is one short lock per invocation (two for an asynchronous one); results are kept
//! as the JSON text the worker sent and parsed only when read. Expiry runs on insert: the
//! oldest records go first when they are older than the time limit or the bounds are full.
//! Records do not survive a Core restart, except those of asynchronous invocations, which are
//! also stored (`crate::pending`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use funless_api::types::{ActivationInfo, ActivationStatus, ErrorDetail};

use crate::canary::Route;

/// How much is kept.
#[derive(Debug, Clone, Copy)]
pub struct ActivationLimits {
    /// Records older than this are dropped.
    pub ttl: Duration,
    /// Most records kept.
    pub max_records: usize,
    /// Most bytes of results, errors and logs kept.
    pub max_bytes: usize,
}

impl Default for ActivationLimits {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            max_records: 10_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// How an invocation ended, as recorded.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The function ran and answered.
    Success {
        /// Its output (valid JSON text), shared with the caller's answer rather than copied.
        output_json: std::sync::Arc<String>,
    },
    /// The invocation failed.
    Error {
        /// The error message the caller got.
        detail: String,
        /// Its kind (`function_error`, `timeout`, `no_worker`, ...).
        reason: String,
    },
}

/// What is known about an invocation when it ends.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Result or error.
    pub outcome: Outcome,
    /// Worker that ran it, if one did.
    pub worker: Option<String>,
    /// The function's log lines.
    pub logs: Vec<String>,
    /// Time from the Core's start of the invocation to its end.
    pub duration: Duration,
}

#[derive(Debug)]
struct Record {
    owner: i64,
    module: String,
    function: String,
    /// The version it runs, and the side of a canary's split it took.
    route: Route,
    started_at_ms: u64,
    created: Instant,
    finished: Option<Finished>,
    bytes: usize,
}

impl Record {
    fn info(&self, id: &str) -> ActivationInfo {
        let mut info = ActivationInfo {
            activation_id: id.to_string(),
            module: crate::store::shown_module(&self.module).to_string(),
            function: self.function.clone(),
            status: ActivationStatus::Running,
            started_at_ms: self.started_at_ms,
            duration_ms: None,
            worker: None,
            result: None,
            error: None,
            logs: Vec::new(),
            version: u64::try_from(self.route.version).ok(),
            track: self.route.track().map(|t| t.as_str().to_string()),
        };
        if let Some(done) = &self.finished {
            info.duration_ms = Some(done.duration.as_secs_f64() * 1000.0);
            info.worker = done.worker.clone();
            info.logs = done.logs.clone();
            match &done.outcome {
                Outcome::Success { output_json } => {
                    info.status = ActivationStatus::Success;
                    info.result = serde_json::from_str(output_json).ok();
                }
                Outcome::Error { detail, reason } => {
                    info.status = ActivationStatus::Error;
                    info.error = Some(ErrorDetail {
                        detail: detail.clone(),
                        reason: Some(reason.clone()),
                    });
                }
            }
        }
        info
    }
}

/// The record of an invocation that ended with `finished`, as an answer shows it, whether or
/// not it is still kept here (an asynchronous invocation's is also stored: `crate::pending`).
pub fn record_info(
    id: &str,
    module: &str,
    function: &str,
    route: Route,
    started_at_ms: u64,
    finished: Finished,
) -> ActivationInfo {
    Record {
        owner: 0,
        module: module.to_string(),
        function: function.to_string(),
        route,
        started_at_ms,
        created: Instant::now(),
        bytes: 0,
        finished: Some(finished),
    }
    .info(id)
}

fn size(finished: &Finished) -> usize {
    let outcome = match &finished.outcome {
        Outcome::Success { output_json } => output_json.len(),
        Outcome::Error { detail, reason } => detail.len() + reason.len(),
    };
    outcome + finished.logs.iter().map(|l| l.len() + 16).sum::<usize>() + 128
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<String, Record>,
    /// Ids oldest first.
    order: VecDeque<String>,
    bytes: usize,
}

/// The activation records of one Core.
#[derive(Debug)]
pub struct Activations {
    limits: ActivationLimits,
    state: Mutex<State>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A new activation id: 128 random bits, hex.
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Activations {
    /// Empty records with these bounds.
    pub fn new(limits: ActivationLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, state: &mut State, id: String, record: Record) {
        state.bytes += record.bytes;
        state.order.push_back(id.clone());
        state.records.insert(id, record);
        self.expire(state);
    }

    /// Drops the oldest records while they are too old or the bounds are exceeded.
    fn expire(&self, state: &mut State) {
        while let Some(oldest) = state.order.front() {
            let over = state.records.len() > self.limits.max_records
                || state.bytes > self.limits.max_bytes;
            let too_old = state
                .records
                .get(oldest)
                .is_none_or(|r| r.created.elapsed() > self.limits.ttl);
            if !over && !too_old {
                break;
            }
            if let Some(id) = state.order.pop_front()
                && let Some(record) = state.records.remove(&id)
            {
                state.bytes -= record.bytes;
            }
        }
    }

    /// How much is kept.
    pub fn limits(&self) -> ActivationLimits {
        self.limits
    }

    /// Records an invocation that is starting (asynchronous invocations); returns its id.
    pub fn start(&self, owner: i64, module: &str, function: &str, route: Route) -> String {
        let id = new_id();
        self.start_as(id.clone(), owner, module, function, route);
        id
    }

    /// As [`Activations::start`], with an id made by [`new_id`] (one already stored).
    pub fn start_as(&self, id: String, owner: i64, module: &str, function: &str, route: Route) {
        let record = Record {
            owner,
            module: module.to_string(),
            function: function.to_string(),
            route,
            started_at_ms: now_ms(),
            created: Instant::now(),
            finished: None,
            bytes: 128,
        };
        self.insert(&mut self.lock(), id, record);
    }

    /// Completes a started record (a no-op when it has expired meanwhile).
    pub fn finish(&self, id: &str, finished: Finished) {
        let mut state = self.lock();
        let state = &mut *state;
        if let Some(record) = state.records.get_mut(id) {
            let bytes = size(&finished);
            state.bytes = state.bytes - record.bytes + bytes;
            record.bytes = bytes;
            record.finished = Some(finished);
        }
        self.expire(state);
    }

    /// Records a finished (synchronous) invocation in one step; returns its id.
    pub fn record(
        &self,
        owner: i64,
        module: &str,
        function: &str,
        route: Route,
        finished: Finished,
    ) -> String {
        let id = new_id();
        let started_at_ms = now_ms().saturating_sub(finished.duration.as_millis() as u64);
        let record = Record {
            owner,
            module: module.to_string(),
            function: function.to_string(),
            route,
            started_at_ms,
            created: Instant::now(),
            bytes: size(&finished),
            finished: Some(finished),
        };
        self.insert(&mut self.lock(), id.clone(), record);
        id
    }

    /// One record, if it exists, has not expired and `owner` (or an admin) may see it.
    pub fn get(&self, owner: i64, admin: bool, id: &str) -> Option<ActivationInfo> {
        let state = self.lock();
        let record = state.records.get(id)?;
        let visible =
            (admin || record.owner == owner) && record.created.elapsed() <= self.limits.ttl;
        visible.then(|| record.info(id))
    }

    /// The newest records of a function that `owner` (or an admin) may see, newest first.
    pub fn list(
        &self,
        owner: i64,
        admin: bool,
        module: &str,
        function: &str,
        limit: usize,
    ) -> Vec<ActivationInfo> {
        let state = self.lock();
        state
            .order
            .iter()
            .rev()
            .filter_map(|id| state.records.get(id).map(|r| (id, r)))
            .filter(|(_, r)| {
                (admin || r.owner == owner)
                    && r.module == module
                    && r.function == function
                    && r.created.elapsed() <= self.limits.ttl
            })
            .take(limit)
            .map(|(id, r)| r.info(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ok(output: &str, logs: &[&str]) -> Finished {
        Finished {
            outcome: Outcome::Success {
                output_json: std::sync::Arc::new(output.into()),
            },
            worker: Some("w1".into()),
            logs: logs.iter().map(|l| l.to_string()).collect(),
            duration: Duration::from_millis(3),
        }
    }

    #[test]
    fn records_are_seen_by_their_owner_and_admins_only() {
        let a = Activations::new(ActivationLimits::default());
        let id = a.record(1, "_", "f", Route::plain(1), ok(r#"{"x":1}"#, &["hello"]));
        let info = a.get(1, false, &id).unwrap();
        assert_eq!(info.status, ActivationStatus::Success);
        assert_eq!(info.result, Some(serde_json::json!({"x": 1})));
        assert_eq!(info.logs, vec!["hello".to_string()]);
        assert_eq!(info.worker.as_deref(), Some("w1"));
        assert_eq!((info.version, info.track), (Some(1), None));
        assert!(a.get(2, false, &id).is_none());
        assert!(a.get(2, true, &id).is_some());
        assert!(a.get(1, false, "nope").is_none());
    }

    #[test]
    fn started_records_run_until_finished() {
        let a = Activations::new(ActivationLimits::default());
        let canary = Route {
            version: 4,
            split: Some((crate::canary::Track::Canary, 9)),
        };
        let id = a.start(1, "_", "f", canary);
        let running = a.get(1, false, &id).unwrap();
        assert_eq!(running.status, ActivationStatus::Running);
        assert_eq!(
            (running.version, running.track.as_deref()),
            (Some(4), Some("canary")),
            "a running record already says which version it runs"
        );
        a.finish(
            &id,
            Finished {
                outcome: Outcome::Error {
                    detail: "boom".into(),
                    reason: "function_error".into(),
                },
                worker: None,
                logs: vec![],
                duration: Duration::from_millis(1),
            },
        );
        let info = a.get(1, false, &id).unwrap();
        assert_eq!(info.status, ActivationStatus::Error);
        assert_eq!(
            info.error.unwrap().reason.as_deref(),
            Some("function_error")
        );
    }

    #[test]
    fn bounds_drop_the_oldest_and_the_byte_total_stays_right() {
        let a = Activations::new(ActivationLimits {
            ttl: Duration::from_secs(60),
            max_records: 5,
            max_bytes: 10_000,
        });
        let ids: Vec<_> = (0..8)
            .map(|_| a.record(1, "_", "f", Route::plain(1), ok("1", &[])))
            .collect();
        assert!(a.get(1, false, &ids[0]).is_none());
        assert!(a.get(1, false, &ids[7]).is_some());
        assert_eq!(a.list(1, false, "_", "f", 100).len(), 5);
        assert_eq!(a.list(1, false, "_", "f", 100)[0].activation_id, ids[7]);
        // A big record pushes out older ones to stay under the byte bound.
        let big = "x".repeat(9_000);
        a.record(1, "_", "f", Route::plain(1), ok(&format!("\"{big}\""), &[]));
        let state = a.lock();
        let sum: usize = state.records.values().map(|r| r.bytes).sum();
        assert_eq!(state.bytes, sum);
        assert!(state.bytes <= 10_000);
    }

    #[test]
    fn expired_records_are_gone() {
        let a = Activations::new(ActivationLimits {
            ttl: Duration::from_millis(20),
            ..ActivationLimits::default()
        });
        let id = a.record(1, "_", "f", Route::plain(1), ok("1", &[]));
        std::thread::sleep(Duration::from_millis(40));
        assert!(a.get(1, false, &id).is_none());
        a.record(1, "_", "f", Route::plain(1), ok("2", &[]));
        assert_eq!(a.lock().records.len(), 1);
    }
}
