//! The cluster hop alone: this process joins the platform's cluster as a node of its own (same
//! cookie), dials the worker's node and calls its gateway directly, as the Core does, with no
//! Core and no HTTP in between. `Invoke` round trips of `hello` are the Core's `cluster` stage
//! plus the worker's whole share (invoker actor, Wasmtime), from a node that is not the Core;
//! `Status` round trips are the worker's status report, which reads the machine's memory and
//! CPU load from /proc before it answers (encode, both node sessions, loopback TCP, decode,
//! that handler and the way back).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use funless_actors::node::{Node, NodeConfig, connect_once};
use funless_actors::protocol::{Code, FunctionId, InvokeReply, InvokeRequest, WorkerMessage};
use funless_actors::{WORKER_GROUP, Wire};
use ractor::ActorRef;
use ractor::rpc::CallResult;
use sha2::{Digest, Sha256};

use crate::platform::free_port;

/// Round trips measured against the worker's gateway.
pub(crate) struct Floor {
    /// `Status` calls.
    pub(crate) status: Vec<Duration>,
    /// `Invoke` calls of `hello`.
    pub(crate) invoke: Vec<Duration>,
}

/// Joins the worker at `127.0.0.1:worker_port` with `cookie` and measures `requests` round
/// trips of each kind after `warmup` unmeasured ones.
pub(crate) async fn measure(
    worker_port: u16,
    cookie: &str,
    hello: &[u8],
    warmup: usize,
    requests: usize,
) -> anyhow::Result<Floor> {
    let node = Node::start(NodeConfig {
        name: "bench".into(),
        cookie: cookie.into(),
        listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: free_port()?,
        tls: None,
    })
    .await
    .context("starting the bench's cluster node")?;
    connect_once(
        &node,
        &format!("127.0.0.1:{worker_port}"),
        Duration::from_secs(10),
    )
    .await
    .context("joining the worker's node")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let gateway: ActorRef<WorkerMessage> = loop {
        if let Some(cell) = ractor::pg::get_members(&WORKER_GROUP.to_string()).pop() {
            break cell.into();
        }
        if Instant::now() > deadline {
            bail!("the worker's gateway did not appear in {WORKER_GROUP} within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let limit = Some(Duration::from_secs(10));

    let mut status = Vec::with_capacity(requests);
    for i in 0..warmup + requests {
        let started = Instant::now();
        match gateway.call(WorkerMessage::Status, limit).await {
            Ok(CallResult::Success(answer)) => {
                answer.into_inner().context("decoding the status")?;
            }
            other => bail!("status call failed: {other:?}"),
        }
        if i >= warmup {
            status.push(started.elapsed());
        }
    }

    let request = |code: Option<Vec<u8>>| InvokeRequest {
        env: Default::default(),
        function: FunctionId {
            module: "bench".into(),
            name: "hello".into(),
            hash: hex::encode(Sha256::digest(hello)),
        },
        args_json: r#"{"name":"bench"}"#.into(),
        code: code.map(Code::Inline),
        timeout_ms: 5_000,
        memory_limit_bytes: 0,
        allow_hosts: Vec::new(),
    };
    let mut invoke = Vec::with_capacity(requests);
    let mut code = None;
    let mut i = 0;
    while i < warmup + requests {
        let started = Instant::now();
        let message = request(code.take());
        let answer = match gateway
            .call(
                |port| WorkerMessage::Invoke(Wire::new(message), port),
                limit,
            )
            .await
        {
            Ok(CallResult::Success(answer)) => answer.into_inner().context("decoding")?,
            other => bail!("invoke call failed: {other:?}"),
        };
        match answer {
            InvokeReply::Done(_) => {}
            // The worker has not got this code under this name yet: send it once.
            InvokeReply::NoCode => {
                code = Some(hello.to_vec());
                continue;
            }
            InvokeReply::Failed(e) => bail!("hello failed on the worker: {e}"),
        }
        if i >= warmup {
            invoke.push(started.elapsed());
        }
        i += 1;
    }
    Ok(Floor { status, invoke })
}
