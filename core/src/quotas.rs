//! Per-subject quotas: how many modules, functions, sinks, event connectors and long-running
//! services a subject may have, how many bytes of function code it may store, and how many of its invocations may be
//! in flight on the Core at once. Without them one user token could fill the store, start
//! unbounded connectors and sink queues, or hold every invocation the Core can carry.
//!
//! A create or upload past a quota is refused with 429 and a message naming the quota, its
//! limit and what to do, before anything is stored or sent to a worker. Store quotas are
//! checked against the store itself (so they hold across restarts) while the subject holds its
//! turn (`Quotas::turn`): a subject's quota-checked writes run one at a time on the Core, so two
//! concurrent creates cannot both take the last slot. Invocations take an `InvocationSlot`,
//! a counter per subject (an atomic in a sharded map: no lock shared by every caller), given
//! back when the slot is dropped, on every path. A limit of 0 means unlimited; the admin
//! subject is never limited (it is the operator).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use funless_api::{ApiError, ApiResult, Subject};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::metrics::Metrics;
use crate::store::OwnedFunction;

/// Default most modules of one subject (its own default module `_` not counted).
pub const DEFAULT_MODULES: u64 = 100;
/// Default most functions of one subject.
pub const DEFAULT_FUNCTIONS: u64 = 1000;
/// Default most sinks over one subject's functions.
pub const DEFAULT_SINKS: u64 = 100;
/// Default most event connectors over one subject's functions.
pub const DEFAULT_CONNECTORS: u64 = 100;
/// Default most bytes of function code one subject stores (1 GiB).
pub const DEFAULT_STORED_BYTES: u64 = 1 << 30;
/// Default most invocations of one subject in flight on the Core at once.
pub const DEFAULT_CONCURRENT_INVOCATIONS: u64 = 256;
/// Default most long-running services of one subject.
pub const DEFAULT_SERVICES: u64 = 100;

/// Flags of the quotas, flattened into the Core's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct QuotaArgs {
    /// Most modules one subject may have (its own default module `_` not counted); 0:
    /// unlimited. Past it a create is refused with 429. The admin is not limited.
    #[arg(long, env = "FUNLESS_QUOTA_MODULES", default_value_t = DEFAULT_MODULES)]
    pub quota_modules: u64,
    /// Most functions one subject may have over all its modules; 0: unlimited.
    #[arg(long, env = "FUNLESS_QUOTA_FUNCTIONS", default_value_t = DEFAULT_FUNCTIONS)]
    pub quota_functions: u64,
    /// Most sinks (`sinks` entries) over all of one subject's functions; 0: unlimited.
    #[arg(long, env = "FUNLESS_QUOTA_SINKS", default_value_t = DEFAULT_SINKS)]
    pub quota_sinks: u64,
    /// Most event connectors (`events` entries: MQTT, NATS, cron) over all of one subject's
    /// functions; 0: unlimited.
    #[arg(long, env = "FUNLESS_QUOTA_CONNECTORS", default_value_t = DEFAULT_CONNECTORS)]
    pub quota_connectors: u64,
    /// Most bytes of function code one subject may store (the sum of its functions' sizes; an
    /// update counts its new size less the old); 0: unlimited.
    #[arg(long, env = "FUNLESS_QUOTA_STORED_BYTES", default_value_t = DEFAULT_STORED_BYTES)]
    pub quota_stored_bytes: u64,
    /// Most invocations (synchronous and asynchronous) of one subject in flight on the Core
    /// at once; past it a call is refused with 429; 0: unlimited.
    #[arg(long, env = "FUNLESS_QUOTA_CONCURRENT_INVOCATIONS", default_value_t = DEFAULT_CONCURRENT_INVOCATIONS)]
    pub quota_concurrent_invocations: u64,
    /// Most long-running services (`/v1/svc`) one subject may have; 0: unlimited.
    #[arg(long, env = "FUNLESS_QUOTA_SERVICES", default_value_t = DEFAULT_SERVICES)]
    pub quota_services: u64,
}

