//! Process metrics in the Prometheus text format (CPU seconds, resident
//! memory, open files), read from `/proc` at scrape time. Benchmarks read
//! them to report CPU per delivery and memory per connection.

use std::fmt::Write;

/// The process metrics, or an empty string where `/proc` is not available.
pub fn render() -> String {
    let mut text = String::new();
    if let Some(cpu) = cpu_seconds() {
        let _ = writeln!(
            text,
            "# HELP process_cpu_seconds_total User and system CPU time spent in seconds."
        );
        let _ = writeln!(text, "# TYPE process_cpu_seconds_total counter");
        let _ = writeln!(text, "process_cpu_seconds_total {cpu}");
    }
    if let Some(rss) = resident_bytes() {
        let _ = writeln!(
            text,
            "# HELP process_resident_memory_bytes Resident memory size in bytes."
        );
        let _ = writeln!(text, "# TYPE process_resident_memory_bytes gauge");
        let _ = writeln!(text, "process_resident_memory_bytes {rss}");
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(text, "# HELP process_open_fds Number of open file descriptors.");
        let _ = writeln!(text, "# TYPE process_open_fds gauge");
        let _ = writeln!(text, "process_open_fds {}", fds.count());
    }
    text
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) / ticks as f64)
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages * page as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_cpu_memory_and_files_of_this_process() {
        let text = super::render();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ] {
            let line = text
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {text}"));
            let value: f64 = line[name.len()..].parse().unwrap();
            assert!(value >= 0.0);
        }
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(rss > 1_000_000.0, "a running test process holds more than 1 MB");
    }
}
