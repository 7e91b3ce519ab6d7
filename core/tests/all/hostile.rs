//! Hostile requests: each gets its precise status and a clear detail, changes nothing, and
//! the Core goes on serving. The table in docs/SECURITY.md points here.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Core, CoreOptions, detail, example};

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap()
}

fn multipart(fields: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "XfunlessX";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn hostile_requests_get_precise_errors_and_change_nothing() {
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        ..CoreOptions::default()
    });
    core.wait_for_workers(&["embedded"]);
    let user = core.client();
    let (status, body) = user.upload("_", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let hello = example("hello_fl");
    let upload = |name: &str, code: &[u8]| {
        let (ct, body) = multipart(&[("name", name.as_bytes()), ("code", code)]);
        user.send(Method::POST, "/v1/fn/_", &ct, body)
    };

    // Oversize upload: the Core answers 413 as soon as the limit is passed; the client may be
    // cut off before it reads that answer, so a few tries are allowed to see it.
    let (ct, big) = multipart(&[("name", b"big"), ("code", &vec![0u8; (64 << 20) + 1])]);
    let refused = (0..20).find_map(|_| user.try_send(Method::POST, "/v1/fn/_", &ct, big.clone()));
    let (status, body) = refused.expect("no answer to the oversize upload in twenty tries");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body.to_string().contains("max-upload-bytes"),
        "the 413 names the setting: {body}"
    );
    let huge_args = format!(r#"{{"args":{{"x":"{}"}}}}"#, "a".repeat(2 << 20)).into_bytes();
    let refused = (0..20).find_map(|_| {
        user.try_send(
            Method::POST,
            "/v1/fn/_/hello",
            "application/json",
            huge_args.clone(),
        )
    });
    let (status, body) = refused.expect("no answer to the oversize invocation in twenty tries");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    let cases: Vec<(&str, (StatusCode, serde_json::Value), StatusCode, &str)> = vec![
        (
            "not Wasm",
            upload("text", b"#!/bin/sh\nrm -rf /\n"),
            StatusCode::BAD_REQUEST,
            "not a WebAssembly",
        ),
        (
            "truncated Wasm",
            upload("cut", &hello[..hello.len() / 2]),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "empty code",
            upload("empty", b""),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            "foreign import",
            upload(
                "env",
                &wat(r#"(module (import "env" "system" (func)) (func (export "_start")))"#),
            ),
            StatusCode::BAD_REQUEST,
            "env::system",
        ),
        (
            "unknown fl_imps import",
            upload(
                "nope",
                &wat(r#"(module (import "fl_imps" "__spawn" (func)) (func (export "_start")))"#),
            ),
            StatusCode::BAD_REQUEST,
            "fl_imps::__spawn",
        ),
        (
            "no entry point",
            upload("noentry", &wat("(module (memory (export \"memory\") 1))")),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "function name with a slash",
            upload("../etc", &hello),
            StatusCode::BAD_REQUEST,
            "only letters",
        ),
        (
            "function name too long",
            upload(&"a".repeat(200), &hello),
            StatusCode::BAD_REQUEST,
            "at most 160",
        ),
        (
            "multipart without a boundary",
            user.send(
                Method::POST,
                "/v1/fn/_",
                "multipart/form-data",
                b"garbage".to_vec(),
            ),
            StatusCode::BAD_REQUEST,
            "multipart",
        ),
        (
            "truncated multipart",
            user.send(
                Method::POST,
                "/v1/fn/_",
                "multipart/form-data; boundary=B",
                b"--B\r\ncontent-disposition: form-data; name=\"name\"\r\n\r\nx".to_vec(),
            ),
            StatusCode::BAD_REQUEST,
            "multipart",
        ),
        (
            "unknown form field",
            {
                let (ct, b) = multipart(&[("name", b"x"), ("code", &hello), ("owner", b"admin")]);
                user.send(Method::POST, "/v1/fn/_", &ct, b)
            },
            StatusCode::BAD_REQUEST,
            "unknown form field",
        ),
        (
            "metadata with an unknown field",
            {
                let (ct, b) = multipart(&[
                    ("name", b"x"),
                    ("code", &hello),
                    ("metadata", br#"{"admin":true}"#),
                ]);
                user.send(Method::POST, "/v1/fn/_", &ct, b)
            },
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "invoke body not JSON",
            user.send(
                Method::POST,
                "/v1/fn/_/hello",
                "application/json",
                b"{\"args\":".to_vec(),
            ),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "invoke args not an object",
            user.post_json("/v1/fn/_/hello", &json!({ "args": [1, 2] })),
            StatusCode::BAD_REQUEST,
            "JSON object",
        ),
        (
            "invoke with an unknown field",
            user.post_json("/v1/fn/_/hello", &json!({ "args": {}, "sudo": true })),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "module name with a dot",
            user.post_json("/v1/fn", &json!({ "module": { "name": "a.b" } })),
            StatusCode::BAD_REQUEST,
            "only letters",
        ),
        (
            "module body missing its key",
            user.post_json("/v1/fn", &json!({ "name": "m" })),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "invalid APP script",
            core.admin()
                .post_form("/v1/scripts/app", &[("name", "s"), ("file", "- t: [")]),
            StatusCode::BAD_REQUEST,
            "not valid YAML",
        ),
        (
            "token of another format",
            user.with_token("' OR 1=1 --").get("/v1/fn"),
            StatusCode::UNAUTHORIZED,
            "",
        ),
    ];
    for (case, (status, body), expected, needle) in &cases {
        assert_eq!(status, expected, "{case}: {body}");
        let text = detail(body);
        assert!(text.contains(needle), "{case}: {text:?} lacks {needle:?}");
    }

    // Nothing was created, and the Core still serves.
    let (_, body) = user.get("/v1/fn/_");
    assert_eq!(
        body["data"]["functions"],
        json!([{ "name": "hello" }]),
        "{body}"
    );
    let (_, body) = user.get("/v1/fn");
    assert_eq!(body["data"], json!([{ "name": "_" }]), "{body}");
    let (status, body) = user.invoke("_", "hello", json!({ "name": "still" }));
    assert_eq!(
        (status, &body["data"]["payload"]),
        (StatusCode::OK, &json!("Hello still!"))
    );
}
