//! Compiling in a child process of the worker binary (`funless-worker __compile`): what the
//! child returns runs like code compiled in the worker, for modules, components and the
//! JavaScript engine; code that does not compile is refused with the compiler's message; a
//! compiler program that cannot be started is a clear error (the worker holds no compiler).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use funless_actors::protocol::{CacheReply, InvokeError, InvokeReply};
use funless_testkit::{example, js_example};
use funless_worker::{CompileLimits, Compiler, Runtime, RuntimeConfig};

mod common;
use common::{cached_request, push, request};

fn worker_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_funless-worker"))
}

fn runtime(compiler: Compiler) -> Runtime {
    Runtime::new(RuntimeConfig {
        compiler,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

async fn output(rt: &Runtime, code: &[u8], args: &str) -> String {
    match rt.invoke(cached_request(code, args)).await {
        InvokeReply::Done(out) => out.output_json,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn modules_components_and_the_javascript_engine_compile_in_a_child() {
    let rt = runtime(Compiler::Child(worker_binary()));
    let module = example("hello_fl");
    let component = example("hello_p2");
    let script = js_example("hello");
    for code in [&module, &component, &script] {
        assert!(
            matches!(push(&rt, code).await, CacheReply::Cached { .. }),
            "not cached"
        );
    }
    assert_eq!(
        output(&rt, &module, r#"{"name":"child"}"#).await,
        r#"{"payload":"Hello child!"}"#
    );
    assert_eq!(
        output(&rt, &component, r#"{"name":"child"}"#).await,
        r#"{"payload":"Hello child!"}"#
    );
    assert_eq!(
        output(&rt, &script, r#"{"name":"child"}"#).await,
        r#"{"payload":"Hello child!"}"#
    );
}

#[tokio::test]
async fn code_that_does_not_compile_is_refused_with_the_compilers_message() {
    let rt = runtime(Compiler::Child(worker_binary()));
    // A valid header, then a type section that claims more bytes than follow.
    let broken = b"\0asm\x01\0\0\0\x01\x7f\x01".to_vec();
    match push(&rt, &broken).await {
        CacheReply::Failed { reason } => {
            let refusal = CacheReply::code_refusal(&reason).unwrap_or_else(|| panic!("{reason}"));
            assert!(refusal.contains("unexpected end-of-file"), "{refusal}");
        }
        other => panic!("unexpected {other:?}"),
    }
    match rt.invoke(request(&broken, "{}")).await {
        InvokeReply::Failed(InvokeError::Code { message }) => {
            assert!(message.contains("unexpected end-of-file"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The worker is unharmed: good code still compiles and runs.
    let module = example("hello_fl");
    push(&rt, &module).await;
    assert_eq!(
        output(&rt, &module, r#"{"name":"after"}"#).await,
        r#"{"payload":"Hello after!"}"#
    );
}

#[tokio::test]
async fn a_compiler_that_cannot_be_started_is_a_clear_error_and_no_pool() {
    let rt = runtime(Compiler::Child(PathBuf::from(
        "/nonexistent/funless-worker",
    )));
    // The pool is tried out in a child: without one, the on-demand allocator.
    assert_eq!(rt.allocator(), "on-demand");
    // The worker's own engine has no compiler: nothing compiles, and it says why.
    match push(&rt, &example("hello_fl")).await {
        CacheReply::Failed { reason } => {
            assert!(
                reason.contains("cannot start a compiler process (/nonexistent/funless-worker)"),
                "{reason}"
            );
            assert_eq!(
                CacheReply::code_refusal(&reason),
                None,
                "not the code's fault"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    match rt.invoke(request(&js_example("hello"), "{}")).await {
        InvokeReply::Failed(InvokeError::Worker { message }) => {
            assert!(
                message.contains("cannot start a compiler process"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_child_refuses_a_job_it_does_not_know() {
    let out = std::process::Command::new(worker_binary())
        .args([
            funless_worker::compiler::CHILD_ARG,
            "format-disk",
            "1024",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "unknown job format-disk"
    );
}

/// An address space too small to compile `regex_fl` in (it needs ~200 MiB; the child starts
/// in 100).
const TOO_LITTLE_MEMORY: u64 = 120 << 20;

fn limited(limits: CompileLimits) -> Runtime {
    Runtime::new(RuntimeConfig {
        compiler: Compiler::Child(worker_binary()),
        compile: limits,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_one_code_version_share_one_compile() {
    let rt = std::sync::Arc::new(limited(CompileLimits {
        concurrency: 1,
        ..CompileLimits::default()
    }));
    let code = example("regex_fl");
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (rt, code) = (rt.clone(), code.clone());
            tokio::spawn(async move { rt.invoke(request(&code, "{}")).await })
        })
        .collect();
    for call in calls {
        let reply = call.await.unwrap();
        assert!(
            !matches!(reply, InvokeReply::Failed(_) | InvokeReply::NoCode),
            "{reply:?}"
        );
    }
    let metrics = rt.metrics_text();
    let compilations = metrics
        .lines()
        .find(|l| l.starts_with("funless_worker_compilations_total "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(compilations, "funless_worker_compilations_total 1");
}

#[tokio::test]
async fn a_compile_over_its_time_or_memory_is_refused_clearly() {
    let code = example("regex_fl");
    let rt = limited(CompileLimits {
        timeout: std::time::Duration::from_millis(1),
        ..CompileLimits::default()
    });
    match push(&rt, &code).await {
        CacheReply::Failed { reason } => {
            assert!(
                reason.contains("compiling took longer than the limit"),
                "{reason}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let rt = limited(CompileLimits {
        memory_bytes: TOO_LITTLE_MEMORY,
        ..CompileLimits::default()
    });
    match push(&rt, &code).await {
        CacheReply::Failed { reason } => {
            assert!(reason.contains("compiler's memory limit"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The default limits compile it.
    let rt = limited(CompileLimits::default());
    assert!(matches!(push(&rt, &code).await, CacheReply::Cached { .. }));
}