impl QuotaArgs {
    /// The limits these flags set.
    pub fn limits(&self) -> QuotaLimits {
        QuotaLimits {
            modules: self.quota_modules,
            functions: self.quota_functions,
            sinks: self.quota_sinks,
            connectors: self.quota_connectors,
            stored_bytes: self.quota_stored_bytes,
            concurrent_invocations: self.quota_concurrent_invocations,
            services: self.quota_services,
        }
    }
}

/// The limits of every quota (0: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Modules of one subject, its own default module not counted.
    pub modules: u64,
    /// Functions of one subject.
    pub functions: u64,
    /// Sinks over one subject's functions.
    pub sinks: u64,
    /// Event connectors over one subject's functions.
    pub connectors: u64,
    /// Bytes of code one subject stores.
    pub stored_bytes: u64,
    /// Invocations of one subject in flight on the Core at once.
    pub concurrent_invocations: u64,
    /// Long-running services of one subject.
    pub services: u64,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        Self {
            modules: DEFAULT_MODULES,
            functions: DEFAULT_FUNCTIONS,
            sinks: DEFAULT_SINKS,
            connectors: DEFAULT_CONNECTORS,
            stored_bytes: DEFAULT_STORED_BYTES,
            concurrent_invocations: DEFAULT_CONCURRENT_INVOCATIONS,
            services: DEFAULT_SERVICES,
        }
    }
}

impl QuotaLimits {
    /// No quota at all.
    pub fn unlimited() -> Self {
        Self {
            modules: 0,
            functions: 0,
            sinks: 0,
            connectors: 0,
            stored_bytes: 0,
            concurrent_invocations: 0,
            services: 0,
        }
    }

    /// Whether any quota on functions (count, bytes, sinks, connectors) is set.
    fn limits_functions(&self) -> bool {
        self.functions > 0 || self.stored_bytes > 0 || self.sinks > 0 || self.connectors > 0
    }
}

/// The quota a refusal names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quota {
    Modules,
    Functions,
    StoredBytes,
    Sinks,
    Connectors,
    ConcurrentInvocations,
    Services,
}

impl Quota {
    /// The label of its refusals in the metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Quota::Modules => "modules",
            Quota::Functions => "functions",
            Quota::StoredBytes => "stored_bytes",
            Quota::Sinks => "sinks",
            Quota::Connectors => "connectors",
            Quota::ConcurrentInvocations => "concurrent_invocations",
            Quota::Services => "services",
        }
    }

    /// The setting that sets it.
    fn setting(self) -> &'static str {
        match self {
            Quota::Modules => "quota-modules",
            Quota::Functions => "quota-functions",
            Quota::StoredBytes => "quota-stored-bytes",
            Quota::Sinks => "quota-sinks",
            Quota::Connectors => "quota-connectors",
            Quota::ConcurrentInvocations => "quota-concurrent-invocations",
            Quota::Services => "quota-services",
        }
    }
}

/// What one function holds against the quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Footprint {
    /// Bytes of code.
    pub(crate) bytes: u64,
    /// Sinks (`sinks` entries).
    pub(crate) sinks: u64,
    /// Event connectors (`events` entries).
    pub(crate) connectors: u64,
}

/// Entries of a FunLess `events` or `sinks` value: a list, one object, or null for none (the
/// shapes [`crate::events::parse_list`] accepts).
fn entries(value: Option<&serde_json::Value>) -> u64 {
    match value {
        Some(serde_json::Value::Array(list)) => list.len() as u64,
        Some(serde_json::Value::Object(_)) => 1,
        _ => 0,
    }
}

/// Entries of a stored `events` or `sinks` text.
fn stored_entries(text: Option<&str>) -> u64 {
    let value = text.and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
    entries(value.as_ref())
}

impl Footprint {
    /// An upload's: its code and its `events` and `sinks` values.
    pub(crate) fn of_upload(
        code: &[u8],
        events: Option<&serde_json::Value>,
        sinks: Option<&serde_json::Value>,
    ) -> Self {
        Self {
            bytes: code.len() as u64,
            sinks: entries(sinks),
            connectors: entries(events),
        }
    }

    /// A stored function's.
    pub(crate) fn of_stored(row: &OwnedFunction) -> Self {
        Self {
            bytes: row.size.max(0) as u64,
            sinks: stored_entries(row.sinks.as_deref()),
            connectors: stored_entries(row.events.as_deref()),
        }
    }
}

