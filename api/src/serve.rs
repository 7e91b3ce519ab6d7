//! The HTTP/1.1 server of the API: a connection cap, a header time-out from a request's first
//! byte, and an idle time-out between requests of a kept-alive connection.
//!
//! hyper's own `header_read_timeout` also runs while a kept-alive connection waits for its next
//! request, which ties the two time-outs together; here each connection is watched instead: a
//! connection with no request in progress is dropped when its deadline passes (the header
//! time-out once a request has begun to arrive or the connection is new, else the idle
//! time-out). A connection with a request in progress is never cut here; its body has its own
//! time-out (see [`crate::admission`]).
//!
//! The watch costs a request nothing but two uncontended locks: requests and arriving bytes only
//! update the connection's [`Activity`], and the connection's task looks at it when its timer
//! fires, at least once per check period (the shorter time-out). Waking the task on every change
//! would make each request re-schedule its own task as a yield, and tokio wakes a parked runtime
//! thread for every yield (docs/BENCHMARKS.md, "The wrk comparison").

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::HttpLimits;

/// Largest read buffer of one connection. hyper grows it up to ~400 KiB by default; with many
/// connections uploading at once that is most of the Core's memory, for no gain in speed.
const READ_BUFFER_MAX: usize = 64 * 1024;

/// Serves `app` on `listener` until the listener fails.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits) -> std::io::Result<()> {
    Server::new(limits).serve(listener, app).await
}

/// The API's connection handling: the limits, and the connection cap shared by every
/// (re)start of an acceptor, so connections still open from an earlier one stay counted.
#[derive(Debug, Clone)]
pub struct Server {
    limits: HttpLimits,
    connections: Arc<Semaphore>,
}

impl Server {
    /// Connection handling under these limits.
    pub fn new(limits: HttpLimits) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
        }
    }

    /// Accepts connections on `listener` and serves `app` on each, until the listener fails.
    pub async fn serve(&self, listener: TcpListener, app: Router) -> std::io::Result<()> {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.max_buf_size(READ_BUFFER_MAX).keep_alive(true);
        loop {
            // Over the cap, new connections wait in the kernel's backlog, not in our memory.
            let Ok(permit) = self.connections.clone().acquire_owned().await else {
                return Ok(());
            };
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) if transient(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait for some to close.
                    tracing::warn!(error = %e, "cannot accept an API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (app, http, limits) = (app.clone(), http.clone(), self.limits.clone());
            // Each connection lives apart from the acceptor: a restarted acceptor leaves open
            // connections and their requests alone.
            tokio::spawn(async move {
                connection(stream, peer, app, http, &limits).await;
                drop(permit);
            });
        }
    }
}

fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    )
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    http: hyper::server::conn::http1::Builder,
    limits: &HttpLimits,
) {
    let activity = Arc::new(Activity::new());
    let io = hyper_util::rt::TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let busy = Busy::begin(&activity);
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await?;
                // The connection counts as busy until the answer is written out.
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &busy;
                        frame
                    }))
                }))
            }
        })
    };
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);
    let period = limits
        .header_timeout
        .min(limits.idle_timeout)
        .max(Duration::from_millis(1));
    let check = tokio::time::sleep(limits.header_timeout);
    tokio::pin!(check);
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "API connection ended");
                }
                return;
            }
            () = check.as_mut() => match activity.next_check(limits, period, Instant::now()) {
                Some(at) => check.as_mut().reset(at),
                None => {
                    tracing::debug!(%peer, "closing an API connection: idle or headers too slow");
                    return;
                }
            },
        }
    }
}

/// What a connection is doing, for its deadline.
struct Activity {
    state: Mutex<ActivityState>,
}

#[derive(Debug, Clone, Copy)]
struct ActivityState {
    /// Requests being answered.
    busy: usize,
    /// When the last request was answered (or the connection accepted).
    idle_since: Instant,
    /// When the bytes of a request began to arrive, while no request is being answered.
    header_since: Option<Instant>,
}

