//! Folding what a run's actors measured into one [`RunResult`]: the producers' and the
//! consumers' histograms, counts and per-second series summed, then the figures derived from
//! them (throughput, CPU per GiB, per-interval percentiles).

use std::time::Instant;

use hdrhistogram::Histogram;

use crate::consume::ConsumerResult;
use crate::intervals::IntervalHistograms;
use crate::produce::GeneratorResult;
use crate::report::{new_latency_histogram, spectrum, HostFacts, Percentiles, RunResult};

/// CPU seconds used in the measurement window.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuSeconds {
    pub broker: Option<f64>,
    pub generator: Option<f64>,
}

pub(crate) struct ProducerTotals {
    pub latency: Histogram<u64>,
    pub intervals: Option<IntervalHistograms>,
    pub records: u64,
    pub errors: u64,
    pub series_records: Vec<u64>,
    pub finished_at: Instant,
}

impl ProducerTotals {
    pub(crate) fn fold(results: Vec<GeneratorResult>) -> anyhow::Result<ProducerTotals> {
        let mut totals = ProducerTotals {
            latency: new_latency_histogram(),
            intervals: None,
            records: 0,
            errors: 0,
            series_records: Vec::new(),
            finished_at: Instant::now(),
        };
        let mut finished = Vec::new();
        for result in results {
            totals.latency.add(&result.latency_us)?;
            add_intervals(&mut totals.intervals, result.latency_intervals)?;
            totals.records += result.records_acked;
            totals.errors += result.errors;
            add_series(&mut totals.series_records, &result.records_per_second);
            finished.push(result.finished_at);
        }
        if let Some(last) = finished.into_iter().max() {
            totals.finished_at = last;
        }
        Ok(totals)
    }
}

fn add_intervals(
    total: &mut Option<IntervalHistograms>,
    one: Option<IntervalHistograms>,
) -> anyhow::Result<()> {
    match (total.as_mut(), one) {
        (Some(total), Some(one)) => total.add(&one)?,
        (None, Some(one)) => *total = Some(one),
        (_, None) => {}
    }
    Ok(())
}

pub(crate) struct ConsumerTotals {
    pub fetch_latency: Histogram<u64>,
    pub end_to_end: Histogram<u64>,
    pub intervals: Option<IntervalHistograms>,
    pub records: u64,
    pub value_bytes: u64,
    pub errors: u64,
    pub series_bytes: Vec<u64>,
}

impl ConsumerTotals {
    pub(crate) fn fold(results: Vec<ConsumerResult>) -> anyhow::Result<ConsumerTotals> {
        let mut totals = ConsumerTotals {
            fetch_latency: new_latency_histogram(),
            end_to_end: new_latency_histogram(),
            intervals: None,
            records: 0,
            value_bytes: 0,
            errors: 0,
            series_bytes: Vec::new(),
        };
        for result in results {
            totals.fetch_latency.add(&result.fetch_latency_us)?;
            totals.end_to_end.add(&result.end_to_end_us)?;
            add_intervals(&mut totals.intervals, result.latency_intervals)?;
            totals.records += result.records;
            totals.value_bytes += result.value_bytes;
            totals.errors += result.errors;
            add_series(&mut totals.series_bytes, &result.bytes_per_second);
        }
        Ok(totals)
    }
}

fn add_series(total: &mut Vec<u64>, one: &[u64]) {
    if total.len() < one.len() {
        total.resize(one.len(), 0);
    }
    for (sum, value) in total.iter_mut().zip(one) {
        *sum += value;
    }
}

pub(crate) struct ResultParts<'a> {
    pub scenario: &'static str,
    pub parameters: serde_json::Value,
    pub measured_s: f64,
    pub payload_bytes: f64,
    pub records: u64,
    pub latency: &'a Histogram<u64>,
    pub latency_intervals: Option<&'a IntervalHistograms>,
    pub produce_latency: Option<&'a Histogram<u64>>,
    pub errors: u64,
    pub cpu_s: CpuSeconds,
    pub series_mb_s: Vec<f64>,
}

pub(crate) fn finish_result(mut parts: ResultParts<'_>) -> RunResult {
    let gib = parts.payload_bytes / (1u64 << 30) as f64;
    // A run that ended early (caught up, or its byte budget spent) has no buckets after.
    let seconds = (parts.measured_s.ceil() as usize).max(1);
    parts.series_mb_s.truncate(seconds);
    RunResult {
        scenario: parts.scenario.into(),
        parameters: parts.parameters,
        host: HostFacts::probe(),
        measured_s: parts.measured_s,
        throughput_mb_s: parts.payload_bytes / parts.measured_s / 1e6,
        records_per_s: parts.records as f64 / parts.measured_s,
        latency_us: Percentiles::from_histogram(parts.latency),
        produce_latency_us: parts.produce_latency.map(Percentiles::from_histogram),
        errors: parts.errors,
        broker_cpu_s_per_gib: parts
            .cpu_s
            .broker
            .filter(|_| gib > 0.0)
            .map(|cpu| cpu / gib),
        broker_cpu_s: parts.cpu_s.broker,
        generator_cpu_s_per_gib: parts
            .cpu_s
            .generator
            .filter(|_| gib > 0.0)
            .map(|cpu| cpu / gib),
        generator_cpu_s: parts.cpu_s.generator,
        latency_intervals_us: parts
            .latency_intervals
            .map(|intervals| intervals.summarize(parts.measured_s, &parts.series_mb_s)),
        series_mb_s: parts.series_mb_s,
        latency_spectrum_us: spectrum(parts.latency),
        limits: None,
        command: None,
        catchup: None,
    }
}
