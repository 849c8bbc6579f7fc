//! Pictures of runs, drawn as SVG by hand: on the left the latency percentile spectrum on a
//! log "nines" axis (0%, 90%, 99%, 99.9%, ...), on the right throughput over time, and for
//! runs with `--interval-percentiles` (a soak) a third panel below: p50 … max per interval
//! on a log latency axis. Several runs can share one picture (Spate beside Tansu), each in
//! its own colour.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::report::RunResult;

const WIDTH: f64 = 960.0;
/// Height above the legend; each legend line adds [`LEGEND_LINE`].
const HEIGHT_PANELS: f64 = 372.0;
const LEGEND_LINE: f64 = 14.0;
const PANEL_WIDTH: f64 = 400.0;
const PANEL_HEIGHT: f64 = 270.0;
const TOP: f64 = 50.0;
const LEFT_PANEL_X: f64 = 70.0;
const RIGHT_PANEL_X: f64 = 540.0;
/// Height the per-interval panel adds below the two panels, when drawn.
const INTERVAL_PANEL_EXTRA: f64 = 340.0;
const INTERVAL_PANEL_WIDTH: f64 = 870.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// Writes the picture of one run.
pub fn write(result: &RunResult, path: &Path) -> anyhow::Result<()> {
    write_many(&[("", result)], path)
}

/// Writes one picture of several labelled runs.
pub fn write_many(runs: &[(&str, &RunResult)], path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, render(runs)).with_context(|| format!("cannot write {}", path.display()))
}

/// The SVG text for `runs`.
pub fn render(runs: &[(&str, &RunResult)]) -> String {
    let mut svg = String::new();
    let with_intervals = runs
        .iter()
        .any(|(_, run)| run.latency_intervals_us.is_some());
    let legend_top = HEIGHT_PANELS
        + if with_intervals {
            INTERVAL_PANEL_EXTRA
        } else {
            0.0
        };
    let height = legend_top + LEGEND_LINE * runs.len() as f64 + 6.0;
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    svg.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    if let Some((_, first)) = runs.first() {
        // Runs drawn together may differ in offered rate (each broker's own fraction).
        let title = format!("{} — {}", first.scenario, describe(first, runs.len() == 1));
        text(&mut svg, 20.0, 22.0, "start", &title, 13.0);
    }
    spectrum_panel(&mut svg, runs);
    throughput_panel(&mut svg, runs);
    if with_intervals {
        interval_panel(&mut svg, runs);
    }
    for (index, (label, run)) in runs.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let legend = format!(
            "{}{:.1} MB/s, p50 {} us, p99 {} us, p99.99 {} us",
            if label.is_empty() {
                String::new()
            } else {
                format!("{label}: ")
            },
            run.throughput_mb_s,
            run.latency_us.p50,
            run.latency_us.p99,
            run.latency_us.p9999
        );
        let y = legend_top + LEGEND_LINE * index as f64;
        let _ = write!(
            svg,
            r#"<rect x="20" y="{}" width="10" height="3" fill="{colour}"/>"#,
            y - 4.0
        );
        text(&mut svg, 36.0, y, "start", &legend, 11.0);
    }
    svg.push_str("</svg>\n");
    svg
}

fn describe(run: &RunResult, with_rate: bool) -> String {
    let parameter = |name: &str| {
        run.parameters
            .get(name)
            .map(|value| value.to_string().trim_matches('"').to_string())
    };
    let mut parts = Vec::new();
    for (name, unit) in [
        ("record_size", " B records"),
        ("partitions", " partitions"),
        ("producers", " producers"),
        ("acks", ""),
    ] {
        if let Some(value) = parameter(name) {
            parts.push(if name == "acks" {
                format!("acks={value}")
            } else {
                format!("{value}{unit}")
            });
        }
    }
    if let Some(rate) = parameter("rate").filter(|rate| rate != "null" && with_rate) {
        let unit = if rate.parse::<f64>().is_ok() {
            " records/s"
        } else {
            ""
        };
        parts.push(format!("rate {rate}{unit}"));
    }
    parts.join(", ")
}

