//! Event connectors: functions triggered by MQTT messages, NATS messages or a cron schedule
//! (FunLess's `events` field: `[{"type": "mqtt", "params": {"host", "port", "topic"}}, ...]`).
//!
//! Connectors are defined with the function, stored with it, started when the Core starts and
//! whenever the function is created or updated, and stopped when it is deleted. Each is a
//! supervised actor under the Core's `connectors` supervisor (restarted if it crashes) that
//! reconnects with exponential backoff (100 ms doubling to 30 s) for as long as the function
//! exists; each message starts its own invocation (at most
//! [`MAX_IN_FLIGHT`] at once per connector, so a burst waits at the broker, not in memory).
//! A message that is a JSON object is the invocation's `args`; anything else arrives as
//! `{"payload": <JSON value or string>}`, with the topic or subject alongside.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use funless_actors::supervisor::{ChildSpec, Restart, service};
use funless_api::types::ConnectorInfo;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::children::DynamicChildren;
use crate::egress::EgressPolicy;

/// Most invocations one connector runs at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// First and longest wait between reconnection attempts.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What triggers a function.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Messages on an MQTT topic (filters with `+` and `#` allowed).
    Mqtt {
        /// Broker host.
        host: String,
        /// Broker port.
        port: u16,
        /// Topic filter.
        topic: String,
    },
    /// Messages on a NATS subject (wildcards allowed).
    Nats {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// Subject.
        subject: String,
    },
    /// A cron schedule (six fields with seconds, or the classic five).
    Cron {
        /// The schedule as given.
        schedule: String,
    },
}

impl Trigger {
    /// `mqtt`, `nats` or `cron`.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Mqtt { .. } => "mqtt",
            Trigger::Nats { .. } => "nats",
            Trigger::Cron { .. } => "cron",
        }
    }

    /// A short description for the API and logs.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Mqtt { host, port, topic } => format!("mqtt://{host}:{port} topic {topic}"),
            Trigger::Nats {
                host,
                port,
                subject,
            } => format!("nats://{host}:{port} subject {subject}"),
            Trigger::Cron { schedule } => format!("cron {schedule}"),
        }
    }
}

/// Parses a cron schedule: six fields (with seconds) as is, five fields at second 0.
fn schedule(text: &str) -> Result<cron::Schedule, String> {
    let fields = text.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {text}")
    } else {
        text.to_string()
    };
    cron::Schedule::from_str(&full).map_err(|e| format!("invalid cron schedule {text:?}: {e}"))
}

/// Parses FunLess's `events` value (a list of `{"type", "params"}`, or one such object); the
/// error names the entry and what is wrong with it.
pub fn parse(events: &Value) -> Result<Vec<Trigger>, String> {
    parse_list(events, "events", parse_one)
}

/// FunLess's `events` and `sinks` shape: a list of `{"type", "params"}` (or one such object,
/// or null for none), each parsed by `one`; an error names the field and the entry.
pub fn parse_list<T>(
    value: &Value,
    field: &str,
    one: impl Fn(&Value) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let list = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(list) => list.as_slice(),
        Value::Object(_) => std::slice::from_ref(value),
        _ => {
            return Err(format!(
                "{field} must be a list of {{\"type\", \"params\"}} objects"
            ));
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, entry)| one(entry).map_err(|e| format!("{field}[{i}]: {e}")))
        .collect()
}

fn parse_one(event: &Value) -> Result<Trigger, String> {
    let kind = event["type"].as_str().ok_or("missing \"type\"")?;
    let params = &event["params"];
    let text = |key: &str| -> Result<String, String> {
        match params[key].as_str() {
            Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            _ => Err(format!("{kind} needs params.{key} (a non-empty string)")),
        }
    };
    let port = |default: u16| -> Result<u16, String> {
        match &params["port"] {
            Value::Null => Ok(default),
            Value::Number(n) => n
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("params.port {n} is not a port")),
            Value::String(s) => s
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("params.port {s:?} is not a port")),
            other => Err(format!("params.port {other} is not a port")),
        }
    };
    match kind {
        "mqtt" => Ok(Trigger::Mqtt {
            host: text("host")?,
            port: port(1883)?,
            topic: text("topic")?,
        }),
        "nats" => Ok(Trigger::Nats {
            host: text("host")?,
            port: port(4222)?,
            subject: text("subject")?,
        }),
        "cron" => {
            let text = text("schedule")?;
            schedule(&text)?;
            Ok(Trigger::Cron { schedule: text })
        }
        other => Err(format!(
            "unknown event type {other:?} (supported: mqtt, nats, cron)"
        )),
    }
}

