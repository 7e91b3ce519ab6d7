//! WASI 0.2 components, the third function form: a `wasi:cli/run` component with the same
//! stdin/stdout JSON contract as a WASI command, plus outgoing `wasi:http` requests and
//! `wasi:sockets` TCP connections, both fenced by the function's egress allow-list (empty by
//! default: no network at all).
//!
//! HTTP requests on plain `http` go through one pooled client shared by every invocation (a
//! fresh TCP connection per request costs more than the rest of the request on a LAN); `https`
//! uses Wasmtime's own sender. Sockets: only TCP connects to allowed addresses (and the
//! implicit bind that precedes them); no listening, no UDP. Name lookups are allowed only when
//! the function has an allow-list, since a lookup can carry data out too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use super::{Egress, GuestLimits, Logs};

/// Longest wait for the first byte of a response (the invocation's own time-out still applies).
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// The pooled HTTP/1 client behind `wasi:http` requests on plain `http`.
pub(crate) type HttpPool = Client<HttpConnector, WasiBody>;

/// A new pool; clones share its connections.
pub(crate) fn http_pool() -> HttpPool {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Everything one component invocation's `Store` holds.
pub(crate) struct ComponentState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    pub(crate) hooks: EgressHooks,
    pub(crate) limits: GuestLimits,
}

impl ComponentState {
    pub(crate) fn new(wasi: WasiCtx, hooks: EgressHooks, limits: GuestLimits) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks,
            limits,
        }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The linker components are instantiated with: WASI 0.2 (CLI, clocks, random, I/O,
/// sockets, an empty filesystem) and `wasi:http` outgoing requests.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<ComponentState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// Grants the network uses of the allow-list to a component's WASI context.
pub(crate) fn grant_network(builder: &mut WasiCtxBuilder, egress: &Egress) {
    let any = !egress.allow.is_empty();
    builder
        .allow_tcp(any)
        .allow_udp(false)
        .allow_ip_name_lookup(any);
    if !any {
        return;
    }
    let allow: Arc<Vec<(String, Option<u16>)>> = Arc::new(
        egress
            .entries()
            .map(|(host, port)| (host.to_string(), port))
            .collect(),
    );
    builder.socket_addr_check(move |addr, usage| {
        let allow = allow.clone();
        Box::pin(async move { socket_allowed(&allow, addr, usage).await })
    });
}

/// Whether a socket use is allowed: connects to an allowed address, and the implicit bind to
/// the wildcard address that precedes a connect.
async fn socket_allowed(
    allow: &[(String, Option<u16>)],
    addr: SocketAddr,
    usage: SocketAddrUse,
) -> bool {
    let allowed = match usage {
        SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
        SocketAddrUse::TcpConnect => connect_allowed(allow, addr).await,
        _ => false,
    };
    if !allowed {
        tracing::warn!(%addr, ?usage, "socket use refused: not on the function's egress allow-list");
    }
    allowed
}

/// An entry allows `addr` when its port (if any) matches and its host is that IP, or a name
/// that resolves to it (the guest resolved the same name, or typed the address).
async fn connect_allowed(allow: &[(String, Option<u16>)], addr: SocketAddr) -> bool {
    for (host, port) in allow {
        if port.is_some_and(|p| p != addr.port()) {
            continue;
        }
        if host == super::http::ANY_HOST {
            return true;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            if ip == addr.ip() {
                return true;
            }
            continue;
        }
        if let Ok(mut resolved) = tokio::net::lookup_host((host, addr.port())).await
            && resolved.any(|candidate| candidate.ip() == addr.ip())
        {
            return true;
        }
    }
    false
}

/// The `wasi:http` hooks of one invocation: the allow-list, the shared pool, and log lines
/// saying why a request was refused.
pub(crate) struct EgressHooks {
    egress: Egress,
    pool: HttpPool,
    pub(crate) logs: Logs,
}

impl EgressHooks {
    pub(crate) fn new(egress: Egress, pool: HttpPool) -> Self {
        Self {
            egress,
            pool,
            logs: Logs::default(),
        }
    }
}

type IoFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;
type SendFuture = Box<
    dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<WasiBody>, IoFuture)>> + Send,
>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        use wasmtime_wasi_http::Error;

        let uri = request.uri().clone();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().or(Some(if https { 443 } else { 80 }));
        let allowed = uri
            .host()
            .is_some_and(|host| self.egress.allows_host(host, port));
        if !allowed {
            let why = "the host is not on the function's egress allow-list";
            tracing::warn!(%uri, why, "outgoing request refused");
            self.logs.push(format!("wasi:http {uri}: {why}").as_bytes());
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        if https {
            return Box::new(async move {
                let (response, io) =
                    wasmtime_wasi_http::default_send_request(request, options).await?;
                Ok((
                    response.map(BodyExt::boxed_unsync),
                    Box::new(io) as IoFuture,
                ))
            });
        }
        let pool = self.pool.clone();
        let first_byte = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(FIRST_BYTE_TIMEOUT)
            .min(FIRST_BYTE_TIMEOUT);
        Box::new(async move {
            let response = match tokio::time::timeout(first_byte, pool.request(request)).await {
                Err(_) => return Err(Error::HttpResponseTimeout),
                Ok(Err(e)) if e.is_connect() => {
                    tracing::debug!(%uri, error = %e, "connect failed");
                    return Err(Error::ConnectionRefused);
                }
                Ok(Err(e)) => {
                    tracing::debug!(%uri, error = %e, "request failed");
                    return Err(Error::HttpProtocolError);
                }
                Ok(Ok(response)) => response,
            };
            let response = response.map(|body| body.map_err(Error::Hyper).boxed_unsync());
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_socket_check_allows_only_connects_to_listed_addresses() {
        let allow = vec![
            ("127.0.0.1".to_string(), Some(8080)),
            ("localhost".to_string(), Some(9000)),
        ];
        let addr = |s: &str| {
            s.parse::<SocketAddr>()
                .unwrap_or_else(|e| panic!("{s}: {e}"))
        };
        let ok = |a: &str, u: SocketAddrUse| {
            let allow = allow.clone();
            let a = addr(a);
            async move { socket_allowed(&allow, a, u).await }
        };
        assert!(ok("127.0.0.1:8080", SocketAddrUse::TcpConnect).await);
        assert!(!ok("127.0.0.1:8081", SocketAddrUse::TcpConnect).await);
        // A name allows the addresses it resolves to, on its port.
        assert!(ok("127.0.0.1:9000", SocketAddrUse::TcpConnect).await);
        assert!(!ok("10.0.0.1:8080", SocketAddrUse::TcpConnect).await);
        // The implicit bind before a connect, and nothing else.
        assert!(ok("0.0.0.0:0", SocketAddrUse::TcpBind).await);
        assert!(!ok("0.0.0.0:8080", SocketAddrUse::TcpBind).await);
        assert!(!ok("127.0.0.1:0", SocketAddrUse::TcpBind).await);
        assert!(!ok("0.0.0.0:0", SocketAddrUse::TcpListen).await);
        assert!(!ok("127.0.0.1:8080", SocketAddrUse::TcpAccept).await);
        assert!(!ok("0.0.0.0:0", SocketAddrUse::UdpBind).await);
        assert!(!ok("127.0.0.1:8080", SocketAddrUse::UdpSend).await);
    }
}
