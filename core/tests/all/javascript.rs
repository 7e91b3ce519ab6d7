//! JavaScript functions through Core and Worker processes: the three examples of the paper
//! (hellojs, sleep, matrixMult) uploaded as source, a thrown error as the function's 422, a
//! `console.log` line in the activation's logs, a syntax error refused at upload (create or
//! update) with nothing stored or replaced, an unknown language refused, `fetch` within the allow-list, and the stored artifact being the source.

use funless_testkit::Servers;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Core, CoreOptions, Worker, detail, js_example, js_example_path};

#[test]
fn javascript_examples_run_through_core_and_worker() {
    let core = Core::start(CoreOptions::default());
    let _worker = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();

    // hellojs with the CLI (language from the .js extension).
    let path = js_example_path("hello");
    let (code, out, err) = core.fl(&["fn", "upload", "hellojs", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (status, body) = user.get("/v1/fn/_/hellojs");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["abi"], "javascript");
    let size = body["data"]["size"].as_u64().unwrap();
    assert!(size < 10 * 1024, "hellojs is stored as {size} bytes");
    assert_eq!(size, js_example("hello").len() as u64);

    let (status, body) = user.invoke("_", "hellojs", json!({ "name": "Edge" }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!({ "payload": "Hello Edge!" }));
    let (_, records) = user.get("/v1/fn/_/hellojs/activations?limit=1");
    let logs = &records["data"][0]["logs"];
    assert_eq!(logs, &json!(["hello called with name=Edge"]), "{records}");

    // The other examples over HTTP, the language told from the content.
    for name in ["sleep", "matrix_mult", "fail", "fetch"] {
        let (status, body) = user.upload("_", name, js_example(name), false);
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        assert_eq!(body["data"]["abi"], "javascript", "{body}");
    }
    let started = std::time::Instant::now();
    let (status, body) = user.invoke("_", "sleep", json!({}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Slept for 3 seconds");
    assert!(started.elapsed() >= std::time::Duration::from_secs(3));

    let (status, body) = user.invoke("_", "matrix_mult", json!({ "n": 100 }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["n"], 100);

    let (status, body) = user.invoke("_", "fail", json!({ "reason": "on purpose" }));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(detail(&body).contains("Error: failed on purpose"), "{body}");

    // Unbounded recursion throws a RangeError the script can catch (QuickJS's stack check,
    // turned on in the engine, fires before Wasmtime's stack limit), at a useful depth; left
    // uncaught it is the function's error, with a short message and no Wasm backtrace.
    let deep = "function fl_main(input) {\n\
         function f(n) { return n === 0 ? 0 : 1 + f(n - 1); }\n\
         function g(n) { return n === 0 ? 0 : [n].map((x) => g(x - 1))[0] + 1; }\n\
         const r = input.map ? g : f;\n\
         if (input.uncaught) return { depth: r(input.n) };\n\
         try { return { depth: r(input.n) }; } catch (e) { return { caught: String(e) }; }\n\
         }";
    let (status, body) = user.upload("_", "deep", deep.as_bytes().to_vec(), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = user.invoke("_", "deep", json!({ "n": 500 }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["depth"], 500, "{body}");
    for args in [json!({ "n": 100000 }), json!({ "n": 100000, "map": true })] {
        let (status, body) = user.invoke("_", "deep", args);
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["data"]["caught"], "RangeError: Maximum call stack size exceeded",
            "{body}"
        );
    }
    let (status, body, reason) =
        user.invoke_with_reason("_", "deep", json!({ "n": 100000, "uncaught": true }));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(reason.as_deref(), Some("function_error"), "{body}");
    assert!(
        detail(&body).starts_with("RangeError: Maximum call stack size exceeded")
            && detail(&body).len() < 200,
        "{body}"
    );

    // fetch: refused without the server on the allow-list (nothing reaches it), then allowed.
    let servers = Servers::start();
    let args = json!({ "url": servers.reply_url(), "method": "POST", "body": { "n": 1 } });
    let (status, body) = user.invoke("_", "fetch", args.clone());
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(detail(&body).contains("TypeError: fetch"), "{body}");
    assert_eq!(servers.http_requests(), 0);
    let (status, body) = user.upload_with(
        "_",
        "fetch_allowed",
        js_example("fetch"),
        json!({ "allow_hosts": [servers.http.to_string()] }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = user.invoke("_", "fetch_allowed", args);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], 200, "{body}");
    assert_eq!(body["data"]["body"]["got"], json!({ "n": 1 }), "{body}");

    // A syntax error is the upload's 400 and nothing is stored.
    let (status, body) = user.upload("_", "broken", b"function fl_main( {".to_vec(), false);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("SyntaxError"), "{body}");
    let (status, _) = user.get("/v1/fn/_/broken");
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Replacing a working function with source that does not compile: 400, the old version
    // stays and still answers.
    let (status, body) = user.upload("_", "hellojs", b"function fl_main( {".to_vec(), true);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("SyntaxError"), "{body}");
    let (status, body) = user.invoke("_", "hellojs", json!({ "name": "still" }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Hello still!");
    // An unknown language is named in the 400, and nothing is created.
    let (status, body) = user.post_form(
        "/v1/fn/_",
        &[
            ("name", "cobol"),
            ("code", "function fl_main() {}"),
            ("language", "cobol"),
        ],
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        detail(&body).contains("language must be wasm or js"),
        "{body}"
    );
    assert_eq!(user.get("/v1/fn/_/cobol").0, StatusCode::NOT_FOUND);
    // Neither WebAssembly nor a function: a clear 400.
    let (status, body) = user.upload("_", "prose", b"just some text".to_vec(), false);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("fl_main"), "{body}");
}
