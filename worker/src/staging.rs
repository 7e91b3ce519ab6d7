//! Code larger than one cluster message, assembled from its chunks until the message that uses
//! it (a cache push, an invocation, a replica's start) names the transfer
//! (`funless_actors::protocol::Code`).
//!
//! The gateway writes chunks in as they come; the invoker or replica that needs the code takes
//! it out. What a sender can make the worker hold is bounded: all partial transfers together
//! stay under [`STAGING_BYTES`], and one that stops moving is dropped after [`STALE_AFTER`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use funless_actors::protocol::{Code, CodeChunk, MAX_STAGED_CODE_BYTES};

/// Bytes of code all transfers together may hold on a worker.
pub const STAGING_BYTES: u64 = MAX_STAGED_CODE_BYTES;
/// A transfer with no new chunk for this long is dropped (its sender gave up or died).
const STALE_AFTER: Duration = Duration::from_secs(60);

/// Why staged code cannot be given or taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StagingError {
    /// The chunk does not follow the transfer's previous one, or overruns its length.
    #[error(
        "chunk at {offset} of transfer {transfer:x} does not continue it (have {have} of {total} bytes)"
    )]
    OutOfOrder {
        /// The transfer.
        transfer: u64,
        /// Where the chunk starts.
        offset: u64,
        /// Bytes received before it.
        have: u64,
        /// The code's length.
        total: u64,
    },
    /// Taking this transfer would pass [`STAGING_BYTES`].
    #[error(
        "the worker is receiving {held} bytes of code already; {total} more would pass its {STAGING_BYTES}-byte bound"
    )]
    Full {
        /// Bytes held by other transfers.
        held: u64,
        /// The new transfer's length.
        total: u64,
    },
    /// The code was named before all of it arrived (or after it was dropped as stale).
    #[error("code of transfer {transfer:x} is incomplete: {have} of {len} bytes arrived")]
    Incomplete {
        /// The transfer.
        transfer: u64,
        /// Bytes received.
        have: u64,
        /// The code's length.
        len: u64,
    },
}

struct Partial {
    bytes: Vec<u8>,
    total: u64,
    touched: Instant,
}

/// The worker's partial transfers, by transfer id.
#[derive(Default)]
pub struct Staging {
    transfers: Mutex<HashMap<u64, Partial>>,
}

impl std::fmt::Debug for Staging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staging")
            .field("transfers", &self.lock().len())
            .finish()
    }
}

impl Staging {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Partial>> {
        self.transfers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops transfers that stopped moving (their sender gave up or died). Called on every
    /// chunk and by the status report's tick, so a dead sender's bytes do not wait for the
    /// next transfer to be given back.
    pub fn sweep(&self) {
        self.sweep_at(Instant::now());
    }

    fn sweep_at(&self, now: Instant) {
        self.lock()
            .retain(|_, partial| now.saturating_duration_since(partial.touched) < STALE_AFTER);
    }

    /// Appends a chunk to its transfer (the first chunk opens it, sized for the whole code).
    pub fn add(&self, chunk: CodeChunk) -> Result<(), StagingError> {
        self.sweep();
        let now = Instant::now();
        let mut transfers = self.lock();
        let out_of_order = |have: u64| StagingError::OutOfOrder {
            transfer: chunk.transfer,
            offset: chunk.offset,
            have,
            total: chunk.total,
        };
        if !transfers.contains_key(&chunk.transfer) {
            if chunk.offset != 0 {
                return Err(out_of_order(0));
            }
            let held: u64 = transfers.values().map(|p| p.total).sum();
            if held.saturating_add(chunk.total) > STAGING_BYTES {
                return Err(StagingError::Full {
                    held,
                    total: chunk.total,
                });
            }
            transfers.insert(
                chunk.transfer,
                Partial {
                    // Within STAGING_BYTES, checked above.
                    bytes: Vec::with_capacity(chunk.total as usize),
                    total: chunk.total,
                    touched: now,
                },
            );
        }
        let Some(partial) = transfers.get_mut(&chunk.transfer) else {
            return Err(out_of_order(0));
        };
        let have = partial.bytes.len() as u64;
        if chunk.offset != have
            || chunk.total != partial.total
            || have + chunk.bytes.len() as u64 > partial.total
        {
            return Err(out_of_order(have));
        }
        partial.bytes.extend_from_slice(&chunk.bytes);
        partial.touched = now;
        Ok(())
    }

