//! Runtime tests with WAT guests: both ABIs, the no-code path and the failure kinds.
#![allow(clippy::unwrap_used)]

use super::*;

pub(super) const ECHO_FL: &str = r#"(module
  (import "fl_imps" "__get_input_data" (func $get (param i32)))
  (import "fl_imps" "__insert_response" (func $resp (param i32 i32)))
  (import "fl_imps" "__console_log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "echo called")
  (func (export "__invoke") (param $len i32) (result i32)
    (call $get (i32.const 1024))
    (call $log (i32.const 0) (i32.const 11))
    (call $resp (i32.const 1024) (local.get $len))
    (i32.const 0)))"#;

const ECHO_WASI: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 4096))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 4) (i32.load (i32.const 8)))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))))"#;

const FAIL_FL: &str = r#"(module
  (import "fl_imps" "__insert_error" (func $err (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "bad input")
  (func (export "__invoke") (param i32) (result i32)
    (call $err (i32.const 0) (i32.const 9))
    (i32.const 1)))"#;

const EXIT_WASI: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 3))))"#;

/// Writes `{"error":"no sensor"}` on stdout, then exits 1.
const STATED_ERROR_WASI: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{\"error\":\"no sensor\"}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 21))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 1))))"#;

const LOOP_FL: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "__invoke") (param i32) (result i32)
    (loop $l (br $l))
    (i32.const 0)))"#;

const OOB_FL: &str = r#"(module
  (import "fl_imps" "__insert_response" (func $resp (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "__invoke") (param i32) (result i32)
    (call $resp (i32.const 65530) (i32.const 100))
    (i32.const 0)))"#;

