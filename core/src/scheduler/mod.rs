//! Where an invocation runs. Pure functions over a snapshot of the workers, so a decision is
//! cheap (microseconds at a thousand workers, see `cargo bench -p funless-core`) and testable.
//!
//! - The default policy keeps the workers whose free memory covers the function's need, then
//!   prefers one that already holds the code compiled, then the least loaded (invocations in
//!   flight, then CPU load in steps of 20 %); ties rotate, so sequential calls spread over
//!   equal workers. Free memory is only a filter: it and the load average move a little with
//!   every report, and ranking on their exact values would send all sequential work to
//!   whichever worker happened to report the smaller figure.
//! - [`app`]: FunLess's APP scripts, which map a function's tag to ordered blocks of workers.
//!
//! Memory figures are bytes everywhere.

pub mod app;

/// What the scheduler knows of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a, K> {
    /// Identifies the worker.
    pub key: K,
    /// Its name.
    pub name: &'a str,
    /// Its operator-given tags.
    pub tags: &'a [String],
    /// Total memory, bytes.
    pub memory_total: u64,
    /// Free memory, bytes.
    pub memory_free: u64,
    /// Invocations in flight.
    pub in_flight: u64,
    /// One-minute load per CPU, thousandths.
    pub cpu_load_permille: u32,
    /// Whether it holds the function's code compiled in memory.
    pub has_code: bool,
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
    /// Every worker that could take it has all its instance slots in use.
    #[error(
        "every instance slot of the {workers} workers that could run it is in use; retry later"
    )]
    AllBusy {
        /// Workers that were full.
        workers: usize,
    },
    /// The named scheduling script does not exist.
    #[error("no scheduling script named '{script}'")]
    UnknownScript {
        /// The script asked for.
        script: String,
    },
    /// The script has neither the function's tag nor a `default` tag.
    #[error("scheduling script '{script}' has no tag '{tag}' and no 'default' tag")]
    NoMatchingTag {
        /// The script.
        script: String,
        /// The function's tag.
        tag: String,
    },
    /// No worker of the script's blocks for this tag is valid.
    #[error(
        "scheduling script '{script}': no worker in the blocks of tag '{tag}' can take the function ({workers} workers connected; followup '{followup}')"
    )]
    NoValidWorker {
        /// The script.
        script: String,
        /// The tag whose blocks were tried.
        tag: String,
        /// Workers connected.
        workers: usize,
        /// The tag's followup.
        followup: &'static str,
    },
}

/// Chooses a worker for a function needing `need_bytes` with the default policy. `turn`
/// (any counter) picks among exact ties.
pub fn pick<K: Copy>(
    candidates: &[Candidate<'_, K>],
    need_bytes: u64,
    turn: u64,
) -> Result<K, NoWorker> {
    if candidates.is_empty() {
        return Err(NoWorker::NoneConnected);
    }
    best_of(
        candidates.iter().filter(|c| c.memory_free >= need_bytes),
        turn,
    )
    .ok_or_else(|| NoWorker::NotEnoughMemory {
        need_bytes,
        workers: candidates.len(),
        best_free: candidates.iter().map(|c| c.memory_free).max().unwrap_or(0),
    })
}

/// Width of a CPU load step, thousandths: loads within one step count as equal.
const LOAD_STEP_PERMILLE: u32 = 200;

/// Order of preference: code held, fewer in flight, lower CPU load step.
fn rank<K>(c: &Candidate<'_, K>) -> (bool, std::cmp::Reverse<u64>, std::cmp::Reverse<u32>) {
    (
        c.has_code,
        std::cmp::Reverse(c.in_flight),
        std::cmp::Reverse(c.cpu_load_permille / LOAD_STEP_PERMILLE),
    )
}

/// The best-ranked candidate; among equals, the `turn`-th (modulo their number). Two passes,
/// no allocation.
fn best_of<'c, 'a: 'c, K: Copy + 'c>(
    candidates: impl Iterator<Item = &'c Candidate<'a, K>> + Clone,
    turn: u64,
) -> Option<K> {
    let mut best = None;
    let mut ties = 0u64;
    for c in candidates.clone() {
        let r = rank(c);
        match best {
            Some(b) if r < b => {}
            Some(b) if r == b => ties += 1,
            _ => {
                best = Some(r);
                ties = 1;
            }
        }
    }
    let best = best?;
    let nth = (turn % ties) as usize;
    candidates
        .filter(|c| rank(c) == best)
        .nth(nth)
        .map(|c| c.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn c(key: u32, memory_free: u64, in_flight: u64) -> Candidate<'static, u32> {
        Candidate {
            key,
            name: "w",
            tags: &[],
            memory_total: 1000,
            memory_free,
            in_flight,
            cpu_load_permille: 0,
            has_code: false,
        }
    }

    #[test]
    fn no_workers() {
        assert_eq!(pick::<u32>(&[], 1, 0), Err(NoWorker::NoneConnected));
    }

    #[test]
    fn memory_is_a_filter() {
        let workers = [c(1, 100, 0), c(2, 500, 0), c(3, 300, 0)];
        assert_eq!(pick(&workers, 200, 0), Ok(2));
        assert_eq!(pick(&workers, 200, 1), Ok(3));
        assert_eq!(pick(&workers, 500, 1), Ok(2));
        assert_eq!(
            pick(&workers, 501, 0),
            Err(NoWorker::NotEnoughMemory {
                need_bytes: 501,
                workers: 3,
                best_free: 500
            })
        );
    }

    #[test]
    fn code_affinity_beats_load_and_load_beats_memory() {
        let mut warm = c(1, 200, 5);
        warm.has_code = true;
        let workers = [warm, c(2, 900, 0), c(3, 500, 1)];
        assert_eq!(pick(&workers, 100, 0), Ok(1));
        // Without the code anywhere: the least loaded, not the one with most memory.
        let workers = [c(1, 200, 0), c(2, 900, 3), c(3, 500, 1)];
        assert_eq!(pick(&workers, 100, 0), Ok(1));
        // A warm worker without enough memory is not chosen.
        let mut warm = c(1, 50, 0);
        warm.has_code = true;
        assert_eq!(pick(&[warm, c(2, 900, 9)], 100, 0), Ok(2));
    }

    #[test]
    fn cpu_load_breaks_equal_in_flight_but_small_differences_do_not() {
        let mut busy = c(1, 500, 0);
        busy.cpu_load_permille = 900;
        assert_eq!(pick(&[busy.clone(), c(2, 400, 0)], 100, 0), Ok(2));
        assert_eq!(pick(&[busy.clone(), c(2, 400, 0)], 100, 1), Ok(2));
        let mut similar = c(2, 400, 0);
        similar.cpu_load_permille = 850;
        assert_eq!(pick(&[busy.clone(), similar.clone()], 100, 0), Ok(1));
        assert_eq!(pick(&[busy, similar], 100, 1), Ok(2));
    }

    #[test]
    fn exact_ties_rotate() {
        let workers = [c(1, 100, 0), c(2, 100, 0), c(3, 100, 0)];
        let picked: Vec<u32> = (0..6)
            .map(|turn| pick(&workers, 10, turn).unwrap_or(0))
            .collect();
        assert_eq!(picked, vec![1, 2, 3, 1, 2, 3]);
    }
}
