//! The test-time-scaling plot: accuracy against generated tokens per problem (log scale), one
//! curve per strategy family, drawn with `plotters` into SVG and PNG. Text is drawn with a font
//! embedded in the binary (a 14 KB ASCII cut of DejaVu Sans), so no system font library or font
//! file is needed.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

/// One rung on the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotPoint {
    /// The label next to the point.
    pub name: String,
    /// The curve it belongs to (points of one curve are joined, in order of tokens).
    pub curve: String,
    /// Mean generated tokens per problem (x).
    pub tokens: f64,
    /// Accuracy (y), 0..=1.
    pub accuracy: f64,
    /// A reranker's accuracy on a best-of-N rung's own samples rather than a rung: drawn as an
    /// open grey circle at the rung's tokens, not joined to a curve, and labelled with every
    /// reranker that lands on the same point.
    pub hollow: bool,
}

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
const SIZE: (u32, u32) = (960, 600);
/// Matplotlib's "tab10" colours: distinct, and readable on white.
const COLOURS: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is built in and known good; a failure would show as missing text only.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draws the plot into an SVG file.
///
/// # Errors
/// What the drawing backend reports, in words.
pub fn draw_svg(path: &Path, title: &str, points: &[PlotPoint]) -> Result<(), String> {
    register_font();
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    draw(&root, title, points)?;
    root.present().map_err(|e| e.to_string())
}

/// Draws the plot into a PNG file.
///
/// # Errors
/// What the drawing backend reports, in words.
pub fn draw_png(path: &Path, title: &str, points: &[PlotPoint]) -> Result<(), String> {
    register_font();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw(&root, title, points)?;
    root.present().map_err(|e| e.to_string())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    points: &[PlotPoint],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let xs = points.iter().map(|p| p.tokens.max(1.0));
    let lo = xs.clone().fold(f64::INFINITY, f64::min);
    let hi = xs.fold(0.0, f64::max);
    let (lo, hi) = if lo.is_finite() && hi >= lo {
        (lo / 1.6, hi * 1.6)
    } else {
        (10.0, 10_000.0)
    };
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.05)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("generated tokens per problem (log scale)")
        .y_desc("accuracy")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    draw_hollow(&mut chart, points).map_err(err)?;
    let mut curves: Vec<&str> = Vec::new();
    for p in points.iter().filter(|p| !p.hollow) {
        if !curves.contains(&p.curve.as_str()) {
            curves.push(&p.curve);
        }
    }
    for (i, curve) in curves.iter().enumerate() {
        let (r, g, b) = COLOURS[i % COLOURS.len()];
        let color = RGBColor(r, g, b);
        let mut members: Vec<&PlotPoint> = points
            .iter()
            .filter(|p| !p.hollow && p.curve == *curve)
            .collect();
        members.sort_by(|a, b| a.tokens.total_cmp(&b.tokens));
        let line: Vec<(f64, f64)> = members
            .iter()
            .map(|p| (p.tokens.max(1.0), p.accuracy))
            .collect();
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .map_err(err)?
            .label(curve.to_string())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(members.iter().map(|p| {
                EmptyElement::at((p.tokens.max(1.0), p.accuracy))
                    + Circle::new((0, 0), 5, color.filled())
                    + Text::new(
                        format!("{} {:.2}", p.name, p.accuracy),
                        (7, -16),
                        ("sans-serif", 13).into_font(),
                    )
            }))
            .map_err(err)?;
    }
    if !curves.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// The hollow points: one open circle per distinct (tokens, accuracy), labelled with the names
/// of the rerankers there (the first two and how many more).
fn draw_hollow<DB: DrawingBackend, X: Ranged<ValueType = f64>, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    points: &[PlotPoint],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut groups: Vec<(f64, f64, Vec<&str>)> = Vec::new();
    for p in points.iter().filter(|p| p.hollow) {
        let at = (p.tokens.max(1.0), p.accuracy);
        match groups
            .iter_mut()
            .find(|g| (g.0 - at.0).abs() < 1e-9 && (g.1 - at.1).abs() < 1e-9)
        {
            Some(g) => g.2.push(&p.name),
            None => groups.push((at.0, at.1, vec![&p.name])),
        }
    }
    let grey = RGBColor(110, 110, 110);
    chart.draw_series(groups.iter().map(|(x, y, names)| {
        let mut label = names.iter().take(2).copied().collect::<Vec<_>>().join(", ");
        if names.len() > 2 {
            label += &format!(" +{}", names.len() - 2);
        }
        EmptyElement::at((*x, *y))
            + Circle::new((0, 0), 4, grey.stroke_width(1))
            + Text::new(
                format!("{label} {y:.2}"),
                (7, -4),
                ("sans-serif", 10).into_font().color(&grey),
            )
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_drawn_without_system_fonts() {
        let dir = crate::runner::scratch_dir("bench-plot");
        let points = vec![
            PlotPoint {
                name: "greedy".into(),
                curve: "greedy".into(),
                tokens: 150.0,
                accuracy: 0.5,
                hollow: false,
            },
            PlotPoint {
                name: "vote@4".into(),
                curve: "vote".into(),
                tokens: 600.0,
                accuracy: 0.6,
                hollow: false,
            },
            PlotPoint {
                name: "vote@8".into(),
                curve: "vote".into(),
                tokens: 1200.0,
                accuracy: 0.7,
                hollow: false,
            },
            // Two rerankers on vote@8's samples land on one point, a third elsewhere.
            PlotPoint {
                name: "cisc".into(),
                curve: "vote".into(),
                tokens: 1200.0,
                accuracy: 0.75,
                hollow: true,
            },
            PlotPoint {
                name: "borda_vote".into(),
                curve: "vote".into(),
                tokens: 1200.0,
                accuracy: 0.75,
                hollow: true,
            },
            PlotPoint {
                name: "self_certainty".into(),
                curve: "vote".into(),
                tokens: 1200.0,
                accuracy: 0.4,
                hollow: true,
            },
        ];
        draw_svg(&dir.join("p.svg"), "test", &points).unwrap();
        draw_png(&dir.join("p.png"), "test", &points).unwrap();
        let svg = std::fs::read_to_string(dir.join("p.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("vote@8"), "{svg}");
        assert!(svg.contains("cisc, borda_vote 0.75"), "{svg}");
        assert!(svg.contains("self_certainty 0.40"), "{svg}");
        let png = std::fs::read(dir.join("p.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // One point alone, and none, still draw.
        draw_png(&dir.join("one.png"), "one", &points[..1]).unwrap();
        draw_svg(&dir.join("none.svg"), "none", &[]).unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }
}