/// What a subject's functions hold together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) functions: u64,
    pub(crate) held: Footprint,
}

impl Usage {
    /// The usage of `rows`, less the function `except` (module, name): the one an update
    /// replaces.
    pub(crate) fn of(rows: &[OwnedFunction], except: Option<(&str, &str)>) -> Self {
        let mut usage = Usage::default();
        for row in rows {
            if except.is_some_and(|(module, name)| row.module == module && row.name == name) {
                continue;
            }
            let f = Footprint::of_stored(row);
            usage.functions += 1;
            usage.held.bytes = usage.held.bytes.saturating_add(f.bytes);
            usage.held.sinks += f.sinks;
            usage.held.connectors += f.connectors;
        }
        usage
    }
}

/// The Core's quotas and what counts against them now.
#[derive(Debug)]
pub(crate) struct Quotas {
    limits: QuotaLimits,
    metrics: Metrics,
    /// Subject id → its invocations in flight. An entry stays once made (one per subject
    /// that ever invoked: subjects are few and made by the admin).
    in_flight: DashMap<i64, Arc<AtomicU64>>,
    /// Subject id → its turn for quota-checked writes.
    turns: DashMap<i64, Arc<Mutex<()>>>,
}

/// A subject's turn for a quota-checked write: held from the count to the write, so that no
/// other write of the subject on this Core comes between.
pub(crate) type Turn = Option<OwnedMutexGuard<()>>;

/// One invocation counted against its subject's quota until dropped.
#[derive(Debug)]
pub(crate) struct InvocationSlot(Arc<AtomicU64>);

impl Drop for InvocationSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Quotas {
    pub(crate) fn new(limits: QuotaLimits, metrics: Metrics) -> Self {
        Self {
            limits,
            metrics,
            in_flight: DashMap::new(),
            turns: DashMap::new(),
        }
    }

    /// Whether `who` is held to the module quota.
    pub(crate) fn limits_modules(&self, who: &Subject) -> bool {
        !who.admin && self.limits.modules > 0
    }

    /// Whether `who` is held to any quota on functions.
    pub(crate) fn limits_functions(&self, who: &Subject) -> bool {
        !who.admin && self.limits.limits_functions()
    }

    /// Whether `who` is held to the services quota.
    pub(crate) fn limits_services(&self, who: &Subject) -> bool {
        !who.admin && self.limits.services > 0
    }

    /// Waits for `who`'s turn for a quota-checked write (none needed for the admin or with
    /// no store quota set).
    pub(crate) async fn turn(&self, who: &Subject) -> Turn {
        if !self.limits_modules(who) && !self.limits_functions(who) && !self.limits_services(who) {
            return None;
        }
        let lock = self.turns.entry(who.id).or_default().clone();
        Some(lock.lock_owned().await)
    }

    /// A 429 naming `quota`, counted.
    fn refuse(&self, quota: Quota, message: String) -> ApiError {
        self.metrics.quota_refused(quota.label());
        ApiError::TooManyRequests(format!("quota exceeded ({}): {message}", quota.setting()))
    }

    /// Whether `who`, which has `owned` services, may create one more.
    pub(crate) fn check_service(&self, who: &Subject, owned: u64) -> ApiResult<()> {
        let limit = self.limits.services;
        if self.limits_services(who) && owned.saturating_add(1) > limit {
            return Err(self.refuse(
                Quota::Services,
                format!(
                    "a subject may have at most {limit} services, and this one has {owned}; \
                     delete one first"
                ),
            ));
        }
        Ok(())
    }

    /// Whether `who`, which has `owned` modules, may create one more.
    pub(crate) fn check_module(&self, who: &Subject, owned: u64) -> ApiResult<()> {
        let limit = self.limits.modules;
        if self.limits_modules(who) && owned.saturating_add(1) > limit {
            return Err(self.refuse(
                Quota::Modules,
                format!(
                    "a subject may have at most {limit} modules besides `_`, and this one has \
                     {owned}; delete one first"
                ),
            ));
        }
        Ok(())
    }

