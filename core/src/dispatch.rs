//! Talking to workers: an invocation (with the "no code" round trip, and retries elsewhere
//! until its deadline: after a full worker for any function, after a lost worker for
//! retryable ones), the broadcast of new code (which gives up on a worker the moment it is
//! declared lost), and eviction. Calls go straight from the request's task to the worker's gateway: no Core actor
//! sits on the invocation path. A call ends when the worker answers, when the worker is lost
//! (its node leaves, or the heartbeat check declares it lost), or after the function's time
//! limit plus a margin: nothing waits forever.

use std::time::{Duration, Instant};

use bytes::Bytes;
use funless_actors::Wire;
use funless_actors::protocol::{
    CachePush, CacheReply, Evict, FunctionId, InvokeError, InvokeOutput, InvokeReply,
    InvokeRequest, WorkerMessage,
};
use futures::future::join_all;
use ractor::rpc::CallResult;
use ractor::{ActorId, ActorRef};

use crate::code_transfer::{self, TransferError};
use crate::scheduler::NoWorker;
use crate::workers::{Lease, Need, Policy, Workers};

/// Extra time a worker gets beyond the function's own limit before the Core gives up on it.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);
/// How long a broadcast waits for one worker to compile.
const COMPILE_TIMEOUT: Duration = Duration::from_secs(330);

/// Why an invocation did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// No worker can take it.
    #[error(transparent)]
    NoWorker(#[from] NoWorker),
    /// It ran (or tried to) and failed.
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// The worker did not answer in time.
    #[error("worker {worker} did not answer within {after_ms} ms")]
    Timeout {
        /// The worker.
        worker: String,
        /// How long the Core waited.
        after_ms: u64,
    },
    /// The worker(s) running the function were lost during the call.
    #[error("the worker running the function was lost ({workers}){}", match (*.retryable, *.retried) {
        (false, _) => "; the function is not retryable",
        (true, true) => "; the runs on other workers were lost too",
        (true, false) => "; no worker could run it again in time",
    })]
    WorkerLost {
        /// The workers tried.
        workers: String,
        /// Whether the function may run again elsewhere.
        retryable: bool,
        /// Whether it ran again.
        retried: bool,
    },
    /// The code could not be loaded for the "no code" path.
    #[error("cannot load the function's code: {0}")]
    Code(String),
}

/// What the invocation path needs to know of the function.
#[derive(Debug, Clone)]
pub struct Target {
    /// Function and code version.
    pub function: FunctionId,
    /// Declared memory need, bytes: the scheduler's filter and the run's memory limit.
    pub need_bytes: u64,
    /// Time limit, milliseconds.
    pub timeout_ms: u64,
    /// Whether it may run again on another worker when its worker is lost mid-call.
    pub retryable: bool,
    /// How to choose the worker.
    pub policy: Policy,
    /// Hosts it may reach over HTTP.
    pub allow_hosts: Vec<String>,
    /// Its environment (configuration).
    pub env: crate::config::Env,
}

/// A successful invocation.
#[derive(Debug)]
pub struct Ran {
    /// The output.
    pub output: InvokeOutput,
    /// Worker that ran it.
    pub worker: String,
    /// Whether it ran on a second worker after the first was lost.
    pub retried: bool,
    /// Choosing the worker (every attempt's).
    pub schedule: Duration,
    /// The round trip of the call that answered, from sending the request to its reply (the
    /// code's second trip included when the worker lacked it).
    pub call: Duration,
}

enum Attempt {
    Answered(InvokeReply),
    Lost,
    TimedOut(u64),
}

async fn call_invoke(lease: &mut Lease, request: InvokeRequest, timeout: Duration) -> Attempt {
    let actor = lease.actor.clone();
    let call = actor.call(
        |port| WorkerMessage::Invoke(Wire::new(request), port),
        Some(timeout),
    );
    let answer = tokio::select! {
        answer = call => answer,
        () = lease.lost() => return Attempt::Lost,
    };
    match answer {
        Ok(CallResult::Success(reply)) => match reply.into_inner() {
            Ok(reply) => Attempt::Answered(reply),
            Err(e) => Attempt::Answered(InvokeReply::Failed(InvokeError::Worker {
                message: e.to_string(),
            })),
        },
        Ok(CallResult::Timeout) => Attempt::TimedOut(timeout.as_millis() as u64),
        Ok(CallResult::SenderError) | Err(_) => Attempt::Lost,
    }
}

