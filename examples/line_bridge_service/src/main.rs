//! `line_bridge_service`: a long-running service (a WASI 0.2 component, built for
//! `wasm32-wasip2`) that bridges a TCP line source to MQTT. It connects to `SOURCE`
//! (host:port, through `std::net`, i.e. `wasi:sockets`), reads newline-terminated lines and
//! publishes each as one MQTT 3.1.1 message to `TOPIC` on the broker at `BROKER`.
//!
//! Configured by its environment (the service's `env`):
//!
//! - `SOURCE`, `BROKER` (host:port) and `TOPIC` (no wildcards): required; without them it
//!   says so on stderr and exits 1.
//! - `CLIENT_ID`: the MQTT client id; by default `line-bridge-<argv[0]>`, which the worker
//!   sets to `<service>.<replica>`, so replicas get distinct ids (a broker disconnects a client
//!   when another connects with the same id).
//! - `QOS`: 1 (default: each message waits for its PUBACK, and one whose PUBACK never came is
//!   sent again after reconnecting) or 0.
//! - `LOG_EVERY` (default 100): a log line every that many lines forwarded.
//! - `KEEP_ALIVE_S` (default 30): the MQTT keep-alive; a PINGREQ goes out after half of it
//!   without traffic, which also finds a broker connection that died while idle.
//!
//! It logs its connections on stdout and its failures on stderr. A lost connection (either
//! side) is opened again after a back-off that doubles from 250 ms up to 10 s and starts over
//! once the connection works (the broker accepted the session, the source sent a line). While
//! the broker is away the source is not read, so the lines wait in the source's connection. It
//! runs until its stdin reaches end-of-file, the platform's stop signal (see [`stop`]), then
//! sends DISCONNECT and exits 0.

mod lines;
mod mqtt;
mod stop;

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use mqttbytes::QoS;

use lines::Lines;
use mqtt::Session;
use stop::Stop;

/// How long a source read waits before the loop looks at the stop signal again: the longest
/// a stop waits while the source is quiet.
const READ_SLICE: Duration = Duration::from_millis(200);
/// How long the broker may take to answer CONNECT, PUBLISH (QoS 1) and PINGREQ.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening a TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One log line on stdout. A closed stdout is no reason to stop a service.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}

/// One line on stderr, which the platform also keeps as the service's log.
macro_rules! warn {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr().lock(), $($arg)*);
    }};
}

#[derive(Debug, PartialEq)]
struct Config {
    source: String,
    broker: String,
    topic: String,
    client_id: String,
    qos: QoS,
    log_every: u64,
    keep_alive_s: u16,
}

impl Config {
    /// The configuration from the variables `var` gives, `argv0` naming the default client id.
    fn from_vars(argv0: &str, var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let required = |name: &str, what: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("set {name} ({what})"))
        };
        let address = |name: &str| {
            let value = required(name, "host:port")?;
            match value.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(value),
                _ => Err(format!("{name} must be host:port, not {value:?}")),
            }
        };
        let number = |name: &str, default: u64, max: u64| match var(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("{name} must be a whole number from 1 to {max}, not {v:?}")),
        };
        let source = address("SOURCE")?;
        let broker = address("BROKER")?;
        let topic = required("TOPIC", "the MQTT topic to publish to")?;
        if topic.contains(['+', '#']) || topic.len() > usize::from(u16::MAX) {
            return Err(format!(
                "TOPIC must be a topic name (no + or # wildcards, at most 65535 bytes), not {topic:?}"
            ));
        }
        let client_id = match var("CLIENT_ID").map(|v| v.trim().to_string()) {
            Some(id) if !id.is_empty() => id,
            _ => default_client_id(argv0),
        };
        let qos = match var("QOS").as_deref().map(str::trim) {
            None | Some("1") => QoS::AtLeastOnce,
            Some("0") => QoS::AtMostOnce,
            Some(other) => return Err(format!("QOS must be 0 or 1, not {other:?}")),
        };
        let log_every = number("LOG_EVERY", 100, u64::MAX)?;
        let keep_alive_s = number("KEEP_ALIVE_S", 30, u64::from(u16::MAX))?;
        Ok(Config {
            source,
            broker,
            topic,
            client_id,
            qos,
            log_every,
            keep_alive_s: u16::try_from(keep_alive_s).unwrap_or(u16::MAX),
        })
    }
}

