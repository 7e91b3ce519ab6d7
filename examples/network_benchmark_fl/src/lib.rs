//! `network_benchmark` (FunLess ABI), the SeBS workload of the paper: `n` (default 16) HTTP
//! requests carrying timestamps to `server`, then the timings uploaded to `bucket` (a PUT of a
//! JSON document); answers `{"times_ms": [...], "bucket_status": N}`.
//!
//! Args: `{"server": "http://host:port/reply", "bucket": "http://host:port/bucket/key", "n": 16}`.
//! Both hosts must be on the function's `allow_hosts`.

use fl_sdk::{Method, Value, json, now_ms};

#[unsafe(no_mangle)]
pub extern "C" fn __invoke(input_len: i32) -> i32 {
    fl_sdk::run(input_len, benchmark)
}

fn benchmark(args: Value) -> Result<Value, String> {
    let server = args["server"].as_str().ok_or("missing \"server\" URL")?;
    let bucket = args["bucket"].as_str().ok_or("missing \"bucket\" URL")?;
    let n = fl_sdk::u64_arg(&args, "n", 16)?;
    let mut times = Vec::new();
    for i in 0..n {
        let sent = now_ms();
        let body = json!({ "i": i, "sent_ms": sent }).to_string();
        let (status, _reply) = fl_sdk::http_request(
            Method::Post,
            server,
            &[("content-type", "application/json")],
            body.as_bytes(),
            4096,
        );
        if status != 200 {
            return Err(format!("request {i} to {server} answered status {status}"));
        }
        times.push(now_ms() - sent);
    }
    let report = json!({ "times_ms": times }).to_string();
    let (bucket_status, _) = fl_sdk::http_request(
        Method::Put,
        bucket,
        &[("content-type", "application/json")],
        report.as_bytes(),
        1024,
    );
    Ok(json!({ "times_ms": times, "bucket_status": bucket_status }))
}
