//! Pictures of runs, drawn as SVG by hand: on the left the latency percentile spectrum on a
//! log "nines" axis (0%, 90%, 99%, 99.9%, ...), on the right throughput over time. Several
//! runs can share one picture (Spate beside Tansu), each in its own colour.

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
    let height = HEIGHT_PANELS + LEGEND_LINE * runs.len() as f64 + 6.0;
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
        let y = HEIGHT_PANELS + LEGEND_LINE * index as f64;
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

/// One panel's coordinate frame: data (0..x_max, 0..y_max) onto the panel's pixels.
struct Frame {
    x: f64,
    x_max: f64,
    y_max: f64,
}

impl Frame {
    fn map(&self, x: f64, y: f64) -> (f64, f64) {
        let px = self.x + x / self.x_max * PANEL_WIDTH;
        let py = TOP + PANEL_HEIGHT - (y / self.y_max).min(1.0) * PANEL_HEIGHT;
        (px, py)
    }

    fn axes(&self, svg: &mut String, y_label: &str, x_label: &str) {
        let (left, bottom) = (self.x, TOP + PANEL_HEIGHT);
        let _ = write!(
            svg,
            r#"<path d="M{left} {TOP} L{left} {bottom} L{} {bottom}" stroke="black" fill="none"/>"#,
            left + PANEL_WIDTH
        );
        text(svg, left - 45.0, TOP - 10.0, "start", y_label, 11.0);
        text(
            svg,
            left + PANEL_WIDTH / 2.0,
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
            r##"<path d="M{px:.1} {py} L{px:.1} {TOP}" stroke="#ddd"/>"##
        );
        text(svg, px, py + 14.0, "middle", label, 10.0);
    }

    fn y_tick(&self, svg: &mut String, value: f64, label: &str) {
        let (px, py) = self.map(0.0, value);
        let _ = write!(
            svg,
            r##"<path d="M{px} {py:.1} L{} {py:.1}" stroke="#ddd"/>"##,
            px + PANEL_WIDTH
        );
        text(svg, px - 4.0, py + 4.0, "end", label, 10.0);
    }

    fn line(&self, svg: &mut String, points: &[(f64, f64)], colour: &str) {
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
        let _ = write!(
            svg,
            r#"<path d="{}" stroke="{colour}" stroke-width="2" fill="none"/>"#,
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
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(4999.0), 5000.0);
        assert_eq!(nice_ceiling(5001.0), 10000.0);
    }
}
