//! `hello` (FunLess ABI): `{"name": "x"}` → `{"payload": "Hello x!"}`; without a (string) name
//! greets the World. Logs one line through `__console_log`.

use fl_sdk::{Value, json};

#[unsafe(no_mangle)]
pub extern "C" fn __invoke(input_len: i32) -> i32 {
    fl_sdk::run(input_len, hello)
}

fn hello(args: Value) -> Result<Value, String> {
    let name = args.get("name").and_then(Value::as_str).unwrap_or("World");
    fl_sdk::log(&format!("hello called with name={name}"));
    Ok(json!({ "payload": format!("Hello {name}!") }))
}
