//! `env` (WASI command ABI): prints `{"env": {...}}`, every environment variable it was given
//! (its configuration), whatever the arguments on stdin.

use std::process::ExitCode;

use fl_sdk::{Value, json};

fn main() -> ExitCode {
    fl_sdk::command::run(env)
}

fn env(_args: Value) -> Result<Value, String> {
    let vars: fl_sdk::serde_json::Map<String, Value> = std::env::vars()
        .map(|(key, value)| (key, Value::String(value)))
        .collect();
    Ok(json!({ "env": vars }))
}
