//! PNG plots with plotters' bitmap backend. Text is drawn with ab_glyph from a TrueType file
//! read at run time (Debian's `fonts-dejavu-core` by default), so no fontconfig is needed.

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::prelude::*;

/// Where Debian's `fonts-dejavu-core` puts its sans-serif font.
pub(crate) const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers the TrueType file as plotters' sans-serif font (once per process).
pub(crate) fn load_font(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // plotters keeps the font for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{} is not a TrueType/OpenType font", path.display()))
}

/// At most `max` points of a sorted sample, evenly spaced in rank, keeping the last (the max).
fn thin(sorted: &[f64], max: usize) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(max).max(1);
    let mut points: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (sorted[i], 100.0 * (i + 1) as f64 / n as f64))
        .collect();
    if points.last().map(|p| p.1) != Some(100.0) {
        points.push((sorted[n - 1], 100.0));
    }
    points
}

/// Latency CDF (the paper's Figure 2 style): one line per series of sorted milliseconds,
/// logarithmic latency axis.
pub(crate) fn cdf(path: &Path, title: &str, series: &[(String, Vec<f64>)]) -> anyhow::Result<()> {
    let values = series.iter().flat_map(|(_, v)| v.iter().copied());
    let lo = values
        .clone()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let hi = values.fold(0.0_f64, f64::max);
    if !lo.is_finite() || hi <= 0.0 {
        return Err(anyhow!("no latencies to plot for {title}"));
    }
    let (lo, hi) = (lo / 1.2, hi * 1.2);
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..100.0)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("requests (%)")
        .x_label_formatter(&|v| format_ms(*v))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (name, values)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(thin(values, 2000), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

fn format_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Memory over time: RSS samples `(seconds, core MB, worker MB)`.
pub(crate) fn memory(path: &Path, title: &str, samples: &[(f64, f64, f64)]) -> anyhow::Result<()> {
    let t_max = samples.iter().map(|s| s.0).fold(1.0_f64, f64::max);
    let m_max = samples
        .iter()
        .map(|s| s.1.max(s.2))
        .fold(10.0_f64, f64::max);
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..t_max, 0.0..m_max * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("RSS (MB)")
        .label_style(("sans-serif", 14))
        .draw()?;
    type Pick = fn(&(f64, f64, f64)) -> f64;
    let lines: [(&str, RGBAColor, Pick); 2] = [
        ("funless-core", Palette99::pick(0).to_rgba(), |s| s.1),
        ("funless-worker", Palette99::pick(1).to_rgba(), |s| s.2),
    ];
    for (name, color, pick) in lines {
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.0, pick(s))),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends() {
        let sorted: Vec<f64> = (1..=10_000).map(f64::from).collect();
        let points = thin(&sorted, 100);
        assert!(points.len() <= 101);
        assert_eq!(points[0], (1.0, 0.01));
        assert_eq!(points.last().copied(), Some((10_000.0, 100.0)));
        assert!(thin(&[], 10).is_empty());
    }

    #[test]
    fn draws_pngs_when_the_font_is_there() -> anyhow::Result<()> {
        if !Path::new(DEFAULT_FONT).exists() {
            // .ci/run installs fonts-dejavu-core; a machine without it cannot draw text.
            return Ok(());
        }
        load_font(Path::new(DEFAULT_FONT))?;
        let dir = tempfile::tempdir()?;
        let cdf_path = dir.path().join("cdf.png");
        cdf(
            &cdf_path,
            "test",
            &[
                ("a".into(), vec![0.4, 0.5, 0.6, 2.0]),
                ("b".into(), vec![1.0, 3.0]),
            ],
        )?;
        let mem_path = dir.path().join("mem.png");
        memory(&mem_path, "test", &[(0.0, 12.0, 20.0), (1.0, 13.0, 25.0)])?;
        for path in [cdf_path, mem_path] {
            let bytes = std::fs::read(&path)?;
            assert_eq!(&bytes[1..4], b"PNG", "{}", path.display());
        }
        Ok(())
    }
}
