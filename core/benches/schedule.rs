//! Scheduling decision time: `Workers::lease` (snapshot of the table under its read lock,
//! candidates, policy, in-flight slot) over 10, 100 and 1,000 simulated workers, with the
//! default policy and with an APP script. Workers are real (idle) local actors with synthetic
//! statuses: free memory spread over 0.5-8 GiB, 32 cached hashes each, loads and in-flight
//! counts varied; the function's hash is cached on one worker in ten.
//!
//! Usage: `cargo bench -p funless-core --bench schedule`
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use funless_actors::protocol::{CacheReport, WorkerMessage, WorkerStatus};
use funless_core::scheduler::app::Script;
use funless_core::workers::{Need, Policy, Workers};
use ractor::{Actor, ActorProcessingErr, ActorRef};

struct Idle;

impl Actor for Idle {
    type Msg = WorkerMessage;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

const SCRIPT: &str = r#"
- bench:
    - workers: [rack-a]
      strategy: platform
      invalidate:
        capacity_used: 60%
        max_concurrent_invocations: 8
    - workers: "*"
      strategy: best-first
  followup: default
- default:
    - workers: "*"
      strategy: platform
"#;

fn percentiles(mut values: Vec<Duration>) -> String {
    values.sort();
    let at = |p: usize| values[((values.len() * p).div_ceil(100)).saturating_sub(1)];
    format!(
        "median {:>7.2} µs  p99 {:>7.2} µs",
        at(50).as_secs_f64() * 1e6,
        at(99).as_secs_f64() * 1e6
    )
}

async fn table(n: usize, hash: &str) -> (Workers, Vec<ActorRef<WorkerMessage>>) {
    let workers = Workers::default();
    let mut actors = Vec::with_capacity(n);
    for i in 0..n {
        let (actor, _) = Actor::spawn(None, Idle, ()).await.unwrap();
        workers.join(actor.clone());
        let mut cached: Vec<String> = (0..32).map(|j| format!("{:064x}", i * 1000 + j)).collect();
        if i % 10 == 0 {
            cached[0] = hash.to_string();
        }
        workers.set_status(
            actor.get_id(),
            WorkerStatus {
                name: format!("w{i:04}"),
                memory_total: 8 << 30,
                memory_free: (512 << 20) + (i as u64 * 7919 % 7680) * (1 << 20),
                in_flight: 0,
                slots_total: 0,
                slots_free: 0,
                cached,
                cache: CacheReport::default(),
                allocator: "pooling".into(),
                tags: vec![if i % 2 == 0 { "rack-a" } else { "rack-b" }.into()],
                cpus: 4,
                cpu_load_permille: (i as u32 * 37) % 1000,
            },
        );
        actors.push(actor);
    }
    (workers, actors)
}

#[tokio::main]
async fn main() {
    let hash = format!("{:064x}", u64::MAX);
    let script = Arc::new(Script::parse(SCRIPT).unwrap());
    println!("scheduling decision (Workers::lease), 20,000 decisions per row");
    for n in [10, 100, 1000] {
        let (workers, actors) = table(n, &hash).await;
        for (label, policy) in [
            ("default", Policy::Default),
            (
                "app",
                Policy::App {
                    name: "bench".into(),
                    script: script.clone(),
                    tag: Some("bench".into()),
                },
            ),
        ] {
            let need = Need {
                bytes: 256 << 20,
                hash: &hash,
            };
            // Some leases held, so in-flight counts differ as under load.
            let held: Vec<_> = (0..n / 2)
                .map(|_| workers.lease(need, &policy, &[]).unwrap())
                .collect();
            let mut times = Vec::with_capacity(20_000);
            for _ in 0..20_000 {
                let started = Instant::now();
                let lease = workers.lease(need, &policy, &[]).unwrap();
                times.push(started.elapsed());
                drop(lease);
            }
            drop(held);
            println!("{n:>5} workers, {label:<7}: {}", percentiles(times));
        }
        for actor in actors {
            actor.stop(None);
        }
    }
}
