//! Sending code to a worker: inline when it fits one chunk, else as acknowledged
//! [`CodeChunk`]s staged on the worker, then named by [`Code::Staged`] in the message that
//! uses it (a cache push, an invocation after `NoCode`, a service replica's start).
//!
//! One chunk per worker is in flight at a time, so a 64 MiB function costs the Core about one
//! chunk of memory (and its encodings) per worker beyond the one copy it holds, and never needs
//! a cluster frame larger than a chunk.

use std::time::Duration;

use bytes::Bytes;
use funless_actors::Wire;
use funless_actors::protocol::{CODE_CHUNK_BYTES, Code, CodeChunk, WorkerMessage};
use ractor::ActorRef;
use ractor::rpc::CallResult;

/// Longest wait for a worker to acknowledge one chunk.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why code could not be staged on a worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The worker refused a chunk (its staging area is full, say).
    #[error("the worker refused the code: {0}")]
    Refused(String),
    /// The worker did not acknowledge a chunk in time.
    #[error("the worker did not take a chunk of the code within {} s", CHUNK_TIMEOUT.as_secs())]
    Timeout,
    /// The worker cannot be reached.
    #[error("worker lost while sending the code")]
    Lost,
}

/// Makes `code` ready to travel to `worker`: inline when small, else staged there chunk by
/// chunk (returns once the last chunk is acknowledged).
pub async fn stage(worker: &ActorRef<WorkerMessage>, code: &Bytes) -> Result<Code, TransferError> {
    if code.len() <= CODE_CHUNK_BYTES {
        return Ok(Code::Inline(code.to_vec()));
    }
    let transfer: u64 = rand::random();
    let total = code.len() as u64;
    for (index, piece) in code.chunks(CODE_CHUNK_BYTES).enumerate() {
        let chunk = CodeChunk {
            transfer,
            total,
            offset: (index * CODE_CHUNK_BYTES) as u64,
            bytes: piece.to_vec(),
        };
        let answer = worker
            .call(
                |port| WorkerMessage::Chunk(Wire::new(chunk), port),
                Some(CHUNK_TIMEOUT),
            )
            .await;
        match answer {
            Ok(CallResult::Success(reply)) => match reply.into_inner() {
                Ok(Ok(())) => {}
                Ok(Err(why)) => return Err(TransferError::Refused(why)),
                Err(e) => return Err(TransferError::Refused(e.to_string())),
            },
            Ok(CallResult::Timeout) => return Err(TransferError::Timeout),
            Ok(CallResult::SenderError) | Err(_) => return Err(TransferError::Lost),
        }
    }
    Ok(Code::Staged {
        transfer,
        len: total,
    })
}
