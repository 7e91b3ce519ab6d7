//! `sleep` (WASI command ABI): `{"ms": N}` (default 3000) on stdin sleeps N milliseconds, then
//! writes `{"payload": "Slept for N ms"}` ("Slept for 3 seconds" for the default, as in SeBS).
//!
//! `std::thread::sleep` is WASI `poll_oneoff` on wasm32-wasip1.

use std::process::ExitCode;
use std::time::Duration;

use fl_sdk::{Value, json};

const DEFAULT_MS: u64 = 3000;

fn main() -> ExitCode {
    fl_sdk::command::run(sleep)
}

fn sleep(args: Value) -> Result<Value, String> {
    let ms = fl_sdk::u64_arg(&args, "ms", DEFAULT_MS)?;
    std::thread::sleep(Duration::from_millis(ms));
    let payload = if ms == 3000 {
        "Slept for 3 seconds".to_owned()
    } else {
        format!("Slept for {ms} ms")
    };
    Ok(json!({ "payload": payload }))
}
