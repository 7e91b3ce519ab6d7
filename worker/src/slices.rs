//! Guests' time slices: the epoch ticker, and the way a guest that used up its slice goes back
//! to the executor.
//!
//! A busy guest yields at the end of every time slice ([`SLICE_TICKS`] epoch ticks, 10 ms).
//! With Wasmtime's plain yield the task wakes itself and tokio puts it back on the *same*
//! worker thread's queue; threads only steal when idle, so four busy guests on two threads can
//! settle as three on one thread and one on the other and stay that way (the 3:1 split made `matrix_mult.js` 4x200 show a p90 1.43 times its
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
//!
//! The end of a slice is also how a guest is known to compute: the callback marks the thread,
//! and [`crate::compute`] moves the invocation polled there to the compute pool. The first
//! slice ends at the first tick at least 1 ms after the guest's store was made (1-2 ms), so
//! that a guest computing for a few milliseconds leaves the node's thread too (a 10 ms first
//! slice would leave `matrix_mult_fl` at n = 100, ~3 ms, on the node's one thread).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, UpdateDeadline};

/// Interval of the epoch ticker: the length of a guest's first time slice.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Ticks of every later time slice (10 ms).
pub(crate) const SLICE_TICKS: u64 = 10;

thread_local! {
    /// Set when a guest polled on this thread used up a time slice; read and cleared around
    /// each poll by [`crate::compute`]. The epoch callback runs on the guest's fiber, which
    /// runs on the thread that polls it, so the mark is seen by the poll that caused it.
    static SLICE_USED: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread's current poll as one in which a guest used up its time slice.
pub(crate) fn mark_slice_used() {
    SLICE_USED.set(true);
}

/// Whether a guest used up a time slice on this thread since the last call; clears the mark.
pub(crate) fn take_slice_used() -> bool {
    SLICE_USED.replace(false)
}

/// The handle guests' stores use to yield through the ticker thread.
#[derive(Debug, Clone)]
pub(crate) struct TimeSlices {
    requeue: Sender<ToTicker>,
    /// Stores alive with this handle's callback, and whether the ticker sleeps for want of
    /// them ([`tick`]).
    live: Arc<Liveness>,
}

/// What the ticker and the stores share.
#[derive(Debug, Default)]
struct Liveness {
    stores: AtomicUsize,
    asleep: AtomicBool,
}

/// What the ticker thread is sent.
enum ToTicker {
    /// Wake this yielding guest.
    Wake(Waker),
    /// A store was made while none lived: tick again.
    Busy,
}

/// One live store, counted while its epoch callback (which owns this) lives.
struct Live(Arc<Liveness>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.stores.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long the ticker goes on ticking after the last store ended before it sleeps: calls
/// that follow each other closely then never wake it.
const IDLE_GRACE: Duration = Duration::from_millis(100);

impl TimeSlices {
    /// Starts the ticker thread of `engine`. It ends with the engine (and every handle).
    pub(crate) fn start(engine: &Engine) -> Self {
        let (requeue, inbox) = mpsc::channel();
        let live = Arc::new(Liveness::default());
        let weak = engine.weak();
        let counted = live.clone();
        let spawned = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || tick(&weak, &inbox, &counted));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the epoch ticker: guests will not yield");
        }
        Self { requeue, live }
    }

    /// Makes `store`'s guest yield at the end of every time slice, through the ticker thread:
    /// at the first tick at least [`EPOCH_TICK`] after the store was made, then every
    /// [`SLICE_TICKS`].
    pub(crate) fn install<T: 'static>(&self, store: &mut Store<T>) {
        self.live.stores.fetch_add(1, Ordering::AcqRel);
        // Without ticks the guest would never yield: wake a sleeping ticker (only one store
        // does, the one that finds it asleep).
        if self.live.asleep.load(Ordering::Acquire)
            && self.live.asleep.swap(false, Ordering::AcqRel)
        {
            let _ = self.requeue.send(ToTicker::Busy);
        }
        let live = Live(self.live.clone());
        let requeue = self.requeue.clone();
        let made = Instant::now();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            let _counted_while_the_store_lives = &live;
            // A tick that lands inside a short run (a hello takes tens of microseconds) is
            // not the end of a slice: the guest goes on, and is looked at again next tick.
            if made.elapsed() < EPOCH_TICK {
                return Ok(UpdateDeadline::Continue(1));
            }
            mark_slice_used();
            let requeue = requeue.clone();
            Ok(UpdateDeadline::YieldCustom(
                SLICE_TICKS,
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

/// The ticker: bumps the engine's epoch every [`EPOCH_TICK`] while any store lives (and for
/// [`IDLE_GRACE`] after) and, in between, wakes the guests handed to it as soon as they
/// arrive. Then it sleeps until a store is made: an idle worker's ticker costs nothing (a
/// 1 ms tick would otherwise wake a board 1,000 times a second for nothing).
fn tick(engine: &wasmtime::EngineWeak, inbox: &mpsc::Receiver<ToTicker>, live: &Liveness) {
    let mut next = Instant::now() + EPOCH_TICK;
    let mut last_busy = Instant::now();
    loop {
        if live.stores.load(Ordering::Acquire) > 0 {
            last_busy = Instant::now();
        } else if last_busy.elapsed() >= IDLE_GRACE {
            live.asleep.store(true, Ordering::Release);
            // A store made between the two looks finds the flag set and sends `Busy`, or is
            // seen here.
            if live.stores.load(Ordering::Acquire) == 0 {
                match inbox.recv() {
                    Ok(ToTicker::Wake(waker)) => waker.wake(),
                    Ok(ToTicker::Busy) => {}
                    // Every handle is gone and no store lives: nothing needs a tick again.
                    Err(_) => return,
                }
            }
            live.asleep.store(false, Ordering::Release);
            last_busy = Instant::now();
            next = Instant::now() + EPOCH_TICK;
            continue;
        }
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
        match inbox.recv_timeout(next - now) {
            Ok(ToTicker::Wake(waker)) => waker.wake(),
            Ok(ToTicker::Busy) | Err(RecvTimeoutError::Timeout) => {}
            // Every handle is gone: keep ticking for stores that may still run, wake nobody.
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }
    }
}

/// One yield: pending until the ticker thread wakes the task.
struct Requeue {
    requeue: Option<Sender<ToTicker>>,
}

impl Future for Requeue {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.requeue.take() {
            // Polled again: the ticker (or anything else) woke us.
            None => Poll::Ready(()),
            Some(requeue) => {
                if requeue.send(ToTicker::Wake(cx.waker().clone())).is_err() {
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

    /// With no store alive the ticker goes to sleep, and a store made then still gets its
    /// ticks: a spinning guest reaches the end of its slice, so its time limit can fire.
    #[test]
    fn an_idle_ticker_sleeps_and_a_new_store_wakes_it() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let slices = TimeSlices::start(&engine);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !slices.live.asleep.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the ticker never went to sleep");
            std::thread::sleep(Duration::from_millis(10));
        }
        let spin = wat::parse_str(r#"(module (func (export "spin") (loop $l (br $l))))"#).unwrap();
        let module = wasmtime::Module::new(&engine, spin).unwrap();
        let (done, finished) = mpsc::channel();
        // On a thread of its own: a guest that never yields would never give this one back.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let limited = runtime.block_on(async {
                let mut store = Store::new(&engine, ());
                slices.install(&mut store);
                let instance = wasmtime::Instance::new_async(&mut store, &module, &[])
                    .await
                    .unwrap();
                let spin = instance
                    .get_typed_func::<(), ()>(&mut store, "spin")
                    .unwrap();
                tokio::time::timeout(Duration::from_millis(200), spin.call_async(&mut store, ()))
                    .await
                    .is_err()
            });
            let _ = done.send(limited);
        });
        let limited = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the guest never yielded: no tick reached it");
        assert!(limited, "the spinning guest returned");
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