    /// Whether `who`, whose other functions hold `others`, may store a function of footprint
    /// `new`, replacing one of footprint `old` (an update) or none (a create). A quota refuses
    /// only what grows past it: an update that does not grow what it holds always passes.
    pub(crate) fn check_function(
        &self,
        who: &Subject,
        others: Usage,
        old: Option<Footprint>,
        new: Footprint,
    ) -> ApiResult<()> {
        if !self.limits_functions(who) {
            return Ok(());
        }
        let limits = &self.limits;
        let before_functions = others.functions + u64::from(old.is_some());
        if old.is_none() && limits.functions > 0 && others.functions + 1 > limits.functions {
            return Err(self.refuse(
                Quota::Functions,
                format!(
                    "a subject may have at most {} functions, and this one has {}; delete one \
                     first",
                    limits.functions, before_functions
                ),
            ));
        }
        let old = old.unwrap_or_default();
        let grows = |limit: u64, others: u64, old: u64, new: u64| {
            let after = others.saturating_add(new);
            (limit > 0 && new > old && after > limit).then_some((others.saturating_add(old), after))
        };
        if let Some((before, after)) =
            grows(limits.stored_bytes, others.held.bytes, old.bytes, new.bytes)
        {
            return Err(self.refuse(
                Quota::StoredBytes,
                format!(
                    "a subject's functions may hold at most {} bytes of code, and this one's \
                     hold {before}; this upload would make it {after}; delete or shrink a \
                     function first",
                    limits.stored_bytes
                ),
            ));
        }
        if let Some((before, after)) = grows(limits.sinks, others.held.sinks, old.sinks, new.sinks)
        {
            return Err(self.refuse(
                Quota::Sinks,
                format!(
                    "a subject may have at most {} sinks over all its functions, and this one \
                     has {before}; this upload would make it {after}; remove one first",
                    limits.sinks
                ),
            ));
        }
        if let Some((before, after)) = grows(
            limits.connectors,
            others.held.connectors,
            old.connectors,
            new.connectors,
        ) {
            return Err(self.refuse(
                Quota::Connectors,
                format!(
                    "a subject may have at most {} event connectors (`events` entries) over \
                     all its functions, and this one has {before}; this upload would make it \
                     {after}; remove one first",
                    limits.connectors
                ),
            ));
        }
        Ok(())
    }

