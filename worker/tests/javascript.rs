//! JavaScript functions in one worker runtime, with the real examples (`examples/js/`): the
//! shared QuickJS engine runs them through the FunLess ABI with console logs, thrown errors,
//! promises and timers, syntax errors refused when the code is cached, the worker's limits,
//! and the disk cache across a restart. Waiting functions hold no thread.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use funless_actors::protocol::{CacheReply, CodeSource, InvokeError, InvokeReply};
use funless_testkit::js_example;
use funless_worker::runtime::code_hash;
use funless_worker::{Runtime, RuntimeConfig};

mod common;
use common::{cached_request, push, request};

async fn done(rt: &Runtime, code: &[u8], args: &str) -> (serde_json::Value, Vec<String>) {
    match rt.invoke(request(code, args)).await {
        InvokeReply::Done(out) => (serde_json::from_str(&out.output_json).unwrap(), out.logs),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn the_examples_run_with_logs_errors_and_promises() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();

    let hello = js_example("hello");
    let (out, logs) = done(&rt, &hello, r#"{"name": "Edge"}"#).await;
    assert_eq!(out, serde_json::json!({"payload": "Hello Edge!"}));
    assert_eq!(logs, vec!["hello called with name=Edge".to_string()]);
    let (out, _) = done(&rt, &hello, "").await;
    assert_eq!(out["payload"], "Hello World!");

    let (out, _) = done(&rt, &js_example("matrix_mult"), r#"{"n": 100}"#).await;
    assert_eq!(out["n"], 100);
    assert!(out["checksum"].as_f64().unwrap() > 0.0, "{out}");

    let (out, _) = done(&rt, &js_example("sleep"), r#"{"seconds": 0.2}"#).await;
    assert_eq!(out["payload"], "Slept for 0.2 seconds");

    match rt
        .invoke(request(&js_example("fail"), r#"{"reason": "badly"}"#))
        .await
    {
        InvokeReply::Failed(InvokeError::Function { message, logs }) => {
            assert_eq!(message, "Error: failed badly");
            assert!(
                logs[0].starts_with("about to fail {\"reason\":\"badly\"}"),
                "{logs:?}"
            );
            assert!(
                logs.iter().any(|l| l.contains("function.js")),
                "no stack: {logs:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // Module form with a named export, timers and a rejected promise.
    let timers = br#"
        export async function fl_main(input) {
          const order = [];
          setTimeout(() => order.push("b"), 20);
          setTimeout(() => order.push("a"), 10);
          const id = setTimeout(() => order.push("never"), 15);
          clearTimeout(id);
          await sleep(40);
          if (input.reject) await Promise.reject(new TypeError("rejected"));
          return { order, random: Math.random() };
        }"#;
    let (first, _) = done(&rt, timers, "{}").await;
    assert_eq!(first["order"], serde_json::json!(["a", "b"]));
    let (second, _) = done(&rt, timers, "{}").await;
    assert_ne!(first["random"], second["random"], "Math.random repeats");
    match rt.invoke(request(timers, r#"{"reject": true}"#)).await {
        InvokeReply::Failed(InvokeError::Function { message, .. }) => {
            assert_eq!(message, "TypeError: rejected")
        }
        other => panic!("unexpected {other:?}"),
    }

    // A promise nothing can settle is an error, not a hang.
    let stuck = b"function fl_main() { return new Promise(() => {}); }";
    match rt.invoke(request(stuck, "{}")).await {
        InvokeReply::Failed(InvokeError::Function { message, .. }) => {
            assert!(message.contains("never settles"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }

    // Globals do not leak from one invocation to the next.
    let counter =
        b"function fl_main() { globalThis.n = (globalThis.n || 0) + 1; return globalThis.n; }";
    assert_eq!(done(&rt, counter, "{}").await.0, 1);
    assert_eq!(done(&rt, counter, "{}").await.0, 1);
}

#[tokio::test]
async fn syntax_errors_are_refused_when_caching() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let broken = b"function fl_main(input) { return {; }".to_vec();
    match push(&rt, &broken).await {
        CacheReply::Failed { reason } => {
            assert!(
                reason.starts_with("code cannot run: SyntaxError"),
                "{reason}"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!rt.is_cached(&code_hash(&broken)));
    let missing = b"export const x = 1;".to_vec();
    match rt.invoke(request(&missing, "{}")).await {
        InvokeReply::Failed(InvokeError::Function { message, .. }) => {
            assert!(message.contains("fl_main"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn limits_apply_and_the_disk_cache_keeps_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(config.clone()).unwrap();
    let hog = b"function fl_main() { const a = []; for (;;) a.push(new Array(1e5).fill(1)); }";
    let mut capped = request(hog, "{}");
    capped.memory_limit_bytes = 16 << 20;
    assert!(matches!(
        rt.invoke(capped).await,
        InvokeReply::Failed(InvokeError::MemoryLimit { .. })
    ));
    let spin = b"function fl_main() { for (;;) {} }";
    let mut slow = request(spin, "{}");
    slow.timeout_ms = 200;
    let started = Instant::now();
    assert!(matches!(
        rt.invoke(slow).await,
        InvokeReply::Failed(InvokeError::Timeout { timeout_ms: 200 })
    ));
    assert!(started.elapsed() < Duration::from_secs(2));

    let hello = js_example("hello");
    push(&rt, &hello).await;
    drop(rt);
    let again = Runtime::new(config).unwrap();
    // hog, spin and hello: the functions, not the engine (it has a folder of its own).
    assert_eq!(again.preload().await, 3);
    match again.invoke(cached_request(&hello, "{}")).await {
        InvokeReply::Done(out) => {
            assert_eq!(out.source, CodeSource::Disk);
            assert!(out.output_json.contains("Hello World!"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_scripts_hold_no_thread() {
    let rt = std::sync::Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
    let sleep = js_example("sleep");
    // Warm the engine first: its one-time preparation is not what is measured.
    done(&rt, &sleep, r#"{"seconds": 0}"#).await;
    let started = Instant::now();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let (rt, sleep) = (rt.clone(), sleep.clone());
            tokio::spawn(async move { rt.invoke(request(&sleep, r#"{"seconds": 1}"#)).await })
        })
        .collect();
    for call in calls {
        assert!(matches!(call.await.unwrap(), InvokeReply::Done(_)));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "200 sleeps of 1 s took {elapsed:?}"
    );
}

#[tokio::test]
async fn unbounded_recursion_is_a_short_range_error() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let source = b"function down(n) { return down(n + 1) + 1; }\nfunction fl_main() { return { depth: down(0) }; }\n";
    match rt.invoke(request(source, "{}")).await {
        InvokeReply::Failed(InvokeError::Function { message, .. }) => {
            assert!(message.starts_with("RangeError"), "{message}");
            assert!(message.len() < 200, "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The script can catch it: QuickJS's own stack check fires before Wasmtime's limit.
    let catching = b"function down(n) { return down(n + 1) + 1; }\nfunction fl_main() { try { return { depth: down(0) }; } catch (e) { return { caught: `${e.name}: ${e.message}` }; } }\n";
    let (out, _) = done(&rt, catching, "{}").await;
    assert_eq!(
        out["caught"],
        "RangeError: Maximum call stack size exceeded"
    );
    // The worker goes on serving.
    let (out, _) = done(&rt, &js_example("hello"), r#"{"name": "after"}"#).await;
    assert_eq!(out["payload"], "Hello after!");
}
