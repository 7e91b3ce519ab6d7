//! Progress of a large upload on stderr: the bytes sent, then the wait while the workers
//! compile (a Python function takes tens of seconds there). On a terminal one line is
//! rewritten in place; otherwise a plain line is written every few seconds, and only once the
//! upload has run long enough to be worth reporting. Stdout stays the answer alone.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Body;

/// Uploads smaller than this finish before any report would be useful.
pub(crate) const REPORT_FROM_BYTES: usize = 4 * 1024 * 1024;
/// Size of the pieces the code is streamed in (each one counted as sent).
const PIECE_BYTES: usize = 256 * 1024;
/// How often a terminal's line is redrawn.
const TERMINAL_EVERY: Duration = Duration::from_millis(200);
/// How often a plain line is written when stderr is not a terminal.
const LINES_EVERY: Duration = Duration::from_secs(5);

/// Bytes of one upload handed to the HTTP client so far.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    bytes: Arc<AtomicU64>,
    total: u64,
    /// When the body was made; `done_ms` counts from it.
    base: Instant,
    /// Milliseconds after `base` when the last byte was taken (`u64::MAX` until then): the
    /// workers' compile starts about then.
    done_ms: Arc<AtomicU64>,
}

/// The code as a streamed body that counts what the HTTP client has taken.
pub(crate) fn counted_body(code: Vec<u8>) -> (Body, Sent) {
    let (stream, sent) = counted_stream(code);
    (Body::wrap_stream(stream), sent)
}

/// The code in pieces, counted as each is taken.
fn counted_stream(
    code: Vec<u8>,
) -> (
    impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    Sent,
) {
    let sent = Sent {
        bytes: Arc::new(AtomicU64::new(0)),
        total: code.len() as u64,
        base: Instant::now(),
        done_ms: Arc::new(AtomicU64::new(u64::MAX)),
    };
    let code = bytes::Bytes::from(code);
    let (counter, done_ms, base) = (sent.bytes.clone(), sent.done_ms.clone(), sent.base);
    let pieces = (0..code.len()).step_by(PIECE_BYTES).map(move |start| {
        let end = (start + PIECE_BYTES).min(code.len());
        counter.store(end as u64, Ordering::Relaxed);
        if end == code.len() {
            done_ms.store(base.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        Ok::<_, std::io::Error>(code.slice(start..end))
    });
    // The iterator runs as the client pulls the stream, so the counter follows the socket.
    (futures::stream::iter(pieces), sent)
}

/// Reports `sent` on stderr until dropped.
pub(crate) struct Reporter {
    task: tokio::task::JoinHandle<()>,
    terminal: bool,
}

impl Reporter {
    /// Starts reporting the upload of `what`.
    pub(crate) fn start(what: String, sent: Sent) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let task = tokio::spawn(report(what, sent, terminal));
        Self { task, terminal }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.task.abort();
        if self.terminal {
            // Clear the line that was being redrawn.
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn report(what: String, sent: Sent, terminal: bool) {
    let started = Instant::now();
    let every = if terminal {
        TERMINAL_EVERY
    } else {
        LINES_EVERY
    };
    let mut ticks = tokio::time::interval_at((started + every).into(), every);
    loop {
        ticks.tick().await;
        let now = sent.bytes.load(Ordering::Relaxed);
        let done_ms = sent.done_ms.load(Ordering::Relaxed);
        let line = if now < sent.total || done_ms == u64::MAX {
            format!(
                "uploading {what}: {:.1} of {:.1} MiB ({}%)",
                mib(now),
                mib(sent.total),
                now * 100 / sent.total.max(1)
            )
        } else {
            let since = sent.base + Duration::from_millis(done_ms);
            format!(
                "uploaded {what} ({:.1} MiB); the workers are compiling it: {} s",
                mib(sent.total),
                since.elapsed().as_secs()
            )
        };
        let mut stderr = std::io::stderr();
        let _ = if terminal {
            write!(stderr, "\r\x1b[2K{line}")
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_counted_body_carries_every_byte_and_counts_them() {
        let code: Vec<u8> = (0..(PIECE_BYTES * 3 + 7)).map(|i| i as u8).collect();
        let (stream, sent) = counted_stream(code.clone());
        assert_eq!(sent.total, code.len() as u64);
        assert_eq!(sent.bytes.load(Ordering::Relaxed), 0);
        let mut stream = std::pin::pin!(stream);
        let mut got = Vec::new();
        use futures::StreamExt;
        while let Some(piece) = stream.next().await {
            got.extend_from_slice(&piece.unwrap());
            assert_eq!(sent.bytes.load(Ordering::Relaxed), got.len() as u64);
            // Done only once the last piece is taken.
            let done = sent.done_ms.load(Ordering::Relaxed) != u64::MAX;
            assert_eq!(done, got.len() == code.len());
        }
        assert_eq!(got, code);
    }
}
