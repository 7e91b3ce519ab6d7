//! What FunLess's clients send and expect, through a real Core: FunLess's error shape (every
//! error body of every test is checked by the harness), the failure reason in a header,
//! FunLess's `capacity: -1`, and the rename of `PUT /v1/fn/:mod/:fn`.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Core, CoreOptions, detail, example};

#[test]
fn funless_requests_are_understood_and_answered_in_funless_shapes() {
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        ..CoreOptions::default()
    });
    core.wait_for_workers(&["embedded"]);
    let user = core.client();

    // FunLess's default metadata: capacity -1 means "not given".
    let (status, body) = user.upload_with(
        "_",
        "hello",
        example("hello_fl"),
        json!({ "tag": "", "capacity": -1 }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = user.get("/v1/fn/_/hello");
    assert_eq!(body["data"]["metadata"]["capacity"], 64 << 20, "{body}");
    let (status, body) =
        user.upload_with("_", "neg", example("hello_fl"), json!({ "capacity": -2 }));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("capacity"), "{body}");

    // A function's failure: FunLess's body, and the kind in a header FunLess ignores.
    let (status, _) = user.upload("_", "fail", example("fail_fl"), false);
    assert_eq!(status, StatusCode::CREATED);
    let (status, body, reason) = user.invoke_with_reason("_", "fail", json!({}));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(reason.as_deref(), Some("function_error"));
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");

    // PUT with another name renames (FunLess's update); the old name is gone, a taken name
    // is a conflict that changes nothing.
    let (status, body) = user.update_named("_", "hello", "greet", example("hello_fl"));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["name"], "greet", "{body}");
    let (status, body) = user.invoke("_", "greet", json!({ "name": "again" }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Hello again!");
    let (status, _) = user.get("/v1/fn/_/hello");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = user.update_named("_", "greet", "fail", example("hello_fl"));
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = user.invoke("_", "fail", json!({}));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = user.get("/v1/fn/_/greet");
    assert_eq!(status, StatusCode::OK);
}