const TEXT_FL: &str = r#"(module
  (import "fl_imps" "__insert_response" (func $resp (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "plain text")
  (func (export "__invoke") (param i32) (result i32)
    (call $resp (i32.const 0) (i32.const 10))
    (i32.const 0)))"#;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        name: "test-worker".into(),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

pub(super) fn request(wat: &str, args: &str, with_code: bool) -> InvokeRequest {
    let code = wat::parse_str(wat).unwrap();
    InvokeRequest {
        env: Default::default(),
        function: FunctionId {
            module: "_".into(),
            name: "f".into(),
            hash: code_hash(&code),
        },
        args_json: args.into(),
        code: with_code.then_some(Code::Inline(code)),
        timeout_ms: 5_000,
        memory_limit_bytes: 0,
        allow_hosts: Vec::new(),
    }
}

async fn run(rt: &Runtime, wat: &str, args: &str) -> InvokeReply {
    rt.invoke(request(wat, args, true)).await
}

#[tokio::test]
async fn funless_abi_echoes_and_logs() {
    let rt = runtime();
    match run(&rt, ECHO_FL, r#"{"name":"x"}"#).await {
        InvokeReply::Done(out) => {
            assert_eq!(out.output_json, r#"{"name":"x"}"#);
            assert_eq!(out.logs, vec!["echo called".to_string()]);
            assert_eq!(out.source, CodeSource::Compiled);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn wasi_command_reads_stdin_writes_stdout() {
    let rt = runtime();
    match run(&rt, ECHO_WASI, r#"{"n":3}"#).await {
        InvokeReply::Done(out) => assert_eq!(out.output_json, r#"{"n":3}"#),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn missing_code_answers_no_code_then_runs_from_memory() {
    let rt = runtime();
    assert_eq!(
        rt.invoke(request(ECHO_FL, "{}", false)).await,
        InvokeReply::NoCode
    );
    assert!(matches!(
        rt.invoke(request(ECHO_FL, "{}", true)).await,
        InvokeReply::Done(_)
    ));
    match rt.invoke(request(ECHO_FL, "{}", false)).await {
        InvokeReply::Done(out) => assert_eq!(out.source, CodeSource::Memory),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(rt.status().cached.len(), 1);
    rt.evict(&[request(ECHO_FL, "{}", false).function.hash]);
    assert_eq!(
        rt.invoke(request(ECHO_FL, "{}", false)).await,
        InvokeReply::NoCode
    );
}

#[tokio::test]
async fn function_error_is_reported() {
    let rt = runtime();
    match run(&rt, FAIL_FL, "{}").await {
        InvokeReply::Failed(InvokeError::Function { message, .. }) => {
            assert_eq!(message, "bad input")
        }
        other => panic!("unexpected {other:?}"),
    }
    match run(&rt, EXIT_WASI, "{}").await {
        InvokeReply::Failed(InvokeError::Function { message, .. }) => {
            assert!(message.starts_with("exit code 3"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
    // A program that states its error on stdout: that is the message.
    match run(&rt, STATED_ERROR_WASI, "{}").await {
        InvokeReply::Failed(InvokeError::Function { message, .. }) => {
            assert_eq!(message, "no sensor")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn endless_loop_times_out_and_worker_goes_on() {
    let rt = runtime();
    let mut req = request(LOOP_FL, "{}", true);
    req.timeout_ms = 200;
    let started = Instant::now();
    assert_eq!(
        rt.invoke(req).await,
        InvokeReply::Failed(InvokeError::Timeout { timeout_ms: 200 })
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(
        run(&rt, ECHO_FL, "{}").await,
        InvokeReply::Done(_)
    ));
}

#[tokio::test]
async fn out_of_bounds_pointer_traps_cleanly() {
    let rt = runtime();
    match run(&rt, OOB_FL, "{}").await {
        InvokeReply::Failed(InvokeError::Trap { message }) => {
            assert!(message.contains("__insert_response"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn non_json_output_becomes_a_json_string() {
    let rt = runtime();
    match run(&rt, TEXT_FL, "{}").await {
        InvokeReply::Done(out) => assert_eq!(out.output_json, r#""plain text""#),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn wrong_hash_and_bad_code_are_refused() {
    let rt = runtime();
    let mut req = request(ECHO_FL, "{}", true);
    req.function.hash = "00".repeat(32);
    assert!(matches!(
        rt.invoke(req).await,
        InvokeReply::Failed(InvokeError::HashMismatch { .. })
    ));
    let garbage = b"not wasm".to_vec();
    let push = CachePush {
        function: FunctionId {
            module: "_".into(),
            name: "g".into(),
            hash: code_hash(&garbage),
        },
        code: Code::Inline(garbage),
    };
    assert!(matches!(
        rt.cache_code(push).await,
        CacheReply::Failed { .. }
    ));
    let no_entry = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    let push = CachePush {
        function: FunctionId {
            module: "_".into(),
            name: "h".into(),
            hash: code_hash(&no_entry),
        },
        code: Code::Inline(no_entry),
    };
    match rt.cache_code(push).await {
        CacheReply::Failed { reason } => assert!(reason.contains("__invoke"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_guest_does_not_hold_up_others() {
    let rt = Arc::new(runtime());
    // Four endless loops on two threads: with yielding, a quick echo still gets through.
    let mut loops = Vec::new();
    for _ in 0..4 {
        let rt = rt.clone();
        let mut req = request(LOOP_FL, "{}", true);
        req.timeout_ms = 3_000;
        loops.push(tokio::spawn(async move { rt.invoke(req).await }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert!(matches!(
        run(&rt, ECHO_FL, "{}").await,
        InvokeReply::Done(_)
    ));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "echo waited {:?} behind busy guests",
        started.elapsed()
    );
    for l in loops {
        assert!(matches!(
            l.await.unwrap(),
            InvokeReply::Failed(InvokeError::Timeout { .. })
        ));
    }
}

/// Invocations that finished on the compute pool, from the metrics.
fn moved(rt: &Runtime) -> u64 {
    rt.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("funless_worker_invocations_moved_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// On one thread, as a node runs by default: endless loops move to the compute pool at the
/// end of their first time slice, and quick calls that arrive while they compute run on the
/// node's thread, at once, without moving.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn guests_that_compute_move_to_the_pool_and_quick_ones_stay() {
    let rt = Arc::new(runtime());
    assert!(matches!(
        run(&rt, ECHO_FL, "{}").await,
        InvokeReply::Done(_)
    ));
    let mut loops = Vec::new();
    for _ in 0..2 {
        let rt = rt.clone();
        let mut req = request(LOOP_FL, "{}", true);
        req.timeout_ms = 3_000;
        loops.push(tokio::spawn(
            async move { rt.invoke_here_then_pool(req).await },
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while moved(&rt) < 2 {
        assert!(
            Instant::now() < deadline,
            "the loops never moved to the pool"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    for _ in 0..20 {
        let reply = rt
            .invoke_here_then_pool(request(ECHO_FL, "{}", false))
            .await;
        assert!(matches!(reply, InvokeReply::Done(_)), "{reply:?}");
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "20 echoes took {:?} beside the loops",
        started.elapsed()
    );
    // An echo moves only if an epoch tick lands inside its few microseconds of guest time.
    assert!(moved(&rt) < 2 + 10, "quick calls moved: {}", moved(&rt) - 2);
    for l in loops {
        assert!(matches!(
            l.await.unwrap(),
            InvokeReply::Failed(InvokeError::Timeout { .. })
        ));
    }
}

#[tokio::test]
async fn restart_preloads_the_disk_cache_most_recent_first_within_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let config = |cache_bytes| RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        cache_bytes,
        ..RuntimeConfig::default()
    };
    let fl = request(ECHO_FL, "{}", false).function.hash;
    let wasi = request(ECHO_WASI, "{}", false).function.hash;
    let first = Runtime::new(config(DEFAULT_CACHE_MB << 20)).unwrap();
    for wat in [ECHO_WASI, ECHO_FL] {
        assert!(matches!(
            first.invoke(request(wat, "{}", true)).await,
            InvokeReply::Done(_)
        ));
        // File times order the preload; make sure the two differ.
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(first);

    // Room for everything: both come back; the first call counts as disk-warm, the next as
    // memory, and nothing is compiled.
    let second = Runtime::new(config(DEFAULT_CACHE_MB << 20)).unwrap();
    assert_eq!(second.preload().await, 2);
    let recent = second.disk.as_ref().unwrap().recent();
    assert_eq!(recent[0].0, fl, "the module used last comes first");
    let fl_file_bytes = recent[0].1;
    for expected in [CodeSource::Disk, CodeSource::Memory] {
        match second.invoke(request(ECHO_FL, "{}", false)).await {
            InvokeReply::Done(out) => assert_eq!(out.source, expected),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        second
            .metrics_text()
            .contains("funless_worker_compilations_total 0")
    );
    drop(second);

    // Room for one module only: the most recently used one is loaded, the other is not.
    let third = Runtime::new(config(fl_file_bytes)).unwrap();
    assert_eq!(third.preload().await, 1);
    assert!(third.is_cached(&fl));
    assert!(!third.is_cached(&wasi));
}

/// A guest that GETs `uri` into a `capacity`-byte buffer and answers the body, or fails with
/// "status N" when the status is not 200.
fn http_guest(uri: &str, capacity: u32) -> String {
    format!(
        r#"(module
  (import "fl_imps" "__http_request" (func $http (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "fl_imps" "__insert_response" (func $resp (param i32 i32)))
  (import "fl_imps" "__insert_error" (func $err (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "{uri}")
  (data (i32.const 40) "bad status")
  (func (export "__invoke") (param i32) (result i32)
    (i32.store (i32.const 16) (i32.const {capacity}))
    (call $http (i32.const 1024) (i32.const 16) (i32.const 20) (i32.const 0)
      (i32.const 100) (i32.const {len}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (if (i32.ne (i32.load16_u (i32.const 20)) (i32.const 200))
      (then (call $err (i32.const 40) (i32.const 10)) (return (i32.const 1))))
    (call $resp (i32.const 1024) (i32.load (i32.const 16)))
    (i32.const 0)))"#,
        len = uri.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_reach_only_allowed_hosts_without_holding_a_thread() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/hello",
        axum::routing::get(|| async {
            // Slow enough that a blocking host call would be visible in the timing below.
            tokio::time::sleep(Duration::from_millis(300)).await;
            "hi there"
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let uri = format!("http://{addr}/hello");
    let rt = Arc::new(runtime());

    // Allowed: ten concurrent calls on a two-thread runtime all finish in about one delay.
    let started = Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let rt = rt.clone();
            let mut req = request(&http_guest(&uri, 64), "{}", true);
            req.allow_hosts = vec![addr.to_string()];
            tokio::spawn(async move { rt.invoke(req).await })
        })
        .collect();
    for reply in futures_join(calls.into_iter()).await {
        match reply {
            InvokeReply::Done(out) => assert_eq!(out.output_json, r#""hi there""#),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A buffer too small: the body is cut to it, and the logs say so.
    let mut req = request(&http_guest(&uri, 4), "{}", true);
    req.allow_hosts = vec!["127.0.0.1".into()];
    match rt.invoke(req).await {
        InvokeReply::Done(out) => {
            assert_eq!(out.output_json, r#""hi t""#);
            assert!(
                out.logs.iter().any(|l| l.contains("truncated")),
                "{:?}",
                out.logs
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // Not on the allow-list (empty by default): status 0, and a log line the caller sees.
    match rt.invoke(request(&http_guest(&uri, 64), "{}", true)).await {
        InvokeReply::Failed(InvokeError::Function { message, logs }) => {
            assert_eq!(message, "bad status");
            assert!(
                logs.iter()
                    .any(|l| l.contains("not on the function's egress allow-list")),
                "{logs:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut req = request(&http_guest(&uri, 64), "{}", true);
    req.allow_hosts = vec![format!("127.0.0.1:{}", addr.port() + 1)];
    assert!(matches!(
        rt.invoke(req).await,
        InvokeReply::Failed(InvokeError::Function { .. })
    ));
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}
