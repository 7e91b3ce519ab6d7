//! The live view of the supervision trees (`GET /v1/admin/tree`) and fault injection
//! (`POST /v1/admin/crash`): the Core's tree from its root supervisor, each worker's from its
//! gateway over the cluster.

use std::time::Duration;

use funless_actors::Wire;
use funless_actors::protocol::{TreeNode, WorkerMessage};
use funless_actors::supervisor::{SupervisorMessage, no_reply, path_exists};
use funless_api::ApiError;
use funless_api::types::{ActorNode, ClusterTree, Crashed, WorkerTree};
use futures::future::join_all;
use ractor::ActorRef;
use ractor::rpc::CallResult;

use crate::workers::Workers;

/// How long a node has to describe its tree or to answer a crash request.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// The name of the Core's node in trees and crash requests.
pub const CORE_NODE: &str = "core";

fn node(tree: TreeNode) -> ActorNode {
    ActorNode {
        name: tree.name,
        role: tree.role,
        kind: tree.kind,
        strategy: tree.strategy,
        restart: tree.restart,
        state: tree.state,
        restarts: tree.restarts,
        uptime_ms: tree.uptime_ms,
        linked: tree.linked,
        children: tree.children.into_iter().map(node).collect(),
    }
}

async fn describe(root: &ActorRef<SupervisorMessage>) -> Result<TreeNode, ApiError> {
    match root
        .call(SupervisorMessage::Describe, Some(ASK_TIMEOUT))
        .await
    {
        Ok(CallResult::Success(tree)) => Ok(tree),
        _ => Err(ApiError::Unavailable(
            "the Core's supervision tree did not answer".into(),
        )),
    }
}

/// The Core's tree and every worker's.
pub async fn gather(
    root: &ActorRef<SupervisorMessage>,
    workers: &Workers,
) -> Result<ClusterTree, ApiError> {
    let core = describe(root).await?;
    let asks = workers.all().into_iter().map(|entry| async move {
        let name = entry.name();
        let state = entry.state().to_string();
        let answer = entry
            .actor
            .call(WorkerMessage::Tree, Some(ASK_TIMEOUT))
            .await;
        let (tree, error) = match answer {
            Ok(CallResult::Success(tree)) => match tree.into_inner() {
                Ok(tree) => (Some(node(tree)), None),
                Err(e) => (None, Some(e.to_string())),
            },
            Ok(CallResult::Timeout) => (None, Some("no answer in time".to_string())),
            Ok(CallResult::SenderError) | Err(_) => (None, Some("unreachable".to_string())),
        };
        WorkerTree {
            name,
            state,
            tree,
            error,
        }
    });
    let mut trees = join_all(asks).await;
    trees.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ClusterTree {
        core: node(core),
        workers: trees,
    })
}

/// Kills the actor at `path` of the Core (`node` is `None` or `core`) or of a worker.
pub async fn crash(
    root: &ActorRef<SupervisorMessage>,
    fault_injection: bool,
    workers: &Workers,
    node: Option<&str>,
    path: &str,
) -> Result<Crashed, ApiError> {
    match node {
        None | Some(CORE_NODE) => {
            if !fault_injection {
                return Err(ApiError::Forbidden(
                    "fault injection is off on the Core (start it with --fault-injection)".into(),
                ));
            }
            let tree = describe(root).await?;
            if !path_exists(&tree, path) {
                return Err(ApiError::NotFound(format!(
                    "no actor {path} in the Core's tree"
                )));
            }
            // Told, not asked: the actor killed may be the one serving this request's
            // answer path (the API server), which must not wait on it.
            root.cast(SupervisorMessage::Crash(path.to_string(), no_reply()))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            tracing::warn!(actor = %path, "fault injection: killing a Core actor");
            Ok(Crashed {
                node: CORE_NODE.into(),
                actor: format!("{}/{path}", tree.name),
            })
        }
        Some(name) => {
            let entry = workers
                .all()
                .into_iter()
                .find(|e| e.name() == name)
                .ok_or_else(|| ApiError::NotFound(format!("no worker named {name}")))?;
            let answer = entry
                .actor
                .call(
                    |port| WorkerMessage::Crash(Wire::new(path.to_string()), port),
                    Some(ASK_TIMEOUT),
                )
                .await;
            match answer {
                Ok(CallResult::Success(answer)) => match answer.into_inner() {
                    Ok(Ok(actor)) => Ok(Crashed {
                        node: name.to_string(),
                        actor,
                    }),
                    Ok(Err(e)) if e.contains("fault injection is off") => {
                        Err(ApiError::Forbidden(e))
                    }
                    Ok(Err(e)) => Err(ApiError::NotFound(e)),
                    Err(e) => Err(ApiError::Internal(e.to_string())),
                },
                _ => Err(ApiError::BadGateway(format!(
                    "worker {name} did not answer the crash request"
                ))),
            }
        }
    }
}