/// The live state of one connector.
#[derive(Debug, Clone, Default)]
struct Status {
    connected: bool,
    last_error: Option<String>,
    messages: u64,
    reconnects: u64,
}

/// What a connector calls for each message: module (stored name), function, JSON args.
pub type Fire = Arc<dyn Fn(String) -> tokio::task::JoinHandle<()> + Send + Sync>;

struct Running {
    trigger: Trigger,
    status: Arc<Mutex<Status>>,
}

/// Every function's connectors: each is a supervised actor (a [`service`] child of the
/// `connectors` supervisor, restarted if it crashes), and its live state is kept here.
pub struct Connectors {
    running: Mutex<HashMap<(String, String), Vec<Running>>>,
    children: Arc<DynamicChildren>,
    /// Where connectors may connect (brokers are resolved and checked on every connection).
    egress: Mutex<EgressPolicy>,
}

impl Default for Connectors {
    fn default() -> Self {
        Self {
            running: Mutex::default(),
            children: DynamicChildren::new(
                "connectors",
                "event connectors: one actor per MQTT/NATS subscription or cron schedule",
            ),
            egress: Mutex::default(),
        }
    }
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connectors")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The child names of a function's connectors start with this (names are `[_a-zA-Z0-9~]`, so
/// the dots cannot be part of one).
fn prefix(module: &str, name: &str) -> String {
    format!("{module}.{name}.")
}

impl Connectors {
    /// The `connectors` supervisor, as a child of the Core's root.
    pub fn child_spec(&self) -> ChildSpec {
        self.children.child_spec()
    }

    /// Applies an egress policy to connectors started from now on (the Core sets it first).
    pub fn set_egress(&self, policy: EgressPolicy) {
        *lock(&self.egress) = policy;
    }

    /// Replaces a function's connectors (none: stops them). `fire` starts one invocation.
    pub fn set(&self, module: &str, name: &str, triggers: Vec<Trigger>, fire: Fire) {
        let policy = lock(&self.egress).clone();
        let key = (module.to_string(), name.to_string());
        let prefix = prefix(module, name);
        self.children.remove(&prefix);
        let mut started = Vec::with_capacity(triggers.len());
        for (i, trigger) in triggers.into_iter().enumerate() {
            let status = Arc::new(Mutex::new(Status::default()));
            let job = {
                let (trigger, status, fire, policy) = (
                    trigger.clone(),
                    status.clone(),
                    fire.clone(),
                    policy.clone(),
                );
                move || {
                    let (trigger, status, fire, policy) = (
                        trigger.clone(),
                        status.clone(),
                        fire.clone(),
                        policy.clone(),
                    );
                    async move {
                        run(trigger, status, fire, policy).await;
                        Ok(())
                    }
                }
            };
            // Transient: a connector that ends by itself (a cron schedule with no further
            // times) is done; one that crashes is restarted.
            self.children.put(
                service(format!("{prefix}{i}"), trigger.describe(), job)
                    .with_restart(Restart::Transient),
            );
            tracing::info!(function = %format!("{module}/{name}"), event = %trigger.describe(), "event connector started");
            started.push(Running { trigger, status });
        }
        let old = {
            let mut running = lock(&self.running);
            if started.is_empty() {
                running.remove(&key)
            } else {
                running.insert(key, started)
            }
        };
        if let Some(old) = old
            && !old.is_empty()
        {
            tracing::info!(function = %format!("{module}/{name}"), count = old.len(), "event connectors replaced or stopped");
        }
    }

    /// As [`Connectors::set`], unless the function's connectors already run exactly these
    /// triggers (then they go on undisturbed, their counts and connections kept).
    pub fn ensure(&self, module: &str, name: &str, triggers: Vec<Trigger>, fire: Fire) {
        let same = lock(&self.running)
            .get(&(module.to_string(), name.to_string()))
            .is_some_and(|running| {
                running.len() == triggers.len()
                    && running.iter().zip(&triggers).all(|(r, t)| &r.trigger == t)
            });
        if !same {
            self.set(module, name, triggers, fire);
        }
    }

    /// The functions (module, name) whose connectors run.
    pub fn functions(&self) -> Vec<(String, String)> {
        lock(&self.running).keys().cloned().collect()
    }

    /// Stops a function's connectors.
    pub fn remove(&self, module: &str, name: &str) {
        self.children.remove(&prefix(module, name));
        lock(&self.running).remove(&(module.to_string(), name.to_string()));
    }

