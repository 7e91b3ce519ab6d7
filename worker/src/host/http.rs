//! `fl_imps::__http_request`: outgoing HTTP and HTTPS for FunLess-ABI functions, asynchronous
//! on the host (the guest's task yields while waiting; no thread is held), limited to the hosts
//! on the function's allow-list (or the operator's default for functions without one; empty:
//! no egress), with a time-out and a bounded write back into guest memory.
//!
//! ABI (DESIGN.md §4): `(resp_ptr, resp_len_ptr, status_ptr, method, uri_ptr, uri_len,
//! hdr_ptr, hdr_len, body_ptr, body_len)`; method 0..3 = GET, POST, PUT, DELETE; headers
//! `"K:V\nK:V"`. On entry `*resp_len_ptr` (u32 LE) is the capacity of the buffer at
//! `resp_ptr`:
//!
//! - a capacity above 0 is a buffer the guest set aside: the host writes at most that many
//!   bytes of the body there;
//! - a capacity of 0 is FunLess's SDK convention (fl-wasm-rs's `FLRequest::send` and the Go
//!   SDK pass an empty buffer): the host writes the whole body at `resp_ptr`, as FunLess's host
//!   does, up to the end of the guest's linear memory. The guest chose to hand over that
//!   memory; the host only checks the range is inside it.
//!
//! The host then writes the number of bytes written to `*resp_len_ptr` and the status (u16
//! LE) to `*status_ptr`. It reads no more of the response than it can write, so a large
//! answer costs the worker no more memory than the guest's own. Any failure, a refused host
//! included, is status 0 with an empty body, like FunLess, plus a log line saying why.

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::{Caller, Linker};

use super::HostState;
use super::funless::{memory, range};

/// Longest an outgoing request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request body or URI a guest may send, bytes.
const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// The allow-list entry that matches every host (an operator's default may use it).
pub(crate) const ANY_HOST: &str = "*";

/// What a function may reach and how.
#[derive(Debug, Clone, Default)]
pub(crate) struct Egress {
    /// `host`, `host:port`, `*` (any host) or `*:port` entries; empty: nothing.
    pub(crate) allow: Vec<String>,
    /// Shared HTTP client (connection pool).
    pub(crate) client: Option<reqwest::Client>,
}

impl Egress {
    /// Whether `url`'s host (and port) is on the allow-list.
    pub(crate) fn allows(&self, url: &reqwest::Url) -> bool {
        url.host_str()
            .is_some_and(|host| self.allows_host(host, url.port_or_known_default()))
    }

    /// Whether `host` (a name or an IP literal, IPv6 with or without brackets) on `port` is on
    /// the allow-list: an entry without a port allows every port of its host.
    pub(crate) fn allows_host(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.entries().any(|(h, p)| {
            (h == ANY_HOST || h.eq_ignore_ascii_case(host)) && (p.is_none() || p == port)
        })
    }

