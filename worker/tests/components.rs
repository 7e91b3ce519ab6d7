//! WASI 0.2 components in one worker runtime, with the real examples built for
//! `wasm32-wasip2`: the worker's limits hold for them as for modules (memory, time), the
//! disk cache keeps them across a restart, and waiting components hold no thread.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use funless_actors::protocol::{CodeSource, InvokeError, InvokeReply};
use funless_testkit::example;
use funless_worker::{Runtime, RuntimeConfig};

mod common;
use common::{cached_request, push, request};

#[tokio::test]
async fn limits_apply_to_components() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let mm = example("matrix_mult_p2");
    // Three 500x500 f64 matrices need ~6 MB: refused under a 4 MiB limit, fine with the default.
    let mut small = request(&mm, r#"{"n": 500}"#);
    small.memory_limit_bytes = 4 << 20;
    match rt.invoke(small).await {
        InvokeReply::Failed(InvokeError::MemoryLimit { limit_bytes }) => {
            assert_eq!(limit_bytes, 4 << 20)
        }
        other => panic!("unexpected {other:?}"),
    }
    match rt.invoke(request(&mm, r#"{"n": 500}"#)).await {
        InvokeReply::Done(out) => assert!(out.output_json.contains("1499992500"), "{out:?}"),
        other => panic!("unexpected {other:?}"),
    }

    let sleep = example("sleep_p2");
    let mut slow = request(&sleep, r#"{"ms": 5000}"#);
    slow.timeout_ms = 200;
    let started = Instant::now();
    assert!(matches!(
        rt.invoke(slow).await,
        InvokeReply::Failed(InvokeError::Timeout { timeout_ms: 200 })
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn components_survive_a_restart_in_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let hello = example("hello_p2");
    let first = Runtime::new(config.clone()).unwrap();
    push(&first, &hello).await;
    drop(first);

    let second = Runtime::new(config).unwrap();
    assert_eq!(second.preload().await, 1);
    match second
        .invoke(cached_request(&hello, r#"{"name": "disk"}"#))
        .await
    {
        InvokeReply::Done(out) => {
            assert_eq!(out.output_json, r#"{"payload":"Hello disk!"}"#);
            assert_eq!(out.source, CodeSource::Disk);
            assert!(out.logs.iter().any(|l| l.contains("name=disk")), "{out:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_components_hold_no_thread() {
    let rt = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
    let sleep = example("sleep_p2");
    let warm = rt.invoke(request(&sleep, r#"{"ms": 1}"#)).await;
    assert!(matches!(warm, InvokeReply::Done(_)), "{warm:?}");
    // 200 one-second sleeps on two threads: together in about a second, not 100.
    let started = Instant::now();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let rt = rt.clone();
            let req = cached_request(&sleep, r#"{"ms": 1000}"#);
            tokio::spawn(async move { rt.invoke(req).await })
        })
        .collect();
    for call in calls {
        let reply = call.await.unwrap();
        assert!(matches!(reply, InvokeReply::Done(_)), "{reply:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
