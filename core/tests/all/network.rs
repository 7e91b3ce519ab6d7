//! The paper's `network_benchmark` through Core and Worker processes against a local reply
//! server and bucket (the test tooling below, on 127.0.0.1 only), and a request refused by the
//! allow-list.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::routing::{post, put};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Core, CoreOptions, Worker, detail, example};

type Bucket = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// A reply server (`POST /reply` answers the JSON it got plus the server's time) and a bucket
/// (`PUT /bucket/:key` stores the body), on a free 127.0.0.1 port, for the life of the test
/// process.
fn reply_server_and_bucket() -> (SocketAddr, Bucket) {
    let bucket: Bucket = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let state = bucket.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/reply",
                    post(|body: axum::Json<Value>| async move {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_millis() as u64;
                        axum::Json(json!({ "got": body.0, "server_ms": now }))
                    }),
                )
                .route(
                    "/bucket/{key}",
                    put(
                        |State(bucket): State<Bucket>,
                         Path(key): Path<String>,
                         body: axum::body::Bytes| async move {
                            bucket.lock().unwrap().insert(key, body.to_vec());
                            StatusCode::OK
                        },
                    ),
                )
                .with_state(state);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (addr, bucket)
}

#[test]
fn network_benchmark_reaches_the_reply_server_and_uploads_to_the_bucket() {
    let (server, bucket) = reply_server_and_bucket();
    let core = Core::start(CoreOptions::default());
    let _w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();
    let (status, body) = user.upload_with(
        "_",
        "network_benchmark",
        example("network_benchmark_fl"),
        json!({ "allow_hosts": [server.to_string()] }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let args = json!({
        "server": format!("http://{server}/reply"),
        "bucket": format!("http://{server}/bucket/run1"),
    });
    let (status, body) = user.invoke("_", "network_benchmark", args.clone());
    assert_eq!(status, StatusCode::OK, "{body}");
    let times = body["data"]["times_ms"].as_array().unwrap();
    assert_eq!(times.len(), 16, "{body}");
    assert!(times.iter().all(|t| t.as_f64().unwrap() >= 0.0), "{body}");
    assert_eq!(body["data"]["bucket_status"], 200);
    let stored: Value = serde_json::from_slice(&bucket.lock().unwrap()["run1"]).unwrap();
    assert_eq!(stored["times_ms"].as_array().unwrap().len(), 16);

    // The same function without the server on its allow-list: every request is refused.
    let (status, body) =
        user.upload_with("_", "fenced", example("network_benchmark_fl"), json!({}));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = user.invoke("_", "fenced", args);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(detail(&body).contains("status 0"), "{body}");
    assert!(
        bucket.lock().unwrap().len() == 1,
        "the fenced run must not reach the bucket"
    );
}
