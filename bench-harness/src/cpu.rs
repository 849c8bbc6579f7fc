//! CPU time of another process, from `/proc/<pid>/stat`.

use anyhow::Context;

/// User plus system CPU seconds the process has used so far.
pub fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat (is --broker-pid right?)"))?;
    // The command name (field 2) may contain spaces; fields after its closing ')' are
    // space-separated, starting with field 3.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, so 11 and 12 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc stat")?
        .iter()
        .map(|field| field.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / ticks_per_second)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_cpu_time() {
        let spin_until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < spin_until {}
        let seconds = super::process_cpu_seconds(std::process::id()).unwrap();
        assert!(seconds > 0.0);
    }
}
