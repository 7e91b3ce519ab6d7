//! Abuse through real processes, each case with the bound it must now respect (listed in
//! docs/SECURITY.md, "Resource abuse"): the HTTP front ([`front`]), workers' slots, compilers
//! and the upload broadcast ([`workers`]), names and tokens of tenants ([`tenants`]), what
//! the Core connects to for users ([`egress`]), per-subject quotas ([`quotas`]), and CPU
//! fairness between tenants ([`fairness`]).

mod egress;
mod fairness;
mod front;
mod quotas;
mod tenants;
mod workers;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::harness::Core;

/// The API's socket address of a Core.
pub fn api_addr(core: &Core) -> SocketAddr {
    core.url.trim_start_matches("http://").parse().unwrap()
}

/// Peak and current resident memory of a process, bytes (`VmHWM`, `VmRSS`).
pub fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A request head (`method path`, headers, blank line) with these extra header lines.
pub fn head(method: &str, path: &str, headers: &[String]) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: funless\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text
}

/// Writes `len` zero bytes; false when the server closed the connection first.
pub fn send_zeros(stream: &mut TcpStream, len: usize) -> bool {
    let chunk = [0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        if stream.write_all(&chunk[..n]).is_err() {
            return false;
        }
        left -= n;
    }
    true
}

/// Reads a response's head and returns its status code and head text.
pub fn read_head(stream: &mut TcpStream) -> std::io::Result<(u16, String)> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        bytes.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, text))
}

/// One request on a new connection: the head, then `body_len` zero bytes; the status code.
pub fn raw_request(addr: SocketAddr, head: &str, body_len: usize) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(head.as_bytes())?;
    // The server may answer (and stop reading) before the body is all sent.
    send_zeros(&mut stream, body_len);
    read_head(&mut stream).map(|(status, _)| status)
}
