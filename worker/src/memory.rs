//! Memory and CPU load of the machine the worker runs on, for the scheduler.

/// (total, available) bytes, from `/proc/meminfo`; `None` where it cannot be read.
pub(crate) fn system_memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
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
    fn parses_meminfo() {
        let text = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   12000000 kB\n";
        assert_eq!(
            super::parse_meminfo(text),
            Some((24_000_000 * 1024, 12_000_000 * 1024))
        );
        assert_eq!(super::parse_meminfo("garbage"), None);
    }
}