/// Horizontal position of a percentile on the nines axis: -log10(1 - p).
fn nines(percentile: f64, nines_max: f64) -> f64 {
    if percentile >= 100.0 {
        return nines_max;
    }
    (-(1.0 - percentile / 100.0).log10()).min(nines_max)
}

fn spectrum_panel(svg: &mut String, runs: &[(&str, &RunResult)]) {
    let points_of = |run: &RunResult| run.latency_spectrum_us.clone();
    let nines_max = runs
        .iter()
        .flat_map(|(_, run)| points_of(run))
        .filter(|&(percentile, _)| percentile < 100.0)
        .map(|(percentile, _)| nines(percentile, 9.0))
        .fold(2.0f64, f64::max)
        .ceil();
    let latency_max = nice_ceiling(
        runs.iter()
            .flat_map(|(_, run)| points_of(run))
            .map(|(_, value)| value as f64)
            .fold(1.0, f64::max),
    );
    let (unit, divisor) = if latency_max >= 10_000.0 {
        ("ms", 1000.0)
    } else {
        ("us", 1.0)
    };
    let frame = Frame {
        x: LEFT_PANEL_X,
        x_max: nines_max,
        y_max: latency_max,
        ..Frame::default()
    };
    frame.axes(svg, &format!("latency ({unit})"), "percentile");
    for tick in 0..=nines_max as usize {
        let label = match tick {
            0 => "0%".to_string(),
            1 => "90%".to_string(),
            2 => "99%".to_string(),
            _ => format!("99.{}%", "9".repeat(tick - 2)),
        };
        frame.x_tick(svg, tick as f64, &label);
    }
    for step in 0..=4 {
        let value = latency_max * step as f64 / 4.0;
        frame.y_tick(svg, value, &trim_number(value / divisor));
    }
    for (index, (_, run)) in runs.iter().enumerate() {
        let points: Vec<(f64, f64)> = points_of(run)
            .iter()
            .map(|&(percentile, value)| (nines(percentile, nines_max), value as f64))
            .collect();
        frame.line(svg, &points, COLOURS[index % COLOURS.len()]);
    }
}

fn throughput_panel(svg: &mut String, runs: &[(&str, &RunResult)]) {
    let seconds = runs
        .iter()
        .map(|(_, run)| run.series_mb_s.len())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let throughput_max = nice_ceiling(
        runs.iter()
            .flat_map(|(_, run)| run.series_mb_s.iter().copied())
            .fold(1.0, f64::max),
    );
    let frame = Frame {
        x: RIGHT_PANEL_X,
        x_max: seconds,
        y_max: throughput_max,
        ..Frame::default()
    };
    frame.axes(svg, "MB/s", "seconds");
    let x_step = (seconds / 5.0).ceil().max(1.0);
    let mut tick = 0.0;
    while tick <= seconds {
        frame.x_tick(svg, tick, &trim_number(tick));
        tick += x_step;
    }
    for step in 0..=4 {
        let value = throughput_max * step as f64 / 4.0;
        frame.y_tick(svg, value, &trim_number(value));
    }
    for (index, (_, run)) in runs.iter().enumerate() {
        // Each bucket's value is drawn at the bucket's middle.
        let points: Vec<(f64, f64)> = run
            .series_mb_s
            .iter()
            .enumerate()
            .map(|(second, &value)| (second as f64 + 0.5, value))
            .collect();
        frame.line(svg, &points, COLOURS[index % COLOURS.len()]);
    }
}

/// The percentiles drawn per interval, with their dash patterns.
const INTERVAL_LINES: [(&str, &str); 5] = [
    ("p50", ""),
    ("p99", "6 3"),
    ("p99.9", "2 2"),
    ("p99.99", "8 2 2 2"),
    ("max", "1 3"),
];

