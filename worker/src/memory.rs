//! Memory of the machine the worker runs on, for the scheduler.

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

#[cfg(test)]
mod tests {
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
