//! Hostile guests: every one gets a clean, typed failure and the worker goes on serving.
//! Each case is a small WAT module; the table in docs/SECURITY.md points here.
#![allow(clippy::unwrap_used)]

use super::tests::{ECHO_FL, request};
use super::*;

/// Imports every `fl_imps` function, exports one page of memory and `__invoke` = `$body`.
fn fl_guest(body: &str) -> String {
    format!(
        r#"(module
  (import "fl_imps" "__get_input_data" (func $get (param i32)))
  (import "fl_imps" "__insert_response" (func $resp (param i32 i32)))
  (import "fl_imps" "__insert_error" (func $err (param i32 i32)))
  (import "fl_imps" "__console_log" (func $log (param i32 i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "fl_imps" "__http_request" (func $http (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (func $recurse (param i32) (result i32) (call $recurse (i32.add (local.get 0) (i32.const 1))))
  (func (export "__invoke") (param $len i32) (result i32)
    {body}
    (i32.const 0)))"#
    )
}

#[derive(Debug)]
enum Expect {
    Trap(&'static str),
    Function(&'static str),
    BadOutput,
    MemoryLimit,
    OutputTooLarge,
    Timeout,
    Done(&'static str),
}

fn check(case: &str, reply: InvokeReply, expect: &Expect) {
    let ok = match (&reply, expect) {
        (InvokeReply::Failed(InvokeError::Trap { message }), Expect::Trap(needle)) => {
            message.contains(needle)
        }
        (InvokeReply::Failed(InvokeError::Function { message, .. }), Expect::Function(needle)) => {
            message.contains(needle)
        }
        (InvokeReply::Failed(InvokeError::BadOutput { .. }), Expect::BadOutput)
        | (InvokeReply::Failed(InvokeError::MemoryLimit { .. }), Expect::MemoryLimit)
        | (InvokeReply::Failed(InvokeError::OutputTooLarge { .. }), Expect::OutputTooLarge)
        | (InvokeReply::Failed(InvokeError::Timeout { .. }), Expect::Timeout) => true,
        (InvokeReply::Done(out), Expect::Done(output)) => out.output_json == *output,
        _ => false,
    };
    assert!(ok, "{case}: expected {expect:?}, got {reply:?}");
}

#[tokio::test]
async fn every_hostile_guest_gets_a_clean_typed_error_and_the_worker_goes_on() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let grow_forever =
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable";
    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "__get_input_data out of bounds",
            fl_guest("(call $get (i32.const 65535))"),
            Expect::Trap("__get_input_data"),
        ),
        (
            "__get_input_data negative pointer",
            fl_guest("(call $get (i32.const -1))"),
            Expect::Trap("__get_input_data"),
        ),
        (
            "__insert_response out of bounds",
            fl_guest("(call $resp (i32.const 65530) (i32.const 100))"),
            Expect::Trap("__insert_response"),
        ),
        (
            "__insert_response negative length",
            fl_guest("(call $resp (i32.const 0) (i32.const -5))"),
            Expect::Trap("__insert_response"),
        ),
        (
            "__insert_response pointer at 4 GiB",
            fl_guest("(call $resp (i32.const -1) (i32.const 16))"),
            Expect::Trap("__insert_response"),
        ),
        (
            "__insert_error out of bounds",
            fl_guest("(call $err (i32.const 70000) (i32.const 1))"),
            Expect::Trap("__insert_error"),
        ),
        (
            "__console_log out of bounds",
            fl_guest("(call $log (i32.const 65000) (i32.const 4096))"),
            Expect::Trap("__console_log"),
        ),
        (
            "__console_log huge length",
            fl_guest("(call $log (i32.const 0) (i32.const 2000000000))"),
            Expect::Trap("__console_log"),
        ),
        (
            "__http_request URI out of bounds",
            fl_guest(
                "(call $http (i32.const 0) (i32.const 8) (i32.const 12) (i32.const 0) (i32.const 65530) (i32.const 64) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))",
            ),
            Expect::Trap("__http_request"),
        ),
        (
            "__http_request status pointer out of bounds",
            fl_guest(
                "(call $http (i32.const 0) (i32.const 8) (i32.const 70000) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))",
            ),
            Expect::Trap("__http_request"),
        ),
        (
            "__http_request unknown method",
            fl_guest(
                "(call $http (i32.const 0) (i32.const 8) (i32.const 12) (i32.const 9) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))",
            ),
            Expect::Trap("unknown method"),
        ),
        (
            "__http_request body of 2 GB",
            fl_guest(
                "(call $http (i32.const 0) (i32.const 8) (i32.const 12) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 2000000000))",
            ),
            Expect::Trap("__http_request"),
        ),
        (
            "__http_request with an empty URI (answers status 0)",
            fl_guest(
                "(call $http (i32.const 200) (i32.const 8) (i32.const 12) (i32.const 0) (i32.const 100) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)) (call $resp (i32.const 12) (i32.const 2))",
            ),
            Expect::Done(r#""\u0000\u0000""#),
        ),
        (
            "response larger than allowed",
            fl_guest("(call $resp (i32.const 0) (i32.const 9000000))"),
            Expect::OutputTooLarge,
        ),
        (
            "error larger than allowed",
            fl_guest("(call $err (i32.const 0) (i32.const 9000000))"),
            Expect::OutputTooLarge,
        ),
        (
            "invalid UTF-8 response",
            fl_guest(
                "(i32.store (i32.const 0) (i32.const 0xfffefdfc)) (call $resp (i32.const 0) (i32.const 4))",
            ),
            Expect::BadOutput,
        ),
        (
            "invalid UTF-8 error text",
            fl_guest(
                "(i32.store (i32.const 0) (i32.const 0xfffefdfc)) (call $err (i32.const 0) (i32.const 4)) (return (i32.const 1))",
            ),
            Expect::Function("\u{fffd}"),
        ),
        (
            "stack overflow",
            fl_guest("(drop (call $recurse (i32.const 0)))"),
            Expect::Trap("stack"),
        ),
        (
            "unreachable",
            fl_guest("unreachable"),
            Expect::Trap("unreachable"),
        ),
        (
            "division by zero",
            fl_guest("(drop (i32.div_u (i32.const 1) (i32.const 0)))"),
            Expect::Trap("divide by zero"),
        ),
        (
            "out-of-bounds load",
            fl_guest("(drop (i32.load (i32.const 1000000)))"),
            Expect::Trap("out of bounds"),
        ),
        (
            "proc_exit non-zero",
            fl_guest("(call $exit (i32.const 7))"),
            Expect::Function("exit code 7"),
        ),
        (
            "proc_exit zero without a response",
            fl_guest("(call $exit (i32.const 0))"),
            Expect::Done("null"),
        ),
        (
            "allocates past its memory limit",
            fl_guest(grow_forever),
            Expect::MemoryLimit,
        ),
        (
            "endless loop",
            fl_guest("(loop $l (br $l))"),
            Expect::Timeout,
        ),
    ];
    for (case, wat, expect) in &cases {
        let mut req = request(wat, "{}", true);
        req.timeout_ms = 300;
        req.memory_limit_bytes = 4 << 20;
        let reply = rt.invoke(req).await;
        check(case, reply, expect);
        // And the worker still serves a well-behaved function.
        assert!(
            matches!(
                rt.invoke(request(ECHO_FL, r#"{"ok":1}"#, true)).await,
                InvokeReply::Done(_)
            ),
            "after {case}"
        );
    }
}

#[tokio::test]
async fn a_guest_that_handles_a_refused_growth_finishes_normally() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    // Asks for 8 MiB more than its 1 MiB limit, sees -1, and answers anyway.
    let wat = fl_guest(
        r#"(drop (memory.grow (i32.const 128)))
    (i32.store8 (i32.const 0) (i32.const 49))
    (call $resp (i32.const 0) (i32.const 1))"#,
    );
    let mut req = request(&wat, "{}", true);
    req.memory_limit_bytes = 1 << 20;
    check(
        "refused growth handled",
        rt.invoke(req).await,
        &Expect::Done("1"),
    );
}

#[tokio::test]
async fn a_command_flooding_stdout_is_output_too_large() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    // Writes its whole 64 KiB page to stdout 200 times (12.5 MiB, over the 8 MiB limit).
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32)
    (i32.store (i32.const 0) (i32.const 0))
    (i32.store (i32.const 4) (i32.const 65536))
    (loop $l
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 200))))))"#;
    check(
        "stdout flood",
        rt.invoke(request(wat, "{}", true)).await,
        &Expect::OutputTooLarge,
    );
}

