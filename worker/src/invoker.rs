//! One short-lived actor per request, linked under an invocation supervisor: Erlang's
//! `Task.Supervisor` idiom.
//!
//! The gateway spawns an [`Invoker`] for every invocation and every code push and goes back to
//! its mailbox; the invoker runs the work, answers its caller directly and stops. The
//! [`Invocations`] supervisor sees every invoker's exit: when one crashes (a panic, a kill),
//! it answers that invoker's caller at once with the reason, so nobody waits for a time-out.
//! Its own end (a restart of the subtree) answers every caller still waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use funless_actors::Wire;
use funless_actors::protocol::{CachePush, CacheReply, InvokeError, InvokeReply, InvokeRequest};
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor::{SpawnErr, SupervisionEvent};
use ractor_cluster::RactorMessage;

use crate::runtime::Runtime;

/// A caller waiting for an answer; answered once, by whoever gets there first.
enum Caller {
    Invoke(RpcReplyPort<Wire<InvokeReply>>),
    Cache(RpcReplyPort<Wire<CacheReply>>),
}

impl Caller {
    /// Answers with a failure saying `why`.
    fn fail(self, why: String) {
        match self {
            Caller::Invoke(port) => {
                let _ = port.send(Wire::new(InvokeReply::Failed(InvokeError::Crashed {
                    message: why,
                })));
            }
            Caller::Cache(port) => {
                let _ = port.send(Wire::new(CacheReply::Failed { reason: why }));
            }
        }
    }
}

/// Callers of the running invokers of one [`Invocations`] incarnation, by invoker.
#[derive(Default)]
struct Pending(Mutex<HashMap<ActorId, Caller>>);

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ActorId, Caller>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, id: ActorId) -> Option<Caller> {
        self.lock().remove(&id)
    }

    fn fail_all(&self, why: &str) {
        let callers: Vec<Caller> = self.lock().drain().map(|(_, c)| c).collect();
        for caller in callers {
            caller.fail(why.to_string());
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A caller registered by an invoker that could not be linked (its supervisor was
        // going away) is still answered.
        self.fail_all("the worker's invocation supervisor restarted during the call");
    }
}

/// What the gateway needs to start invokers: the current invocation supervisor.
#[derive(Clone)]
pub(crate) struct InvocationsHandle {
    cell: ActorCell,
    pending: Arc<Pending>,
}

/// Where the current invocation supervisor is published for the gateway, which reads it per
/// request (the supervisor may restart without the gateway).
pub(crate) type InvocationsSlot = Arc<RwLock<Option<InvocationsHandle>>>;

/// The invocation supervisor.
#[derive(Debug)]
pub(crate) struct Invocations;

/// Its state: the callers of its invokers. Dropping it (however the supervisor ends) answers
/// the callers still waiting, whose invokers die with it.
pub(crate) struct InvocationsState {
    pending: Arc<Pending>,
}

impl Drop for InvocationsState {
    fn drop(&mut self) {
        self.pending
            .fail_all("the worker's invocation supervisor restarted during the call");
    }
}

/// The invocation supervisor has no messages of its own: it watches its invokers.
#[derive(Debug, RactorMessage)]
pub(crate) enum InvocationsMessage {}

impl Actor for Invocations {
    type Msg = InvocationsMessage;
    type State = InvocationsState;
    type Arguments = InvocationsSlot;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        slot: InvocationsSlot,
    ) -> Result<Self::State, ActorProcessingErr> {
        let pending = Arc::new(Pending::default());
        // Published before it is linked; invokers spawned under it before the link completes
        // fail to link and are answered by `Pending`'s drop.
        *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(InvocationsHandle {
            cell: myself.get_cell(),
            pending: pending.clone(),
        });
        Ok(InvocationsState { pending })
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (id, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                (cell.get_id(), format!("the invoker crashed: {err}"))
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell.get_id(),
                format!(
                    "the invoker stopped before answering ({})",
                    reason.unwrap_or_else(|| "normal".into())
                ),
            ),
            _ => return Ok(()),
        };
        // An invoker that answered took its caller out already; any other exit is a crash.
        if let Some(caller) = state.pending.take(id) {
            tracing::error!(invoker = %id, %why, "invocation crashed; answering its caller");
            caller.fail(why);
        }
        Ok(())
    }
}

