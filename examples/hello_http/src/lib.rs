//! `hello` as a `wasi:http/proxy` component, the same work as `hello_fl` behind an HTTP
//! server of its own: it reads the request body (`{"args": {"name": "x"}}`, or the args
//! alone), and answers `{"data":{"payload":"Hello x!"}}` as the FunLess API does. It exists so
//! `funless-bench eval` can run it under `wasmtime serve` (Wasmtime's own CLI) as a peer.
//! Built for `wasm32-wasip2` only (`examples/build.sh` → `hello_http_p2.wasm`).

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

/// Reads the whole request body (small: a few dozen bytes).
fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut body = Vec::new();
    let Ok(incoming) = request.consume() else {
        return body;
    };
    if let Ok(stream) = incoming.stream() {
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            body.extend_from_slice(&chunk);
        }
    }
    body
}

fn answer(body: &[u8]) -> Vec<u8> {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let args = value.get("args").unwrap_or(&value);
    let name = args.get("name").and_then(|n| n.as_str()).unwrap_or("World");
    serde_json::json!({ "data": { "payload": format!("Hello {name}!") } })
        .to_string()
        .into_bytes()
}

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let out = answer(&read_body(&request));
        let headers = Fields::new();
        // Setting a header can only fail for a forbidden name or a frozen field set.
        let _ = headers.set("content-type", &[b"application/json".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else {
            return;
        };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(&out);
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
