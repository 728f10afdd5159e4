//! Benchmark driver for the credential scanner (used by `tests/benches/scan.sh`; not a
//! documented command): scans the given paths with [`scan_paths`] and prints one JSON object
//! with files, bytes, seconds, GB/s and the number of sightings.
//!
//! `--threads N` sets the walker threads (default: available parallelism);
//! `--sightings-out FILE` writes one JSON line per sighting (`path`, `line`, `kind`; never the
//! secret) so the script can match them against the manifest of planted secrets.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use lifeboat_agent::credentials::scanner::{ScanOptions, SightingSource, scan_paths};

fn main() -> anyhow::Result<()> {
    let mut options = ScanOptions::default();
    let mut paths = Vec::new();
    let mut sightings_out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                options.threads = args
                    .next()
                    .context("--threads needs a value")?
                    .parse()
                    .context("parse --threads")?
            }
            "--sightings-out" => sightings_out = Some(args.next().context("--sightings-out needs a value")?.into()),
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    anyhow::ensure!(
        !paths.is_empty(),
        "usage: scan_bench [--threads N] [--sightings-out FILE] PATH..."
    );

    let started = Instant::now();
    let report = scan_paths(&paths, &options);
    let seconds = started.elapsed().as_secs_f64();

    if let Some(out) = sightings_out {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&out).context("create sightings file")?);
        for sighting in &report.sightings {
            let (path, line) = match &sighting.source {
                SightingSource::File { path, line } | SightingSource::CredentialStore { path, line } => {
                    (path.display().to_string(), *line)
                }
                SightingSource::Environment { variable } => (format!("env:{variable}"), 0),
            };
            let record = serde_json::json!({ "path": path, "line": line, "kind": sighting.rule_id });
            writeln!(file, "{record}").context("write sighting")?;
        }
        file.flush().context("flush sightings file")?;
    }

    let summary = serde_json::json!({
        "tool": "lifeboat",
        "threads": options.threads,
        "files": report.files_scanned,
        "bytes": report.bytes_scanned,
        "seconds": seconds,
        "gb_per_s": report.bytes_scanned as f64 / seconds / 1e9,
        "sightings": report.sightings.len(),
        "skipped": report.skipped.len(),
        "problems": report.problems.len(),
    });
    println!("{summary}");
    Ok(())
}
