//! `{{name}}`: a FunLess function written with FunLess's Rust SDK (fl-wasm-rs). It gets the
//! invocation's JSON arguments and returns the JSON the caller receives, or an error (a 422).

use fl_wasm_rs::prelude::*;
use serde_json::{json, Value};

#[derive(FLFunction)]
pub struct Function;

pub fn fl_main(args: Value) -> FLResult {
    let name = args["name"].as_str().unwrap_or("World");
    console_log(&format!("greeting {name}"));
    Ok(json!({ "payload": format!("Hello {name}!") }))
}