/// The work of one invoker.
pub(crate) enum Work {
    /// Run a function (received by the gateway at that instant).
    Invoke(Wire<InvokeRequest>, Instant),
    /// Compile and cache pushed code.
    Cache(Wire<CachePush>),
}

/// One invocation (or code push).
#[derive(Debug)]
pub(crate) struct Invoker;

/// How an invoker starts.
pub(crate) struct InvokerArgs {
    runtime: Arc<Runtime>,
    work: Work,
    caller: Caller,
    pending: Arc<Pending>,
}

/// An invoker's state until it runs.
pub(crate) struct InvokerState {
    runtime: Arc<Runtime>,
    work: Option<Work>,
    pending: Arc<Pending>,
}

/// The invoker has no messages: it runs once, from `post_start`.
#[derive(Debug, RactorMessage)]
pub(crate) enum InvokerMessage {}

impl Actor for Invoker {
    type Msg = InvokerMessage;
    type State = InvokerState;
    type Arguments = InvokerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: InvokerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Registered before the invoker is linked or runs, so its supervisor can always answer.
        args.pending.lock().insert(myself.get_id(), args.caller);
        Ok(InvokerState {
            runtime: args.runtime,
            work: Some(args.work),
            pending: args.pending,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let id = myself.get_id();
        match state.work.take() {
            Some(Work::Invoke(request, received)) => {
                let spawn_us = received.elapsed().as_micros() as u64;
                let mut answer = match request.into_inner() {
                    Ok(request) => state.runtime.invoke_here_then_pool(request).await,
                    Err(e) => InvokeReply::Failed(InvokeError::Worker {
                        message: e.to_string(),
                    }),
                };
                if let InvokeReply::Done(output) = &mut answer {
                    output.spawn_us = spawn_us;
                    output.worker_us = received.elapsed().as_micros() as u64;
                }
                if let Some(Caller::Invoke(port)) = state.pending.take(id) {
                    // The caller may have given up (time-out); nothing to do then.
                    let _ = port.send(Wire::new(answer));
                }
            }
            Some(Work::Cache(push)) => {
                let answer = match push.into_inner() {
                    Ok(push) => state.runtime.cache_code(push).await,
                    Err(e) => CacheReply::Failed {
                        reason: e.to_string(),
                    },
                };
                if let Some(Caller::Cache(port)) = state.pending.take(id) {
                    let _ = port.send(Wire::new(answer));
                }
            }
            None => {}
        }
        myself.stop(None);
        Ok(())
    }
}

impl InvocationsHandle {
    /// Starts an invoker for an invocation; it answers `reply` itself.
    pub(crate) async fn invoke(
        &self,
        runtime: Arc<Runtime>,
        request: Wire<InvokeRequest>,
        received: Instant,
        reply: RpcReplyPort<Wire<InvokeReply>>,
    ) {
        self.spawn(
            runtime,
            Work::Invoke(request, received),
            Caller::Invoke(reply),
        )
        .await;
    }

    /// Starts an invoker for a code push; it answers `reply` itself.
    pub(crate) async fn cache(
        &self,
        runtime: Arc<Runtime>,
        push: Wire<CachePush>,
        reply: RpcReplyPort<Wire<CacheReply>>,
    ) {
        self.spawn(runtime, Work::Cache(push), Caller::Cache(reply))
            .await;
    }

    async fn spawn(&self, runtime: Arc<Runtime>, work: Work, caller: Caller) {
        let args = InvokerArgs {
            runtime,
            work,
            caller,
            pending: self.pending.clone(),
        };
        if let Err(e) = Actor::spawn_linked(None, Invoker, args, self.cell.clone()).await {
            // Linking fails only while the supervisor is going away; its end answers the
            // caller (registered in pre_start). A failed pre_start cannot happen (it only
            // registers), but say so if it ever does.
            if !matches!(e, SpawnErr::StartupFailed(_)) {
                tracing::error!(error = %e, "cannot start an invoker");
            }
        }
    }
}
