//! The HTTP/1.1 server of the API: a connection cap, a header time-out from a request's first
//! byte, and an idle time-out between requests of a kept-alive connection.
//!
//! hyper's own `header_read_timeout` also runs while a kept-alive connection waits for its next
//! request, which ties the two time-outs together; here each connection is watched instead: a
//! connection with no request in progress is dropped when its deadline passes (the header
//! time-out once a request has begun to arrive or the connection is new, else the idle
//! time-out). A connection with a request in progress is never cut here; its body has its own
//! time-out (see [`crate::admission`]).

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
use tokio::sync::{Notify, Semaphore};
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
    loop {
        let deadline = activity.deadline(limits);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "API connection ended");
                }
                return;
            }
            () = activity.changed.notified() => {}
            () = sleep_until(deadline) => {
                if activity.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(%peer, "closing an API connection: idle or headers too slow");
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing, for its deadline.
struct Activity {
    state: Mutex<ActivityState>,
    changed: Notify,
}

struct ActivityState {
    /// Requests being answered.
    busy: usize,
    /// When the last request was answered (or the connection accepted).
    idle_since: Instant,
    /// When the bytes of a request began to arrive, while no request is being answered.
    header_since: Option<Instant>,
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
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        let state = self.lock();
        if state.busy > 0 {
            return None;
        }
        Some(match state.header_since {
            Some(since) => since + limits.header_timeout,
            None => state.idle_since + limits.idle_timeout,
        })
    }

    fn bytes_arrived(&self) {
        let mut state = self.lock();
        if state.busy == 0 && state.header_since.is_none() {
            state.header_since = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }
}

/// One request being answered on a connection.
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: &Arc<Activity>) -> Self {
        {
            let mut state = activity.lock();
            state.busy += 1;
            state.header_since = None;
        }
        activity.changed.notify_one();
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        {
            let mut state = self.0.lock();
            state.busy = state.busy.saturating_sub(1);
            state.idle_since = Instant::now();
        }
        self.0.changed.notify_one();
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
