//! How the failures of PostgreSQL's own tools in a sandbox (`initdb`, `postgres --single`, the
//! server) become errors: the end of their output and of the server log.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

use super::SandboxError;
use crate::jail::JailOutput;

/// How many lines of a tool's output or the server log an error carries.
const OUTPUT_TAIL_LINES: usize = 20;

/// Reads a file from `offset` on (the part of the server log one start wrote).
pub(super) fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path)
        && file.seek(SeekFrom::Start(offset)).is_ok()
    {
        let mut bytes = Vec::new();
        let _partial = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

/// Turns a failed tool run into an error carrying the end of its output and of `log`.
pub(super) fn check(program: &str, output: &JailOutput, log: &str) -> Result<(), SandboxError> {
    if output.success() {
        return Ok(());
    }
    let mut text = String::new();
    for part in [&output.stderr, &output.stdout, log] {
        if !part.trim().is_empty() {
            let _infallible = writeln!(text, "{}", part.trim_end());
        }
    }
    Err(SandboxError::Command {
        program: program.to_owned(),
        status: output.status.to_string(),
        output: tail(&text),
    })
}

/// The last lines of a tool's output.
pub(super) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(OUTPUT_TAIL_LINES)..].join("\n")
}
