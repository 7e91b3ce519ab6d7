//! `sleep` (FunLess ABI): `{"ms": N}` (default 3000) sleeps N milliseconds, then answers
//! `{"payload": "Slept for N ms"}` ("Slept for 3 seconds" for the default, as in SeBS).
//!
//! `std::thread::sleep` is WASI `poll_oneoff` on wasm32-wasip1.

use std::time::Duration;

use fl_sdk::{Value, json};

const DEFAULT_MS: u64 = 3000;

#[unsafe(no_mangle)]
pub extern "C" fn __invoke(input_len: i32) -> i32 {
    fl_sdk::run(input_len, sleep)
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
