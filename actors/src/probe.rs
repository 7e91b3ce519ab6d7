//! The health check of a container that has no shell and no curl (the `FROM scratch` images of
//! `deploy/oci/`): `funless-core --health-check` and `funless-worker --health-check` run the
//! binary a second time, ask the running process over loopback and exit 0 only on a 200.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Why a probe failed: each says what was tried, for the container runtime's health log.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing answered at the address.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address probed.
        addr: SocketAddr,
        /// The connection error.
        source: std::io::Error,
    },
    /// The connection broke or stayed silent past the deadline.
    #[error("no answer from {addr}: {source}")]
    Io {
        /// The address probed.
        addr: SocketAddr,
        /// The read or write error.
        source: std::io::Error,
    },
    /// The process answered with something other than `200`.
    #[error("{addr}{path} answered {status_line:?}")]
    Status {
        /// The address probed.
        addr: SocketAddr,
        /// The path requested.
        path: String,
        /// The first line of the answer.
        status_line: String,
    },
}

/// The address to probe for a process listening on `listen`: an unspecified address
/// (`0.0.0.0`, `::`) is reached on the loopback of the same family.
pub fn local_target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `GET path` over HTTP/1.0 at `addr`; `Ok` when the answer's status is 200. The whole
/// exchange (connect, write, read of the status line) is bounded by `timeout`.
pub fn http_get_ok(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), ProbeError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ProbeError::Connect { addr, source })?;
    let io = |source| ProbeError::Io { addr, source };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(io)?;
    // The status line is all that is read: at most 256 bytes, whatever the body is.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 256 {
        let read = stream.read(&mut buf).map_err(io)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buf[..read]);
    }
    let status_line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut words = status_line.split_whitespace();
    let http = words.next().is_some_and(|v| v.starts_with("HTTP/1."));
    if http && words.next() == Some("200") {
        Ok(())
    } else {
        Err(ProbeError::Status {
            addr,
            path: path.to_string(),
            status_line,
        })
    }
}

/// Runs the probe for a binary's `--health-check` flag: exit code 0 on a 200, else 1 with
/// the reason on stderr.
pub fn exit_code(listen: SocketAddr, path: &str) -> std::process::ExitCode {
    match http_get_ok(local_target(listen), path, Duration::from_secs(3)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A one-shot command's answer for the container runtime, not a service log.
            eprintln!("unhealthy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server that answers `reply` to whatever it reads.
    fn serve_once(reply: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut buf = [0u8; 512];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn a_200_is_healthy() {
        let addr = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}");
        http_get_ok(addr, "/health", Duration::from_secs(3)).expect("healthy");
    }

    #[test]
    fn another_status_is_unhealthy_and_says_what_it_got() {
        let addr = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = http_get_ok(addr, "/health", Duration::from_secs(3)).expect_err("503");
        assert!(
            err.to_string()
                .ends_with("/health answered \"HTTP/1.1 503 Service Unavailable\""),
            "{err}"
        );
    }

    #[test]
    fn no_listener_is_a_connect_error() {
        // Bind then drop, so the port was free a moment ago and nothing listens now.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        let err = http_get_ok(addr, "/health", Duration::from_secs(3)).expect_err("refused");
        assert!(matches!(err, ProbeError::Connect { .. }), "{err}");
    }

    #[test]
    fn a_silent_peer_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let err = http_get_ok(addr, "/health", Duration::from_millis(200)).expect_err("silent");
        assert!(matches!(err, ProbeError::Io { .. }), "{err}");
        drop(listener);
    }

    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:4000".parse().expect("v4");
        let v6: SocketAddr = "[::]:9100".parse().expect("v6");
        let lan: SocketAddr = "10.0.0.5:4000".parse().expect("lan");
        assert_eq!(local_target(v4), "127.0.0.1:4000".parse().expect("lo4"));
        assert_eq!(local_target(v6), "[::1]:9100".parse().expect("lo6"));
        assert_eq!(local_target(lan), lan);
    }
}
