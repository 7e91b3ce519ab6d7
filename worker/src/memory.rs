//! Memory and CPU load of the machine the worker runs on, for the scheduler.
//!
//! Under a memory limit (a systemd unit's `MemoryMax`, a container's or a Kubernetes pod's
//! limit) the machine's free memory is not what the worker can use: the tightest cgroup limit
//! on the way to the root counts instead, so the Core never schedules past it.

use std::path::{Path, PathBuf};

/// (total, available) bytes for this process: the machine's (`/proc/meminfo`) within its
/// cgroup's memory limit; `None` where it cannot be read.
pub(crate) fn system_memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let machine = parse_meminfo(&text)?;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    Some(match cgroup_limit(Path::new("/sys/fs/cgroup"), &cgroups) {
        Some(limit) => limit.within(machine),
        None => machine,
    })
}

/// Hands heap memory that is free but still held by the allocator back to the kernel.
/// Compiling (Cranelift, and Wizer's snapshot of the JavaScript engine) allocates tens of MB of
/// scratch; glibc keeps freed memory in its arenas, so without this an idle worker would hold
/// ~65 MB for good after its first JavaScript function (measured with `bench/footprint.sh`'s
/// method). Called after compiles, off the async threads: it takes a few milliseconds.
pub(crate) fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions: it walks glibc's own arenas, under their locks,
    // and returns whole free pages to the kernel; no pointer we hold is affected.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A cgroup's memory limit and what its processes use of it (reclaimable cache excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CgroupMemory {
    limit: u64,
    used: u64,
}

impl CgroupMemory {
    fn within(self, (total, available): (u64, u64)) -> (u64, u64) {
        let free = self.limit.saturating_sub(self.used);
        (total.min(self.limit), available.min(free))
    }
}

/// The tightest memory limit of this process's cgroup and its ancestors (v2 unified, else v1
/// `memory` controller), read under `root`; `None` when no limit is set.
fn cgroup_limit(root: &Path, proc_self_cgroup: &str) -> Option<CgroupMemory> {
    let mut tightest: Option<CgroupMemory> = None;
    for dir in cgroup_dirs(root, proc_self_cgroup) {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        let (limit, used, stat, inactive_key) = if let Some(max) = read("memory.max") {
            (
                max,
                read("memory.current"),
                read("memory.stat"),
                "inactive_file",
            )
        } else if let Some(max) = read("memory.limit_in_bytes") {
            (
                max,
                read("memory.usage_in_bytes"),
                read("memory.stat"),
                "total_inactive_file",
            )
        } else {
            continue;
        };
        // "max" (v2) or a page-rounded i64::MAX (v1) mean no limit.
        let Some(limit) = limit.trim().parse::<u64>().ok().filter(|l| *l < 1 << 62) else {
            continue;
        };
        let used = used.and_then(|u| u.trim().parse::<u64>().ok()).unwrap_or(0);
        let inactive = stat
            .as_deref()
            .and_then(|s| stat_field(s, inactive_key))
            .unwrap_or(0);
        let here = CgroupMemory {
            limit,
            used: used.saturating_sub(inactive),
        };
        let free = |m: &CgroupMemory| m.limit.saturating_sub(m.used);
        if tightest.is_none_or(|t| free(&here) < free(&t)) {
            tightest = Some(here);
        }
    }
    tightest
}

/// The cgroup folders to read: this process's own and each ancestor, for the unified
/// hierarchy (`0::/path`) and the v1 `memory` controller (`N:memory:/path`).
fn cgroup_dirs(root: &Path, proc_self_cgroup: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(c), Some(p)) => (id, c, p),
            _ => continue,
        };
        let base = match controllers {
            "" => root.to_path_buf(),
            c if c.split(',').any(|c| c == "memory") => root.join("memory"),
            _ => continue,
        };
        let mut path = Path::new(path.trim_start_matches('/'));
        loop {
            dirs.push(base.join(path));
            match path.parent() {
                Some(parent) => path = parent,
                None => break,
            }
        }
    }
    dirs
}

fn stat_field(stat: &str, key: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// CPUs this process may use and the one-minute load average per CPU in thousandths, from
/// `/proc/loadavg`; the load is 0 where it cannot be read.
pub(crate) fn cpu_load() -> (u32, u32) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| parse_loadavg(&text))
        .unwrap_or(0.0);
    let permille = (load / f64::from(cpus) * 1000.0).clamp(0.0, f64::from(u32::MAX));
    (cpus, permille as u32)
}

fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_loadavg() {
        assert_eq!(
            super::parse_loadavg("1.50 0.80 0.40 2/300 1234\n"),
            Some(1.5)
        );
        assert_eq!(super::parse_loadavg(""), None);
        let (cpus, _) = super::cpu_load();
        assert!(cpus >= 1);
    }

    #[test]
    fn a_cgroup_limit_caps_the_machine() {
        #![allow(clippy::unwrap_used)]
        let root = tempfile::tempdir().unwrap();
        let unit = root.path().join("system.slice/funless-worker.service");
        std::fs::create_dir_all(&unit).unwrap();
        std::fs::write(root.path().join("system.slice/memory.max"), "max\n").unwrap();
        std::fs::write(unit.join("memory.max"), "536870912\n").unwrap();
        std::fs::write(unit.join("memory.current"), "209715200\n").unwrap();
        std::fs::write(
            unit.join("memory.stat"),
            "anon 1\ninactive_file 104857600\n",
        )
        .unwrap();
        let cgroup = "0::/system.slice/funless-worker.service\n";
        let limit = super::cgroup_limit(root.path(), cgroup).unwrap();
        assert_eq!(limit.limit, 512 << 20);
        assert_eq!(limit.used, 100 << 20);
        // 24 GB machine, 12 GB available: the unit's 512 MiB, of which 412 MiB free.
        assert_eq!(limit.within((24 << 30, 12 << 30)), (512 << 20, 412 << 20));
        // No limit anywhere: the machine's figures stand.
        std::fs::write(unit.join("memory.max"), "max\n").unwrap();
        assert_eq!(super::cgroup_limit(root.path(), cgroup), None);

        // cgroup v1, limit on the parent.
        let v1 = root.path().join("memory/pod/ctr");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(
            root.path().join("memory/pod/memory.limit_in_bytes"),
            "1073741824",
        )
        .unwrap();
        std::fs::write(root.path().join("memory/pod/memory.usage_in_bytes"), "0").unwrap();
        let limit = super::cgroup_limit(root.path(), "4:memory:/pod/ctr\n").unwrap();
        assert_eq!(limit.limit, 1 << 30);
    }

    #[test]
    fn parses_meminfo() {
        let text = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   12000000 kB\n";
        assert_eq!(
            super::parse_meminfo(text),
            Some((24_000_000 * 1024, 12_000_000 * 1024))
        );
        assert_eq!(super::parse_meminfo("garbage"), None);
    }
}
