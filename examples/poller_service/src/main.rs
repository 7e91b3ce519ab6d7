//! `poller_service`: a long-running service (a WASI 0.2 component, built for
//! `wasm32-wasip2`). Every `EVERY_MS` milliseconds (default 1000) it GETs `POLL_URL` through
//! `wasi:http` and POSTs a JSON summary to `WEBHOOK_URL`:
//! `{"from": "<name>.<replica>", "n": N, "status": S, "bytes": B}` (`status` 0: the poll
//! failed). Both hosts must be on the service's `allow_hosts`. It also prints one line per
//! round, read with `fl svc logs`.

use std::process::ExitCode;
use std::time::Duration;

use fl_sdk::{Method, wasi_http};

fn main() -> ExitCode {
    let me = std::env::args().next().unwrap_or_else(|| "poller".into());
    let (Ok(poll), Ok(webhook)) = (std::env::var("POLL_URL"), std::env::var("WEBHOOK_URL")) else {
        eprintln!("{me}: set POLL_URL and WEBHOOK_URL");
        return ExitCode::from(2);
    };
    let every = Duration::from_millis(
        std::env::var("EVERY_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1000),
    );
    let mut n: u64 = 0;
    loop {
        n += 1;
        let (status, bytes) = match wasi_http::request(Method::Get, &poll, &[], &[]) {
            Ok((status, body)) => (status, body.len()),
            Err(e) => {
                eprintln!("{me}: poll {n} failed: {e}");
                (0, 0)
            }
        };
        let summary =
            format!(r#"{{"from":"{me}","n":{n},"status":{status},"bytes":{bytes}}}"#);
        match wasi_http::request(
            Method::Post,
            &webhook,
            &[("content-type", "application/json")],
            summary.as_bytes(),
        ) {
            Ok((code, _)) => println!("round {n}: polled {status} ({bytes} bytes), posted {code}"),
            Err(e) => eprintln!("{me}: posting round {n} failed: {e}"),
        }
        std::thread::sleep(every);
    }
}