/// The soak's panel: each interval's percentiles over time, latency on a log axis (the
/// values span from the median to the worst stall).
fn interval_panel(svg: &mut String, runs: &[(&str, &RunResult)]) {
    let series = |run: &RunResult| -> Vec<(f64, [u64; 5])> {
        run.latency_intervals_us
            .iter()
            .flat_map(|intervals| &intervals.intervals)
            .filter(|interval| interval.latency_us.count > 0)
            .map(|interval| {
                let latency = &interval.latency_us;
                let middle_s = (interval.start_s + interval.end_s) / 2.0;
                let values = [
                    latency.p50,
                    latency.p99,
                    latency.p999,
                    latency.p9999,
                    latency.max,
                ];
                (middle_s, values)
            })
            .collect()
    };
    let all: Vec<(f64, [u64; 5])> = runs.iter().flat_map(|(_, run)| series(run)).collect();
    let end_s = runs
        .iter()
        .filter_map(|(_, run)| run.latency_intervals_us.as_ref())
        .filter_map(|intervals| intervals.intervals.last().map(|last| last.end_s))
        .fold(1.0, f64::max);
    let (unit_s, unit) = if end_s >= 300.0 {
        (60.0, "minutes")
    } else {
        (1.0, "seconds")
    };
    let decades = |value: u64| (value.max(1) as f64).log10();
    let low = all
        .iter()
        .map(|(_, values)| decades(values[0]))
        .fold(f64::MAX, f64::min);
    let high = all
        .iter()
        .map(|(_, values)| decades(values[4]))
        .fold(0.0, f64::max);
    let (low, high) = if all.is_empty() {
        (0.0, 1.0)
    } else {
        (low.floor(), high.ceil().max(low.floor() + 1.0))
    };
    let top = HEIGHT_PANELS + 10.0;
    let frame = Frame {
        x: LEFT_PANEL_X,
        top,
        width: INTERVAL_PANEL_WIDTH,
        x_max: end_s / unit_s,
        y_max: high - low,
    };
    let interval_s = runs
        .iter()
        .find_map(|(_, run)| run.latency_intervals_us.as_ref())
        .map_or(0.0, |intervals| intervals.interval_s);
    let title = format!(
        "latency per {} s interval (log): solid p50, dashed p99, dotted p99.9, dash-dot p99.99, sparse dots max",
        trim_number(interval_s)
    );
    text(svg, LEFT_PANEL_X, top - 6.0, "start", &title, 11.0);
    frame.axes(svg, "", unit);
    let x_step = (frame.x_max / 10.0).ceil().max(1.0);
    let mut tick = 0.0;
    while tick <= frame.x_max + 1e-9 {
        frame.x_tick(svg, tick, &trim_number(tick));
        tick += x_step;
    }
    for decade in 0..=(high - low) as usize {
        let value = 10f64.powf(low + decade as f64);
        let label = if value >= 1000.0 {
            format!("{} ms", trim_number(value / 1000.0))
        } else {
            format!("{} us", trim_number(value))
        };
        frame.y_tick(svg, decade as f64, &label);
    }
    for (index, (_, run)) in runs.iter().enumerate() {
        let points = series(run);
        for (line, (_, dashes)) in INTERVAL_LINES.iter().enumerate() {
            let line_points: Vec<(f64, f64)> = points
                .iter()
                .map(|(middle_s, values)| (middle_s / unit_s, decades(values[line]) - low))
                .collect();
            frame.dashed_line(svg, &line_points, COLOURS[index % COLOURS.len()], dashes);
        }
    }
}

/// One panel's coordinate frame: data (0..x_max, 0..y_max) onto the panel's pixels.
struct Frame {
    x: f64,
    top: f64,
    width: f64,
    x_max: f64,
    y_max: f64,
}

impl Default for Frame {
    fn default() -> Frame {
        Frame {
            x: LEFT_PANEL_X,
            top: TOP,
            width: PANEL_WIDTH,
            x_max: 1.0,
            y_max: 1.0,
        }
    }
}

impl Frame {
    fn map(&self, x: f64, y: f64) -> (f64, f64) {
        let px = self.x + x / self.x_max * self.width;
        let py = self.top + PANEL_HEIGHT - (y / self.y_max).clamp(0.0, 1.0) * PANEL_HEIGHT;
        (px, py)
    }

