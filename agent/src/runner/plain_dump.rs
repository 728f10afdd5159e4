//! Plain SQL dumps (`pg_dump -Fp`, optionally gzipped): the roles they name, and feeding them to a
//! jailed `psql` that runs no meta-command of theirs.
//!
//! A plain dump is a script for `psql`, and `psql` scripts can run shell commands (`\!`, `\o |…`,
//! `\copy … program`). So the agent reads the dump itself and feeds it to `psql` over stdin,
//! after a `\restrict` with a key generated for this run: in restricted mode `psql` refuses every
//! meta-command but `\unrestrict <that key>`, which no dump can know. The dump's own
//! `\restrict`/`\unrestrict` lines (newer `pg_dump` writes them) are dropped, and every other
//! meta-command line outside `COPY` data is reported: a dump that carries one is a sign of
//! tampering. A `psql` too old for `\restrict` gets no meta-command at all: such lines are not
//! fed. Either way the shells in its jail are tripwires.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use rand::Rng as _;
use rand::distr::Alphanumeric;
use regex::Regex;

/// At most this many meta-commands are quoted in a report.
const MAX_REPORTED: usize = 5;
/// Quoted meta-commands are cut to this many characters.
const MAX_QUOTED_CHARS: usize = 120;

/// Meta-commands that run programs, read or write files, or change the environment: a dump that
/// carries one is hostile (`\!`, `\o |cmd`, `\copy … program`, `\i file`, …).
const DANGEROUS: [&str; 18] = [
    "!",
    "o",
    "out",
    "g",
    "gx",
    "w",
    "write",
    "copy",
    "i",
    "include",
    "ir",
    "include_relative",
    "setenv",
    "lo_export",
    "lo_import",
    "cd",
    "s",
    "gexec",
];

/// What feeding a dump found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FeedReport {
    /// Meta-command lines outside `COPY` data that run programs or touch files, quoted.
    pub meta_commands: Vec<String>,
    /// How many there were in all.
    pub meta_command_count: usize,
    /// Other meta-commands (`\connect`, `\set`, …), which `pg_dump` does not write either and
    /// `psql` refuses in restricted mode: quoted, for the restore's error.
    pub other_meta_commands: Vec<String>,
}

/// Whether a meta-command line (`\name args`) runs programs or touches files.
fn is_dangerous(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(trim_newline(line));
    let name: String = text
        .trim_start()
        .trim_start_matches('\\')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '!')
        .collect();
    let name = name.to_ascii_lowercase();
    // `\!` may be written without a space before its command.
    name.starts_with('!') || DANGEROUS.contains(&name.as_str())
}

/// A key for `\restrict`: random, alphanumeric.
pub fn restrict_key() -> String {
    rand::rng().sample_iter(Alphanumeric).take(32).map(char::from).collect()
}

/// Opens a plain dump for reading, decompressing gzip.
fn open(path: &Path, gzip: bool) -> io::Result<Box<dyn BufRead + Send>> {
    let file = File::open(path)?;
    Ok(if gzip {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::read::MultiGzDecoder::new(BufReader::new(file)),
        ))
    } else {
        Box::new(BufReader::with_capacity(256 * 1024, file))
    })
}

/// Tracks whether a line of the dump is `COPY … FROM stdin` data, which `psql` does not interpret.
#[derive(Debug, Default)]
struct CopyState {
    in_data: bool,
}