/// A small deterministic generator (xorshift64*), so a failing case can be replayed from its
/// seed without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }

    /// A pointer or length: boundary values most of the time, anything otherwise.
    fn edge_i32(&mut self) -> i32 {
        const EDGES: [i32; 12] = [
            0,
            1,
            -1,
            4,
            65_535,
            65_536,
            65_537,
            131_072,
            i32::MAX,
            i32::MIN,
            8_388_608,
            8_388_609,
        ];
        if self.next().is_multiple_of(4) {
            self.next() as i32
        } else {
            *self.pick(&EDGES)
        }
    }
}

/// Random calls of every `fl_imps` function with boundary and random pointers and lengths,
/// over memories of 0 to 2 pages: every run ends in a result or a typed failure, never a
/// worker error, and the worker keeps serving. Bounded for CI (`FUNLESS_FUZZ_ITERS`, default
/// 300); `FUNLESS_FUZZ_SEED` replays a run.
#[tokio::test]
async fn fuzz_the_host_function_boundary() {
    let iterations: u64 = std::env::var("FUNLESS_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("FUNLESS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let mut rng = Rng(seed);
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    for i in 0..iterations {
        let pages = rng.next() % 3;
        let mut body = String::new();
        for _ in 0..=rng.next() % 3 {
            let call = match rng.next() % 4 {
                0 => format!("(call $get (i32.const {}))", rng.edge_i32()),
                1 => format!(
                    "(call $resp (i32.const {}) (i32.const {}))",
                    rng.edge_i32(),
                    rng.edge_i32()
                ),
                2 => format!(
                    "(call $err (i32.const {}) (i32.const {}))",
                    rng.edge_i32(),
                    rng.edge_i32()
                ),
                _ => format!(
                    "(call $log (i32.const {}) (i32.const {}))",
                    rng.edge_i32(),
                    rng.edge_i32()
                ),
            };
            body.push_str(&call);
        }
        let wat = format!(
            r#"(module
  (import "fl_imps" "__get_input_data" (func $get (param i32)))
  (import "fl_imps" "__insert_response" (func $resp (param i32 i32)))
  (import "fl_imps" "__insert_error" (func $err (param i32 i32)))
  (import "fl_imps" "__console_log" (func $log (param i32 i32)))
  (memory (export "memory") {pages})
  (func (export "__invoke") (param i32) (result i32) {body} (i32.const 0)))"#
        );
        let mut req = request(&wat, r#"{"fuzz":true}"#, true);
        req.timeout_ms = 2_000;
        match rt.invoke(req).await {
            InvokeReply::Done(_)
            | InvokeReply::Failed(
                InvokeError::Trap { .. }
                | InvokeError::Function { .. }
                | InvokeError::BadOutput { .. }
                | InvokeError::OutputTooLarge { .. },
            ) => {}
            other => panic!("seed {seed}, iteration {i}: {wat}\n→ {other:?}"),
        }
        if i.is_multiple_of(50) {
            assert!(matches!(
                rt.invoke(request(ECHO_FL, "{}", true)).await,
                InvokeReply::Done(_)
            ));
        }
    }
}
