//! `ticker_service`: a long-running service (WASI command). Configured by its environment (the
//! service's `env`):
//!
//! - `TICK_MS` (default 1000): prints `tick N from REPLICA` on stdout every TICK_MS
//!   milliseconds, forever (REPLICA is `argv[0]`, which the worker sets to `service.index`),
//!   followed by ` LABEL` when `LABEL` is set.
//! - `TICKS`: stops after that many ticks, with `EXIT_CODE` (default 0).
//! - `EXIT_CODE` without `TICKS`: writes a line on stderr and exits with it at once (a service
//!   that fails on start, or a transient one that finishes).
//! - `STOP_ON_EOF`: instead of ticking, waits for the platform's stop signal (its stdin, open
//!   and empty while it runs, reaches end-of-file when it is asked to stop), says so and exits 0.
//!
//! `std::thread::sleep` is WASI `poll_oneoff`: a sleeping replica holds no worker thread.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn main() -> ExitCode {
    let me = std::env::args().next().unwrap_or_else(|| "ticker".into());
    let exit_code = env_u64("EXIT_CODE").map(|c| u8::try_from(c).unwrap_or(1));
    let ticks = env_u64("TICKS");
    if let (Some(code), None) = (exit_code, ticks) {
        eprintln!("{me}: exiting with code {code} on start");
        return ExitCode::from(code);
    }
    if std::env::var_os("STOP_ON_EOF").is_some() {
        println!("{me} waiting for the stop signal");
        let mut rest = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut rest);
        println!("{me} stopping gracefully");
        return ExitCode::SUCCESS;
    }
    let every = Duration::from_millis(env_u64("TICK_MS").unwrap_or(1000));
    let label = std::env::var("LABEL")
        .map(|l| format!(" {l}"))
        .unwrap_or_default();
    let mut n: u64 = 0;
    loop {
        n += 1;
        let mut out = std::io::stdout().lock();
        // A closed stdout is no reason to stop a service.
        let _ = writeln!(out, "tick {n} from {me}{label}");
        let _ = out.flush();
        drop(out);
        if ticks.is_some_and(|t| n >= t) {
            return ExitCode::from(exit_code.unwrap_or(0));
        }
        std::thread::sleep(every);
    }
}
