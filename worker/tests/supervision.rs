//! The worker's supervision tree in one process: its gateway dies abnormally and is restarted
//! with its state rebuilt from the shared runtime (the compiled code survives), and the
//! worker keeps serving through the new gateway. (A panicking handler takes the same path:
//! `funless_actors::supervisor`'s own tests make a child panic.)
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use funless_actors::protocol::{
    Code, CodeSource, FunctionId, InvokeReply, InvokeRequest, WorkerMessage,
};
use funless_actors::{WORKER_GROUP, Wire};
use funless_worker::RuntimeConfig;
use funless_worker::runtime::code_hash;
use ractor::rpc::CallResult;
use ractor::{ActorId, ActorRef};

const ECHO: &str = r#"(module
  (import "fl_imps" "__get_input_data" (func $get (param i32)))
  (import "fl_imps" "__insert_response" (func $resp (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "__invoke") (param $len i32) (result i32)
    (call $get (i32.const 0))
    (call $resp (i32.const 0) (local.get $len))
    (i32.const 0)))"#;

fn gateway() -> Option<ActorRef<WorkerMessage>> {
    ractor::pg::get_members(&WORKER_GROUP.to_string())
        .into_iter()
        .next()
        .map(Into::into)
}

async fn invoke(
    gateway: &ActorRef<WorkerMessage>,
    code: Option<Vec<u8>>,
    hash: &str,
) -> InvokeReply {
    let request = InvokeRequest {
        env: Default::default(),
        function: FunctionId {
            module: "_".into(),
            name: "echo".into(),
            hash: hash.into(),
        },
        args_json: r#"{"n":1}"#.into(),
        code: code.map(Code::Inline),
        timeout_ms: 5_000,
        memory_limit_bytes: 0,
        allow_hosts: Vec::new(),
    };
    match gateway
        .call(
            |port| WorkerMessage::Invoke(Wire::new(request), port),
            Some(Duration::from_secs(10)),
        )
        .await
        .unwrap()
    {
        CallResult::Success(reply) => reply.into_inner().unwrap(),
        other => panic!("no answer: {other:?}"),
    }
}

async fn new_gateway_after(old: ActorId) -> ActorRef<WorkerMessage> {
    for _ in 0..500 {
        let members = ractor::pg::get_members(&WORKER_GROUP.to_string());
        if let Some(cell) = members.into_iter().find(|c| c.get_id() != old) {
            return cell.into();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the gateway was not restarted");
}

#[tokio::test]
async fn a_dead_gateway_is_restarted_and_the_worker_keeps_serving() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let worker = funless_worker::start(RuntimeConfig::default(), Duration::from_secs(1))
        .await
        .unwrap();
    let code = wat::parse_str(ECHO).unwrap();
    let hash = code_hash(&code);
    let first = gateway().unwrap();
    match invoke(&first, Some(code), &hash).await {
        InvokeReply::Done(out) => assert_eq!(out.output_json, r#"{"n":1}"#),
        other => panic!("{other:?}"),
    }

    // Killed (as a crash would end it), the gateway comes back under a new id...
    first.get_cell().kill();
    let second = new_gateway_after(first.get_id()).await;
    // ...and serves the code compiled before the crash from memory: state rebuilt, not lost.
    match invoke(&second, None, &hash).await {
        InvokeReply::Done(out) => assert_eq!(out.source, CodeSource::Memory),
        other => panic!("{other:?}"),
    }
    assert!(!worker.done.is_finished(), "the supervisor must still run");

    // Repeated crashes hit the restart limit (5 in 30 s; one used above): the supervisor gives
    // up and says so by ending, instead of looping.
    let mut current = second;
    for _ in 0..4 {
        current.get_cell().kill();
        current = new_gateway_after(current.get_id()).await;
    }
    current.get_cell().kill();
    tokio::time::timeout(Duration::from_secs(5), worker.done)
        .await
        .expect("the supervisor should stop after too many restarts")
        .unwrap();
}