    /// Stops the connectors of every function of a module.
    pub fn remove_module(&self, module: &str) {
        self.children.remove(&format!("{module}."));
        lock(&self.running).retain(|(m, _), _| m != module);
    }

    /// The state of a function's connectors.
    pub fn info(&self, module: &str, name: &str) -> Vec<ConnectorInfo> {
        let running = lock(&self.running);
        running
            .get(&(module.to_string(), name.to_string()))
            .map(|list| {
                list.iter()
                    .map(|r| {
                        let status = lock(&r.status).clone();
                        ConnectorInfo {
                            kind: r.trigger.kind().to_string(),
                            source: r.trigger.describe(),
                            connected: status.connected,
                            last_error: status.last_error,
                            messages: status.messages,
                            reconnects: status.reconnects,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// (connected, total) connectors, for the metrics.
    pub fn counts(&self) -> (usize, usize) {
        let running = lock(&self.running);
        let all = running.values().flatten();
        let total = running.values().map(Vec::len).sum();
        let connected = all.filter(|r| lock(&r.status).connected).count();
        (connected, total)
    }
}

/// Args of a message: a JSON object as is, anything else wrapped.
fn args_of(payload: &[u8], source_key: &str, source: &str) -> String {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(object)) => Value::Object(object).to_string(),
        Ok(other) => json!({ "payload": other, source_key: source }).to_string(),
        Err(_) => json!({
            "payload": String::from_utf8_lossy(payload),
            source_key: source,
        })
        .to_string(),
    }
}

async fn run(trigger: Trigger, status: Arc<Mutex<Status>>, fire: Fire, policy: EgressPolicy) {
    let gate = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let deliver = |args: String| {
        let gate = gate.clone();
        let fire = fire.clone();
        let status = status.clone();
        async move {
            // Waiting here holds back the broker connection, not memory.
            let Ok(permit) = gate.acquire_owned().await else {
                return;
            };
            lock(&status).messages += 1;
            let running = fire(args);
            tokio::spawn(async move {
                let _ = running.await;
                drop(permit);
            });
        }
    };
    match trigger {
        Trigger::Mqtt { host, port, topic } => {
            let broker = checked(&policy, &host, port, &status).await.to_string();
            mqtt(&broker, port, &topic, &status, deliver).await
        }
        Trigger::Nats {
            host,
            port,
            subject,
        } => {
            let server = match checked(&policy, &host, port, &status).await {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            nats(&server, port, &subject, &status, deliver).await
        }
        Trigger::Cron { schedule: text } => cron_loop(&text, &status, deliver).await,
    }
}

/// The address to connect to: `host` resolved, and allowed by the egress policy (retried with
/// backoff until it is). The connection then goes to that address itself, so a name that
/// resolves elsewhere later (DNS rebinding) cannot lead it anywhere unchecked; a connector
/// restarted by its supervisor resolves again.
async fn checked(
    policy: &EgressPolicy,
    host: &str,
    port: u16,
    status: &Mutex<Status>,
) -> std::net::IpAddr {
    let mut backoff = BACKOFF_START;
    loop {
        match policy.resolve(host, port).await {
            Ok(addrs) => {
                if let Some(addr) = addrs.first() {
                    return addr.ip();
                }
            }
            Err(e) => failed(status, e.to_string()),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Checks the brokers of triggers against the egress policy as written (address literals);
/// names are checked when they are resolved.
pub fn check_triggers(policy: &EgressPolicy, triggers: &[Trigger]) -> Result<(), String> {
    for trigger in triggers {
        if let Trigger::Mqtt { host, .. } | Trigger::Nats { host, .. } = trigger {
            policy.check_host(host).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn failed(status: &Mutex<Status>, error: String) {
    let mut status = lock(status);
    if status.connected {
        status.reconnects += 1;
    }
    status.connected = false;
    status.last_error = Some(error);
}

async fn mqtt<D, F>(host: &str, port: u16, topic: &str, status: &Mutex<Status>, deliver: D)
where
    D: Fn(String) -> F,
    F: Future<Output = ()>,
{
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let client_id = format!("funless-{:016x}", rand::random::<u64>());
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_keep_alive(Duration::from_secs(10));
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut events) = AsyncClient::new(options, 64);
    let mut backoff = BACKOFF_START;
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // A clean session forgets subscriptions: subscribe on every connection.
                if let Err(e) = client.subscribe(topic, QoS::AtLeastOnce).await {
                    failed(status, format!("subscribe: {e}"));
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                backoff = BACKOFF_START;
                let mut status = lock(status);
                status.connected = true;
                status.last_error = None;
                tracing::info!(broker = %format!("{host}:{port}"), %topic, "mqtt connector subscribed");
            }
            Ok(Event::Incoming(Packet::Publish(message))) => {
                deliver(args_of(&message.payload, "topic", &message.topic)).await;
            }
            Ok(_) => {}
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(broker = %format!("{host}:{port}"), %error, retry_in = ?backoff, "mqtt connector disconnected");
                failed(status, error);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn nats<D, F>(host: &str, port: u16, subject: &str, status: &Mutex<Status>, deliver: D)
where
    D: Fn(String) -> F,
    F: Future<Output = ()>,
{
    use futures::StreamExt;
    let address = format!("nats://{host}:{port}");
    let mut backoff = BACKOFF_START;
    loop {
        // async-nats reconnects an established client by itself; this loop covers the first
        // connection and a subscription that ends.
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event.to_string());
                }
            });
        let client = match options.connect(address.as_str()).await {
            Ok(client) => client,
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(server = %address, %error, retry_in = ?backoff, "nats connector cannot connect");
                failed(status, error);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let mut subscription = match client.subscribe(subject.to_string()).await {
            Ok(subscription) => subscription,
            Err(e) => {
                failed(status, format!("subscribe: {e}"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_START;
        {
            let mut status = lock(status);
            status.connected = true;
            status.last_error = None;
        }
        tracing::info!(server = %address, %subject, "nats connector connected");
        loop {
            tokio::select! {
                message = subscription.next() => match message {
                    Some(message) => {
                        deliver(args_of(&message.payload, "subject", message.subject.as_str())).await;
                    }
                    None => {
                        failed(status, "the subscription ended".into());
                        break;
                    }
                },
                Some(event) = events.recv() => {
                    let mut status = lock(status);
                    match event.as_str() {
                        "connected" => {
                            status.connected = true;
                            status.last_error = None;
                        }
                        "disconnected" => {
                            status.connected = false;
                            status.reconnects += 1;
                            status.last_error = Some("disconnected; reconnecting".into());
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

async fn cron_loop<D, F>(text: &str, status: &Mutex<Status>, deliver: D)
where
    D: Fn(String) -> F,
    F: Future<Output = ()>,
{
    let schedule = match schedule(text) {
        Ok(schedule) => schedule,
        Err(e) => {
            failed(status, e);
            return;
        }
    };
    lock(status).connected = true;
    for next in schedule.upcoming(chrono::Utc) {
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        deliver(json!({ "scheduled_at_ms": next.timestamp_millis() }).to_string()).await;
    }
    failed(status, "the schedule has no further times".into());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_funless_events_and_names_what_is_wrong() {
        let events = json!([
            {"type": "mqtt", "params": {"host": "127.0.0.1", "port": 1883, "topic": "sensors/+"}},
            {"type": "nats", "params": {"host": "localhost", "subject": "jobs.>"}},
            {"type": "cron", "params": {"schedule": "*/5 * * * *"}},
        ]);
        let parsed = parse(&events).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(
            parsed[1],
            Trigger::Nats {
                host: "localhost".into(),
                port: 4222,
                subject: "jobs.>".into()
            }
        );
        assert!(parse(&Value::Null).unwrap().is_empty());
        let bad = |v: Value| parse(&v).unwrap_err();
        assert!(bad(json!([{"type": "kafka", "params": {}}])).contains("unknown event type"));
        assert!(bad(json!([{"type": "mqtt", "params": {"host": "h"}}])).contains("params.topic"));
        assert!(
            bad(json!([{"type": "mqtt", "params": {"host": "h", "topic": "t", "port": 70000}}]))
                .contains("not a port")
        );
        assert!(bad(json!([{"type": "cron", "params": {"schedule": "often"}}])).contains("cron"));
        assert!(bad(json!("mqtt")).contains("list"));
    }

    #[test]
    fn messages_become_args() {
        assert_eq!(args_of(br#"{"t": 21.5}"#, "topic", "s/1"), r#"{"t":21.5}"#);
        let wrapped: Value = serde_json::from_str(&args_of(b"21.5", "topic", "s/1")).unwrap();
        assert_eq!(wrapped, json!({"payload": 21.5, "topic": "s/1"}));
        let text: Value = serde_json::from_str(&args_of(b"on", "subject", "x")).unwrap();
        assert_eq!(text, json!({"payload": "on", "subject": "x"}));
    }
}
