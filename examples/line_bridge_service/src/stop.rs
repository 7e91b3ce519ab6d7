//! The platform's stop signal: the service's stdin, open and empty while it runs, reaches
//! end-of-file when the worker asks it to stop.
//!
//! `std::io::stdin()` can only block, and `wasm32-wasip2` has no threads to park a blocking
//! read on, so the signal is read through `wasi:io` directly: the stdin stream's pollable says
//! without blocking whether a read would return (input or end-of-file). The bridge checks it
//! between socket reads, which time out after a short slice for that reason, and waits out its
//! reconnect back-offs in `wasi:io/poll` on stdin and a timer together, so a stop during a
//! back-off is seen at once.

use std::time::Duration;

use wasip2::clocks::monotonic_clock;
use wasip2::io::poll::{Pollable, poll};
use wasip2::io::streams::InputStream;

pub struct Stop {
    /// Declared before `stdin`: a pollable must be dropped before the stream it belongs to.
    ready: Pollable,
    stdin: InputStream,
    requested: bool,
}

impl Stop {
    pub fn new() -> Self {
        let stdin = wasip2::cli::stdin::get_stdin();
        Stop {
            ready: stdin.subscribe(),
            stdin,
            requested: false,
        }
    }

    /// Whether stdin reached end-of-file; never blocks. Input that arrives on stdin instead
    /// (a person typing at `wasmtime run`) is read and ignored.
    pub fn requested(&mut self) -> bool {
        if !self.requested && self.ready.ready() {
            // Ready: input or the end. A failing stdin can carry no signal any more either,
            // so it also counts as the end.
            if self.stdin.read(4096).is_err() {
                self.requested = true;
            }
        }
        self.requested
    }

    /// Waits `duration`, or less when the stop is requested meanwhile; answers whether it was.
    pub fn sleep(&mut self, duration: Duration) -> bool {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let deadline = monotonic_clock::now().saturating_add(nanos);
        while !self.requested() {
            if monotonic_clock::now() >= deadline {
                return false;
            }
            let timer = monotonic_clock::subscribe_instant(deadline);
            poll(&[&self.ready, &timer]);
        }
        true
    }
}
