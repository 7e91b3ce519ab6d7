//! The Core's settings of its HTTP front (flags, `FUNLESS_*` variables or the config file),
//! turned into [`HttpLimits`]. What each bound guards against is in docs/SECURITY.md.

use std::time::Duration;

use funless_actors::protocol::MAX_STAGED_CODE_BYTES;
use funless_api::HttpLimits;

/// The largest upload limit an operator may set: what a worker stages of incoming code at once.
const UPLOAD_BYTES_CEILING: usize = MAX_STAGED_CODE_BYTES as usize;

/// Flags of the HTTP front, flattened into the Core's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Largest function or service upload (create or update), bytes; at most 256 MiB (what a
    /// worker stages of incoming code at once), and within the in-flight bounds below.
    #[arg(long, env = "FUNLESS_MAX_UPLOAD_BYTES", default_value_t = funless_api::MAX_UPLOAD_BYTES)]
    pub max_upload_bytes: usize,
    /// Largest body of any other request (invocation arguments included), bytes.
    #[arg(long, env = "FUNLESS_MAX_BODY_BYTES", default_value_t = funless_api::MAX_INVOKE_BODY)]
    pub max_body_bytes: usize,
    /// Bytes of request bodies all clients together may have in the Core at once, MiB; past
    /// it new bodies are refused with 503 and Retry-After.
    #[arg(long, env = "FUNLESS_BODIES_IN_FLIGHT_MB", default_value_t = 128)]
    pub bodies_in_flight_mb: usize,
    /// Bytes of request bodies one client address may have in the Core at once, MiB; past it
    /// new bodies are refused with 429 and Retry-After.
    #[arg(long, env = "FUNLESS_BODIES_IN_FLIGHT_PER_IP_MB", default_value_t = 80)]
    pub bodies_in_flight_per_ip_mb: usize,
    /// A request's headers must arrive within this time of its first byte (or of the
    /// connection's opening), milliseconds; else the connection is closed.
    #[arg(long, env = "FUNLESS_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// A request's body must arrive within this time of its headers, milliseconds; else 408.
    #[arg(long, env = "FUNLESS_BODY_TIMEOUT_MS", default_value_t = 60_000)]
    pub body_timeout_ms: u64,
    /// A kept-alive connection with no request for this long is closed, milliseconds.
    #[arg(long, env = "FUNLESS_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Most API connections open at once; more wait in the kernel's backlog.
    #[arg(long, env = "FUNLESS_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
}

impl HttpArgs {
    /// The limits, or why a setting is out of range.
    pub fn limits(&self) -> anyhow::Result<HttpLimits> {
        anyhow::ensure!(
            (1..=UPLOAD_BYTES_CEILING).contains(&self.max_upload_bytes),
            "max-upload-bytes must be 1 to {UPLOAD_BYTES_CEILING}"
        );
        anyhow::ensure!(
            self.max_body_bytes >= 1,
            "max-body-bytes must be at least 1"
        );
        anyhow::ensure!(
            self.max_connections >= 1,
            "max-connections must be at least 1"
        );
        let mib = |n: usize| n.saturating_mul(1024 * 1024);
        // An upload at the limit must be admissible: its body counts against both pools.
        anyhow::ensure!(
            mib(self.bodies_in_flight_per_ip_mb) >= self.max_upload_bytes,
            "bodies-in-flight-per-ip-mb ({} MiB) must hold one upload of max-upload-bytes ({} bytes)",
            self.bodies_in_flight_per_ip_mb,
            self.max_upload_bytes
        );
        anyhow::ensure!(
            self.bodies_in_flight_mb >= self.bodies_in_flight_per_ip_mb,
            "bodies-in-flight-mb ({}) must be at least bodies-in-flight-per-ip-mb ({})",
            self.bodies_in_flight_mb,
            self.bodies_in_flight_per_ip_mb
        );
        let ms = |n: u64| Duration::from_millis(n.max(1));
        Ok(HttpLimits {
            max_upload_bytes: self.max_upload_bytes,
            max_body_bytes: self.max_body_bytes,
            bodies_in_flight_bytes: mib(self.bodies_in_flight_mb),
            bodies_in_flight_per_ip_bytes: mib(self.bodies_in_flight_per_ip_mb),
            header_timeout: ms(self.header_timeout_ms),
            body_timeout: ms(self.body_timeout_ms),
            idle_timeout: ms(self.idle_timeout_ms),
            max_connections: self.max_connections,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Args {
        #[command(flatten)]
        http: super::HttpArgs,
    }

    #[test]
    fn defaults_are_the_api_defaults_and_bad_values_are_refused() {
        let args = Args::try_parse_from(["core"]).unwrap();
        assert_eq!(
            args.http.limits().unwrap(),
            funless_api::HttpLimits::default()
        );
        let args = Args::try_parse_from(["core", "--max-upload-bytes", "300000000"]).unwrap();
        assert!(args.http.limits().is_err());
        // An upload at the limit would never fit the per-client pool.
        let args = Args::try_parse_from([
            "core",
            "--max-upload-bytes",
            "100000000",
            "--bodies-in-flight-per-ip-mb",
            "80",
        ])
        .unwrap();
        let refusal = args.http.limits().unwrap_err().to_string();
        assert!(refusal.contains("bodies-in-flight-per-ip-mb"), "{refusal}");
        let args = Args::try_parse_from([
            "core",
            "--max-upload-bytes",
            "100000000",
            "--bodies-in-flight-per-ip-mb",
            "100",
            "--bodies-in-flight-mb",
            "200",
        ])
        .unwrap();
        assert_eq!(args.http.limits().unwrap().max_upload_bytes, 100_000_000);
    }
}