/// `line-bridge-` and the program's name (`<service>.<replica>` on a worker; a file path under
/// `wasmtime run`, of which the file's stem is kept), limited to characters every broker takes.
fn default_client_id(argv0: &str) -> String {
    let name = argv0.rsplit(['/', '\\']).next().unwrap_or(argv0);
    let name = name.strip_suffix(".wasm").unwrap_or(name);
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "line-bridge".into()
    } else {
        format!("line-bridge-{name}")
    }
}

/// Reconnect delays: doubling from `FIRST_BACKOFF` to at most `MAX_BACKOFF`.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let delay = FIRST_BACKOFF
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A TCP connection to `address` (host:port; a name is resolved through
/// `wasi:sockets/ip-name-lookup`), trying each of its addresses in turn.
fn open(address: &str, read_timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                stream.set_read_timeout(Some(read_timeout))?;
                stream.set_write_timeout(Some(BROKER_TIMEOUT))?;
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn main() -> ExitCode {
    let argv0 = std::env::args().next().unwrap_or_default();
    let me = if argv0.is_empty() {
        "line-bridge".to_string()
    } else {
        argv0.clone()
    };
    let config = match Config::from_vars(&argv0, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(e) => {
            warn!("{me}: {e}");
            return ExitCode::from(1);
        }
    };
    say!(
        "{me}: bridging lines from {} to topic {:?} on {} as {} (QoS {})",
        config.source,
        config.topic,
        config.broker,
        config.client_id,
        config.qos as u8
    );
    let forwarded = run(&config, &me, &mut Stop::new());
    say!("{me}: stdin closed, stopping after {forwarded} lines");
    ExitCode::SUCCESS
}

/// Bridges until the stop signal; answers how many lines it forwarded.
fn run(config: &Config, me: &str, stop: &mut Stop) -> u64 {
    let mut broker: Option<Session<TcpStream>> = None;
    let mut source: Option<Lines<TcpStream>> = None;
    // A line read and not yet published (or, with QoS 1, not yet acknowledged).
    let mut pending: Option<Vec<u8>> = None;
    let (mut broker_backoff, mut source_backoff) = (Backoff::default(), Backoff::default());
    let mut forwarded: u64 = 0;
    while !stop.requested() {
        let Some(session) = broker.as_mut() else {
            let connected = open(&config.broker, BROKER_TIMEOUT).and_then(|stream| {
                Session::connect(stream, &config.client_id, config.keep_alive_s)
            });
            match connected {
                Ok(session) => {
                    say!("{me}: connected to the broker {}", config.broker);
                    broker_backoff.reset();
                    broker = Some(session);
                }
                Err(e) => {
                    let wait = broker_backoff.next();
                    warn!(
                        "{me}: broker {}: {e}; retrying in {} ms",
                        config.broker,
                        wait.as_millis()
                    );
                    stop.sleep(wait);
                }
            }
            continue;
        };
        if let Some(line) = pending.take() {
            match session.publish(&config.topic, config.qos, &line) {
                Ok(()) => {
                    forwarded += 1;
                    if forwarded.is_multiple_of(config.log_every) {
                        say!("{me}: forwarded {forwarded} lines");
                    }
                }
                Err(e) => {
                    warn!("{me}: lost the broker {}: {e}", config.broker);
                    pending = Some(line);
                    broker = None;
                }
            }
            continue;
        }
        if let Err(e) = session.keep_alive() {
            warn!("{me}: lost the broker {}: {e}", config.broker);
            broker = None;
            continue;
        }
        let Some(lines) = source.as_mut() else {
            match open(&config.source, READ_SLICE) {
                Ok(stream) => {
                    say!("{me}: connected to the source {}", config.source);
                    source = Some(Lines::new(stream));
                }
                Err(e) => {
                    let wait = source_backoff.next();
                    warn!(
                        "{me}: source {}: {e}; retrying in {} ms",
                        config.source,
                        wait.as_millis()
                    );
                    stop.sleep(wait);
                }
            }
            continue;
        };
        match lines.next_line() {
            Ok(Some(line)) => {
                source_backoff.reset();
                pending = Some(line);
            }
            // The read slice passed: round again, past the stop signal.
            Ok(None) => {}
            Err(e) => {
                let wait = source_backoff.next();
                warn!(
                    "{me}: lost the source {}: {e}; reconnecting in {} ms",
                    config.source,
                    wait.as_millis()
                );
                source = None;
                stop.sleep(wait);
            }
        }
    }
    if let Some(mut session) = broker {
        // Best effort: the broker is told the client leaves on purpose.
        let _ = session.disconnect();
    }
    forwarded
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars("bridge.1", |name| vars.get(name).cloned())
    }

    const BASE: [(&str, &str); 3] = [
        ("SOURCE", "127.0.0.1:7000"),
        ("BROKER", "localhost:1883"),
        ("TOPIC", "lines/in"),
    ];

    #[test]
    fn defaults() {
        let c = config(&BASE).expect("valid");
        assert_eq!(
            c,
            Config {
                source: "127.0.0.1:7000".into(),
                broker: "localhost:1883".into(),
                topic: "lines/in".into(),
                client_id: "line-bridge-bridge.1".into(),
                qos: QoS::AtLeastOnce,
                log_every: 100,
                keep_alive_s: 30,
            }
        );
    }

    #[test]
    fn options() {
        let mut vars = BASE.to_vec();
        vars.extend([
            ("CLIENT_ID", "mine"),
            ("QOS", "0"),
            ("LOG_EVERY", "5"),
            ("KEEP_ALIVE_S", "60"),
            ("BROKER", "[::1]:1883"),
        ]);
        let c = config(&vars).expect("valid");
        assert_eq!(c.client_id, "mine");
        assert_eq!(c.qos, QoS::AtMostOnce);
        assert_eq!((c.log_every, c.keep_alive_s), (5, 60));
        assert_eq!(c.broker, "[::1]:1883");
    }

    #[test]
    fn missing_and_bad_values_are_named() {
        for (name, value, says) in [
            ("BROKER", "", "set BROKER"),
            ("SOURCE", "localhost", "SOURCE must be host:port"),
            ("BROKER", ":1883", "BROKER must be host:port"),
            ("BROKER", "host:99999", "BROKER must be host:port"),
            ("TOPIC", "a/+/b", "TOPIC must be a topic name"),
            ("TOPIC", "a/#", "TOPIC must be a topic name"),
            ("QOS", "2", "QOS must be 0 or 1"),
            ("LOG_EVERY", "0", "LOG_EVERY must be"),
            ("KEEP_ALIVE_S", "70000", "KEEP_ALIVE_S must be"),
        ] {
            let mut vars: Vec<_> = BASE.iter().filter(|(k, _)| *k != name).copied().collect();
            vars.push((name, value));
            let e = config(&vars).expect_err(name);
            assert!(e.contains(says), "{name}={value:?}: {e}");
        }
        let e = config(&BASE[1..]).expect_err("no SOURCE");
        assert_eq!(e, "set SOURCE (host:port)");
    }

    #[test]
    fn default_client_ids() {
        assert_eq!(default_client_id("svc.0"), "line-bridge-svc.0");
        assert_eq!(
            default_client_id("/tmp/x/line_bridge_service_p2.wasm"),
            "line-bridge-line_bridge_service_p2"
        );
        assert_eq!(default_client_id("a b"), "line-bridge-a-b");
        assert_eq!(default_client_id(""), "line-bridge");
    }

    #[test]
    fn backoff_doubles_up_to_a_bound_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u128> = (0..8).map(|_| b.next().as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        for _ in 0..100 {
            b.next();
        }
        assert_eq!(b.next(), MAX_BACKOFF);
        b.reset();
        assert_eq!(b.next(), FIRST_BACKOFF);
    }
}
