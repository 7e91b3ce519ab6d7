//! `sdk_http` (FunLess ABI), written the way FunLess's documentation writes functions: with
//! FunLess's own Rust SDK, fl-wasm-rs 0.1.1 from crates.io, and its `FLRequest`. It proves the
//! worker's `__http_request` is what that SDK expects: `FLRequest::send` hands the host an
//! empty response buffer and reads back whatever the host wrote there.
//!
//! Args: `{"url": "...", "method": "GET", "body": "...", "headers": {"name": "value"}}`
//! (method and body optional). Answers `{"status": N, "body": "...", "length": N}`.

use fl_wasm_rs::prelude::*;
use serde_json::{json, Value};

#[derive(FLFunction)]
pub struct SdkHttp;

pub fn fl_main(args: Value) -> FLResult {
    let url = args["url"]
        .as_str()
        .ok_or_else(|| FLError::ExecError("missing \"url\"".into()))?;
    let mut request = FLRequest::new()
        .with_uri(url.to_string())
        .with_method(args["method"].as_str().unwrap_or("GET").to_string())
        .with_body(args["body"].as_str().unwrap_or_default().to_string());
    if let Some(headers) = args["headers"].as_object() {
        for (name, value) in headers {
            let value = value.as_str().unwrap_or_default().to_string();
            request = request.with_header(name.clone(), value);
        }
    }
    let response = request.send();
    console_log(&format!("{url}: status {}", response.status));
    Ok(json!({
        "status": response.status,
        "length": response.body.len(),
        "body": response.body,
    }))
}
