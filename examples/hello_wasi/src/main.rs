//! `hello` (WASI command ABI): `{"name": "x"}` on stdin → `{"payload": "Hello x!"}` on stdout;
//! without a (string) name greets the World. Logs one line to stderr.

use std::process::ExitCode;

use fl_sdk::{Value, json};

fn main() -> ExitCode {
    fl_sdk::command::run(hello)
}

fn hello(args: Value) -> Result<Value, String> {
    let name = args.get("name").and_then(Value::as_str).unwrap_or("World");
    eprintln!("hello called with name={name}");
    Ok(json!({ "payload": format!("Hello {name}!") }))
}
