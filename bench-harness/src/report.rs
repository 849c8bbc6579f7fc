//! The result of a run: printed as a summary and written as JSON.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
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

/// One run's result; the field names are a contract that scripts read.
#[derive(Debug, Serialize)]
pub struct RunResult {
    /// Which command produced it.
    pub scenario: String,
    /// The parameters, as given.
    pub parameters: serde_json::Value,
    /// Record payload (value bytes) per second, in 10^6 bytes.
    pub throughput_mb_s: f64,
    /// Records acknowledged per second.
    pub records_per_s: f64,
    /// Produce-acknowledge latency.
    pub latency_us: Percentiles,
    /// Partition errors returned by the broker.
    pub errors: u64,
    /// Broker CPU seconds per GiB of record payload, when `--broker-pid` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_s_per_gib: Option<f64>,
    /// Broker CPU seconds used during the measurement window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_s: Option<f64>,
    /// Throughput per one-second bucket, MB/s.
    pub series_mb_s: Vec<f64>,
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
        if let Some(cpu) = self.broker_cpu_s_per_gib {
            text.push_str(&format!("\nbroker CPU: {cpu:.3} s/GiB"));
        }
        text
    }
}
