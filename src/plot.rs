//! A small SVG line chart with a logarithmic y axis, for gradient-norm profiles and training
//! curves. Written by hand: SVG is plain text, and a plotting crate would need a font backend
//! to lay out labels.

use std::fmt::Write;

/// One line: `values[i]` at the chart's `xs[i]`; non-positive or non-finite values break the
/// line (a norm that underflowed to zero has no place on a log axis).
pub struct Series {
    /// The legend's text.
    pub label: String,
    /// One y value per x of the chart.
    pub values: Vec<f64>,
    /// An SVG colour (`#1f77b4`, `black`, ...).
    pub color: &'static str,
    /// Drawn dashed rather than solid.
    pub dashed: bool,
    /// Drawn thin and translucent: a reference line (e.g. before training).
    pub faint: bool,
}

const WIDTH: f64 = 940.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 280.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// The chart of `series` over the x values `xs` (increasing; one per value of each series).
pub fn log_line_chart(
    title: &str,
    (x_label, y_label): (&str, &str),
    xs: &[f64],
    series: &[Series],
) -> String {
    let frame = Frame::fitting(xs, series);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + PLOT_W / 2.0,
        escape(title)
    );
    frame.draw_axes(&mut svg, x_label, y_label);
    for (k, s) in series.iter().enumerate() {
        frame.draw_series(&mut svg, xs, s, k);
    }
    svg.push_str("</svg>\n");
    svg
}

const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

/// Values a log axis can show.
fn usable(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// The ranges the plot area shows: x from `x_min` to `x_max`, log10 of the values from `lo` to
/// `hi` (whole decades).
struct Frame {
    x_min: f64,
    x_max: f64,
    lo: f64,
    hi: f64,
}

impl Frame {
    /// The decades that hold every usable value (-1 to 1 where none is), and the x range.
    fn fitting(xs: &[f64], series: &[Series]) -> Frame {
        let logs: Vec<f64> = (series.iter())
            .flat_map(|s| s.values.iter().copied().filter(|&v| usable(v)))
            .map(f64::log10)
            .collect();
        let (mut lo, mut hi) = (logs.iter())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        if logs.is_empty() {
            (lo, hi) = (-1.0, 1.0);
        }
        let x_min = xs.first().copied().unwrap_or(0.0);
        Frame {
            x_min,
            x_max: xs.last().copied().unwrap_or(1.0).max(x_min + 1.0),
            lo: lo.floor(),
            hi: hi.ceil().max(lo.floor() + 1.0),
        }
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x_min) / (self.x_max - self.x_min) * PLOT_W
    }

    fn py(&self, log: f64) -> f64 {
        TOP + (self.hi - log) / (self.hi - self.lo) * PLOT_H
    }

    /// The grid, its labels, the plot's border and the axis labels.
    fn draw_axes(&self, svg: &mut String, x_label: &str, y_label: &str) {
        // decade grid lines, labelled 1e-k; thinned so at most ~12 labels show
        let (lo, hi) = (self.lo as i64, self.hi as i64);
        let every = ((hi - lo) / 12 + 1).max(1);
        for d in (lo..=hi).filter(|d| (d - lo) % every == 0) {
            let y = self.py(d as f64);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">1e{d}</text>"##,
                LEFT + PLOT_W,
                LEFT - 6.0,
                y + 4.0
            );
        }
        for k in 0..=5 {
            let x = (self.x_min + (self.x_max - self.x_min) * k as f64 / 5.0).round();
            let _ = writeln!(
                svg,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{2}" stroke="#ddd"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##,
                self.px(x),
                TOP,
                TOP + PLOT_H,
                TOP + PLOT_H + 18.0,
                x
            );
        }
        let _ = writeln!(
            svg,
            r#"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + PLOT_W / 2.0,
            HEIGHT - 15.0,
            escape(x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text transform="translate(20,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + PLOT_H / 2.0,
            escape(y_label)
        );
    }

    /// Series `s`, the `k`th: a polyline per run of usable values (a gap where a value is zero
    /// or not finite), and its line in the legend.
    fn draw_series(&self, svg: &mut String, xs: &[f64], s: &Series, k: usize) {
        let dash = match (s.dashed, s.faint) {
            (true, true) => r#" stroke-dasharray="6,4" stroke-opacity="0.35""#,
            (true, false) => r#" stroke-dasharray="6,4""#,
            (false, true) => r#" stroke-opacity="0.35""#,
            (false, false) => "",
        };
        let mut runs: Vec<Vec<String>> = vec![Vec::new()];
        for (&x, &v) in xs.iter().zip(&s.values) {
            if usable(v) {
                let point = format!("{:.1},{:.1}", self.px(x), self.py(v.log10()));
                runs.last_mut().unwrap().push(point);
            } else if !runs.last().unwrap().is_empty() {
                runs.push(Vec::new());
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
                s.color,
                run.join(" ")
            );
        }
        let ly = TOP + 10.0 + 22.0 * k as f64;
        let lx = LEFT + PLOT_W + 15.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 30.0,
            s.color,
            lx + 36.0,
            ly + 4.0,
            escape(&s.label)
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One evaluation of a training run, for `training_chart`.
#[derive(Clone, Copy, Debug)]
pub struct TrainPoint {
    /// The update count.
    pub step: u64,
    /// The training loss.
    pub loss: f64,
    /// The validation loss, where the data has a validation set.
    pub validation: Option<f64>,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
}

/// The training loss, the validation loss (where there is one) and the gradient norm against
/// the step, on one log axis: a loss that stalls at a baseline while the gradient norm falls is
/// the vanishing gradient seen from the training side.
pub fn training_chart(title: &str, points: &[TrainPoint]) -> String {
    let xs: Vec<f64> = points.iter().map(|p| p.step as f64).collect();
    let line = |label: &str, values: Vec<f64>, color, dashed| Series {
        label: label.to_string(),
        values,
        color,
        dashed,
        faint: false,
    };
    let mut series = vec![line(
        "training loss",
        points.iter().map(|p| p.loss).collect(),
        "#1f77b4",
        false,
    )];
    if points.iter().any(|p| p.validation.is_some()) {
        let values = points.iter().map(|p| p.validation.unwrap_or(f64::NAN));
        series.push(line("validation loss", values.collect(), "#ff7f0e", false));
    }
    let norms = points.iter().map(|p| p.grad_norm).collect();
    series.push(line("gradient norm", norms, "#7f7f7f", true));
    log_line_chart(
        title,
        ("step", "loss and gradient norm (log scale)"),
        &xs,
        &series,
    )
}
