//! The result of a run: printed as a summary and written as JSON (the field names are a
//! contract that scripts and `spate-bench compare` read).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::catchup::CatchupFacts;
use crate::intervals::LatencyIntervals;

/// Latencies from 1 us to 10 minutes at 3 significant digits; larger values are clamped
/// (and would show as a 10-minute max, which no run should come near).
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant, valid histogram bounds")
}

/// Latency percentiles in microseconds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
    /// Samples.
    pub count: u64,
}

impl Percentiles {
    /// Reads the percentiles out of a histogram of microseconds.
    pub fn from_histogram(histogram: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50: histogram.value_at_quantile(0.50),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            p9999: histogram.value_at_quantile(0.9999),
            max: histogram.max(),
            mean: histogram.mean(),
            count: histogram.len(),
        }
    }
}

/// The percentile spectrum for the picture: (percentile, microseconds) at points evenly
/// spaced on the log-of-1/(1-q) axis, from 0 up to the last "nines" the samples support.
pub fn spectrum(histogram: &Histogram<u64>) -> Vec<(f64, u64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    // With n samples, quantiles beyond 1 - 1/n are the max; stop one step past that.
    let nines_max = (histogram.len() as f64).log10().clamp(1.0, 6.0);
    let steps = 60;
    (0..=steps)
        .map(|step| {
            let nines = nines_max * step as f64 / steps as f64;
            let quantile = 1.0 - 10f64.powf(-nines);
            (quantile * 100.0, histogram.value_at_quantile(quantile))
        })
        .chain(std::iter::once((100.0, histogram.max())))
        .collect()
}

/// Facts about the host the run measured on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostFacts {
    /// CPUs online.
    pub cpus: usize,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Memory in GiB.
    pub memory_gib: f64,
}

impl HostFacts {
    /// Reads them from /proc; anything unreadable is left empty.
    pub fn probe() -> HostFacts {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, model)| model.trim().to_string())
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|kib| kib / (1u64 << 20) as f64)
            .unwrap_or(0.0);
        HostFacts {
            // Online CPUs, not this thread's affinity (the generator is usually pinned).
            // SAFETY: sysconf has no preconditions.
            cpus: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(0) as usize,
            cpu_model,
            kernel,
            memory_gib,
        }
    }
}

/// One run's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Which command produced it: `produce`, `consume`, `e2e` or `catchup`.
    pub scenario: String,
    /// The parameters, as given.
    pub parameters: serde_json::Value,
    /// The host.
    pub host: HostFacts,
    /// Seconds the measurement window lasted.
    pub measured_s: f64,
    /// Record payload (value bytes) per second, in 10^6 bytes.
    pub throughput_mb_s: f64,
    /// Records acknowledged (produce) or received (consume, e2e) per second.
    pub records_per_s: f64,
    /// Produce-acknowledge latency for `produce`, fetch round trip for `consume`, and
    /// produce-to-consume latency for `e2e`.
    pub latency_us: Percentiles,
    /// For `e2e`, the produce-acknowledge latency of the same run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produce_latency_us: Option<Percentiles>,
    /// Errors: partition errors in responses, and for `e2e` records produced but never
    /// consumed before the drain deadline.
    pub errors: u64,
    /// Broker CPU seconds per GiB of record payload, when `--broker-pid` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_cpu_s_per_gib: Option<f64>,
    /// Broker CPU seconds used during the measurement window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_cpu_s: Option<f64>,
    /// This process's (the generator's) CPU seconds per GiB of record payload: one core
    /// divided by it is the generator's ceiling, however busy the host was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_cpu_s_per_gib: Option<f64>,
    /// The generator's CPU seconds during the measurement window (over `measured_s`: the
    /// share of a core it used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_cpu_s: Option<f64>,
    /// Throughput per one-second bucket of the measurement window, MB/s.
    pub series_mb_s: Vec<f64>,
    /// With `--interval-percentiles`: `latency_us` per interval (a soak's minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_intervals_us: Option<LatencyIntervals>,
    /// (percentile, microseconds) of `latency_us`, for the picture.
    pub latency_spectrum_us: Vec<(f64, u64)>,
    /// The machine's limits, when the suite measured them in the same run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<serde_json::Value>,
    /// The command line that produced it, when the suite ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// For `catchup`: the backlog, the page cache, and the read beside the disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catchup: Option<CatchupFacts>,
}

