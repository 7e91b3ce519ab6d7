//! Bounds of the HTTP front: what one request, one client and all clients together may make the
//! Core hold.

use std::time::Duration;

/// Largest accepted function upload (multipart body) by default, bytes: room for a Python
/// function (CPython and the app in one component, ~20 MB) with its dependencies.
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;
/// Largest accepted body of any other request (invocations included) by default, bytes.
pub const MAX_INVOKE_BODY: usize = 1024 * 1024;

/// Bounds of the HTTP front (each a Core setting; see `funless-core --help`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest function upload (create or update), bytes.
    pub max_upload_bytes: usize,
    /// Largest body of any other request, bytes.
    pub max_body_bytes: usize,
    /// Bytes of request bodies all clients together may have in the Core at once; past it new
    /// bodies are refused with 503.
    pub bodies_in_flight_bytes: usize,
    /// Bytes of request bodies one client address may have in the Core at once; past it new
    /// bodies are refused with 429.
    pub bodies_in_flight_per_ip_bytes: usize,
    /// A request's headers must arrive within this time of its first byte (or of the
    /// connection's opening).
    pub header_timeout: Duration,
    /// A request's body must arrive within this time of its headers.
    pub body_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_upload_bytes: MAX_UPLOAD_BYTES,
            max_body_bytes: MAX_INVOKE_BODY,
            bodies_in_flight_bytes: 128 * 1024 * 1024,
            bodies_in_flight_per_ip_bytes: 80 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}
