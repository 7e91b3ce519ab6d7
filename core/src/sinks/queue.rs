//! A sink's queue: results wait here, in order, until delivered. Each result is also a row of
//! the store (`store/sink_deliveries.rs`) when it could be written; a result that leaves the
//! queue (delivered, refused, or dropped with its queue) hands its row's id to [`Finished`],
//! whose ids the keeper deletes in batches.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use super::{CORE_QUEUE_BYTES, QUEUE, QUEUE_BYTES};

/// Ids of stored results no longer queued anywhere, waiting to be deleted.
#[derive(Debug, Default)]
pub(super) struct Finished {
    ids: Mutex<Vec<i64>>,
}

/// Most ids [`Finished`] holds while the store cannot take them (8 MiB): past it, ids are
/// forgotten and their rows stay until this Core stops, when another Core delivers them again
/// (at least once, as documented in `sinks.rs`).
const FINISHED_MAX: usize = 1 << 20;

impl Finished {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<i64>> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that the row `id` is done with.
    pub(super) fn add(&self, id: i64) {
        let mut ids = self.lock();
        if ids.len() < FINISHED_MAX {
            ids.push(id);
        }
    }

    /// Takes every id recorded so far.
    pub(super) fn take(&self) -> Vec<i64> {
        std::mem::take(&mut *self.lock())
    }

    /// Puts back ids the store could not delete, to be tried again.
    pub(super) fn give_back(&self, mut ids: Vec<i64>) {
        let mut held = self.lock();
        ids.truncate(FINISHED_MAX.saturating_sub(held.len()));
        held.extend(ids);
    }
}

/// A queued result: the document, and its row in the store when it was written there.
#[derive(Debug, Clone)]
pub(super) struct Queued {
    /// The row's id (`None`: the store was away; this result lives in memory only).
    pub(super) id: Option<i64>,
    /// The result, JSON text (shared by the function's sinks).
    pub(super) document: Bytes,
}

/// A sink's results, in order.
pub(super) struct Queue {
    items: Mutex<VecDeque<Queued>>,
    bytes: AtomicUsize,
    /// Bytes queued over every sink of the Core.
    core: Arc<AtomicUsize>,
    finished: Arc<Finished>,
    ready: Notify,
}

/// Why a result was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Full {
    /// This sink's queue holds [`QUEUE`] results or [`QUEUE_BYTES`].
    Sink,
    /// The Core's queues hold [`CORE_QUEUE_BYTES`].
    Core,
}

impl Full {
    /// The reason shown as the sink's `last_error`.
    pub(super) fn reason(self) -> String {
        match self {
            Full::Sink => format!(
                "results dropped: this sink's queue is full ({QUEUE} results or {} MiB)",
                QUEUE_BYTES >> 20
            ),
            Full::Core => format!(
                "results dropped: the Core's sink queues are full ({} MiB in all)",
                CORE_QUEUE_BYTES >> 20
            ),
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // Results still queued when a sink is replaced or stopped are gone: give their bytes
        // back to the Core's bound and their rows to the keeper.
        self.core
            .fetch_sub(self.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        for queued in self.lock().drain(..) {
            if let Some(id) = queued.id {
                self.finished.add(id);
            }
        }
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty queue counting its bytes into `core`, handing finished rows to `finished`.
    pub(super) fn new(core: Arc<AtomicUsize>, finished: Arc<Finished>) -> Self {
        Self {
            items: Mutex::default(),
            bytes: AtomicUsize::new(0),
            core,
            finished,
            ready: Notify::new(),
        }
    }

    /// Whether a result of `len` bytes would be queued now (it may not be by the time it is
    /// pushed: [`Queue::push`] decides).
    pub(super) fn has_room(&self, len: usize) -> Result<(), Full> {
        let items = self.lock().len();
        if items >= QUEUE || self.bytes.load(Ordering::Relaxed) + len > QUEUE_BYTES {
            return Err(Full::Sink);
        }
        if self.core.load(Ordering::Relaxed) + len > CORE_QUEUE_BYTES {
            return Err(Full::Core);
        }
        Ok(())
    }

    /// Adds a result unless the queue, or the Core's queues together, are full; a result not
    /// queued hands its row to the keeper.
    pub(super) fn push(&self, queued: Queued) -> Result<(), Full> {
        let pushed = self.try_push(queued.clone());
        if pushed.is_err()
            && let Some(id) = queued.id
        {
            self.finished.add(id);
        }
        pushed
    }

    fn try_push(&self, queued: Queued) -> Result<(), Full> {
        let len = queued.document.len();
        let mut items = self.lock();
        let bytes = self.bytes.load(Ordering::Relaxed);
        if items.len() >= QUEUE || bytes + len > QUEUE_BYTES {
            return Err(Full::Sink);
        }
        let reserved = self
            .core
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |core| {
                (core + len <= CORE_QUEUE_BYTES).then_some(core + len)
            });
        if reserved.is_err() {
            return Err(Full::Core);
        }
        self.bytes.fetch_add(len, Ordering::Relaxed);
        items.push_back(queued);
        drop(items);
        self.ready.notify_one();
        Ok(())
    }

    /// The oldest result, left in the queue (waits for one).
    pub(super) async fn front(&self) -> Bytes {
        loop {
            let notified = self.ready.notified();
            if let Some(first) = self.lock().front() {
                return first.document.clone();
            }
            notified.await;
        }
    }

    /// Removes the oldest result, once it is delivered or refused.
    pub(super) fn pop(&self) {
        if let Some(done) = self.lock().pop_front() {
            let len = done.document.len();
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            self.core.fetch_sub(len, Ordering::Relaxed);
            if let Some(id) = done.id {
                self.finished.add(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn queued(id: i64, document: &str) -> Queued {
        Queued {
            id: Some(id),
            document: Bytes::copy_from_slice(document.as_bytes()),
        }
    }

    #[tokio::test]
    async fn a_result_hands_its_row_over_once_it_leaves_the_queue() {
        let (core, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(Finished::default()));
        let queue = Queue::new(core.clone(), finished.clone());
        queue.push(queued(1, "one")).unwrap();
        queue.push(queued(2, "two")).unwrap();
        assert_eq!(core.load(Ordering::Relaxed), 6);
        assert_eq!(queue.front().await, "one");
        assert!(finished.take().is_empty(), "nothing delivered yet");
        queue.pop();
        assert_eq!(finished.take(), [1]);
        assert_eq!(queue.front().await, "two");
        // Dropped with its queue (the sink was replaced): the row goes too, and the bytes.
        drop(queue);
        assert_eq!(finished.take(), [2]);
        assert_eq!(core.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_result_over_the_bound_hands_its_row_over_at_once() {
        let (core, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(Finished::default()));
        let queue = Queue::new(core.clone(), finished.clone());
        let big = "x".repeat(QUEUE_BYTES);
        queue.push(queued(1, &big)).unwrap();
        assert_eq!(queue.has_room(1), Err(Full::Sink));
        assert_eq!(queue.push(queued(2, "y")), Err(Full::Sink));
        assert_eq!(finished.take(), [2]);
        // The Core's bound holds over every queue.
        core.store(CORE_QUEUE_BYTES, Ordering::Relaxed);
        let other = Queue::new(core.clone(), finished.clone());
        assert_eq!(other.has_room(1), Err(Full::Core));
        assert_eq!(other.push(queued(3, "z")), Err(Full::Core));
        assert_eq!(finished.take(), [3]);
        // Ids the store could not delete are kept for the next try.
        finished.give_back(vec![4, 5]);
        assert_eq!(finished.take(), [4, 5]);
    }
}
