//! What a request must pass before its body is read: the token (401) and the admin right (403)
//! from the headers, the route's size limit (413) from `Content-Length`, and the bytes of
//! bodies in flight, for all clients (503) and per client address (429). Only then is the body
//! read, within the body time-out (408), into memory that stays counted until the answer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, EXPECT, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::backend::{Backend, Subject};
use crate::error::ApiError;
use crate::limits::HttpLimits;

/// The state of the admission middleware.
pub(crate) struct Gate<B> {
    pub(crate) backend: Arc<B>,
    pub(crate) limits: HttpLimits,
    in_flight: Arc<InFlight>,
}

impl<B> Gate<B> {
    pub(crate) fn new(backend: Arc<B>, limits: HttpLimits) -> Self {
        let in_flight = Arc::new(InFlight {
            global_max: limits.bodies_in_flight_bytes,
            per_ip_max: limits.bodies_in_flight_per_ip_bytes,
            held: Mutex::default(),
        });
        Self {
            backend,
            limits,
            in_flight,
        }
    }
}

/// A route's body limit and the Core setting that sets it (named in the 413).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limit {
    bytes: usize,
    setting: &'static str,
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    User,
    Admin,
}

/// The access rule and body limit of a request, from its method and path. The handlers check
/// access again (extractors); this copy only lets a refusal come before the body is read.
fn rule(method: &Method, path: &str, limits: &HttpLimits) -> (Access, Limit) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let upload = (method == Method::POST
        && segments.len() == 3
        && (segments[1] == "fn" || segments[1] == "svc"))
        || (method == Method::PUT && segments.len() == 4 && segments[1] == "fn")
        || (method == Method::PUT && segments.len() == 3 && segments[1] == "svc");
    let limit = if upload {
        Limit {
            bytes: limits.max_upload_bytes,
            setting: "max-upload-bytes, FUNLESS_MAX_UPLOAD_BYTES",
        }
    } else {
        Limit {
            bytes: limits.max_body_bytes,
            setting: "max-body-bytes, FUNLESS_MAX_BODY_BYTES",
        }
    };
    let access = match segments.as_slice() {
        ["v1", "admin", ..] | ["v1", "workers"] => Access::Admin,
        // Any subject may create an APP script (as in FunLess); only the admin deletes one.
        ["v1", "scripts", ..] if method == Method::DELETE => Access::Admin,
        ["v1", _, ..] => Access::User,
        _ => Access::Public,
    };
    (access, limit)
}

/// The bearer token of a request's headers.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization header".into()))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("Authorization header must be 'Bearer <token>'".into())
        })
}

/// When a request was admitted and what admission took, for the invocation's
/// `Server-Timing` stages (`auth`, `body`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted {
    /// When the middleware saw the request (its head parsed by hyper).
    pub(crate) arrived: Instant,
    /// Authenticating the bearer token.
    pub(crate) auth: Duration,
    /// Waiting for and reading the body (with its bounds).
    pub(crate) body: Duration,
}

/// The middleware (see the module doc).
pub(crate) async fn admit<B: Backend>(
    State(gate): State<Arc<Gate<B>>>,
    request: Request,
    next: Next,
) -> Response {
    let arrived = Instant::now();
    let (access, limit) = rule(request.method(), request.uri().path(), &gate.limits);
    let (mut parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut authenticated = Duration::ZERO;
    if access != Access::Public {
        let subject = match bearer(&parts.headers) {
            Ok(token) => gate.backend.authenticate(token).await,
            Err(e) => Err(e),
        };
        authenticated = arrived.elapsed();
        let refusal = match subject {
            Ok(subject) if access == Access::Admin && !subject.admin => Some(ApiError::Forbidden(
                "this endpoint needs an admin token".into(),
            )),
            Ok(subject) => {
                parts.extensions.insert::<Subject>(subject);
                None
            }
            Err(e) => Some(e),
        };
        if let Some(refusal) = refusal {
            // A body over the limit is not worth reading: the connection closes instead.
            if declared.is_none_or(|n| n <= limit.bytes) {
                discard(&parts.headers, body, limit.bytes, &gate.limits).await;
            }
            return refusal.into_response();
        }
    }
    if declared.is_some_and(|n| n > limit.bytes) {
        return too_large(limit).into_response();
    }
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let mut held = match gate.in_flight.reserve(ip, declared.unwrap_or(0)) {
        Ok(held) => held,
        Err(e) => return busy(e),
    };
    let read = tokio::time::timeout(
        gate.limits.body_timeout,
        collect(body, limit, declared, &mut held),
    )
    .await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(Refused::Error(e))) => return e.into_response(),
        Ok(Err(Refused::Busy(e))) => return busy(e),
        Err(_) => {
            return ApiError::RequestTimeout(format!(
                "the request body did not arrive within {} s",
                gate.limits.body_timeout.as_secs_f64()
            ))
            .into_response();
        }
    };
    parts.extensions.insert(Admitted {
        arrived,
        auth: authenticated,
        body: arrived.elapsed().saturating_sub(authenticated),
    });
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    // The body's bytes count until the answer is ready: handlers keep them (or copies) so long.
    drop(held);
    response
}

fn too_large(limit: Limit) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the request body is larger than {} bytes (the Core's {})",
        limit.bytes, limit.setting
    ))
}

