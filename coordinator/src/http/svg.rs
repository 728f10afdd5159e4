//! The status page's two charts, as inline SVG (no scripts, no external assets): a bar of a
//! backup's age against its RPO, and a sparkline of restore times against the RTO.
//!
//! Both scale to their container (`viewBox` plus `width: 100%` in the page's CSS) and carry a
//! `<title>` that says in words what they show, for screen readers and for a tap on a phone.

use std::fmt::Write as _;

use super::status_page::{escape, human_duration};

/// Width of both charts in user units; the page scales them.
const WIDTH: f64 = 240.0;
/// Height of the backup age bar.
const BAR_HEIGHT: f64 = 14.0;
/// Height of the sparkline, and the margin that keeps its dots inside.
const SPARK_HEIGHT: f64 = 48.0;
const SPARK_MARGIN: f64 = 4.0;

/// One restore test in a sparkline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct SparkPoint {
    /// The measured time to recover.
    pub seconds: f64,
    pub passed: bool,
}

/// A bar showing `age_seconds` on a scale of twice the RPO, with a tick at the RPO: the bar is
/// green within the RPO and red beyond it. Without an RPO it is grey on a scale of the age.
pub(super) fn backup_age_bar(age_seconds: i64, rpo_seconds: Option<i64>) -> String {
    let age = age_seconds.max(0) as f64;
    let (scale, fill, title) = match rpo_seconds.filter(|rpo| *rpo > 0) {
        Some(rpo) => {
            let rpo = rpo as f64;
            let within = age <= rpo;
            let title = format!(
                "Backup age {} against an RPO of {}{}",
                human_duration(age),
                human_duration(rpo),
                if within { "" } else { ": too old" }
            );
            (2.0 * rpo, if within { "ok" } else { "bad" }, title)
        }
        None => (
            age.max(1.0),
            "none",
            format!("Backup age {}, no RPO set", human_duration(age)),
        ),
    };
    let filled = (age / scale).clamp(0.0, 1.0) * WIDTH;
    let mut svg = String::with_capacity(400);
    let _ = write!(
        svg,
        "<svg class=\"bar\" viewBox=\"0 0 {WIDTH} {BAR_HEIGHT}\" role=\"img\" preserveAspectRatio=\"none\">\
         <title>{}</title>\
         <rect class=\"track\" x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{BAR_HEIGHT}\" rx=\"3\"/>\
         <rect class=\"fill {fill}\" x=\"0\" y=\"0\" width=\"{filled:.1}\" height=\"{BAR_HEIGHT}\" rx=\"3\"/>",
        escape(&title)
    );
    if rpo_seconds.is_some_and(|rpo| rpo > 0) {
        let tick = WIDTH / 2.0;
        let _ = write!(
            svg,
            "<line class=\"limit\" x1=\"{tick}\" y1=\"0\" x2=\"{tick}\" y2=\"{BAR_HEIGHT}\"/>"
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A sparkline of restore times, oldest first, with the RTO as a dashed line; failed tests are
/// red dots, and the newest test a larger dot.
pub(super) fn restore_sparkline(points: &[SparkPoint], rto_seconds: Option<i64>) -> String {
    let rto = rto_seconds.filter(|rto| *rto > 0).map(|rto| rto as f64);
    let highest = points
        .iter()
        .map(|point| point.seconds)
        .chain(rto)
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.1;
    let plot_height = SPARK_HEIGHT - 2.0 * SPARK_MARGIN;
    let y = |seconds: f64| SPARK_MARGIN + plot_height * (1.0 - (seconds.max(0.0) / highest).min(1.0));
    let step = if points.len() > 1 {
        (WIDTH - 2.0 * SPARK_MARGIN) / (points.len() - 1) as f64
    } else {
        0.0
    };
    let x = |index: usize| {
        if points.len() > 1 {
            SPARK_MARGIN + step * index as f64
        } else {
            WIDTH / 2.0
        }
    };

    let title = match (points.last(), rto) {
        (None, _) => "No restore test yet".to_owned(),
        (Some(last), Some(rto)) => format!(
            "Restore time of the last {} tests; the latest took {}, the RTO is {}",
            points.len(),
            human_duration(last.seconds),
            human_duration(rto)
        ),
        (Some(last), None) => format!(
            "Restore time of the last {} tests; the latest took {}, no RTO set",
            points.len(),
            human_duration(last.seconds)
        ),
    };
    let mut svg = String::with_capacity(300 + 40 * points.len());
    let _ = write!(
        svg,
        "<svg class=\"spark\" viewBox=\"0 0 {WIDTH} {SPARK_HEIGHT}\" role=\"img\"><title>{}</title>",
        escape(&title)
    );
    if let Some(rto) = rto {
        let rto_y = y(rto);
        let _ = write!(
            svg,
            "<line class=\"rto\" x1=\"0\" y1=\"{rto_y:.1}\" x2=\"{WIDTH}\" y2=\"{rto_y:.1}\"/>\
             <text class=\"rto-label\" x=\"{:.1}\" y=\"{:.1}\">RTO</text>",
            WIDTH - 2.0,
            (rto_y - 2.0).max(8.0)
        );
    }
    if points.len() > 1 {
        svg.push_str("<polyline class=\"line\" points=\"");
        for (index, point) in points.iter().enumerate() {
            let _ = write!(svg, "{:.1},{:.1} ", x(index), y(point.seconds));
        }
        svg.push_str("\"/>");
    }
    for (index, point) in points.iter().enumerate() {
        let newest = index + 1 == points.len();
        if point.passed && !newest {
            continue;
        }
        let class = if point.passed { "dot" } else { "dot bad" };
        let radius = if newest { 3.0 } else { 2.0 };
        let _ = write!(
            svg,
            "<circle class=\"{class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"{radius}\"/>",
            x(index),
            y(point.seconds)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_is_red_beyond_the_rpo() {
        let within = backup_age_bar(3_600, Some(86_400));
        assert!(within.contains("fill ok"));
        assert!(within.contains("class=\"limit\""));
        let beyond = backup_age_bar(3 * 86_400, Some(86_400));
        assert!(beyond.contains("fill bad"));
        assert!(beyond.contains("too old"));
        assert!(backup_age_bar(60, None).contains("no RPO set"));
    }

    #[test]
    fn the_sparkline_draws_the_rto_and_failed_tests() {
        let points = [
            SparkPoint {
                seconds: 60.0,
                passed: true,
            },
            SparkPoint {
                seconds: 4_000.0,
                passed: false,
            },
            SparkPoint {
                seconds: 90.0,
                passed: true,
            },
        ];
        let svg = restore_sparkline(&points, Some(1_800));
        assert!(svg.contains("class=\"rto\""));
        assert!(svg.contains("<polyline"));
        assert_eq!(svg.matches("dot bad").count(), 1);
        assert!(svg.contains("the RTO is 30 min"));
        assert!(restore_sparkline(&[], None).contains("No restore test yet"));
    }
}
