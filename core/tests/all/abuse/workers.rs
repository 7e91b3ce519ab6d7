//! Workers under abuse: calls past every free instance slot, uploads while a worker is frozen,
//! bursts of cold uploads against the compiler cap (also in a 1 GiB memory cgroup), and retries
//! when many workers die at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Core, CoreOptions, Worker, detail, example, wait_until};

/// `code` with a custom section holding `n`: a new code hash, the same behaviour.
fn variant(code: &[u8], n: u32) -> Vec<u8> {
    let name = b"variant";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    let mut out = code.to_vec();
    out.push(0);
    out.push(u8::try_from(size).unwrap());
    out.push(u8::try_from(name.len()).unwrap());
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

#[test]
fn calls_past_every_free_instance_slot_are_503_never_a_trap() {
    // One subject fills every slot here: its own quota of calls in flight is lifted.
    let core = Core::start(CoreOptions {
        extra: vec![
            "--max-timeout-ms".into(),
            "60000".into(),
            "--quota-concurrent-invocations".into(),
            "0".into(),
        ],
        ..CoreOptions::default()
    });
    let _w1 = Worker::start_with("w1", &core, &["--pool-slots", "1000"]);
    let _w2 = Worker::start_with("w2", &core, &["--pool-slots", "1000"]);
    core.wait_for_workers(&["w1", "w2"]);
    let (_, listed) = core.admin().get("/v1/workers");
    for worker in listed["data"].as_array().unwrap() {
        assert_eq!(worker["allocator"], "pooling (1000 slots)", "{listed}");
    }
    let user = core.client();
    let (status, body) = user.upload_with(
        "_",
        "sleep",
        example("sleep_fl"),
        json!({ "timeout_ms": 30000 }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // 2,000 asynchronous sleeps fill both workers' 1,000 slots.
    let started = Instant::now();
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let user = user.clone();
            std::thread::spawn(move || {
                (0..250)
                    .map(|_| {
                        let (status, body) = user.post_json(
                            "/v1/fn/_/sleep?blocking=false",
                            &json!({ "args": { "ms": 10000 } }),
                        );
                        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
                        body["data"]["activation_id"].as_str().unwrap().to_string()
                    })
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let ids: Vec<String> = senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    assert_eq!(ids.len(), 2000);
    // Wait for all of them to be running (the Core has sent them all).
    wait_until(Duration::from_secs(20), "2,000 calls in flight", || {
        let (_, body) = core.admin().get("/v1/workers");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["in_flight"].as_u64().unwrap())
            .sum::<u64>()
            == 2000
    });
    // While they sleep, every further call is a 503 that says why.
    for _ in 0..20 {
        let (status, body) = user.invoke("_", "sleep", json!({ "ms": 1 }));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(detail(&body).contains("instance slot"), "{body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the sleeps ended before the check ({:?}): the test proves nothing",
        started.elapsed()
    );
    // And every one of the 2,000 ran to its end: none was refused as a trap.
    let mut outcomes: Vec<Value> = Vec::new();
    wait_until(Duration::from_secs(60), "the sleeps to end", || {
        outcomes = ids
            .iter()
            .map(|id| user.get(&format!("/v1/activations/{id}")).1["data"].clone())
            .collect();
        outcomes.iter().all(|a| a["status"] != "running")
    });
    let failed: Vec<&Value> = outcomes
        .iter()
        .filter(|a| a["status"] != "success")
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {}",
        failed.len(),
        failed[0]
    );
}

#[test]
fn an_upload_with_a_frozen_worker_answers_within_the_heartbeat_timeout() {
    let core = Core::start(CoreOptions {
        extra: vec!["--heartbeat-timeout-ms".into(), "2000".into()],
        ..CoreOptions::default()
    });
    let _w1 = Worker::start("w1", &core);
    let w2 = Worker::start("w2", &core);
    core.wait_for_workers(&["w1", "w2"]);
    w2.process.signal("STOP");
    let started = Instant::now();
    let (status, body) = core
        .client()
        .upload("_", "hello", example("hello_fl"), false);
    let took = started.elapsed();
    w2.process.signal("CONT");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    let report = &body["data"]["workers"];
    assert_eq!(report["cached"], json!(["w1"]), "{body}");
    assert_eq!(report["failed"][0]["worker"], "w2", "{body}");
    assert_eq!(report["failed"][0]["reason"], "worker lost", "{body}");
}

/// Compiler children of a process running now.
fn compiler_children(parent: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let path = e.path();
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            ppid == Some(parent)
                && std::fs::read(path.join("cmdline"))
                    .unwrap_or_default()
                    .windows(9)
                    .any(|w| w == b"__compile")
        })
        .count()
}

#[test]
fn a_burst_of_cold_uploads_runs_at_most_the_capped_compilers() {
    let core = Core::start(CoreOptions::default());
    let worker = Worker::start_with("w1", &core, &["--compile-concurrency", "2"]);
    core.wait_for_workers(&["w1"]);
    let pid = worker.process.pid();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(compiler_children(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            most
        })
    };
    let code = example("hello_fl");
    let uploads: Vec<_> = (0..10)
        .map(|i| {
            let (user, code) = (core.client(), variant(&code, i));
            std::thread::spawn(move || user.upload("_", &format!("hello{i}"), code, false))
        })
        .collect();
    for upload in uploads {
        let (status, body) = upload.join().unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["data"]["workers"]["cached"], json!(["w1"]), "{body}");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = watcher.join().unwrap();
    assert!((1..=2).contains(&most), "{most} compilers at once");
}

/// 1 GiB: the memory of the smallest board the worker is meant for.
const ONE_GIB: u64 = 1 << 30;

/// The interface of a memory cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupVersion {
    V1,
    V2,
}