    fn axes(&self, svg: &mut String, y_label: &str, x_label: &str) {
        let (left, top, bottom) = (self.x, self.top, self.top + PANEL_HEIGHT);
        let _ = write!(
            svg,
            r#"<path d="M{left} {top} L{left} {bottom} L{} {bottom}" stroke="black" fill="none"/>"#,
            left + self.width
        );
        text(svg, left - 45.0, top - 10.0, "start", y_label, 11.0);
        text(
            svg,
            left + self.width / 2.0,
            bottom + 32.0,
            "middle",
            x_label,
            11.0,
        );
    }

    fn x_tick(&self, svg: &mut String, value: f64, label: &str) {
        let (px, py) = self.map(value, 0.0);
        let _ = write!(
            svg,
            r##"<path d="M{px:.1} {py} L{px:.1} {}" stroke="#ddd"/>"##,
            self.top
        );
        text(svg, px, py + 14.0, "middle", label, 10.0);
    }

    fn y_tick(&self, svg: &mut String, value: f64, label: &str) {
        let (px, py) = self.map(0.0, value);
        let _ = write!(
            svg,
            r##"<path d="M{px} {py:.1} L{} {py:.1}" stroke="#ddd"/>"##,
            px + self.width
        );
        text(svg, px - 4.0, py + 4.0, "end", label, 10.0);
    }

    fn line(&self, svg: &mut String, points: &[(f64, f64)], colour: &str) {
        self.dashed_line(svg, points, colour, "");
    }

    fn dashed_line(&self, svg: &mut String, points: &[(f64, f64)], colour: &str, dashes: &str) {
        if points.is_empty() {
            return;
        }
        let mut path = String::new();
        for (index, &(x, y)) in points.iter().enumerate() {
            let (px, py) = self.map(x, y);
            let _ = write!(
                path,
                "{}{px:.1} {py:.1} ",
                if index == 0 { "M" } else { "L" }
            );
        }
        let dash = if dashes.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dashes}""#)
        };
        let _ = write!(
            svg,
            r#"<path d="{}" stroke="{colour}" stroke-width="2" fill="none"{dash}/>"#,
            path.trim_end()
        );
    }
}

fn text(svg: &mut String, x: f64, y: f64, anchor: &str, content: &str, size: f64) {
    let escaped = content
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let _ = write!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" font-size="{size}">{escaped}</text>"#
    );
}

/// The smallest 1, 2 or 5 times a power of ten at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    let magnitude = 10f64.powf(value.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|&nice| nice >= value)
        .unwrap_or(10.0 * magnitude)
}

fn trim_number(value: f64) -> String {
    if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_result;

    #[test]
    fn picture_is_well_formed_svg_with_lines() {
        let result = sample_result();
        let svg = render(&[("spate", &result), ("tansu & co", &result)]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<path d=\"M"));
        assert!(svg.contains("99.9%"));
        assert!(svg.contains("tansu &amp; co"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        // Every element opened is closed: count tags.
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn empty_run_still_draws() {
        let mut result = sample_result();
        result.latency_spectrum_us.clear();
        result.series_mb_s.clear();
        let svg = render(&[("", &result)]);
        assert!(svg.starts_with("<svg") && svg.contains("<path"));
    }

    #[test]
    fn soak_picture_draws_every_percentile_per_interval() {
        let start = std::time::Instant::now();
        let mut intervals =
            crate::intervals::IntervalHistograms::new(start, std::time::Duration::from_secs(60));
        for minute in 0..10u64 {
            for sample in 1..=1000u64 {
                let at = start + std::time::Duration::from_secs(minute * 60 + 1);
                intervals.record(at, sample * (minute + 1), 1);
            }
        }
        let mut result = sample_result();
        result.latency_intervals_us = Some(intervals.summarize(600.0, &[100.0; 600]));
        let svg = render(&[("spate", &result)]);
        assert!(svg.contains("latency per 60 s interval"));
        assert!(svg.contains("minutes"));
        // One line per percentile, dashed but for p50.
        assert_eq!(svg.matches("stroke-dasharray").count(), 4);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        // Without intervals there is no third panel.
        assert!(!render(&[("spate", &sample_result())]).contains("interval"));
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(4999.0), 5000.0);
        assert_eq!(nice_ceiling(5001.0), 10000.0);
    }
}
