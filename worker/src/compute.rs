//! The compute pool: where guests that compute run, apart from the node's own work.
//!
//! A worker's actors, cluster sessions and the start of every invocation run on the node's
//! runtime (one thread unless `--io-threads` says otherwise). A call that arrives, runs its
//! guest for some microseconds and answers then never crosses threads: handing a task to
//! another thread costs an eventfd write and a futex wake on each side, more than a short
//! guest's whole run (docs/BENCHMARKS.md, "Runtime threads"). A guest that uses up its
//! first time slice (1 ms, [`crate::slices`]) computes: its invocation moves, as it stands, to
//! this pool, one thread per core, where busy guests share every core and leave the node's thread free for
//! arrivals. Services' replicas, which run for as long as they live, start here.
//!
//! An invocation is a `Send` future (Wasmtime's fibers may resume on another thread between
//! polls), so moving it is spawning it on the pool and awaiting its handle; the handle aborts
//! the task when dropped, so an invoker that is killed still ends its guest, and a panic on
//! the pool goes on unwinding in the invoker, which its supervisor sees as a crash.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

use crate::slices;

/// The pool's threads.
pub(crate) struct ComputePool {
    /// `None` once shut down; with no threads configured, the pool is not started at all.
    runtime: Option<Runtime>,
}

/// The pool was shut down (the worker's runtime is going away) while a guest ran on it.
#[derive(Debug, thiserror::Error)]
#[error("the worker's compute pool stopped during the call")]
pub(crate) struct PoolStopped;

impl ComputePool {
    /// Starts `threads` threads (`0`: no pool; guests stay on the thread they started on).
    pub(crate) fn start(threads: usize) -> std::io::Result<Self> {
        if threads == 0 {
            return Ok(Self { runtime: None });
        }
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("funless-compute")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// The pool's handle, or the current runtime's when there is no pool.
    pub(crate) fn handle(&self) -> Handle {
        match &self.runtime {
            Some(runtime) => runtime.handle().clone(),
            None => Handle::current(),
        }
    }

    /// Spawns `task` on the pool; the task ends when the guard is dropped.
    pub(crate) fn spawn<F>(&self, task: F) -> AbortOnDrop<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        AbortOnDrop(self.handle().spawn(task))
    }

    /// Runs `work` on the calling task until its guest uses up a time slice, then on the pool.
    /// Returns whether it moved, with its output.
    pub(crate) async fn run<F>(&self, work: F) -> Result<(F::Output, bool), PoolStopped>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if self.runtime.is_none() {
            return Ok((work.await, false));
        }
        let work = match (UntilSliceUsed {
            work: Some(Box::pin(work)),
        })
        .await
        {
            Step::Done(output) => return Ok((output, false)),
            Step::Moved(work) => work,
        };
        let mut task = self.spawn(work);
        match (&mut task.0).await {
            Ok(output) => Ok((output, true)),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(PoolStopped),
        }
    }
}

impl Drop for ComputePool {
    /// Dropping a tokio runtime waits for its threads, which must not happen on a runtime
    /// thread (a worker's `Runtime` may be dropped on one); its tasks are dropped in place.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A task on the pool that is aborted when its handle is dropped.
pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How far [`UntilSliceUsed`] got.
enum Step<F: Future> {
    Done(F::Output),
    Moved(Pin<Box<F>>),
}

/// Polls `work` until it ends, or until a poll in which its guest used up a time slice: then
/// gives the work back, pending, to be moved.
struct UntilSliceUsed<F> {
    work: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for UntilSliceUsed<F> {
    type Output = Step<F>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Step<F>> {
        let Some(work) = self.work.as_mut() else {
            // Polled after it gave the work away: nothing is left to run.
            return Poll::Pending;
        };
        slices::take_slice_used();
        match work.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Step::Done(output)),
            Poll::Pending if slices::take_slice_used() => match self.work.take() {
                Some(work) => Poll::Ready(Step::Moved(work)),
                None => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Duration;

    fn thread() -> Option<String> {
        std::thread::current().name().map(str::to_string)
    }

    /// Work that yields `slices` times as a guest at the end of a time slice does, then says
    /// which thread it finished on.
    async fn guest(slices: usize) -> Option<String> {
        for _ in 0..slices {
            slices::mark_slice_used();
            tokio::task::yield_now().await;
        }
        thread()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn work_that_never_uses_a_slice_ends_where_it_started() {
        let pool = ComputePool::start(2).unwrap();
        let here = thread();
        let (ended_on, moved) = pool.run(guest(0)).await.unwrap();
        assert!(!moved);
        assert_eq!(ended_on, here);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn work_that_uses_a_slice_moves_to_the_pool_and_finishes_there() {
        let pool = ComputePool::start(2).unwrap();
        let (ended_on, moved) = pool.run(guest(3)).await.unwrap();
        assert!(moved);
        assert_eq!(ended_on.as_deref(), Some("funless-compute"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn without_a_pool_work_stays_put() {
        let pool = ComputePool::start(0).unwrap();
        let here = thread();
        let (ended_on, moved) = pool.run(guest(3)).await.unwrap();
        assert!(!moved);
        assert_eq!(ended_on, here);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_on_the_pool_unwinds_in_the_caller() {
        let pool = ComputePool::start(1).unwrap();
        let caller = tokio::spawn(async move {
            pool.run(async {
                guest(1).await;
                panic!("the guest's host code panicked");
            })
            .await
        });
        let error = caller
            .await
            .expect_err("the panic did not reach the caller");
        assert!(error.is_panic());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropping_the_caller_ends_the_moved_work() {
        let pool = std::sync::Arc::new(ComputePool::start(1).unwrap());
        let (started, mut started_rx) = tokio::sync::mpsc::channel(1);
        let dropped = std::sync::Arc::new(tokio::sync::Notify::new());
        struct Signal(std::sync::Arc<tokio::sync::Notify>);
        impl Drop for Signal {
            fn drop(&mut self) {
                self.0.notify_one();
            }
        }
        let signal = Signal(dropped.clone());
        let caller = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(async move {
                    let _signal = signal;
                    guest(1).await;
                    started.send(()).await.unwrap();
                    std::future::pending::<()>().await;
                })
                .await
            }
        });
        tokio::time::timeout(Duration::from_secs(5), started_rx.recv())
            .await
            .expect("the work never reached the pool");
        caller.abort();
        tokio::time::timeout(Duration::from_secs(5), dropped.notified())
            .await
            .expect("the moved work outlived its caller");
    }
}