/// A memory cgroup made for one test. Dropping it kills what still runs in it (processes this
/// test started: the worker and any compiler child it left) and removes it, so a failing test
/// leaves nothing behind.
struct MemoryCgroup {
    dir: PathBuf,
    version: CgroupVersion,
    limit: u64,
}

impl MemoryCgroup {
    /// A new cgroup whose memory (swap included) is limited to `limit` bytes: under this
    /// process's own memory cgroup where that can hold one (so whatever limit the test runs
    /// under still applies), else under the hierarchy's root. Tries cgroup v2 with the memory
    /// controller, then v1's memory controller.
    fn create(limit: u64) -> Result<Self, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut hierarchies: Vec<(CgroupVersion, PathBuf, String)> = Vec::new();
        for mount in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let controllers = std::fs::read_to_string(Path::new(mount).join("cgroup.controllers"))
                .unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "memory") {
                let path = own_cgroup(&own, |c| c.is_empty());
                hierarchies.push((CgroupVersion::V2, mount.into(), path));
            }
        }
        let v1 = Path::new("/sys/fs/cgroup/memory");
        if v1.join("memory.limit_in_bytes").exists() {
            let path = own_cgroup(&own, |c| c.split(',').any(|c| c == "memory"));
            hierarchies.push((CgroupVersion::V1, v1.into(), path));
        }
        if hierarchies.is_empty() {
            return Err(
                "no memory cgroup found: neither cgroup v2 with the memory controller \
                 (`memory` in /sys/fs/cgroup/cgroup.controllers or \
                 /sys/fs/cgroup/unified/cgroup.controllers) nor cgroup v1's memory controller \
                 at /sys/fs/cgroup/memory"
                    .into(),
            );
        }
        let mut tried = Vec::new();
        for (version, mount, path) in hierarchies {
            let own_dir = mount.join(path.trim_start_matches('/'));
            let mut parents = vec![own_dir];
            if parents[0] != mount {
                parents.push(mount);
            }
            for parent in parents {
                match Self::create_under(version, &parent, limit) {
                    Ok(cgroup) => return Ok(cgroup),
                    Err(e) => tried.push(format!("{version:?} {}: {e}", parent.display())),
                }
            }
        }
        Err(tried.join("; "))
    }

    fn create_under(version: CgroupVersion, parent: &Path, limit: u64) -> Result<Self, String> {
        // v2: the parent must hand the memory controller to its children (this test does not
        // change the machine's settings to make it so).
        if version == CgroupVersion::V2 {
            let enabled = std::fs::read_to_string(parent.join("cgroup.subtree_control"))
                .map_err(|e| format!("cannot read cgroup.subtree_control: {e}"))?;
            if !enabled.split_whitespace().any(|c| c == "memory") {
                return Err("the memory controller is not enabled for children \
                     (cgroup.subtree_control)"
                    .into());
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = parent.join(format!("funless-test-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create a cgroup: {e}"))?;
        // From here on, dropping `cgroup` removes the folder.
        let cgroup = Self {
            dir,
            version,
            limit,
        };
        let write = |name: &str, value: String| {
            std::fs::write(cgroup.dir.join(name), &value)
                .map_err(|e| format!("cannot write {value} to {name}: {e}"))
        };
        // Swap would hide the limit: none on top of it.
        match version {
            CgroupVersion::V1 => {
                write("memory.limit_in_bytes", limit.to_string())?;
                if cgroup.dir.join("memory.memsw.limit_in_bytes").exists() {
                    write("memory.memsw.limit_in_bytes", limit.to_string())?;
                }
            }
            CgroupVersion::V2 => {
                write("memory.max", limit.to_string())?;
                if cgroup.dir.join("memory.swap.max").exists() {
                    write("memory.swap.max", "0".into())?;
                }
            }
        }
        let set = cgroup.read(match version {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        });
        if set.trim().parse::<u64>().ok() != Some(limit) {
            return Err(format!("the limit reads back as {set:?}, not {limit}"));
        }
        Ok(cgroup)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    fn counter(&self, name: &str) -> Option<u64> {
        self.read(name).trim().parse().ok()
    }

    /// A `key value` line of a flat-keyed file (`memory.events`, `memory.oom_control`).
    fn field(&self, name: &str, key: &str) -> Option<u64> {
        self.read(name).lines().find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            if k == key {
                v.trim().parse().ok()
            } else {
                None
            }
        })
    }

    /// The file a process id is written to, to move that process in.
    fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    fn pids(&self) -> Vec<u32> {
        self.read("cgroup.procs")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The file of the memory charged to the cgroup now, bytes.
    fn usage_file(&self) -> PathBuf {
        self.dir.join(match self.version {
            CgroupVersion::V1 => "memory.usage_in_bytes",
            CgroupVersion::V2 => "memory.current",
        })
    }

    /// The most memory ever charged to the cgroup, bytes, where the kernel keeps it (v2's
    /// `memory.peak` is Linux 5.19 and later).
    fn peak(&self) -> Option<u64> {
        match self.version {
            CgroupVersion::V1 => self.counter("memory.max_usage_in_bytes"),
            CgroupVersion::V2 => self.counter("memory.peak"),
        }
    }

    /// Times a charge met the limit (v1 `memory.failcnt`, v2 `memory.events` `max`). Each is a
    /// reclaim at the limit, not necessarily an OOM kill: zero means the limit was never
    /// reached at all.
    fn limit_hits(&self) -> u64 {
        match self.version {
            CgroupVersion::V1 => self.counter("memory.failcnt"),
            CgroupVersion::V2 => self.field("memory.events", "max"),
        }
        .unwrap_or(0)
    }

    /// Processes the OOM killer killed in the cgroup.
    fn oom_kills(&self) -> Option<u64> {
        match self.version {
            CgroupVersion::V1 => self.field("memory.oom_control", "oom_kill"),
            CgroupVersion::V2 => self.field("memory.events", "oom_kill"),
        }
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The processes are the ones this test started; a cgroup with any left cannot go.
        for _ in 0..100 {
            let pids = self.pids();
            if pids.is_empty() && std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            for pid in pids {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("could not remove the test cgroup {}", self.dir.display());
    }
}

/// This process's cgroup path in the hierarchy whose controllers `matches`.
fn own_cgroup(proc_self_cgroup: &str, matches: impl Fn(&str) -> bool) -> String {
    proc_self_cgroup
        .lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            matches(controllers).then(|| path.to_string())
        })
        .unwrap_or_else(|| "/".into())
}

#[test]
fn fifty_cold_uploads_succeed_in_a_one_gib_memory_cgroup() {
    let cgroup = MemoryCgroup::create(ONE_GIB).unwrap_or_else(|e| {
        panic!(
            "this test needs a memory cgroup it may create and limit (run as root, with cgroup \
             v2's memory controller or cgroup v1's mounted read-write at \
             /sys/fs/cgroup/memory): {e}"
        )
    });
    let core = Core::start(CoreOptions::default());
    // The worker enters the cgroup before its first instruction (the shell `exec`s it), so it
    // reads the 1 GiB limit as a board's worker would, and derives its default
    // `--compile-concurrency` from it; its compiler children inherit the cgroup.
    let procs = cgroup.procs_file().display().to_string();
    let mut worker = Worker::start_wrapped(
        "w1",
        &core,
        &[
            "sh",
            "-c",
            r#"echo $$ > "$1" && shift && exec "$@""#,
            "sh",
            &procs,
        ],
        &[],
    );
    core.wait_for_workers(&["w1"]);
    let pid = worker.process.pid();
    assert!(
        cgroup.pids().contains(&pid),
        "the worker ({pid}) is not in {}",
        cgroup.dir.display()
    );
    let line = worker
        .process
        .logs
        .find("compiler children: at most")
        .unwrap();
    let cap: usize = line
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no cap in {line:?}"));
    // One child per CPU, at most one per 384 MiB of the cgroup's 1 GiB.
    assert!((1..=2).contains(&cap), "{cap} compilers at once in 1 GiB");

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        let usage = cgroup.usage_file();
        std::thread::spawn(move || {
            let (mut most, mut highest) = (0, 0);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(compiler_children(pid));
                let now = std::fs::read_to_string(&usage).unwrap_or_default();
                highest = highest.max(now.trim().parse::<u64>().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
            (most, highest)
        })
    };
    // Every upload is a new code hash, so each needs its own compile. Half are the 1 MB regex
    // module (a child compiles it in about 1.8 s, 65 MB resident), half the small hello: 50
    // regex bodies (48 MiB) would pass one address's bound on bodies in flight (32 MiB, row 82
    // of docs/SECURITY.md), and part of the burst would be a 429 before reaching the worker.
    let (regex, hello) = (example("regex_fl"), example("hello_fl"));
    let started = Instant::now();
    let uploads: Vec<_> = (0..50u32)
        .map(|i| {
            let code = variant(if i % 2 == 0 { &regex } else { &hello }, i);
            let user = core.client();
            std::thread::spawn(move || user.upload("_", &format!("f{i}"), code, false))
        })
        .collect();
    for upload in uploads {
        let (status, body) = upload.join().unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["data"]["workers"]["cached"], json!(["w1"]), "{body}");
    }
    let took = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (most, sampled) = watcher.join().unwrap();

    // They run, the large and the small.
    let user = core.client();
    for i in [0, 48] {
        let (status, body) = user.invoke(
            "_",
            &format!("f{i}"),
            json!({ "pattern": r"\d+", "text": "a1b22" }),
        );
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["matches"], json!(["1", "22"]), "{body}");
    }
    for i in [1, 49] {
        let (status, body) = user.invoke("_", &format!("f{i}"), json!({ "name": "x" }));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["payload"], "Hello x!", "{body}");
    }

    let peak = cgroup.peak().unwrap_or(sampled);
    eprintln!(
        "50 cold uploads in {:.1} s: cgroup peak {:.1} MiB of {} MiB (sampled {:.1} MiB), \
         {most} compiler children at once (cap {cap}), {} hits of the limit, {:?} OOM kills",
        took.as_secs_f64(),
        peak as f64 / f64::from(1 << 20),
        cgroup.limit >> 20,
        sampled as f64 / f64::from(1 << 20),
        cgroup.limit_hits(),
        cgroup.oom_kills(),
    );
    assert!(worker.process.running(), "the worker died");
    assert_eq!(
        cgroup.oom_kills(),
        Some(0),
        "the OOM killer ran in the cgroup"
    );
    assert!(peak < cgroup.limit, "peak {peak} reached the limit");
    assert_eq!(cgroup.limit_hits(), 0, "the limit was reached");
    // The burst: the capped number of compilers ran side by side, no more.
    assert_eq!(most, cap, "{most} compilers at once, cap {cap}");
}

#[test]
fn a_retryable_call_survives_losing_several_workers_at_once() {
    let core = Core::start(CoreOptions::default());
    let mut doomed: Vec<Worker> = ["w1", "w2", "w3"]
        .iter()
        .map(|name| Worker::start(name, &core))
        .collect();
    core.wait_for_workers(&["w1", "w2", "w3"]);
    let user = core.client();
    let (status, body) = user.upload_with(
        "_",
        "sleep",
        example("sleep_fl"),
        json!({ "retryable": true, "timeout_ms": 20000 }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Calls are under way on all three; then two of them die at once, and a fresh worker
    // joins. Retries go on (to the other dead one, if its loss is not known yet, then on).
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let user = user.clone();
            std::thread::spawn(move || user.invoke("_", "sleep", json!({ "ms": 1500 })))
        })
        .collect();
    wait_until(Duration::from_secs(10), "calls on every worker", || {
        doomed
            .iter()
            .all(|w| w.metric("funless_worker_in_flight") >= 1.0)
    });
    let _w4 = Worker::start("w4", &core);
    for worker in doomed.iter_mut().take(2) {
        worker.process.kill();
    }
    for call in calls {
        let (status, body) = call.join().unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}
