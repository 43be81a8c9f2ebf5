//! The latency plot (`--plot FILE.svg`): the HDR percentile curve of one or more latency
//! histograms, one line per (label, histogram), written as a small hand-made SVG (a plotting
//! crate would bring far more than these few elements need). The x axis is the percentile on
//! a "nines" scale, x = -log10(1 - q), so 0, 90, 99, 99.9 and 99.99 are evenly spaced; it runs
//! to the nines the largest histogram resolves (at least 99.9, at most 99.999). The y axis is linear, in ms,
//! from 0 to a round value above the largest latency. Each line samples its histogram at
//! [`STEPS_PER_NINE`] points per nine, so it never falls (a quantile's value only grows).

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;

/// Drawing area and margins, in SVG user units (px).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 60.0;
/// Points per nine on each line.
const STEPS_PER_NINE: u32 = 50;
/// The fewest nines on the x axis (99.9).
const MIN_NINES: u32 = 3;
/// The most nines on the x axis (99.999).
const MAX_NINES: u32 = 5;
/// Line colours, in turn.
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// One line of the plot.
pub struct Series<'a> {
    pub label: String,
    /// Latencies in microseconds.
    pub histogram: &'a Histogram<u64>,
}

/// Write the plot of `series`, headed by `title` and a smaller `subtitle` (the scenario), to
/// `path`.
pub fn write(
    path: &Path,
    title: &str,
    subtitle: &str,
    series: &[Series<'_>],
) -> anyhow::Result<()> {
    std::fs::write(path, svg(title, subtitle, series))
        .with_context(|| format!("cannot write the plot to {}", path.display()))
}

/// The SVG document.
pub fn svg(title: &str, subtitle: &str, series: &[Series<'_>]) -> String {
    let drawn: Vec<&Series<'_>> = series.iter().filter(|s| !s.histogram.is_empty()).collect();
    let samples = drawn.iter().map(|s| s.histogram.len()).max().unwrap_or(0);
    // A histogram of n samples resolves about log10(n) nines; the axis shows at least 99.9.
    let nines = ((samples.max(1) as f64).log10().floor() as u32).clamp(MIN_NINES, MAX_NINES);
    let top_ms = round_up(
        drawn
            .iter()
            .map(|s| s.histogram.max() as f64 / 1000.0)
            .fold(0.0, f64::max),
    );
    let frame = Frame { nines, top_ms };

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="15">{}</text><text x="{}" y="33" text-anchor="middle" font-size="10">{}</text>"#,
        WIDTH / 2.0,
        escape(title),
        WIDTH / 2.0,
        escape(subtitle)
    );
    frame.axes(&mut out);
    for (i, s) in drawn.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = curve(s.histogram, nines)
            .into_iter()
            .map(|(x, ms)| format!("{:.1},{:.1}", frame.x(x), frame.y(ms)))
            .collect();
        let _ = writeln!(
            out,
            r#"<path class="series" data-label="{}" d="M{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            escape(&s.label),
            points.join(" L")
        );
        // The legend, top left inside the plot.
        let y = TOP + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{} (p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms)</text>"#,
            LEFT + 12.0,
            LEFT + 36.0,
            LEFT + 42.0,
            y + 4.0,
            escape(&s.label),
            s.histogram.value_at_quantile(0.5) as f64 / 1000.0,
            s.histogram.value_at_quantile(0.99) as f64 / 1000.0,
            s.histogram.max() as f64 / 1000.0,
        );
    }
    if drawn.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">no latencies were measured</text>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The points of one line: (nines, ms) from 0 to `nines`, the last at the maximum.
fn curve(histogram: &Histogram<u64>, nines: u32) -> Vec<(f64, f64)> {
    let steps = nines * STEPS_PER_NINE;
    (0..=steps)
        .map(|step| {
            let x = f64::from(step) / f64::from(STEPS_PER_NINE);
            let value = if step == steps {
                histogram.max()
            } else {
                histogram.value_at_quantile(1.0 - 10f64.powf(-x))
            };
            (x, value as f64 / 1000.0)
        })
        .collect()
}

/// Where the axes map to.
struct Frame {
    nines: u32,
    top_ms: f64,
}

impl Frame {
    fn x(&self, nines: f64) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * nines / f64::from(self.nines)
    }

    fn y(&self, ms: f64) -> f64 {
        HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * ms / self.top_ms
    }

    /// Axes, grid lines, tick labels and axis titles.
    fn axes(&self, out: &mut String) {
        let (x0, x1) = (self.x(0.0), self.x(f64::from(self.nines)));
        let (y0, y1) = (self.y(0.0), self.y(self.top_ms));
        for nine in 0..=self.nines {
            let x = self.x(f64::from(nine));
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{y1:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                y0 + 16.0,
                percentile_label(nine)
            );
        }
        for tick in 0..=4 {
            let ms = self.top_ms * f64::from(tick) / 4.0;
            let y = self.y(ms);
            let _ = writeln!(
                out,
                r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 - 6.0,
                y + 4.0,
                trim(ms)
            );
        }
        let _ = writeln!(
            out,
            r#"<path d="M{x0:.1},{y1:.1} L{x0:.1},{y0:.1} L{x1:.1},{y0:.1}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (%)</text>"#,
            (x0 + x1) / 2.0,
            HEIGHT - 18.0
        );
        let _ = writeln!(
            out,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency (ms)</text>"#,
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0
        );
    }
}

/// "0", "90", "99", "99.9", ... for 0, 1, 2, 3 nines.
fn percentile_label(nines: u32) -> String {
    match nines {
        0 => "0".into(),
        1 => "90".into(),
        n => format!("99.{}", "9".repeat(n as usize - 2))
            .trim_end_matches('.')
            .to_owned(),
    }
}

/// A round number (1, 2 or 5 times a power of ten) at least `ms`, and above 0.
fn round_up(ms: f64) -> f64 {
    if ms <= 0.0 || !ms.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(ms.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&v| v >= ms)
        .unwrap_or(10.0 * power)
}

/// A tick value without needless decimals.
fn trim(ms: f64) -> String {
    let text = format!("{ms:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_ticks_and_rounding() {
        let labels: Vec<String> = (0..=4).map(percentile_label).collect();
        assert_eq!(labels, ["0", "90", "99", "99.9", "99.99"]);
        assert_eq!(round_up(0.0), 1.0);
        assert_eq!(round_up(3.2), 5.0);
        assert_eq!(round_up(12.0), 20.0);
        assert_eq!(round_up(0.7), 1.0);
        assert_eq!(trim(2.5), "2.5");
        assert_eq!(trim(10.0), "10");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn curves_climb_to_the_maximum() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for us in 1..=10_000u64 {
            histogram.record(us).unwrap();
        }
        let points = curve(&histogram, 4);
        assert_eq!(points.len(), 4 * STEPS_PER_NINE as usize + 1);
        assert_eq!(points[0].0, 0.0);
        assert!(
            points
                .windows(2)
                .all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0)
        );
        let last = points.last().unwrap();
        assert_eq!(last.1, histogram.max() as f64 / 1000.0);
        // The median of 1..10,000 µs is about 5 ms, at x = log10(2) (the next point on the
        // grid is a little past it).
        let median = points.iter().find(|(x, _)| *x >= 2f64.log10()).unwrap();
        assert!((4.9..5.4).contains(&median.1), "{median:?}");
    }
}
