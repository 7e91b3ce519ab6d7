//! The HTTP front: bodies of refused requests are never held, bodies in flight are bounded in
//! all and per client address, and slow, idle or surplus connections are closed or wait.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{api_addr, head, memory_of, raw_request, read_head, send_zeros};
use crate::harness::{Core, CoreOptions, wait_until};

const MIB: usize = 1024 * 1024;

fn upload_head(token: Option<&str>, length: usize) -> String {
    let mut headers = vec![
        "Content-Type: multipart/form-data; boundary=xyz".to_string(),
        format!("Content-Length: {length}"),
    ];
    if let Some(token) = token {
        headers.push(format!("Authorization: Bearer {token}"));
    }
    head("POST", "/v1/fn/_", &headers)
}

#[test]
fn unauthenticated_uploads_are_refused_before_their_bodies_are_held() {
    let core = Core::start(CoreOptions::default());
    let addr = api_addr(&core);
    let pid = core.process.pid();
    let (idle_peak, _) = memory_of(pid);

    // 150 uploads of 12 MiB at once, half without a token, half with a wrong one.
    let clients: Vec<_> = (0..150)
        .map(|i| {
            let token = (i % 2 == 0).then(|| format!("fl_{i:064x}"));
            std::thread::spawn(move || {
                raw_request(addr, &upload_head(token.as_deref(), 12 * MIB), 12 * MIB)
            })
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .map(|c| c.join().unwrap().unwrap())
        .collect();
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let (peak, now) = memory_of(pid);
    assert!(
        peak < 100 << 20,
        "core peak RSS {} MB (idle {} MB)",
        peak >> 20,
        idle_peak >> 20
    );
    assert!(now < 100 << 20, "core RSS afterwards {} MB", now >> 20);

    // The token comes before the size: a declared body over the upload limit (64 MiB)
    // without one is a 401, at once.
    let started = Instant::now();
    assert_eq!(
        raw_request(addr, &upload_head(None, 65 * MIB), 0).unwrap(),
        401
    );
    // A user token on an admin route is a 403 before the body.
    let admin_route = head(
        "POST",
        "/v1/admin/subjects",
        &[
            format!("Authorization: Bearer {}", core.token),
            "Content-Type: application/json".into(),
            format!("Content-Length: {}", MIB),
        ],
    );
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(admin_route.as_bytes()).unwrap();
    let mut body = b"{\"subject\":{\"name\":\"x\"}}".to_vec();
    body.resize(MIB, b' ');
    stream.write_all(&body).unwrap();
    assert_eq!(read_head(&mut stream).unwrap().0, 403);
    assert!(started.elapsed() < Duration::from_secs(5));
    // With the token, the size limit answers (413) before any byte of the body.
    assert_eq!(
        raw_request(addr, &upload_head(Some(&core.token), 65 * MIB), 0).unwrap(),
        413
    );
}

#[test]
fn request_bodies_in_flight_are_bounded_in_all_and_per_client() {
    let core = Core::start(CoreOptions {
        extra: [
            "--bodies-in-flight-mb",
            "20",
            "--bodies-in-flight-per-ip-mb",
            "16",
            // One upload must fit a client's pool (the Core refuses to start otherwise).
            "--max-upload-bytes",
            "12582912",
        ]
        .map(String::from)
        .to_vec(),
        ..CoreOptions::default()
    });
    let addr = api_addr(&core);
    let token = core.token.clone();
    // Three uploads of 6 MiB from one address that stop after 1 MiB: two fit in its 16 MiB,
    // the one counted last (the Core takes them in any order) is refused with 429 at once.
    let mut uploads: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .write_all(upload_head(Some(&token), 6 * MIB).as_bytes())
                .unwrap();
            assert!(send_zeros(&mut stream, MIB));
            stream
        })
        .collect();
    let mut answered = Vec::new();
    wait_until(Duration::from_secs(20), "one upload refused", || {
        answered = uploads
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| answered_now(s))
            .map(|(i, _)| i)
            .collect();
        !answered.is_empty()
    });
    assert_eq!(answered.len(), 1, "{answered:?}");
    let mut refused = uploads.remove(answered[0]);
    let (status, text) = read_head(&mut refused).unwrap();
    assert_eq!(status, 429, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    // 12 MiB are held in all: one more of 9 MiB would pass the bound of all clients (20): 503.
    assert_eq!(
        raw_request(addr, &upload_head(Some(&token), 9 * MIB), 9 * MIB).unwrap(),
        503
    );
    // The held ones finish and are answered (not multipart: 400); then room is back.
    for stream in &mut uploads {
        assert!(send_zeros(stream, 5 * MIB));
        assert_eq!(read_head(stream).unwrap().0, 400);
    }
    assert_eq!(
        raw_request(addr, &upload_head(Some(&token), 9 * MIB), 9 * MIB).unwrap(),
        400
    );
}

