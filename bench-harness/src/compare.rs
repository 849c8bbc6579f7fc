//! `spate-bench compare A.json B.json`: two results side by side, with the ratio B/A for
//! throughput, records/s, each latency percentile and broker CPU per GiB.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::report::RunResult;

/// The rows compared: label and JSON pointer.
const ROWS: [(&str, &str); 11] = [
    ("throughput MB/s", "/throughput_mb_s"),
    ("records/s", "/records_per_s"),
    ("latency p50 us", "/latency_us/p50"),
    ("latency p99 us", "/latency_us/p99"),
    ("latency p99.9 us", "/latency_us/p999"),
    ("latency p99.99 us", "/latency_us/p9999"),
    ("latency max us", "/latency_us/max"),
    ("broker CPU s/GiB", "/broker_cpu_s_per_gib"),
    ("broker CPU s", "/broker_cpu_s"),
    ("generator CPU s/GiB", "/generator_cpu_s_per_gib"),
    ("errors", "/errors"),
];

/// Prints the table for two result files, and draws both runs in one picture with `svg`.
pub fn run(a: &Path, b: &Path, svg: Option<&Path>, labels: &[String]) -> anyhow::Result<()> {
    let read = |path: &Path| -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON result", path.display()))
    };
    let name = |index: usize, path: &Path| {
        labels.get(index).cloned().unwrap_or_else(|| {
            path.file_stem()
                .map_or("?".into(), |stem| stem.to_string_lossy().into_owned())
        })
    };
    let (a_name, b_name) = (name(0, a), name(1, b));
    let (a_value, b_value) = (read(a)?, read(b)?);
    print!("{}", table(&a_value, &b_value, (&a_name, &b_name)));
    if let Some(svg) = svg {
        let a_run: RunResult = serde_json::from_value(a_value).context("A is not a load result")?;
        let b_run: RunResult = serde_json::from_value(b_value).context("B is not a load result")?;
        crate::svg::write_many(&[(&a_name, &a_run), (&b_name, &b_run)], svg)?;
    }
    Ok(())
}

/// A Markdown table of the two results; a metric missing from either shows as "-".
pub fn table(a: &Value, b: &Value, (a_name, b_name): (&str, &str)) -> String {
    let mut text = format!("| metric | A: {a_name} | B: {b_name} | B/A |\n|---|---:|---:|---:|\n");
    for (label, pointer) in ROWS {
        let a_value = a.pointer(pointer).and_then(Value::as_f64);
        let b_value = b.pointer(pointer).and_then(Value::as_f64);
        let ratio = match (a_value, b_value) {
            (Some(a), Some(b)) if a != 0.0 => format!("{:.2}", b / a),
            _ => "-".into(),
        };
        text.push_str(&format!(
            "| {label} | {} | {} | {ratio} |\n",
            show(a_value),
            show(b_value)
        ));
    }
    text
}

/// A number with as many decimals as its size deserves.
pub fn show(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(value) if value.abs() >= 100.0 || value == value.trunc() => format!("{value:.0}"),
        Some(value) if value.abs() >= 1.0 => format!("{value:.1}"),
        Some(value) => format!("{value:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_b_over_a_and_missing_fields_show_a_dash() {
        let a = serde_json::json!({"throughput_mb_s": 100.0, "records_per_s": 1000.0,
            "latency_us": {"p50": 10, "p99": 20, "p999": 30, "p9999": 40, "max": 50}, "errors": 0});
        let b = serde_json::json!({"throughput_mb_s": 250.0, "records_per_s": 500.0,
            "latency_us": {"p50": 5, "p99": 20, "p999": 30, "p9999": 40, "max": 100},
            "broker_cpu_s_per_gib": 0.5, "errors": 0});
        let table = table(&a, &b, ("spate", "tansu"));
        assert!(
            table.contains("| throughput MB/s | 100 | 250 | 2.50 |"),
            "{table}"
        );
        assert!(table.contains("| records/s | 1000 | 500 | 0.50 |"));
        assert!(table.contains("| latency p50 us | 10 | 5 | 0.50 |"));
        assert!(table.contains("| broker CPU s/GiB | - | 0.500 | - |"));
    }
}