impl RunResult {
    /// A one-screen summary.
    pub fn summary(&self) -> String {
        let latency = &self.latency_us;
        let mut text = format!(
            "{}: {:.1} MB/s, {:.0} records/s, errors {}\nlatency us: p50 {} p99 {} p99.9 {} p99.99 {} max {} (n={})",
            self.scenario,
            self.throughput_mb_s,
            self.records_per_s,
            self.errors,
            latency.p50,
            latency.p99,
            latency.p999,
            latency.p9999,
            latency.max,
            latency.count
        );
        if let Some(produce) = &self.produce_latency_us {
            text.push_str(&format!(
                "\nproduce-acknowledge us: p50 {} p99 {} p99.9 {} max {}",
                produce.p50, produce.p99, produce.p999, produce.max
            ));
        }
        if let Some(cpu) = self.broker_cpu_s_per_gib {
            text.push_str(&format!("\nbroker CPU: {cpu:.3} s/GiB"));
            if let Some(seconds) = self.broker_cpu_s {
                text.push_str(&format!(
                    " ({:.0}% of a core)",
                    seconds / self.measured_s * 100.0
                ));
            }
        }
        if let (Some(per_gib), Some(seconds)) = (self.generator_cpu_s_per_gib, self.generator_cpu_s)
        {
            text.push_str(&format!(
                "\ngenerator CPU: {per_gib:.3} s/GiB ({:.0}% of a core)",
                seconds / self.measured_s * 100.0
            ));
        }
        if let Some(intervals) = &self.latency_intervals_us {
            text.push_str(&format!(
                "\nper {} s: start_s MB/s p50 p99 p99.9 p99.99 max (us)",
                intervals.interval_s
            ));
            for interval in &intervals.intervals {
                let latency = &interval.latency_us;
                text.push_str(&format!(
                    "\n  {:6.0} {:8.1} {} {} {} {} {}",
                    interval.start_s,
                    interval.throughput_mb_s,
                    latency.p50,
                    latency.p99,
                    latency.p999,
                    latency.p9999,
                    latency.max
                ));
            }
        }
        if let Some(facts) = &self.catchup {
            text.push_str(&format!(
                "\ncatch-up: read {} records ({:.2} GB backlog, written at {:.1} MB/s) in {:.1} s; page cache {}",
                facts.records_read,
                facts.backlog_bytes as f64 / 1e9,
                facts.write_mb_s,
                facts.read_s,
                if facts.page_cache_dropped {
                    "dropped".to_string()
                } else {
                    format!(
                        "NOT dropped ({})",
                        facts.page_cache_note.as_deref().unwrap_or("?")
                    )
                }
            ));
            if let Some(share) = facts.share_of_direct_read {
                text.push_str(&format!(
                    "\ncatch-up read = {:.1}% of the O_DIRECT read bandwidth measured in the same run",
                    share * 100.0
                ));
            }
        }
        text
    }

    /// Writes the JSON result.
    pub fn write_json(&self, path: &std::path::Path) -> anyhow::Result<()> {
        use anyhow::Context;
        std::fs::write(path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_result() -> RunResult {
        let mut histogram = new_latency_histogram();
        for value in 1..=10_000u64 {
            histogram.record(value).unwrap();
        }
        RunResult {
            scenario: "produce".into(),
            parameters: serde_json::json!({"record_size": 1024}),
            host: HostFacts::probe(),
            measured_s: 10.0,
            throughput_mb_s: 100.0,
            records_per_s: 97656.0,
            latency_us: Percentiles::from_histogram(&histogram),
            produce_latency_us: None,
            errors: 0,
            broker_cpu_s_per_gib: Some(0.5),
            broker_cpu_s: Some(0.47),
            generator_cpu_s_per_gib: Some(0.2),
            generator_cpu_s: Some(0.19),
            series_mb_s: vec![90.0, 100.0, 110.0],
            latency_intervals_us: None,
            latency_spectrum_us: spectrum(&histogram),
            limits: None,
            command: None,
            catchup: None,
        }
    }

    #[test]
    fn percentiles_come_from_the_recorded_values() {
        let result = sample_result();
        let latency = &result.latency_us;
        // 3 significant digits: within 0.1% of the exact order statistic.
        assert!((4995..=5005).contains(&latency.p50), "{}", latency.p50);
        assert!((9890..=9910).contains(&latency.p99), "{}", latency.p99);
        assert!((9990..=10010).contains(&latency.p999), "{}", latency.p999);
        assert!((9990..=10010).contains(&latency.max));
        assert_eq!(latency.count, 10_000);
    }

    #[test]
    fn spectrum_is_monotonic_and_ends_at_the_max() {
        let result = sample_result();
        let points = &result.latency_spectrum_us;
        assert!(points.len() > 10);
        assert!(points.windows(2).all(|pair| pair[0].0 <= pair[1].0));
        assert!(points.windows(2).all(|pair| pair[0].1 <= pair[1].1));
        assert_eq!(points.last().unwrap().1, result.latency_us.max);
    }

    #[test]
    fn json_has_the_contract_fields() {
        let json = serde_json::to_value(sample_result()).unwrap();
        for field in [
            "throughput_mb_s",
            "records_per_s",
            "errors",
            "broker_cpu_s_per_gib",
            "series_mb_s",
            "parameters",
            "host",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        for field in ["p50", "p99", "p999", "p9999", "max"] {
            assert!(json["latency_us"].get(field).is_some(), "missing {field}");
        }
        let back: RunResult = serde_json::from_value(json).unwrap();
        assert_eq!(back.latency_us.count, 10_000);
    }

    #[test]
    fn interval_series_is_in_the_json_only_when_asked_for() {
        let plain = serde_json::to_value(sample_result()).unwrap();
        assert!(plain.get("latency_intervals_us").is_none());
        assert!(plain.get("catchup").is_none());
        let start = std::time::Instant::now();
        let mut intervals =
            crate::intervals::IntervalHistograms::new(start, std::time::Duration::from_secs(60));
        intervals.record(start, 250, 3);
        let mut result = sample_result();
        result.latency_intervals_us = Some(intervals.summarize(120.0, &[5.0; 120]));
        let json = serde_json::to_value(&result).unwrap();
        let series = &json["latency_intervals_us"];
        assert_eq!(series["interval_s"], 60.0);
        assert_eq!(series["intervals"].as_array().unwrap().len(), 2);
        assert_eq!(series["intervals"][0]["p99"], 250);
        assert_eq!(series["intervals"][1]["count"], 0);
        assert!(result.summary().contains("per 60 s"));
        let back: RunResult = serde_json::from_value(json).unwrap();
        assert_eq!(back.latency_intervals_us.unwrap().intervals.len(), 2);
    }

    #[test]
    fn cpu_per_gib_is_absent_without_a_pid() {
        let mut result = sample_result();
        result.broker_cpu_s_per_gib = None;
        result.broker_cpu_s = None;
        let json = serde_json::to_value(result).unwrap();
        assert!(json.get("broker_cpu_s_per_gib").is_none());
    }
}
