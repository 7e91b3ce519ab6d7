//! `fl_imps::__http_request`: outgoing HTTP for FunLess-ABI functions, asynchronous on the
//! host (the guest's task yields while waiting; no thread is held), limited to the hosts on the
//! function's allow-list (empty by default: no egress), with a time-out and a bounded write
//! back into guest memory.
//!
//! ABI (DESIGN.md §4): `(resp_ptr, resp_len_ptr, status_ptr, method, uri_ptr, uri_len,
//! hdr_ptr, hdr_len, body_ptr, body_len)`; method 0..3 = GET, POST, PUT, DELETE; headers
//! `"K:V\nK:V"`. On entry `*resp_len_ptr` (u32 LE) is the capacity of the buffer at
//! `resp_ptr`; the host writes at most that many bytes of the body there, the number written
//! to `*resp_len_ptr` and the status (u16 LE) to `*status_ptr`. Any failure, a refused host
//! included, is status 0 with an empty body, like FunLess, plus a log line saying why.

use std::time::Duration;

use wasmtime::{Caller, Linker};

use super::HostState;
use super::funless::{memory, range};

/// Longest an outgoing request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request body or URI a guest may send, bytes.
const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// What a function may reach and how.
#[derive(Debug, Clone, Default)]
pub(crate) struct Egress {
    /// `host` or `host:port` entries; empty: nothing.
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
        self.entries()
            .any(|(h, p)| h.eq_ignore_ascii_case(host) && (p.is_none() || p == port))
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

type Params = (i32, i32, i32, i32, i32, i32, i32, i32, i32, i32);

/// What the guest asked for, read out of its memory before any await.
struct Ask {
    method: reqwest::Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read(caller: &mut Caller<'_, HostState>, p: &Params) -> wasmtime::Result<Ask> {
    let (_, _, _, method, uri_ptr, uri_len, hdr_ptr, hdr_len, body_ptr, body_len) = *p;
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
    })
}

/// Performs the request; `Err` is the reason it failed (reported as status 0).
async fn perform(egress: &Egress, ask: Ask) -> Result<(u16, Vec<u8>), String> {
    let url =
        reqwest::Url::parse(&ask.uri).map_err(|e| format!("invalid URI {:?}: {e}", ask.uri))?;
    if url.scheme() != "http" {
        return Err(format!(
            "scheme {} is not supported (http only)",
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
    let response = request
        .body(ask.body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, body.to_vec()))
}

fn write_back(
    caller: &mut Caller<'_, HostState>,
    p: &Params,
    status: u16,
    body: &[u8],
) -> wasmtime::Result<usize> {
    let (resp_ptr, resp_len_ptr, status_ptr, ..) = *p;
    let memory = memory(caller, "__http_request")?;
    let data = memory.data_mut(caller);
    let len_at = range(data.len(), resp_len_ptr, 4, "__http_request")?;
    let mut capacity = [0u8; 4];
    capacity.copy_from_slice(&data[len_at.clone()]);
    let capacity = u32::from_le_bytes(capacity) as usize;
    let n = body.len().min(capacity);
    let at = range(data.len(), resp_ptr, n as i32, "__http_request")?;
    data[at].copy_from_slice(&body[..n]);
    data[len_at].copy_from_slice(&(n as u32).to_le_bytes());
    let status_at = range(data.len(), status_ptr, 2, "__http_request")?;
    data[status_at].copy_from_slice(&status.to_le_bytes());
    Ok(n)
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
                let (status, body) = match perform(&egress, ask).await {
                    Ok(answer) => answer,
                    Err(why) => {
                        tracing::warn!(%uri, %why, "outgoing request refused or failed");
                        caller
                            .data_mut()
                            .fl
                            .logs
                            .push(format!("__http_request {uri}: {why}").as_bytes());
                        (0, Vec::new())
                    }
                };
                let written = write_back(&mut caller, &params, status, &body)?;
                if written < body.len() {
                    caller.data_mut().fl.logs.push(
                        format!(
                            "__http_request {uri}: response truncated to the {written}-byte buffer ({} bytes)",
                            body.len()
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
    async fn only_plain_http_is_sent_even_to_an_allowed_host() {
        let egress = Egress {
            allow: vec!["127.0.0.1".into()],
            client: Some(reqwest::Client::new()),
        };
        for uri in ["https://127.0.0.1/x", "ftp://127.0.0.1/x"] {
            let ask = super::Ask {
                method: reqwest::Method::GET,
                uri: uri.into(),
                headers: Vec::new(),
                body: Vec::new(),
            };
            let why = super::perform(&egress, ask).await.unwrap_err();
            assert!(why.contains("http only"), "{uri}: {why}");
        }
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
