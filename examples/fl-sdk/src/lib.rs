//! Guest-side helpers for FunLess functions.
//!
//! Two ABIs are supported, both exchanging JSON:
//!
//! * **FunLess ABI** (compatible with the original Elixir FunLess): the module exports
//!   `__invoke(input_len: i32) -> i32` and talks to the host through the functions the host
//!   provides in the `fl_imps` import module. The top-level functions of this crate
//!   ([`read_input`], [`respond`], [`error`], [`log`], [`run`]) wrap those imports.
//! * **WASI command ABI**: a plain `fn main()` reading JSON args from stdin and writing the JSON
//!   result to stdout; see [`command`]. It uses no `fl_imps` import. Built for
//!   `wasm32-wasip2` the same program is a WASI 0.2 component (`wasi:cli/run`), which may
//!   also make `wasi:http` requests ([`wasi_http`], feature `wasi-http`) and open TCP
//!   connections with `std::net`, within the function's egress allow-list.
//!
//! ```ignore
//! #[unsafe(no_mangle)]
//! pub extern "C" fn __invoke(input_len: i32) -> i32 {
//!     fl_sdk::run(input_len, |args| Ok(serde_json::json!({ "echo": args })))
//! }
//! ```

pub use serde_json::{self, Value, json};

#[cfg(feature = "wasi-http")]
pub mod wasi_http;

/// Wall-clock time in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Raw imports provided by the FunLess host (wasm import module `fl_imps`).
///
/// Only the functions a module actually calls end up as imports of the final `.wasm`.
pub mod sys {
    #[link(wasm_import_module = "fl_imps")]
    unsafe extern "C" {
        /// Writes the invocation's JSON args (exactly `input_len` bytes, as passed to
        /// `__invoke`) into guest memory at `ptr`.
        pub fn __get_input_data(ptr: i32);
        /// Hands the JSON result (`len` bytes at `ptr`) to the host.
        pub fn __insert_response(ptr: i32, len: i32);
        /// Reports a UTF-8 error message (`len` bytes at `ptr`): the invocation failed.
        pub fn __insert_error(ptr: i32, len: i32);
        /// Emits one UTF-8 log line (`len` bytes at `ptr`).
        pub fn __console_log(ptr: i32, len: i32);
        /// Outgoing HTTP request (method 0..3 = GET, POST, PUT, DELETE; headers `"K:V\nK:V"`).
        /// `*resp_len_ptr` holds the capacity of the buffer at `resp_ptr` on entry and the
        /// number of body bytes written on return; `*status_ptr` gets the status (0: failed).
        pub fn __http_request(
            resp_ptr: i32,
            resp_len_ptr: i32,
            status_ptr: i32,
            method: i32,
            uri_ptr: i32,
            uri_len: i32,
            hdr_ptr: i32,
            hdr_len: i32,
            body_ptr: i32,
            body_len: i32,
        );
    }
}

/// HTTP methods of [`http_request`].
#[derive(Debug, Clone, Copy)]
pub enum Method {
    /// GET
    Get = 0,
    /// POST
    Post = 1,
    /// PUT
    Put = 2,
    /// DELETE
    Delete = 3,
}

/// Sends an HTTP request through the host (only to hosts on the function's allow-list) and
/// returns the status (0 when it failed or was refused) and up to `max_body` bytes of body.
pub fn http_request(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    max_body: usize,
) -> (u16, Vec<u8>) {
    let headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut response = vec![0u8; max_body];
    let mut len: u32 = max_body as u32;
    let mut status: u16 = 0;
    let (uri_ptr, uri_len) = raw_parts(uri.as_bytes());
    let (hdr_ptr, hdr_len) = raw_parts(headers.as_bytes());
    let (body_ptr, body_len) = raw_parts(body);
    // SAFETY: every pointer is to a live buffer of the given length; the host writes at most
    // `len` bytes at `response`, 4 bytes at `len` and 2 bytes at `status`.
    unsafe {
        sys::__http_request(
            response.as_mut_ptr() as usize as i32,
            &mut len as *mut u32 as usize as i32,
            &mut status as *mut u16 as usize as i32,
            method as i32,
            uri_ptr,
            uri_len,
            hdr_ptr,
            hdr_len,
            body_ptr,
            body_len,
        );
    }
    response.truncate((len as usize).min(max_body));
    (status, response)
}