/// Runs a function on a worker chosen by the scheduler. `load_code` is called only when the
/// chosen worker lacks the code (step 9b).
pub async fn invoke<F, Fut>(
    workers: &Workers,
    target: &Target,
    args_json: String,
    load_code: F,
) -> Result<Ran, DispatchError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, String>>,
{
    let timeout = Duration::from_millis(target.timeout_ms) + ANSWER_MARGIN;
    let mut lost: Vec<String> = Vec::new();
    let mut full = 0usize;
    let need = Need {
        bytes: target.need_bytes,
        hash: &target.function.hash,
    };
    // A worker lost mid-call gets a retryable request run again on another one (or on the
    // same worker once it is back), until the call's own deadline; a call that finds no
    // worker while one is expected back waits for it within that deadline. A full worker
    // (no instance slot) never started the call: any function goes on to another one.
    let deadline = Instant::now() + timeout;
    let mut attempts = if target.retryable { MAX_ATTEMPTS } else { 1 };
    let mut full_workers: Vec<ActorId> = Vec::new();
    // Workers lost during this call are skipped until the table changes again (one of them
    // may have come back under the same id, as after the Core's node restarts).
    let mut lost_ids: Vec<ActorId> = Vec::new();
    let mut changes = workers.watch();
    let mut schedule = Duration::ZERO;
    loop {
        changes.borrow_and_update();
        let exclude: Vec<ActorId> = full_workers.iter().chain(&lost_ids).copied().collect();
        let choosing = Instant::now();
        let leased = workers.lease(need, &target.policy, &exclude);
        schedule += choosing.elapsed();
        let mut lease = match leased {
            Ok(lease) => lease,
            Err(e) => {
                // A worker lost earlier in this call may be back (under the same id): try it.
                if !lost_ids.is_empty() {
                    lost_ids.clear();
                    continue;
                }
                if wait_for_change(workers, &mut changes, deadline, false).await {
                    continue;
                }
                match e {
                    _ if lost.is_empty() && full == 0 => return Err(e.into()),
                    NoWorker::AllBusy { workers } => {
                        return Err(NoWorker::AllBusy {
                            workers: workers + full,
                        }
                        .into());
                    }
                    _ if lost.is_empty() => {
                        return Err(NoWorker::AllBusy { workers: full }.into());
                    }
                    _ => break,
                }
            }
        };
        let request = InvokeRequest {
            function: target.function.clone(),
            args_json: args_json.clone(),
            code: None,
            timeout_ms: target.timeout_ms,
            memory_limit_bytes: target.need_bytes,
            allow_hosts: target.allow_hosts.clone(),
            env: target.env.clone(),
        };
        let calling = Instant::now();
        let left = deadline.saturating_duration_since(calling);
        let mut attempt = call_invoke(&mut lease, request, left).await;
        if let Attempt::Answered(InvokeReply::NoCode) = attempt {
            tracing::debug!(function = %target.function, worker = %lease.name, "worker lacks the code; sending it");
            let code = load_code().await.map_err(DispatchError::Code)?;
            let actor = lease.actor.clone();
            let code = tokio::select! {
                staged = code_transfer::stage(&actor, &code) => staged,
                () = lease.lost() => Err(TransferError::Lost),
            };
            let code = match code {
                Ok(code) => code,
                Err(TransferError::Lost) => {
                    lost.push(lease.name.clone());
                    lost_ids.push(lease.id);
                    attempts -= 1;
                    drop(lease);
                    if attempts == 0
                        || !wait_for_change(workers, &mut changes, deadline, true).await
                    {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    return Err(DispatchError::Invoke(InvokeError::Worker {
                        message: format!("worker {}: {e}", lease.name),
                    }));
                }
            };
            let request = InvokeRequest {
                function: target.function.clone(),
                args_json: args_json.clone(),
                code: Some(code),
                timeout_ms: target.timeout_ms,
                memory_limit_bytes: target.need_bytes,
                allow_hosts: target.allow_hosts.clone(),
                env: target.env.clone(),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            attempt = call_invoke(&mut lease, request, left).await;
        }
        match attempt {
            Attempt::Answered(InvokeReply::Done(output)) => {
                return Ok(Ran {
                    output,
                    worker: lease.name.clone(),
                    retried: !lost.is_empty(),
                    schedule,
                    call: calling.elapsed(),
                });
            }
            // The call never started there: any function may go to another worker.
            Attempt::Answered(InvokeReply::Failed(InvokeError::NoSlot { .. })) => {
                tracing::debug!(function = %target.function, worker = %lease.name, "worker full; trying another");
                full += 1;
                full_workers.push(lease.id);
            }
            Attempt::Answered(InvokeReply::Failed(e)) => return Err(e.into()),
            Attempt::Answered(InvokeReply::NoCode) => {
                return Err(DispatchError::Invoke(InvokeError::Worker {
                    message: format!("worker {} refused the code it was sent", lease.name),
                }));
            }
            Attempt::TimedOut(after_ms) => {
                return Err(DispatchError::Timeout {
                    worker: lease.name.clone(),
                    after_ms,
                });
            }
            Attempt::Lost => {
                tracing::warn!(function = %target.function, worker = %lease.name, retryable = target.retryable, "worker lost during an invocation");
                lost.push(lease.name.clone());
                lost_ids.push(lease.id);
                attempts -= 1;
                drop(lease);
                // The loss changes the table (the worker is marked lost, restarting or gone);
                // wait for that before choosing again, so the next run does not go to it.
                if attempts == 0 || !wait_for_change(workers, &mut changes, deadline, true).await {
                    break;
                }
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    if lost.is_empty() {
        return Err(NoWorker::AllBusy { workers: full }.into());
    }
    Err(DispatchError::WorkerLost {
        retryable: target.retryable,
        retried: lost.len() > 1,
        workers: lost.join(", "),
    })
}

/// Waits for the next change of the worker table, within `deadline`; false when it does not
/// come in time. After a loss the change is about to come (the loss being recorded, or the
/// worker coming back): wait up to the come-back time. Otherwise wait only while a worker is
/// expected (joining, restarting, or left recently).
async fn wait_for_change(
    workers: &Workers,
    changes: &mut tokio::sync::watch::Receiver<u64>,
    deadline: Instant,
    after_loss: bool,
) -> bool {
    if changes.has_changed().unwrap_or(false) {
        return true;
    }
    let until = if after_loss {
        Some(Instant::now() + workers.comeback())
    } else {
        workers.expected_until()
    };
    let Some(until) = until.map(|t| t.min(deadline)) else {
        return false;
    };
    tokio::time::timeout_at(until.into(), changes.changed())
        .await
        .is_ok_and(|changed| changed.is_ok())
}

/// Most runs of one retryable invocation (each after losing the worker of the previous one).
const MAX_ATTEMPTS: usize = 4;

/// One worker's answer to a broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The worker.
    pub worker: String,
    /// `Ok` when cached, else why not.
    pub result: Result<(), String>,
}

/// Sends code to every connected worker and waits for each to compile it.
pub async fn broadcast(workers: &Workers, function: &FunctionId, code: &Bytes) -> Vec<Delivery> {
    let calls = workers.live().into_iter().map(|entry| {
        async move {
            let worker = entry.name();
            let started = Instant::now();
            let mut lost = entry.lost_signal();
            let call = async {
                let push = CachePush {
                    function: function.clone(),
                    code: code_transfer::stage(&entry.actor, code).await?,
                };
                Ok::<_, TransferError>(
                    entry
                        .actor
                        .call(
                            |port| WorkerMessage::Cache(Wire::new(push), port),
                            Some(COMPILE_TIMEOUT),
                        )
                        .await,
                )
            };
            // A worker declared lost (frozen, cut off) will not answer: stop waiting for it.
            let answer = tokio::select! {
                answer = call => match answer {
                    Ok(answer) => answer,
                    Err(e) => {
                        tracing::debug!(%worker, function = %function, error = %e, "broadcast: code not staged");
                        return Delivery { worker, result: Err(e.to_string()) };
                    }
                },
                _ = lost.wait_for(|lost| *lost) => {
                    tracing::debug!(%worker, function = %function, "broadcast: worker lost");
                    return Delivery { worker, result: Err("worker lost".to_string()) };
                }
            };
            let result = match answer {
                Ok(CallResult::Success(reply)) => match reply.into_inner() {
                    Ok(CacheReply::Cached { .. }) => Ok(()),
                    Ok(CacheReply::Failed { reason }) => Err(reason),
                    Err(e) => Err(e.to_string()),
                },
                Ok(CallResult::Timeout) => Err(format!(
                    "no answer within {} s",
                    COMPILE_TIMEOUT.as_secs()
                )),
                Ok(CallResult::SenderError) | Err(_) => Err("worker lost".to_string()),
            };
            tracing::debug!(%worker, function = %function, ok = result.is_ok(), elapsed = ?started.elapsed(), "broadcast delivery");
            Delivery { worker, result }
        }
    });
    join_all(calls).await
}

/// Tells every worker to drop these code versions.
pub fn evict(workers: &Workers, hashes: Vec<String>) {
    if hashes.is_empty() {
        return;
    }
    for entry in workers.all() {
        let actor: &ActorRef<WorkerMessage> = &entry.actor;
        if let Err(e) = actor.cast(WorkerMessage::Evict(Wire::new(Evict {
            hashes: hashes.clone(),
        }))) {
            tracing::debug!(worker = %entry.name(), error = %e, "cannot send eviction");
        }
    }
}