    /// The code a message carries: inline, or the whole of a staged transfer (taken out).
    pub fn take(&self, code: Code) -> Result<Vec<u8>, StagingError> {
        let (transfer, len) = match code {
            Code::Inline(bytes) => return Ok(bytes),
            Code::Staged { transfer, len } => (transfer, len),
        };
        let mut transfers = self.lock();
        let have = transfers
            .get(&transfer)
            .map_or(0, |partial| partial.bytes.len() as u64);
        if have != len {
            return Err(StagingError::Incomplete {
                transfer,
                have,
                len,
            });
        }
        Ok(transfers
            .remove(&transfer)
            .map(|partial| partial.bytes)
            .unwrap_or_default())
    }

    /// Bytes held by partial transfers.
    pub fn held(&self) -> u64 {
        self.lock().values().map(|p| p.total).sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn chunk(transfer: u64, total: u64, offset: u64, bytes: &[u8]) -> CodeChunk {
        CodeChunk {
            transfer,
            total,
            offset,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn chunks_in_order_make_the_code_and_are_taken_once() {
        let staging = Staging::default();
        staging.add(chunk(7, 5, 0, b"ab")).unwrap();
        staging.add(chunk(7, 5, 2, b"cde")).unwrap();
        assert_eq!(staging.held(), 5);
        let code = Code::Staged {
            transfer: 7,
            len: 5,
        };
        assert_eq!(staging.take(code.clone()).unwrap(), b"abcde");
        assert_eq!(staging.held(), 0);
        assert!(matches!(
            staging.take(code),
            Err(StagingError::Incomplete { have: 0, .. })
        ));
        assert_eq!(staging.take(Code::Inline(b"x".to_vec())).unwrap(), b"x");
    }

    #[test]
    fn gaps_overruns_and_early_takes_are_refused_and_change_nothing() {
        let staging = Staging::default();
        assert!(matches!(
            staging.add(chunk(1, 4, 2, b"cd")),
            Err(StagingError::OutOfOrder { .. })
        ));
        assert_eq!(staging.held(), 0);
        staging.add(chunk(1, 4, 0, b"ab")).unwrap();
        // A repeated chunk, a gap and an overrun.
        for bad in [
            chunk(1, 4, 0, b"ab"),
            chunk(1, 4, 3, b"d"),
            chunk(1, 4, 2, b"cde"),
        ] {
            assert!(matches!(
                staging.add(bad),
                Err(StagingError::OutOfOrder { have: 2, .. })
            ));
        }
        let early = Code::Staged {
            transfer: 1,
            len: 4,
        };
        assert!(matches!(
            staging.take(early.clone()),
            Err(StagingError::Incomplete {
                have: 2,
                len: 4,
                ..
            })
        ));
        staging.add(chunk(1, 4, 2, b"cd")).unwrap();
        assert_eq!(staging.take(early).unwrap(), b"abcd");
    }

    #[test]
    fn a_transfer_that_stops_moving_is_dropped_and_its_bytes_given_back() {
        let staging = Staging::default();
        staging.add(chunk(1, 8, 0, b"abcd")).unwrap();
        staging.sweep_at(Instant::now() + STALE_AFTER / 2);
        assert_eq!(staging.held(), 8);
        staging.sweep_at(Instant::now() + STALE_AFTER + Duration::from_secs(1));
        assert_eq!(staging.held(), 0);
        assert!(matches!(
            staging.add(chunk(1, 8, 4, b"efgh")),
            Err(StagingError::OutOfOrder { have: 0, .. })
        ));
    }

    #[test]
    fn transfers_together_stay_within_the_bound() {
        let staging = Staging::default();
        staging.add(chunk(1, STAGING_BYTES - 10, 0, b"a")).unwrap();
        let refused = staging.add(chunk(2, 11, 0, b"b")).unwrap_err();
        assert!(matches!(refused, StagingError::Full { .. }), "{refused}");
        staging.add(chunk(3, 10, 0, b"c")).unwrap();
        assert_eq!(staging.held(), STAGING_BYTES);
    }
}