impl ActivityState {
    /// When the connection is to be closed if nothing changes; `None` while a request is
    /// being answered.
    fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        if self.busy > 0 {
            return None;
        }
        Some(match self.header_since {
            Some(since) => since + limits.header_timeout,
            None => self.idle_since + limits.idle_timeout,
        })
    }

    /// When to look again (`None`: close now). Any change after `now` sets a deadline at least
    /// `period` after it, so looking again within `period` is never late for it.
    fn next_check(&self, limits: &HttpLimits, period: Duration, now: Instant) -> Option<Instant> {
        match self.deadline(limits) {
            Some(deadline) if deadline <= now => None,
            Some(deadline) => Some(deadline.min(now + period)),
            None => Some(now + period),
        }
    }
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(ActivityState {
                busy: 0,
                idle_since: now,
                // A new connection owes its first request's headers at once.
                header_since: Some(now),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_check(&self, limits: &HttpLimits, period: Duration, now: Instant) -> Option<Instant> {
        self.lock().next_check(limits, period, now)
    }

    fn bytes_arrived(&self) {
        let mut state = self.lock();
        if state.busy == 0 && state.header_since.is_none() {
            state.header_since = Some(Instant::now());
        }
    }
}

/// One request being answered on a connection.
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: &Arc<Activity>) -> Self {
        let mut state = activity.lock();
        state.busy += 1;
        state.header_since = None;
        drop(state);
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.busy = state.busy.saturating_sub(1);
        state.idle_since = Instant::now();
    }
}

/// A connection's socket that reports arriving bytes to its [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(10);

    fn limits() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..HttpLimits::default()
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A connection idle since `start`, with `busy` requests in progress and headers arriving
    /// since `header_since`.
    fn state(busy: usize, start: Instant, header_since: Option<Instant>) -> ActivityState {
        ActivityState {
            busy,
            idle_since: start,
            header_since,
        }
    }

    /// When the connection is looked at again if looked at `after` its start.
    fn next(state: &ActivityState, start: Instant, after: Duration) -> Option<Instant> {
        state.next_check(&limits(), PERIOD, start + after)
    }

    #[test]
    fn a_new_connection_is_checked_when_its_headers_are_due() {
        let start = Instant::now();
        let new = state(0, start, Some(start));
        assert_eq!(next(&new, start, secs(0)), Some(start + secs(10)));
        assert_eq!(next(&new, start, secs(4)), Some(start + secs(10)));
        assert_eq!(next(&new, start, secs(10)), None);
    }

    #[test]
    fn a_busy_connection_is_never_closed_and_looked_at_every_period() {
        let start = Instant::now();
        let busy = state(1, start, None);
        let late = secs(3600);
        assert_eq!(next(&busy, start, late), Some(start + late + PERIOD));
    }

    #[test]
    fn an_idle_connection_is_looked_at_every_period_and_closed_at_its_idle_deadline() {
        let start = Instant::now();
        let idle = state(0, start, None);
        assert_eq!(next(&idle, start, secs(0)), Some(start + secs(10)));
        assert_eq!(next(&idle, start, secs(55)), Some(start + secs(60)));
        assert_eq!(next(&idle, start, secs(60)), None);
    }

    #[test]
    fn headers_that_begin_after_a_check_are_due_no_earlier_than_the_next_one() {
        let start = Instant::now();
        let idle = state(0, start, None);
        for (checked, arrived) in [(0, 0), (0, 9), (20, 21), (50, 59)] {
            let next = next(&idle, start, secs(checked))
                .expect("an idle connection within its time-out is looked at again");
            let due = state(0, start, Some(start + secs(arrived)))
                .deadline(&limits())
                .expect("a connection with no request in progress has a deadline");
            assert!(next <= due, "checked at {checked}, headers from {arrived}");
        }
    }
}