/// A 503 or 429 for a full pool, with the time after which a retry may pass.
fn busy(e: ApiError) -> Response {
    let mut response = e.into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

enum Refused {
    Error(ApiError),
    Busy(ApiError),
}

/// Reads a body up to `limit` bytes, counting the bytes of a body of unknown length as they
/// come. A declared length (already counted and within `limit`) is allocated at once: growing
/// by doubling would briefly hold up to three times a large upload.
async fn collect(
    mut body: Body,
    limit: Limit,
    declared: Option<usize>,
    held: &mut Held,
) -> Result<Bytes, Refused> {
    let count_as_read = declared.is_none();
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit.bytes));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Refused::Error(ApiError::BadRequest(format!(
                "cannot read the request body: {e}"
            )))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > limit.bytes {
            return Err(Refused::Error(too_large(limit)));
        }
        if count_as_read {
            held.grow(data.len()).map_err(Refused::Busy)?;
        }
        bytes.extend_from_slice(&data);
    }
    Ok(Bytes::from(bytes))
}

/// Reads and drops the body of a refused request, so that closing the connection does not
/// reset it before the client reads the answer. Bounded by the route's limit and the body
/// time-out, and skipped when the client waits for `100 Continue` (it then sends nothing).
async fn discard(headers: &HeaderMap, mut body: Body, limit: usize, limits: &HttpLimits) {
    if headers.contains_key(EXPECT) {
        return;
    }
    let _ = tokio::time::timeout(limits.body_timeout, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > limit {
                return;
            }
        }
    })
    .await;
}

/// Bytes of request bodies held, in all and per client address.
struct InFlight {
    global_max: usize,
    per_ip_max: usize,
    held: Mutex<Pool>,
}

#[derive(Default)]
struct Pool {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl InFlight {
    fn reserve(self: &Arc<Self>, ip: IpAddr, bytes: usize) -> Result<Held, ApiError> {
        let mut held = Held {
            pool: self.clone(),
            ip,
            bytes: 0,
        };
        held.grow(bytes)?;
        Ok(held)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Bytes counted for one request, given back on drop.
struct Held {
    pool: Arc<InFlight>,
    ip: IpAddr,
    bytes: usize,
}

impl Held {
    fn grow(&mut self, bytes: usize) -> Result<(), ApiError> {
        if bytes == 0 {
            return Ok(());
        }
        let mut pool = self.pool.lock();
        if pool.total + bytes > self.pool.global_max {
            return Err(ApiError::Unavailable(format!(
                "the server is receiving as many request bodies as it may ({} bytes); retry later",
                self.pool.global_max
            )));
        }
        let mine = pool.per_ip.get(&self.ip).copied().unwrap_or(0);
        if mine + bytes > self.pool.per_ip_max {
            return Err(ApiError::TooManyRequests(format!(
                "this client is sending as many request bodies as it may ({} bytes); retry later",
                self.pool.per_ip_max
            )));
        }
        pool.total += bytes;
        pool.per_ip.insert(self.ip, mine + bytes);
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut pool = self.pool.lock();
        pool.total = pool.total.saturating_sub(self.bytes);
        if let Some(mine) = pool.per_ip.get_mut(&self.ip) {
            *mine = mine.saturating_sub(self.bytes);
            if *mine == 0 {
                pool.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rules_of_routes() {
        let limits = HttpLimits::default();
        let up = limits.max_upload_bytes;
        let small = limits.max_body_bytes;
        for (method, path, access, limit) in [
            (Method::GET, "/health", Access::Public, small),
            (Method::GET, "/v1/", Access::Public, small),
            (Method::GET, "/metrics", Access::Public, small),
            (Method::POST, "/v1/fn", Access::User, small),
            (Method::POST, "/v1/fn/m", Access::User, up),
            (Method::PUT, "/v1/fn/m/f", Access::User, up),
            (Method::POST, "/v1/fn/m/f", Access::User, small),
            (Method::POST, "/v1/svc/s", Access::User, up),
            (Method::PUT, "/v1/svc/s", Access::User, up),
            (Method::GET, "/v1/svc/s/logs", Access::User, small),
            (Method::GET, "/v1/scripts/app", Access::User, small),
            (Method::POST, "/v1/scripts/app", Access::User, small),
            (Method::DELETE, "/v1/scripts/app/site", Access::Admin, small),
            (Method::POST, "/v1/admin/subjects", Access::Admin, small),
            (Method::GET, "/v1/workers", Access::Admin, small),
        ] {
            let (got_access, got_limit) = rule(&method, path, &limits);
            assert_eq!(
                (got_access, got_limit.bytes),
                (access, limit),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn bytes_in_flight_are_bounded_in_all_and_per_address_and_given_back() {
        let pool = Arc::new(InFlight {
            global_max: 100,
            per_ip_max: 60,
            held: Mutex::default(),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = pool.reserve(a, 50).unwrap();
        assert!(matches!(
            pool.reserve(a, 20),
            Err(ApiError::TooManyRequests(_))
        ));
        let mut second = pool.reserve(b, 40).unwrap();
        assert!(matches!(second.grow(20), Err(ApiError::Unavailable(_))));
        drop(first);
        second.grow(20).unwrap();
        drop(second);
        let pool = pool.lock();
        assert_eq!((pool.total, pool.per_ip.len()), (0, 0));
    }
}
