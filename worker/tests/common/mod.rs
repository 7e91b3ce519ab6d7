//! Requests for one worker runtime, shared by the worker's integration tests.

use funless_actors::protocol::{CachePush, CacheReply, Code, FunctionId, InvokeRequest};
use funless_worker::Runtime;
use funless_worker::runtime::code_hash;

/// The identity of `code` as function `_/f`.
pub(crate) fn function(code: &[u8]) -> FunctionId {
    FunctionId {
        module: "_".into(),
        name: "f".into(),
        hash: code_hash(code),
    }
}

/// An invocation of `code` with `args`, the code sent along, 30 s to run, the worker's limits.
pub(crate) fn request(code: &[u8], args: &str) -> InvokeRequest {
    InvokeRequest {
        env: Default::default(),
        function: function(code),
        args_json: args.into(),
        code: Some(Code::Inline(code.to_vec())),
        timeout_ms: 30_000,
        memory_limit_bytes: 0,
        allow_hosts: Vec::new(),
    }
}

/// An invocation of code the worker must already hold (nothing sent along).
pub(crate) fn cached_request(code: &[u8], args: &str) -> InvokeRequest {
    InvokeRequest {
        code: None,
        ..request(code, args)
    }
}

/// Pushes `code` into the runtime's cache, as the Core does on upload.
pub(crate) async fn push(rt: &Runtime, code: &[u8]) -> CacheReply {
    rt.cache_code(CachePush {
        function: function(code),
        code: Code::Inline(code.to_vec()),
    })
    .await
}
