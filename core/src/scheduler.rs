//! Where an invocation runs. FunLess's default policy: keep the workers whose free memory
//! covers the function's need and take the one with the most; among equals, the one with the
//! fewest invocations in flight. Pure functions over a snapshot, so they are cheap and testable.

/// What the scheduler knows of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<K> {
    /// Identifies the worker.
    pub key: K,
    /// Free memory, bytes.
    pub memory_free: u64,
    /// Invocations in flight.
    pub in_flight: u64,
}

/// Why no worker was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoWorker {
    /// No worker is connected (or none has reported yet).
    #[error("no worker is connected")]
    NoneConnected,
    /// Workers exist but none has enough free memory.
    #[error(
        "no worker has enough free memory: the function needs {need_bytes} bytes, the most free on any of the {workers} workers is {best_free} bytes"
    )]
    NotEnoughMemory {
        /// The function's declared need.
        need_bytes: u64,
        /// Workers considered.
        workers: usize,
        /// Largest free memory among them.
        best_free: u64,
    },
}

/// Chooses a worker for a function needing `need_bytes` of memory.
pub fn pick<K: Copy>(candidates: &[Candidate<K>], need_bytes: u64) -> Result<K, NoWorker> {
    if candidates.is_empty() {
        return Err(NoWorker::NoneConnected);
    }
    candidates
        .iter()
        .filter(|c| c.memory_free >= need_bytes)
        .max_by(|a, b| {
            a.memory_free
                .cmp(&b.memory_free)
                .then(b.in_flight.cmp(&a.in_flight))
        })
        .map(|c| c.key)
        .ok_or_else(|| NoWorker::NotEnoughMemory {
            need_bytes,
            workers: candidates.len(),
            best_free: candidates.iter().map(|c| c.memory_free).max().unwrap_or(0),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: u32, memory_free: u64, in_flight: u64) -> Candidate<u32> {
        Candidate {
            key,
            memory_free,
            in_flight,
        }
    }

    #[test]
    fn no_workers() {
        assert_eq!(pick::<u32>(&[], 1), Err(NoWorker::NoneConnected));
    }

    #[test]
    fn keeps_only_workers_with_enough_memory_and_takes_the_most_free() {
        let workers = [c(1, 100, 0), c(2, 500, 9), c(3, 300, 0)];
        assert_eq!(pick(&workers, 200), Ok(2));
        assert_eq!(pick(&workers, 500), Ok(2));
        assert_eq!(
            pick(&workers, 501),
            Err(NoWorker::NotEnoughMemory {
                need_bytes: 501,
                workers: 3,
                best_free: 500
            })
        );
    }

    #[test]
    fn equal_memory_prefers_fewer_in_flight() {
        let workers = [c(1, 100, 3), c(2, 100, 1), c(3, 100, 2)];
        assert_eq!(pick(&workers, 10), Ok(2));
    }
}
