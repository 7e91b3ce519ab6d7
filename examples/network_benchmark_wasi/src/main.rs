//! `network_benchmark` (SeBS) as a WASI 0.2 component (build for `wasm32-wasip2`): the same
//! workload as `network_benchmark_fl`, with requests made through `wasi:http` instead of the
//! FunLess `__http_request` import. `n` (default 16) POSTs carrying timestamps to `server`,
//! then the timings PUT to `bucket`; answers `{"times_ms": [...], "bucket_status": N}`.
//!
//! Args: `{"server": "http://host:port/reply", "bucket": "http://host:port/bucket/key", "n": 16}`.
//! Both hosts must be on the function's `allow_hosts`.

use std::process::ExitCode;

use fl_sdk::wasi_http::request;
use fl_sdk::{Method, Value, json, now_ms};

fn main() -> ExitCode {
    fl_sdk::command::run(benchmark)
}

fn benchmark(args: Value) -> Result<Value, String> {
    let server = args["server"].as_str().ok_or("missing \"server\" URL")?;
    let bucket = args["bucket"].as_str().ok_or("missing \"bucket\" URL")?;
    let n = fl_sdk::u64_arg(&args, "n", 16)?;
    let json_type = [("content-type", "application/json")];
    let mut times = Vec::new();
    for i in 0..n {
        let sent = now_ms();
        let body = json!({ "i": i, "sent_ms": sent }).to_string();
        let (status, _reply) = request(Method::Post, server, &json_type, body.as_bytes())?;
        if status != 200 {
            return Err(format!("request {i} to {server} answered status {status}"));
        }
        times.push(now_ms() - sent);
    }
    let report = json!({ "times_ms": times }).to_string();
    let (bucket_status, _) = request(Method::Put, bucket, &json_type, report.as_bytes())?;
    Ok(json!({ "times_ms": times, "bucket_status": bucket_status }))
}