/// Whether the server has written something on this connection (non-blocking check).
fn answered_now(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let answered = !matches!(stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    answered
}

/// Whether the server closed this connection (non-blocking check).
fn closed(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

#[test]
fn slow_headers_and_idle_connections_are_closed_in_time() {
    let core = Core::start(CoreOptions {
        extra: ["--header-timeout-ms", "1000", "--idle-timeout-ms", "3000"]
            .map(String::from)
            .to_vec(),
        ..CoreOptions::default()
    });
    let addr = api_addr(&core);
    // A kept-alive connection after one request.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.write_all(head("GET", "/health", &[]).as_bytes())
        .unwrap();
    let (status, text) = read_head(&mut idle).unwrap();
    assert_eq!(status, 200);
    let length: usize = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0u8; length];
    idle.read_exact(&mut body).unwrap();
    let idle_since = Instant::now();

    // 500 connections that send their headers a byte at a time, never finishing them.
    let started = Instant::now();
    let mut slow: Vec<Option<TcpStream>> = (0..500)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"POST /v1/fn HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            Some(stream)
        })
        .collect();
    let mut last_close = Duration::ZERO;
    while slow.iter().any(Option::is_some) && started.elapsed() < Duration::from_secs(10) {
        for slot in &mut slow {
            if let Some(stream) = slot {
                let gone = closed(stream) || stream.write_all(b"X").is_err();
                if gone {
                    last_close = started.elapsed();
                    *slot = None;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let open = slow.iter().filter(|s| s.is_some()).count();
    assert_eq!(
        open, 0,
        "{open} slow-header connections still open after 10 s"
    );
    // The header time-out (1 s) from each connection's first byte, plus scheduling slack.
    assert!(
        last_close < Duration::from_millis(2500),
        "the last slow connection closed after {last_close:?}"
    );

    // The idle connection outlived the header time-out and closes at the idle one.
    if idle_since.elapsed() < Duration::from_millis(2500) {
        assert!(
            !closed(&mut idle),
            "idle connection closed before its time-out"
        );
    }
    wait_until(
        Duration::from_secs(6),
        "the idle connection to close",
        || closed(&mut idle),
    );
    assert!(idle_since.elapsed() >= Duration::from_millis(2900));
}

#[test]
fn connections_past_the_cap_wait_for_a_free_one() {
    let core = Core::start(CoreOptions {
        extra: ["--max-connections", "20", "--header-timeout-ms", "1500"]
            .map(String::from)
            .to_vec(),
        ..CoreOptions::default()
    });
    let addr = api_addr(&core);
    // Every connection the Core takes is held, silent.
    let silent: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let started = Instant::now();
    let mut waiting = TcpStream::connect(addr).unwrap();
    waiting
        .write_all(head("GET", "/health", &[]).as_bytes())
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = waiting.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "a connection past the cap was served at once: {early:?}"
    );
    // The silent ones are closed at the header time-out, and the waiting one is served.
    let (status, _) = read_head(&mut waiting).unwrap();
    assert_eq!(status, 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(5),
        "served after {waited:?}"
    );
    drop(silent);
}