impl CopyState {
    /// Whether `line` is data; advances the state.
    fn is_data(&mut self, line: &[u8]) -> bool {
        if self.in_data {
            if trim_newline(line) == b"\\." {
                self.in_data = false;
            }
            return true;
        }
        let text = trim_newline(line);
        if text.len() > 5 && text[..5].eq_ignore_ascii_case(b"COPY ") && ends_with_ignore_case(text, b"FROM stdin;") {
            self.in_data = true;
        }
        false
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn ends_with_ignore_case(text: &[u8], suffix: &[u8]) -> bool {
    text.len() >= suffix.len() && text[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// Whether a line (outside data) is the dump's own `\restrict`/`\unrestrict`.
fn is_restrict_line(line: &[u8]) -> bool {
    let text = trim_newline(line).trim_ascii_start();
    text.starts_with(b"\\restrict ") || text.starts_with(b"\\unrestrict ")
}

/// The roles a plain dump assigns ownership or grants to (`OWNER TO x`, `GRANT … TO x`), so they
/// can be created first, as `pg_restore --no-owner` would not need them.
pub fn roles(path: &Path, gzip: bool) -> io::Result<Vec<String>> {
    let pattern =
        Regex::new(r#"(?:OWNER TO|GRANT [A-Z, ]+ ON [^;]+ TO) ("(?:[^"]|"")+"|[^; ]+)"#).map_err(io::Error::other)?;
    let mut reader = open(path, gzip)?;
    let mut state = CopyState::default();
    let mut roles = BTreeSet::new();
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line)? > 0 {
        if !state.is_data(&line) {
            let text = String::from_utf8_lossy(&line);
            for found in pattern.captures_iter(&text) {
                let role = found[1].trim_matches('"').replace("\"\"", "\"");
                if !role.eq_ignore_ascii_case("public") && !role.is_empty() {
                    roles.insert(role);
                }
            }
        }
        line.clear();
    }
    Ok(roles.into_iter().collect())
}

/// Writes the dump to `out` for `psql`: first `\restrict <key>` (when `restrict` is given), then
/// every line but the dump's own `\restrict`/`\unrestrict`, reporting other meta-commands. When
/// `restrict` is `None` (a `psql` without `\restrict`), meta-command lines are not written at all.
///
/// Blocking; a closed pipe (`psql` stopped early) ends the feed without an error.
pub fn feed(path: &Path, gzip: bool, restrict: Option<&str>, out: impl Write) -> io::Result<FeedReport> {
    let mut reader = open(path, gzip)?;
    let mut out = BufWriter::with_capacity(256 * 1024, out);
    let mut report = FeedReport::default();
    let mut state = CopyState::default();
    let written = (|| -> io::Result<()> {
        if let Some(key) = restrict {
            writeln!(out, "\\restrict {key}")?;
        }
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line)? > 0 {
            let data = state.is_data(&line);
            let meta = !data && trim_newline(&line).trim_ascii_start().starts_with(b"\\");
            if meta && is_restrict_line(&line) {
                line.clear();
                continue;
            }
            if meta {
                let quoted: String = String::from_utf8_lossy(trim_newline(&line))
                    .chars()
                    .take(MAX_QUOTED_CHARS)
                    .collect();
                if is_dangerous(&line) {
                    report.meta_command_count += 1;
                    if report.meta_commands.len() < MAX_REPORTED {
                        report.meta_commands.push(quoted);
                    }
                } else if report.other_meta_commands.len() < MAX_REPORTED {
                    report.other_meta_commands.push(quoted);
                }
            }
            if !meta || restrict.is_some() {
                out.write_all(&line)?;
            }
            line.clear();
        }
        out.flush()
    })();
    match written {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(report),
        Err(err) => Err(err),
        Ok(()) => Ok(report),
    }
}

/// Whether `psql --version` output names a release that knows `\restrict` (17.6, 16.10, 15.14,
/// 14.19, 13.22 and later).
pub fn psql_supports_restrict(version_output: &str) -> bool {
    let Some(version) = version_output
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
    else {
        return false;
    };
    let mut numbers = version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (Some(major), minor) = (numbers.next(), numbers.next().unwrap_or(0)) else {
        return false;
    };
    match major {
        18.. => true,
        17 => minor >= 6,
        16 => minor >= 10,
        15 => minor >= 14,
        14 => minor >= 19,
        13 => minor >= 22,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\\restrict abcDEF\n\
        SET client_encoding = 'UTF8';\n\
        CREATE TABLE public.t (a text);\n\
        ALTER TABLE public.t OWNER TO app_owner;\n\
        GRANT SELECT ON TABLE public.t TO \"Read Only\";\n\
        COPY public.t (a) FROM stdin;\n\
        \\! not a command: data\n\
        \\.\n\
        \\! id > /tmp/pwned\n\
        \\connect other\n\
        \\unrestrict abcDEF\n";

    fn write_dump(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn roles_are_found_outside_copy_data() {
        let dump = write_dump(DUMP);
        assert_eq!(roles(dump.path(), false).unwrap(), ["Read Only", "app_owner"]);
    }

    #[test]
    fn the_dump_is_fed_restricted_and_its_meta_commands_reported() {
        let dump = write_dump(DUMP);
        let mut fed = Vec::new();
        let report = feed(dump.path(), false, Some("OURKEY"), &mut fed).unwrap();
        let fed = String::from_utf8(fed).unwrap();
        assert!(fed.starts_with("\\restrict OURKEY\n"), "{fed}");
        assert!(
            !fed.contains("abcDEF"),
            "the dump's own restrict lines are dropped: {fed}"
        );
        assert!(fed.contains("\\! not a command: data\n"), "COPY data is untouched");
        assert!(
            fed.contains("\\! id > /tmp/pwned"),
            "psql refuses it in restricted mode"
        );
        assert_eq!(report.meta_command_count, 1);
        assert_eq!(report.meta_commands, ["\\! id > /tmp/pwned"]);
        assert_eq!(report.other_meta_commands, ["\\connect other"]);

        let mut unrestricted = Vec::new();
        feed(dump.path(), false, None, &mut unrestricted).unwrap();
        let unrestricted = String::from_utf8(unrestricted).unwrap();
        assert!(
            !unrestricted.contains("pwned"),
            "without \\restrict no meta-command is fed"
        );
        assert!(unrestricted.contains("\\! not a command: data\n"));
    }

    #[test]
    fn gzipped_dumps_are_read() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let mut encoder = flate2::write::GzEncoder::new(&mut file, flate2::Compression::fast());
        encoder.write_all(DUMP.as_bytes()).unwrap();
        encoder.finish().unwrap();
        assert_eq!(roles(file.path(), true).unwrap().len(), 2);
    }

    #[test]
    fn restrict_support_follows_the_minor_releases() {
        assert!(psql_supports_restrict(
            "psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        ));
        assert!(psql_supports_restrict("psql (PostgreSQL) 17.6"));
        assert!(psql_supports_restrict("psql (PostgreSQL) 18.1"));
        assert!(!psql_supports_restrict("psql (PostgreSQL) 15.13"));
        assert!(!psql_supports_restrict("psql (PostgreSQL) 12.22"));
        assert!(!psql_supports_restrict("garbage"));
    }
}
