//! Guests' time slices: the epoch ticker, and the way a guest that used up its slice goes back
//! to the executor.
//!
//! A busy guest yields every epoch tick (10 ms). With Wasmtime's plain yield the task wakes
//! itself and tokio puts it back on the *same* worker thread's queue; threads only steal when
//! idle, so four busy guests on two threads can settle as three on one thread and one on the
//! other and stay that way (the 3:1 split made `matrix_mult.js` 4x200 show a p90 1.43 times its
//! median). Here the yielding guest's waker is handed to the ticker thread, which wakes it from
//! outside the runtime: tokio then queues the task on its global queue, which every idle thread
//! drains in order, so busy guests take turns across all threads.
//!
//! Before that, the yield steps aside for everything else (tokio's `yield_now`: the task is
//! woken only once its thread has run the tasks that are ready and polled its I/O driver).
//! Without it a thread running busy guests looks for network events only every 61 tasks
//! (tokio's event interval), each a 10 ms slice: a call arriving beside busy guests waits
//! that long at every hop. Measured with `bench/fairness.sh` (docs/BENCHMARKS.md): another
//! function's hello beside eight busy loops on two workers.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, UpdateDeadline};

/// Interval of the epoch ticker: the length of a guest's time slice.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The handle guests' stores use to yield through the ticker thread.
#[derive(Debug, Clone)]
pub(crate) struct TimeSlices {
    requeue: Sender<Waker>,
}

impl TimeSlices {
    /// Starts the ticker thread of `engine`. It ends with the engine (and every handle).
    pub(crate) fn start(engine: &Engine) -> Self {
        let (requeue, wakers) = mpsc::channel();
        let weak = engine.weak();
        let spawned = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || tick(&weak, &wakers));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the epoch ticker: guests will not yield");
        }
        Self { requeue }
    }

    /// Makes `store`'s guest yield at the end of every time slice, through the ticker thread.
    pub(crate) fn install<T: 'static>(&self, store: &mut Store<T>) {
        let requeue = self.requeue.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            let requeue = requeue.clone();
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    // Ready tasks and network events first, then the next turn.
                    tokio::task::yield_now().await;
                    Requeue {
                        requeue: Some(requeue),
                    }
                    .await
                }),
            ))
        });
    }
}

/// The ticker: bumps the engine's epoch every [`EPOCH_TICK`] and, in between, wakes the guests
/// handed to it as soon as they arrive.
fn tick(engine: &wasmtime::EngineWeak, wakers: &mpsc::Receiver<Waker>) {
    let mut next = Instant::now() + EPOCH_TICK;
    loop {
        let now = Instant::now();
        if now >= next {
            let Some(engine) = engine.upgrade() else {
                return;
            };
            engine.increment_epoch();
            // After a stall (a suspended VM), tick from now rather than catching up.
            next = (next + EPOCH_TICK).max(now + EPOCH_TICK / 2);
            continue;
        }
        match wakers.recv_timeout(next - now) {
            Ok(waker) => waker.wake(),
            Err(RecvTimeoutError::Timeout) => {}
            // Every handle is gone: keep ticking for stores that may still run, wake nobody.
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }
    }
}

/// One yield: pending until the ticker thread wakes the task.
struct Requeue {
    requeue: Option<Sender<Waker>>,
}

impl Future for Requeue {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.requeue.take() {
            // Polled again: the ticker (or anything else) woke us.
            None => Poll::Ready(()),
            Some(requeue) => {
                if requeue.send(cx.waker().clone()).is_err() {
                    // No ticker: yield the ordinary way.
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The yield resolves once the ticker thread has woken the task, and from a thread that is
    /// not the task's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_yield_is_woken_by_the_ticker_thread() {
        let engine = Engine::default();
        let slices = TimeSlices::start(&engine);
        let woken_from = Arc::new(std::sync::Mutex::new(None));
        let polls = Arc::new(AtomicUsize::new(0));
        struct Spy<F> {
            inner: Pin<Box<F>>,
            polls: Arc<AtomicUsize>,
            woken_from: Arc<std::sync::Mutex<Option<String>>>,
        }
        impl<F: Future<Output = ()>> Future for Spy<F> {
            type Output = ();
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                self.polls.fetch_add(1, Ordering::SeqCst);
                let waker = spy_waker(cx.waker().clone(), self.woken_from.clone());
                let mut cx = Context::from_waker(&waker);
                self.inner.as_mut().poll(&mut cx)
            }
        }
        let yielded = Spy {
            inner: Box::pin(Requeue {
                requeue: Some(slices.requeue.clone()),
            }),
            polls: polls.clone(),
            woken_from: woken_from.clone(),
        };
        tokio::time::timeout(Duration::from_secs(5), yielded)
            .await
            .expect("the ticker never woke the yielding task");
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        let thread = woken_from.lock().unwrap().clone();
        assert_eq!(thread.as_deref(), Some("wasm-epoch"));
    }

    /// Records the name of the thread that wakes, then passes the wake on.
    fn spy_waker(inner: Waker, woken_from: Arc<std::sync::Mutex<Option<String>>>) -> Waker {
        struct SpyWake {
            inner: Waker,
            woken_from: Arc<std::sync::Mutex<Option<String>>>,
        }
        impl std::task::Wake for SpyWake {
            fn wake(self: Arc<Self>) {
                self.wake_by_ref();
            }
            fn wake_by_ref(self: &Arc<Self>) {
                let name = std::thread::current().name().map(str::to_string);
                *self.woken_from.lock().unwrap() = name;
                self.inner.wake_by_ref();
            }
        }
        Waker::from(Arc::new(SpyWake { inner, woken_from }))
    }
}
