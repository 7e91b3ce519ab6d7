//! `server_reply` (SeBS), a WASI 0.2 component (build for `wasm32-wasip2`): connects to a TCP
//! server, sends `message` and a newline, and returns the server's one-line reply:
//! `{"reply": "...", "rtt_ms": 0.12}`.
//!
//! Args: `{"address": "host:port", "message": "ping"}`; the host must be on the function's
//! `allow_hosts` (otherwise the connect fails with "permission denied").

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fl_sdk::{Value, json};

/// Longest reply line kept, bytes.
const MAX_REPLY: u64 = 64 * 1024;

fn main() -> ExitCode {
    fl_sdk::command::run(server_reply)
}

fn server_reply(args: Value) -> Result<Value, String> {
    let address = args["address"]
        .as_str()
        .ok_or("missing \"address\" (host:port)")?;
    let message = args["message"].as_str().unwrap_or("ping");
    if message.contains('\n') {
        return Err("the message must be one line".into());
    }
    let started = Instant::now();
    let mut stream =
        TcpStream::connect(address).map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{message}\n").as_bytes())
        .map_err(|e| format!("cannot send to {address}: {e}"))?;
    let mut reply = String::new();
    BufReader::new(stream.take(MAX_REPLY))
        .read_line(&mut reply)
        .map_err(|e| format!("no reply from {address}: {e}"))?;
    let rtt_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(json!({ "reply": reply.trim_end(), "rtt_ms": rtt_ms }))
}