    /// Counts an invocation of `who` until the slot is dropped, or refuses it when the
    /// subject has as many in flight as its quota (`None`: not counted, as for the admin).
    pub(crate) fn invocation(&self, who: &Subject) -> ApiResult<Option<InvocationSlot>> {
        let limit = self.limits.concurrent_invocations;
        if who.admin || limit == 0 {
            return Ok(None);
        }
        // A shard's read lock on the common path; the entry is made once per subject.
        let counter = match self.in_flight.get(&who.id) {
            Some(counter) => counter.clone(),
            None => self.in_flight.entry(who.id).or_default().clone(),
        };
        let taken = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        });
        match taken {
            Ok(_) => Ok(Some(InvocationSlot(counter))),
            Err(_) => Err(self.refuse(
                Quota::ConcurrentInvocations,
                format!(
                    "a subject may have at most {limit} invocations in flight at once; retry \
                     when some finish"
                ),
            )),
        }
    }

    /// Invocations of the subject `id` in flight now.
    #[cfg(test)]
    fn in_flight(&self, id: i64) -> u64 {
        self.in_flight
            .get(&id)
            .map_or(0, |n| n.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;
    use serde_json::json;

    use super::*;

    fn user(id: i64) -> Subject {
        Subject {
            id,
            name: format!("user{id}"),
            admin: false,
        }
    }

    fn admin() -> Subject {
        Subject {
            id: 1,
            name: "admin".into(),
            admin: true,
        }
    }

    fn quotas(limits: QuotaLimits) -> Quotas {
        Quotas::new(limits, Metrics::new())
    }

    fn small() -> QuotaLimits {
        QuotaLimits {
            modules: 2,
            functions: 2,
            sinks: 2,
            connectors: 2,
            stored_bytes: 100,
            concurrent_invocations: 2,
            services: 2,
        }
    }

    #[test]
    fn services_are_counted_for_subjects_only() {
        let q = quotas(small());
        assert!(q.check_service(&user(3), 1).is_ok());
        let refused = q.check_service(&user(3), 2).unwrap_err().to_string();
        assert!(
            refused.contains("quota exceeded (quota-services)")
                && refused.contains("at most 2 services"),
            "{refused}"
        );
        assert!(q.check_service(&admin(), 100).is_ok());
        let unlimited = quotas(QuotaLimits::unlimited());
        assert!(unlimited.check_service(&user(3), 10_000).is_ok());
    }

    fn row(
        module: &str,
        name: &str,
        size: i64,
        events: Option<&str>,
        sinks: Option<&str>,
    ) -> OwnedFunction {
        OwnedFunction {
            module: module.into(),
            name: name.into(),
            size,
            events: events.map(str::to_string),
            sinks: sinks.map(str::to_string),
        }
    }

    fn status(result: ApiResult<()>) -> u16 {
        match result {
            Ok(()) => 200,
            Err(e) => e.status().as_u16(),
        }
    }

    #[derive(Debug, Parser)]
    struct Args {
        #[command(flatten)]
        quotas: QuotaArgs,
    }

    #[test]
    fn flags_default_to_the_documented_limits() {
        let args = Args::try_parse_from(["core"]).unwrap();
        assert_eq!(args.quotas.limits(), QuotaLimits::default());
        let args =
            Args::try_parse_from(["core", "--quota-modules", "0", "--quota-stored-bytes", "5"])
                .unwrap();
        let limits = args.quotas.limits();
        assert_eq!((limits.modules, limits.stored_bytes), (0, 5));
    }

    #[test]
    fn entries_are_counted_in_every_shape_funless_accepts() {
        let hook = json!({ "type": "webhook", "params": { "url": "http://example.org/" } });
        assert_eq!(entries(Some(&json!([hook.clone(), hook.clone()]))), 2);
        assert_eq!(entries(Some(&hook)), 1);
        assert_eq!(entries(Some(&json!(null))), 0);
        assert_eq!(entries(None), 0);
        assert_eq!(stored_entries(Some(&json!([hook.clone()]).to_string())), 1);
        assert_eq!(stored_entries(Some("not json")), 0);
    }

    #[test]
    fn usage_sums_the_functions_but_the_replaced_one() {
        let rows = [
            row("m~2", "a", 10, Some(r#"[{"type":"cron"}]"#), None),
            row(
                "m~2",
                "b",
                20,
                None,
                Some(r#"[{"type":"webhook"},{"type":"webhook"}]"#),
            ),
        ];
        let all = Usage::of(&rows, None);
        assert_eq!(all.functions, 2);
        assert_eq!(
            all.held,
            Footprint {
                bytes: 30,
                sinks: 2,
                connectors: 1
            }
        );
        let but_b = Usage::of(&rows, Some(("m~2", "b")));
        assert_eq!(
            (but_b.functions, but_b.held.bytes, but_b.held.sinks),
            (1, 10, 0)
        );
    }

    #[test]
    fn modules_past_the_limit_are_429_naming_the_quota() {
        let q = quotas(small());
        assert!(q.check_module(&user(2), 1).is_ok());
        let err = q.check_module(&user(2), 2).unwrap_err();
        assert_eq!(err.status().as_u16(), 429);
        let text = err.to_string();
        assert!(
            text.contains("quota-modules") && text.contains("at most 2"),
            "{text}"
        );
        assert!(text.contains("delete one first"), "{text}");
        // The admin and an unlimited quota are not held.
        assert!(q.check_module(&admin(), 1000).is_ok());
        assert!(
            quotas(QuotaLimits::unlimited())
                .check_module(&user(2), 1000)
                .is_ok()
        );
        let text = q.metrics.encode();
        assert!(
            text.contains(r#"funless_quota_refusals_total{quota="modules"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn functions_refuse_only_what_grows_past_a_limit() {
        let q = quotas(small());
        let who = user(2);
        let small_fn = Footprint {
            bytes: 10,
            sinks: 1,
            connectors: 1,
        };
        let one = Usage {
            functions: 1,
            held: small_fn,
        };
        // One more fits; a third function does not.
        assert_eq!(status(q.check_function(&who, one, None, small_fn)), 200);
        let two = Usage {
            functions: 2,
            held: Footprint {
                bytes: 20,
                sinks: 2,
                connectors: 2,
            },
        };
        let err = q
            .check_function(&who, two, None, Footprint::default())
            .unwrap_err();
        assert!(err.to_string().contains("quota-functions"), "{err}");
        // Bytes: 10 held elsewhere + 91 is past 100; an update from 90 to 91 too, but an
        // update that shrinks (or keeps) its size passes even when over.
        let big = Footprint {
            bytes: 91,
            ..Footprint::default()
        };
        let err = q.check_function(&who, one, None, big).unwrap_err();
        assert!(
            err.to_string().contains("quota-stored-bytes")
                && err.to_string().contains("would make it 101"),
            "{err}"
        );
        let ninety = Footprint {
            bytes: 90,
            ..Footprint::default()
        };
        assert_eq!(status(q.check_function(&who, one, Some(ninety), big)), 429);
        assert_eq!(status(q.check_function(&who, one, Some(big), ninety)), 200);
        let over = Usage {
            functions: 1,
            held: Footprint {
                bytes: 500,
                ..Footprint::default()
            },
        };
        assert_eq!(
            status(q.check_function(&who, over, Some(ninety), ninety)),
            200
        );
        // Sinks and connectors: a third is refused, naming its quota.
        let third_sink = Footprint {
            sinks: 2,
            ..Footprint::default()
        };
        let err = q.check_function(&who, one, None, third_sink).unwrap_err();
        assert!(err.to_string().contains("quota-sinks"), "{err}");
        let third_connector = Footprint {
            connectors: 2,
            ..Footprint::default()
        };
        let err = q
            .check_function(&who, one, None, third_connector)
            .unwrap_err();
        assert!(err.to_string().contains("quota-connectors"), "{err}");
        // The admin is not held.
        assert_eq!(status(q.check_function(&admin(), two, None, big)), 200);
    }

    #[test]
    fn invocation_slots_are_given_back_on_drop() {
        let q = quotas(small());
        let who = user(7);
        let first = q.invocation(&who).unwrap();
        let second = q.invocation(&who).unwrap();
        assert!(first.is_some() && second.is_some());
        let err = q.invocation(&who).unwrap_err();
        assert_eq!(err.status().as_u16(), 429);
        assert!(
            err.to_string().contains("quota-concurrent-invocations")
                && err.to_string().contains("retry when some finish"),
            "{err}"
        );
        // Another subject and the admin are not affected.
        assert!(q.invocation(&user(8)).unwrap().is_some());
        assert!(q.invocation(&admin()).unwrap().is_none());
        assert_eq!(q.in_flight(7), 2);
        drop(first);
        assert_eq!(q.in_flight(7), 1);
        let third = q.invocation(&who).unwrap();
        assert!(third.is_some());
        drop((second, third));
        assert_eq!(q.in_flight(7), 0);
    }

    #[test]
    fn concurrent_invocations_never_pass_the_limit() {
        let q = Arc::new(quotas(QuotaLimits {
            concurrent_invocations: 3,
            ..small()
        }));
        let most = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (q, most) = (q.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        if let Ok(slot) = q.invocation(&user(3)) {
                            most.fetch_max(q.in_flight(3), Ordering::AcqRel);
                            drop(slot);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(Ordering::Acquire) <= 3);
        assert_eq!(q.in_flight(3), 0);
    }

    #[tokio::test]
    async fn turns_of_one_subject_come_one_at_a_time() {
        let q = Arc::new(quotas(small()));
        let first = q.turn(&user(4)).await;
        assert!(first.is_some());
        // Another subject is not held up; the same subject waits.
        assert!(q.turn(&user(5)).await.is_some());
        let waiting = {
            let q = q.clone();
            tokio::spawn(async move { q.turn(&user(4)).await.is_some() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(first);
        assert!(waiting.await.unwrap());
        assert!(q.turn(&admin()).await.is_none());
    }
}
