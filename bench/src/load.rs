//! Load shapes, JMeter style: closed loop (T clients × N sequential requests), closed loop for
//! a fixed time (throughput), and open loop at a fixed rate (latency measured from the time a
//! request was due, so a stall counts against every request it delays).

use std::sync::Arc;
use std::time::{Duration, Instant};

use funless_actors::protocol::{InvokeReply, InvokeRequest};
use funless_worker::Runtime;

use crate::stats::Run;

/// What one request is.
pub(crate) enum Target {
    /// An HTTP POST with a JSON body; any 2xx answer is a success.
    Http {
        client: reqwest::Client,
        url: String,
        token: Option<String>,
        body: String,
    },
    /// An invocation of the worker's runtime in this process (no HTTP, Core or cluster).
    InProcess {
        runtime: Arc<Runtime>,
        request: InvokeRequest,
    },
}

impl Target {
    /// A POST of `body` to `url`, with a bearer token when given.
    pub(crate) fn http(
        client: &reqwest::Client,
        url: String,
        token: Option<&str>,
        body: String,
    ) -> Arc<Self> {
        Arc::new(Self::Http {
            client: client.clone(),
            url,
            token: token.map(str::to_string),
            body,
        })
    }

    /// Sends one request and waits for the whole answer.
    pub(crate) async fn call(&self) -> Result<(), String> {
        match self {
            Self::Http {
                client,
                url,
                token,
                body,
            } => {
                let mut request = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.clone());
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                let text = response.text().await.map_err(|e| e.to_string())?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("{status}: {text}"))
                }
            }
            Self::InProcess { runtime, request } => match runtime.invoke(request.clone()).await {
                InvokeReply::Done(_) => Ok(()),
                other => Err(format!("{other:?}")),
            },
        }
    }

    /// One timed request.
    async fn timed(&self) -> (Duration, Result<(), String>) {
        let started = Instant::now();
        let result = self.call().await;
        (started.elapsed(), result)
    }
}

/// `threads` clients each send `warmup` unmeasured then `requests` measured requests, one
/// after the other.
pub(crate) async fn closed_loop(
    target: Arc<Target>,
    threads: usize,
    requests: usize,
    warmup: usize,
) -> Run {
    // Warm-up first, for all clients, so no measured request overlaps another's warm-up.
    if warmup > 0 {
        let mut tasks = Vec::new();
        for _ in 0..threads {
            let target = target.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..warmup {
                    let _ = target.call().await;
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..threads {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut run = Run {
                latencies: Vec::with_capacity(requests),
                ..Run::default()
            };
            for _ in 0..requests {
                match target.timed().await {
                    (d, Ok(())) => run.latencies.push(d),
                    (_, Err(e)) => run.errors.push(e),
                }
            }
            run
        }));
    }
    gather(tasks, started).await
}

/// `concurrency` clients send requests back to back for `warmup` (not measured), then for
/// `duration`: the sustained throughput at that concurrency.
pub(crate) async fn for_duration(
    target: Arc<Target>,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
) -> Run {
    let started = Instant::now();
    let measure_from = started + warmup;
    let until = measure_from + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut run = Run::default();
            loop {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                let (d, result) = target.timed().await;
                if sent < measure_from {
                    continue;
                }
                match result {
                    Ok(()) => run.latencies.push(d),
                    Err(e) => run.errors.push(e),
                }
            }
            run
        }));
    }
    let mut run = gather(tasks, measure_from).await;
    // Requests sent before the deadline and answered after it stretch the wall time a little;
    // throughput counts them over the real span.
    run.wall = run.wall.max(duration);
    run
}

/// Sends `rate` requests per second for `duration`, each at its due time whatever the
/// previous ones are doing; a latency is measured from the due time.
pub(crate) async fn open_loop(target: Arc<Target>, rate: f64, duration: Duration) -> Run {
    let count = (rate * duration.as_secs_f64()).round().max(1.0) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let result = target.call().await;
            (due.elapsed(), result)
        }));
    }
    let mut run = Run::default();
    for task in tasks {
        match task.await {
            Ok((d, Ok(()))) => run.latencies.push(d),
            Ok((_, Err(e))) => run.errors.push(e),
            Err(e) => run.errors.push(format!("client task failed: {e}")),
        }
    }
    run.wall = started.elapsed();
    run
}

async fn gather(tasks: Vec<tokio::task::JoinHandle<Run>>, started: Instant) -> Run {
    let mut all = Run::default();
    for task in tasks {
        match task.await {
            Ok(run) => {
                all.latencies.extend(run.latencies);
                all.errors.extend(run.errors);
            }
            Err(e) => all.errors.push(format!("client task failed: {e}")),
        }
    }
    all.wall = started.elapsed();
    all
}