    /// The entries as (host, optional port).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, Option<u16>)> {
        self.allow.iter().map(|entry| split_entry(entry))
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; a bare IPv6 address has no port.
fn split_entry(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest, None),
        };
    }
    match entry.split_once(':') {
        Some((host, port)) if !port.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

/// The shared client of `__http_request`: pooled, HTTPS through rustls with the web's root
/// CAs (webpki-roots, compiled in, so a worker needs no OS certificate store) and the
/// operator's extra CAs (`pem_files`).
pub(crate) fn egress_client(pem_files: &[PathBuf]) -> crate::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(true)
        .pool_idle_timeout(Duration::from_secs(30));
    for file in pem_files {
        let pem = std::fs::read(file)
            .map_err(|e| crate::Error::Io(format!("egress CA file {}: {e}", file.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| crate::Error::Io(format!("egress CA file {}: {e}", file.display())))?;
        if certs.is_empty() {
            return Err(crate::Error::Io(format!(
                "egress CA file {}: no PEM certificate in it",
                file.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| crate::Error::Io(format!("HTTP client: {e}")))
}

type Params = (i32, i32, i32, i32, i32, i32, i32, i32, i32, i32);

/// What the guest asked for, read out of its memory before any await.
struct Ask {
    method: reqwest::Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Most body bytes the guest can take: its buffer's capacity (or, for capacity 0, all of
    /// its memory from `resp_ptr` on), never past the end of its memory.
    room: usize,
}

/// The answer, as much of its body as the guest can take.
struct Answer {
    status: u16,
    body: Vec<u8>,
    /// The body went on past `room`.
    truncated: bool,
}

fn read(caller: &mut Caller<'_, HostState>, p: &Params) -> wasmtime::Result<Ask> {
    let (resp_ptr, resp_len_ptr, _, method, uri_ptr, uri_len, hdr_ptr, hdr_len, body_ptr, body_len) =
        *p;
    let memory = memory(caller, "__http_request")?;
    let data = memory.data(&caller);
    let bytes = |ptr: i32, len: i32| -> wasmtime::Result<Vec<u8>> {
        if usize::try_from(len).is_ok_and(|l| l > MAX_REQUEST_BYTES) {
            return Err(wasmtime::format_err!(
                "__http_request: {len} bytes is more than allowed"
            ));
        }
        Ok(data[range(data.len(), ptr, len, "__http_request")?].to_vec())
    };
    let uri = String::from_utf8(bytes(uri_ptr, uri_len)?)
        .map_err(|_| wasmtime::format_err!("__http_request: the URI is not UTF-8"))?;
    let headers = String::from_utf8_lossy(&bytes(hdr_ptr, hdr_len)?)
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let method = match method {
        0 => reqwest::Method::GET,
        1 => reqwest::Method::POST,
        2 => reqwest::Method::PUT,
        3 => reqwest::Method::DELETE,
        other => {
            return Err(wasmtime::format_err!(
                "__http_request: unknown method {other}"
            ));
        }
    };
    Ok(Ask {
        method,
        uri,
        headers,
        body: bytes(body_ptr, body_len)?,
        room: room(data, resp_ptr, resp_len_ptr)?,
    })
}

/// How many body bytes fit at `resp_ptr` (see the module doc); traps on ranges outside the
/// guest's memory.
fn room(data: &[u8], resp_ptr: i32, resp_len_ptr: i32) -> wasmtime::Result<usize> {
    let len_at = range(data.len(), resp_len_ptr, 4, "__http_request")?;
    let mut capacity = [0u8; 4];
    capacity.copy_from_slice(&data[len_at]);
    let capacity = u32::from_le_bytes(capacity) as usize;
    let to_end = range(data.len(), resp_ptr, 0, "__http_request")?;
    let to_end = data.len() - to_end.start;
    Ok(match capacity {
        0 => to_end,
        declared => declared.min(to_end),
    })
}

/// Performs the request; `Err` is the reason it failed (reported as status 0).
async fn perform(egress: &Egress, ask: Ask) -> Result<Answer, String> {
    let url =
        reqwest::Url::parse(&ask.uri).map_err(|e| format!("invalid URI {:?}: {e}", ask.uri))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme {} is not supported (http and https only)",
            url.scheme()
        ));
    }
    if !egress.allows(&url) {
        return Err(format!(
            "{} is not on the function's egress allow-list",
            url.host_str().unwrap_or_default()
        ));
    }
    let client = egress.client.clone().ok_or("no HTTP client")?;
    let mut request = client.request(ask.method, url).timeout(REQUEST_TIMEOUT);
    for (k, v) in ask.headers {
        request = request.header(k, v);
    }
    let mut response = request
        .body(ask.body)
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    let status = response.status().as_u16();
    // Read no more than the guest can take: the rest is never held by the worker.
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        let take = chunk.len().min(ask.room - body.len());
        body.extend_from_slice(&chunk[..take]);
        if take < chunk.len() {
            truncated = true;
            break;
        }
    }
    Ok(Answer {
        status,
        body,
        truncated,
    })
}

/// An error with its causes (reqwest's own message omits why a TLS handshake failed).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn write_back(
    caller: &mut Caller<'_, HostState>,
    p: &Params,
    status: u16,
    body: &[u8],
) -> wasmtime::Result<()> {
    let (resp_ptr, resp_len_ptr, status_ptr, ..) = *p;
    let memory = memory(caller, "__http_request")?;
    let data = memory.data_mut(caller);
    let n = i32::try_from(body.len())
        .map_err(|_| wasmtime::format_err!("__http_request: response too large"))?;
    let at = range(data.len(), resp_ptr, n, "__http_request")?;
    data[at].copy_from_slice(body);
    let len_at = range(data.len(), resp_len_ptr, 4, "__http_request")?;
    data[len_at].copy_from_slice(&(n as u32).to_le_bytes());
    let status_at = range(data.len(), status_ptr, 2, "__http_request")?;
    data[status_at].copy_from_slice(&status.to_le_bytes());
    Ok(())
}

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "fl_imps",
        "__http_request",
        |mut caller: Caller<'_, HostState>, params: Params| {
            Box::new(async move {
                let ask = read(&mut caller, &params)?;
                let egress = caller.data().egress.clone();
                let uri = ask.uri.clone();
                let room = ask.room;
                let answer = match perform(&egress, ask).await {
                    Ok(answer) => answer,
                    Err(why) => {
                        tracing::warn!(%uri, %why, "outgoing request refused or failed");
                        caller
                            .data_mut()
                            .fl
                            .logs
                            .push(format!("__http_request {uri}: {why}").as_bytes());
                        Answer {
                            status: 0,
                            body: Vec::new(),
                            truncated: false,
                        }
                    }
                };
                write_back(&mut caller, &params, answer.status, &answer.body)?;
                if answer.truncated {
                    caller.data_mut().fl.logs.push(
                        format!(
                            "__http_request {uri}: response truncated to the {room} bytes the guest has room for"
                        )
                        .as_bytes(),
                    );
                }
                Ok(())
            })
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Egress;

    #[tokio::test]
    async fn only_http_and_https_are_sent_even_to_an_allowed_host() {
        let egress = Egress {
            allow: vec!["127.0.0.1".into()],
            client: Some(reqwest::Client::new()),
        };
        for uri in ["ftp://127.0.0.1/x", "file:///etc/passwd"] {
            let ask = super::Ask {
                method: reqwest::Method::GET,
                uri: uri.into(),
                headers: Vec::new(),
                body: Vec::new(),
                room: 0,
            };
            let why = super::perform(&egress, ask).await.err().unwrap();
            assert!(why.contains("http and https only"), "{uri}: {why}");
        }
    }

    #[test]
    fn room_is_the_declared_capacity_or_the_rest_of_memory_and_never_past_it() {
        let mut memory = vec![0u8; 1000];
        // The capacity word at 100.
        let set = |memory: &mut Vec<u8>, capacity: u32| {
            memory[100..104].copy_from_slice(&capacity.to_le_bytes());
        };
        set(&mut memory, 0);
        // FunLess's SDKs: an empty Vec's pointer (1) and capacity 0: the rest of memory.
        assert_eq!(super::room(&memory, 1, 100).unwrap(), 999);
        assert_eq!(super::room(&memory, 1000, 100).unwrap(), 0);
        set(&mut memory, 64);
        assert_eq!(super::room(&memory, 200, 100).unwrap(), 64);
        // A capacity that runs past the end of memory is cut to it.
        assert_eq!(super::room(&memory, 990, 100).unwrap(), 10);
        assert!(super::room(&memory, 1001, 100).is_err());
        assert!(super::room(&memory, 0, 997).is_err());
    }

    #[test]
    fn the_wildcard_allows_every_host_with_its_port_rule() {
        let any = Egress {
            allow: vec!["*".into()],
            client: None,
        };
        assert!(any.allows(&reqwest::Url::parse("https://example.org/").unwrap()));
        assert!(any.allows_host("10.1.2.3", Some(1)));
        let any_on_443 = Egress {
            allow: vec!["*:443".into()],
            client: None,
        };
        assert!(any_on_443.allows(&reqwest::Url::parse("https://example.org/").unwrap()));
        assert!(!any_on_443.allows(&reqwest::Url::parse("http://example.org/").unwrap()));
    }

    #[test]
    fn allow_list_matches_host_and_optional_port() {
        let egress = Egress {
            allow: vec!["Example.org".into(), "10.0.0.5:8080".into()],
            client: None,
        };
        let ok = |u: &str| egress.allows(&reqwest::Url::parse(u).unwrap());
        assert!(ok("http://example.org/x"));
        assert!(ok("http://example.org:9999/x"));
        assert!(ok("http://10.0.0.5:8080/"));
        assert!(!ok("http://10.0.0.5:8081/"));
        assert!(!ok("http://10.0.0.5/"));
        assert!(!ok("http://example.org.evil.com/"));
        assert!(!Egress::default().allows(&reqwest::Url::parse("http://127.0.0.1/").unwrap()));
        let v6 = Egress {
            allow: vec!["[::1]:8080".into(), "fe80::1".into()],
            client: None,
        };
        assert!(v6.allows_host("::1", Some(8080)));
        assert!(v6.allows_host("[::1]", Some(8080)));
        assert!(!v6.allows_host("::1", Some(8081)));
        assert!(v6.allows_host("fe80::1", Some(1)));
    }
}
