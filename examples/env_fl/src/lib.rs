//! `env` (FunLess ABI): answers `{"env": {...}}`, every environment variable it was given
//! (its configuration), whatever the arguments.

use fl_sdk::{Value, json};

#[unsafe(no_mangle)]
pub extern "C" fn __invoke(input_len: i32) -> i32 {
    fl_sdk::run(input_len, env)
}

fn env(_args: Value) -> Result<Value, String> {
    let vars: fl_sdk::serde_json::Map<String, Value> = std::env::vars()
        .map(|(key, value)| (key, Value::String(value)))
        .collect();
    Ok(json!({ "env": vars }))
}
