//! Outgoing HTTP for WASI 0.2 components (`wasm32-wasip2`) through `wasi:http`, which the
//! worker runs natively: no copy through a FunLess import. Only hosts on the function's
//! `allow_hosts` are reachable; a refused request is an error naming `HttpRequestDenied`.
//! Enable with the `wasi-http` feature.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method as WasiMethod, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

use crate::Method;

/// Largest body chunk written per call (`blocking-write-and-flush` takes at most 4096 bytes).
const WRITE_CHUNK: usize = 4096;

/// Sends a request and returns the status and the whole response body.
pub fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let (scheme, authority, path) = split_url(url)?;
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&entries).map_err(|e| format!("invalid header: {e:?}"))?;
    let request = OutgoingRequest::new(fields);
    let method = match method {
        Method::Get => WasiMethod::Get,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Delete => WasiMethod::Delete,
    };
    let invalid = |what: &str| format!("{url}: invalid {what}");
    request
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    let outgoing = request.body().map_err(|()| "the request body was taken")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{url}: {e:?}"))?;
    // A refused or failed request closes the body stream: the response then says why.
    let written = write_body(&outgoing, body);
    let finished = OutgoingBody::finish(outgoing, None);

    let response = loop {
        match pending.get() {
            Some(answer) => break answer,
            None => pending.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| "the response was taken")?
        .map_err(|e| format!("{url}: {e:?}"))?;
    written.map_err(|e| format!("{url}: writing the body: {e}"))?;
    finished.map_err(|e| format!("{url}: {e:?}"))?;
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| "the response body was taken")?;
    let mut bytes = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| "the body stream was taken")?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(format!("{url}: reading the body: {e:?}")),
            }
        }
    }
    Ok((status, bytes))
}

fn write_body(outgoing: &OutgoingBody, body: &[u8]) -> Result<(), String> {
    let stream = outgoing.write().map_err(|()| "the body stream was taken")?;
    for chunk in body.chunks(WRITE_CHUNK) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| format!("{e:?}"))?;
    }
    Ok(())
}

/// `scheme://authority/path?query` → its parts (the path defaults to `/`).
fn split_url(url: &str) -> Result<(Scheme, &str, &str), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url}: not an absolute URL"))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("{url}: unsupported scheme {other}")),
    };
    let at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(at);
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((scheme, authority, if path.is_empty() { "/" } else { path }))
}