/// Guest pointers and lengths travel as `i32` (wasm32 linear memory).
fn raw_parts(bytes: &[u8]) -> (i32, i32) {
    (bytes.as_ptr() as usize as i32, bytes.len() as i32)
}

/// Reads the invocation input: `len` bytes the host copies into a freshly allocated buffer.
#[must_use]
pub fn read_input(len: usize) -> Vec<u8> {
    let mut buf = Vec::<u8>::with_capacity(len);
    if len > 0 {
        // SAFETY: the buffer has room for `len` bytes and the host writes exactly `len` bytes.
        unsafe {
            sys::__get_input_data(buf.as_mut_ptr() as usize as i32);
            buf.set_len(len);
        }
    }
    buf
}

/// Hands the (JSON) result of the invocation to the host.
pub fn respond(bytes: &[u8]) {
    let (ptr, len) = raw_parts(bytes);
    // SAFETY: `ptr..ptr + len` is a live, initialised buffer for the duration of the call.
    unsafe { sys::__insert_response(ptr, len) }
}

/// Reports that the invocation failed with `message`.
pub fn error(message: &str) {
    let (ptr, len) = raw_parts(message.as_bytes());
    // SAFETY: as in `respond`.
    unsafe { sys::__insert_error(ptr, len) }
}

/// Emits a log line through the host.
pub fn log(line: &str) {
    let (ptr, len) = raw_parts(line.as_bytes());
    // SAFETY: as in `respond`.
    unsafe { sys::__console_log(ptr, len) }
}

/// Parses JSON args; empty input counts as `{}`.
fn parse_args(input: &[u8]) -> Result<Value, String> {
    if input.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(input).map_err(|e| format!("invalid JSON input: {e}"))
}

/// Reads the optional non-negative integer argument `key` (missing or `null` gives `default`).
///
/// # Errors
///
/// A message suitable for the caller when the argument is not a non-negative integer.
pub fn u64_arg(args: &Value, key: &str, default: u64) -> Result<u64, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value
            .as_u64()
            .ok_or_else(|| format!("`{key}` must be a non-negative integer, got {value}")),
    }
}

/// Runs a FunLess-ABI invocation: reads and parses the `input_len` bytes of JSON args, calls
/// `handler`, then hands its result to the host ([`respond`]) or reports its error ([`error`]).
///
/// Returns the value `__invoke` must return: `0` on success, `1` on error (including invalid
/// JSON input).
pub fn run<F>(input_len: i32, handler: F) -> i32
where
    F: FnOnce(Value) -> Result<Value, String>,
{
    let outcome = usize::try_from(input_len)
        .map_err(|_| format!("invalid input length {input_len}"))
        .and_then(|len| parse_args(&read_input(len)))
        .and_then(handler)
        .and_then(|value| serde_json::to_vec(&value).map_err(|e| e.to_string()));
    match outcome {
        Ok(bytes) => {
            respond(&bytes);
            0
        }
        Err(message) => {
            error(&message);
            1
        }
    }
}

/// The WASI command ABI: JSON args on stdin, JSON result on stdout.
pub mod command {
    use std::io::{Read, Write};
    use std::process::ExitCode;

    use serde_json::Value;

    /// Runs a WASI-command invocation: reads all of stdin as JSON args (empty stdin is `{}`),
    /// calls `handler` and writes its result to stdout. On failure (unreadable or invalid
    /// input, handler error) writes the message to stderr and returns exit code 1.
    ///
    /// ```ignore
    /// fn main() -> std::process::ExitCode {
    ///     fl_sdk::command::run(|args| Ok(args))
    /// }
    /// ```
    pub fn run<F>(handler: F) -> ExitCode
    where
        F: FnOnce(Value) -> Result<Value, String>,
    {
        let outcome = read_stdin()
            .and_then(|input| super::parse_args(&input))
            .and_then(handler)
            .and_then(|value| write_stdout(&value));
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("{message}");
                ExitCode::FAILURE
            }
        }
    }

    fn read_stdin() -> Result<Vec<u8>, String> {
        let mut input = Vec::new();
        std::io::stdin()
            .read_to_end(&mut input)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok(input)
    }

    fn write_stdout(value: &Value) -> Result<(), String> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, value)
            .map_err(|e| e.to_string())
            .and_then(|()| out.flush().map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot write stdout: {e}"))
    }
}
