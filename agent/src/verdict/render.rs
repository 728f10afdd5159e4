//! The `check` command's text: per asset the verdict, each restore with its measurements and
//! checks, the findings worst first with their fix, and the overall answer.

use std::fmt::Write as _;

use lifeboat_shared::durations::human;
use lifeboat_shared::protocol::Outcome;

use super::report::{CheckOutput, RunReport, RunRole};

/// Renders the report for a terminal.
pub fn render(output: &CheckOutput) -> String {
    let mut text = String::new();
    for asset in &output.assets {
        let verdict = if asset.recoverable {
            "RECOVERABLE"
        } else {
            "NOT RECOVERABLE"
        };
        let _ = writeln!(text, "\n{}: {verdict}", asset.asset);
        for run in &asset.runs {
            render_run(&mut text, run);
        }
        for finding in &asset.findings {
            let _ = writeln!(text, "  {}", finding.one_line());
            if !finding.remediation.is_empty() {
                let _ = writeln!(text, "    fix: {}", finding.remediation);
            }
        }
    }
    for finding in &output.findings {
        let _ = writeln!(text, "\n{}", finding.one_line());
    }
    let _ = writeln!(
        text,
        "\n{}",
        if output.recoverable {
            "Every asset is recoverable."
        } else {
            "NOT every asset is recoverable."
        }
    );
    text
}

fn render_run(text: &mut String, run: &RunReport) {
    let role = match run.role {
        RunRole::Verdict => "",
        RunRole::Newest => " [newest, inside the blast radius]",
        RunRole::Coverage => " [older point, picked at random]",
    };
    let measured = if run.outcome == Outcome::Passed {
        format!(
            "restored in {}, checks passed after {}",
            human(run.restore_seconds),
            human(run.rto_seconds)
        )
    } else if run.restored {
        format!("restored in {}, a check failed", human(run.restore_seconds))
    } else {
        "did not restore".to_owned()
    };
    let _ = writeln!(
        text,
        "  {} {}/{} ({} old){role}: {measured}",
        run.outcome.as_str(),
        run.backup,
        run.recovery_point,
        human(run.recovery_point_age_seconds as f64),
    );
    if let Some(error) = &run.error {
        let _ = writeln!(text, "    error: {error}");
    }
    for check in &run.checks {
        let _ = writeln!(
            text,
            "    [{}] {}: {}",
            if check.passed { "ok" } else { "FAIL" },
            check.name,
            check.message
        );
    }
}
