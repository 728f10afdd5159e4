//! Credential discovery in files: a parallel walk of the `[scan]` paths (`docs/agent-config.md`)
//! that hands every regular text file to the [rule set](super::rules).
//!
//! What is walked, and why:
//!
//! - Nothing is filtered by ignore files: `.gitignore` is **not** honoured (a `.env` file is
//!   usually git-ignored, and it is exactly where tokens lie), hidden files are scanned, and
//!   `.git/objects` is skipped (compressed packs; `.git/config` is still scanned).
//! - Symbolic links are not followed while walking (no loops, no escaping the tree); a path given
//!   on the command line is resolved, so a symlink to a file or directory there is scanned.
//! - Only regular files are opened, and without blocking (a FIFO never hangs the scan).
//! - A file over [`ScanOptions::max_file_bytes`], or with a NUL byte in its first 8 KiB, is
//!   listed in [`ScanReport::skipped`]; an unreadable file or directory in
//!   [`ScanReport::problems`]. Neither stops the scan.
//!
//! A [`Sighting`] holds the secret and is therefore not `Serialize`; [`Sighting::public`] gives
//! what may leave the agent (fingerprint and redacted preview: secrets never leave the
//! environment).
//!
//! The scan is blocking and uses its own threads; async callers run it in `spawn_blocking`.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ignore::{WalkBuilder, WalkState};
use serde::Serialize;

use super::filters;
use super::rules::{self, RuleSet, Source};
use super::secret::{FingerprintKey, Secret};
use super::severity::{self, CredentialSeverity};

/// How much of a file is inspected for NUL bytes to call it binary.
const BINARY_PROBE_BYTES: usize = 8 * 1024;

/// Limits of a scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Files larger than this are skipped (logs and dumps; secrets sit in small files).
    pub max_file_bytes: u64,
    /// Walker threads.
    pub threads: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            max_file_bytes: 16 * 1024 * 1024,
            threads: std::thread::available_parallelism().map(usize::from).unwrap_or(2),
        }
    }
}

/// Where a credential was seen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SightingSource {
    /// A file under a scanned path.
    File { path: PathBuf, line: u32 },
    /// A variable of the agent's own environment.
    Environment { variable: String },
    /// A CLI credential store of the agent's user (`~/.aws/credentials`, kubeconfig, …).
    CredentialStore { path: PathBuf, line: u32 },
}

impl SightingSource {
    /// `file`, `environment` or `credential_store`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::File { .. } => "file",
            Self::Environment { .. } => "environment",
            Self::CredentialStore { .. } => "credential_store",
        }
    }

    fn path(&self) -> Option<&Path> {
        match self {
            Self::File { path, .. } | Self::CredentialStore { path, .. } => Some(path),
            Self::Environment { .. } => None,
        }
    }

    fn line(&self) -> Option<u32> {
        match self {
            Self::File { line, .. } | Self::CredentialStore { line, .. } => Some(*line),
            Self::Environment { .. } => None,
        }
    }
}

/// A credential found somewhere. Holds the secret: not `Serialize`, `Debug` redacts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sighting {
    /// The rule that found it (`railway_token`).
    pub rule_id: String,
    pub label: String,
    /// The rule's family, which picks the scope analyser.
    pub family: String,
    /// What it can destroy, from its rule and its value (posture and `scan` use it).
    pub severity: CredentialSeverity,
    pub secret: Secret,
    pub source: SightingSource,
}

impl Sighting {
    pub(crate) fn new(rule: &rules::Rule, secret: Secret, source: SightingSource) -> Self {
        Self {
            rule_id: rule.id.clone(),
            label: rule.label.clone(),
            family: rule.family.clone(),
            severity: severity::assess(&rule.family, rule.severity, secret.expose()),
            secret,
            source,
        }
    }

    /// The keyed fingerprint of the secret.
    pub fn fingerprint(&self, key: &FingerprintKey) -> String {
        key.fingerprint(&self.secret)
    }

    /// The preview that may be shown; a URL keeps everything but its password
    /// (see [`filters::redacted_preview`]).
    pub fn preview(&self) -> String {
        filters::redacted_preview(&self.secret)
    }

    /// What may leave the agent about this sighting.
    pub fn public(&self, key: &FingerprintKey) -> PublicSighting {
        PublicSighting {
            kind: self.rule_id.clone(),
            label: self.label.clone(),
            family: self.family.clone(),
            severity: self.severity,
            fingerprint: self.fingerprint(key),
            preview: self.preview(),
            path: self.source.path().map(Path::to_path_buf),
            line: self.source.line(),
            variable: match &self.source {
                SightingSource::Environment { variable } => Some(variable.clone()),
                _ => None,
            },
            source: self.source.kind(),
        }
    }

    fn sort_key(&self) -> (Option<&Path>, Option<&str>, Option<u32>, &str) {
        let variable = match &self.source {
            SightingSource::Environment { variable } => Some(variable.as_str()),
            _ => None,
        };
        (self.source.path(), variable, self.source.line(), self.rule_id.as_str())
    }
}

/// A sighting without its secret: safe to serialize, log and send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicSighting {
    /// The rule id (the `kind` of the `scan` output).
    pub kind: String,
    pub label: String,
    pub family: String,
    pub severity: CredentialSeverity,
    pub fingerprint: String,
    pub preview: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variable: Option<String>,
    /// `file`, `environment` or `credential_store`.
    pub source: &'static str,
}

/// Why a file was not scanned (not an error: the scan did what it should).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Larger than [`ScanOptions::max_file_bytes`].
    TooLarge,
    /// A NUL byte in its first 8 KiB.
    Binary,
    /// A FIFO, socket or device.
    NotARegularFile,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLarge => "too large",
            Self::Binary => "binary",
            Self::NotARegularFile => "not a regular file",
        })
    }
}

/// A file that was not scanned, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: SkipReason,
    /// Size in bytes, when known.
    pub bytes: Option<u64>,
}

/// A path that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Empty when the walker could not say which path.
    pub path: PathBuf,
    pub error: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.as_os_str().is_empty() {
            f.write_str(&self.error)
        } else {
            write!(f, "{}: {}", self.path.display(), self.error)
        }
    }
}

/// What a scan found and what it could not look at.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Sorted by path, line, rule; identical (path, line, rule, secret) reported once.
    pub sightings: Vec<Sighting>,
    pub skipped: Vec<Skipped>,
    pub problems: Vec<Problem>,
    pub files_scanned: u64,
    pub bytes_scanned: u64,
}

impl ScanReport {
    /// Adds everything of `other` (call [`ScanReport::finish`] afterwards to re-sort).
    pub fn merge(&mut self, other: ScanReport) {
        self.sightings.extend(other.sightings);
        self.skipped.extend(other.skipped);
        self.problems.extend(other.problems);
        self.files_scanned += other.files_scanned;
        self.bytes_scanned += other.bytes_scanned;
    }

    /// Sorts everything deterministically and drops duplicate sightings.
    pub fn finish(&mut self) {
        self.sightings.sort_by(|a, b| {
            a.sort_key()
                .cmp(&b.sort_key())
                .then_with(|| a.secret.expose().cmp(b.secret.expose()))
        });
        self.sightings.dedup();
        self.skipped.sort_by(|a, b| a.path.cmp(&b.path));
        self.problems
            .sort_by(|a, b| (&a.path, &a.error).cmp(&(&b.path, &b.error)));
    }
}

/// Scans every file under `paths` with the built-in rules. Blocking.
pub fn scan_paths(paths: &[PathBuf], options: &ScanOptions) -> ScanReport {
    scan_paths_with(rules::rules(), paths, options)
}

/// Scans every file under `paths` with `rules`. Blocking.
pub fn scan_paths_with(rules: &RuleSet, paths: &[PathBuf], options: &ScanOptions) -> ScanReport {
    let shared = Shared::default();
    let mut roots: Vec<PathBuf> = Vec::new();
    let mut buffer = Vec::new();
    for path in paths {
        // Resolve a top-level symlink: the user named it, so it is scanned; only links found
        // while walking are not followed.
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => roots.push(path.clone()),
            Ok(_) => scan_file(rules, path, options, &mut buffer, &shared, SightingOrigin::File),
            Err(err) => shared.problem(path, &err.to_string()),
        }
    }
    if !roots.is_empty() {
        walk(rules, &roots, options, &shared);
    }
    shared.into_report()
}

/// Where sightings of a scanned file are recorded as coming from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SightingOrigin {
    File,
    CredentialStore,
}

#[derive(Default)]
pub(crate) struct Shared {
    found: Mutex<ScanReport>,
    files_scanned: AtomicU64,
    bytes_scanned: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ScanReport> {
        // A panic while holding the lock cannot leave the report half-written in a way that
        // matters (every push is one call), so a poisoned lock is used as is.
        self.found.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn problem(&self, path: &Path, error: &str) {
        self.lock().problems.push(Problem {
            path: path.to_path_buf(),
            error: error.to_owned(),
        });
    }

    fn skipped(&self, path: &Path, reason: SkipReason, bytes: Option<u64>) {
        self.lock().skipped.push(Skipped {
            path: path.to_path_buf(),
            reason,
            bytes,
        });
    }

    pub(crate) fn into_report(self) -> ScanReport {
        let mut report = self
            .found
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        report.files_scanned = self.files_scanned.into_inner();
        report.bytes_scanned = self.bytes_scanned.into_inner();
        report.finish();
        report
    }
}

fn walk(rules: &RuleSet, roots: &[PathBuf], options: &ScanOptions, shared: &Shared) {
    let mut builder = WalkBuilder::new(&roots[0]);
    for root in &roots[1..] {
        builder.add(root);
    }
    builder
        .standard_filters(false)
        .hidden(false)
        .parents(false)
        .ignore(false)
        .git_ignore(false)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .follow_links(false)
        .threads(options.threads.max(1))
        .filter_entry(|entry| !is_git_objects(entry.path()));
    builder.build_parallel().run(|| {
        let mut buffer = Vec::new();
        Box::new(move |entry| {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    record_walk_error(shared, &err);
                    return WalkState::Continue;
                }
            };
            let Some(file_type) = entry.file_type() else {
                return WalkState::Continue;
            };
            if file_type.is_dir() || file_type.is_symlink() {
                return WalkState::Continue;
            }
            if !file_type.is_file() {
                shared.skipped(entry.path(), SkipReason::NotARegularFile, None);
                return WalkState::Continue;
            }
            scan_file(rules, entry.path(), options, &mut buffer, shared, SightingOrigin::File);
            WalkState::Continue
        })
    });
}

fn is_git_objects(path: &Path) -> bool {
    path.file_name().is_some_and(|name| name == "objects")
        && path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|parent| parent == ".git")
}

fn record_walk_error(shared: &Shared, err: &ignore::Error) {
    let path = walk_error_path(err).unwrap_or_default();
    shared.problem(&path, &walk_error_message(err));
}

fn walk_error_path(err: &ignore::Error) -> Option<PathBuf> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::WithLineNumber { err, .. } | ignore::Error::WithDepth { err, .. } => walk_error_path(err),
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        _ => None,
    }
}

fn walk_error_message(err: &ignore::Error) -> String {
    match err {
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithLineNumber { err, .. }
        | ignore::Error::WithDepth { err, .. } => walk_error_message(err),
        other => other.to_string(),
    }
}

/// Reads and scans one file, recording sightings, a skip or a problem in `shared`.
pub(crate) fn scan_file(
    rules: &RuleSet,
    path: &Path,
    options: &ScanOptions,
    buffer: &mut Vec<u8>,
    shared: &Shared,
    origin: SightingOrigin,
) {
    match read_text_file(path, options.max_file_bytes, buffer) {
        Ok(FileRead::Text) => {}
        Ok(FileRead::Skipped(reason, bytes)) => {
            shared.skipped(path, reason, bytes);
            return;
        }
        Err(err) => {
            shared.problem(path, &err.to_string());
            return;
        }
    }
    shared.files_scanned.fetch_add(1, Ordering::Relaxed);
    shared.bytes_scanned.fetch_add(buffer.len() as u64, Ordering::Relaxed);
    let found = rules.find_in(buffer, Source::of_path(path));
    if found.is_empty() {
        return;
    }
    let sightings = found.into_iter().map(|hit| {
        let path = path.to_path_buf();
        let source = match origin {
            SightingOrigin::File => SightingSource::File { path, line: hit.line },
            SightingOrigin::CredentialStore => SightingSource::CredentialStore { path, line: hit.line },
        };
        Sighting::new(hit.rule, hit.secret, source)
    });
    shared.lock().sightings.extend(sightings);
}

enum FileRead {
    /// `buffer` holds the whole file.
    Text,
    Skipped(SkipReason, Option<u64>),
}

/// Reads `path` into `buffer` if it is a regular text file of at most `max_bytes`.
fn read_text_file(path: &Path, max_bytes: u64, buffer: &mut Vec<u8>) -> io::Result<FileRead> {
    buffer.clear();
    let mut file = open_without_blocking(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Ok(FileRead::Skipped(SkipReason::NotARegularFile, None));
    }
    if metadata.len() > max_bytes {
        return Ok(FileRead::Skipped(SkipReason::TooLarge, Some(metadata.len())));
    }
    let mut probe = [0u8; BINARY_PROBE_BYTES];
    let mut probed = 0;
    while probed < probe.len() {
        match file.read(&mut probe[probed..]) {
            Ok(0) => break,
            Ok(read) => probed += read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    if probe[..probed].contains(&0) {
        return Ok(FileRead::Skipped(SkipReason::Binary, Some(metadata.len())));
    }
    buffer.extend_from_slice(&probe[..probed]);
    // The file may grow while it is read: never read more than the limit.
    let remaining = (max_bytes + 1).saturating_sub(probed as u64);
    file.take(remaining).read_to_end(buffer)?;
    if buffer.len() as u64 > max_bytes {
        let bytes = buffer.len() as u64;
        buffer.clear();
        return Ok(FileRead::Skipped(SkipReason::TooLarge, Some(bytes)));
    }
    Ok(FileRead::Text)
}

fn open_without_blocking(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, nix::fcntl::OFlag::O_NONBLOCK.bits());
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAILWAY_LINE: &str = "RAILWAY_TOKEN=6e8cd94e-7223-468a-a552-9b0566567bc4\n";

    fn write(path: &Path, contents: &[u8]) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(path, contents).expect("write file");
    }

    fn options() -> ScanOptions {
        ScanOptions {
            max_file_bytes: 1024 * 1024,
            threads: 2,
        }
    }

    #[test]
    fn finds_secrets_in_gitignored_and_hidden_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir.path().join(".gitignore"), b".env\nsecrets/\n");
        write(&dir.path().join(".env"), format!("# app\n{RAILWAY_LINE}").as_bytes());
        write(
            &dir.path().join("secrets/db.txt"),
            b"url=postgres://app:Tr0ub4dor-9x@db:5432/rentals\n",
        );
        write(
            &dir.path().join(".git/config"),
            b"[remote]\n url = https://ci:w9Kd2xPq7Lm@git.internal/o/r\n",
        );
        write(&dir.path().join(".git/objects/ab/cdef"), RAILWAY_LINE.as_bytes());

        let report = scan_paths(&[dir.path().to_path_buf()], &options());
        let found: Vec<(String, u32, String)> = report
            .sightings
            .iter()
            .map(|s| {
                let SightingSource::File { path, line } = &s.source else {
                    panic!("not a file source")
                };
                (
                    path.strip_prefix(dir.path()).expect("under dir").display().to_string(),
                    *line,
                    s.rule_id.clone(),
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (".env".to_owned(), 2, "railway_token".to_owned()),
                (".git/config".to_owned(), 2, "url_with_password".to_owned()),
                ("secrets/db.txt".to_owned(), 1, "postgres_url".to_owned()),
            ]
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.files_scanned, 4);
    }

    #[test]
    fn binary_and_large_files_are_skipped_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut binary = vec![0u8, 1, 2, 3];
        binary.extend_from_slice(RAILWAY_LINE.as_bytes());
        write(&dir.path().join("blob.bin"), &binary);
        write(&dir.path().join("big.log"), &vec![b'a'; 2 * 1024 * 1024]);
        let report = scan_paths(&[dir.path().to_path_buf()], &options());
        let reasons: Vec<SkipReason> = report.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(reasons, vec![SkipReason::TooLarge, SkipReason::Binary]);
        assert!(report.sightings.is_empty());
        assert_eq!(report.files_scanned, 0);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_not_followed_in_the_walk_but_are_at_the_top() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        write(&outside.path().join("token.env"), RAILWAY_LINE.as_bytes());
        std::fs::create_dir(dir.path().join("a")).expect("mkdir");
        std::os::unix::fs::symlink("..", dir.path().join("a/loop")).expect("symlink");
        std::os::unix::fs::symlink(outside.path().join("token.env"), dir.path().join("a/link.env")).expect("symlink");
        std::os::unix::fs::symlink(dir.path().join("missing"), dir.path().join("dangling")).expect("symlink");
        let report = scan_paths(&[dir.path().to_path_buf()], &options());
        assert!(report.sightings.is_empty(), "followed a link: {:?}", report.sightings);

        let report = scan_paths(&[dir.path().join("a/link.env")], &options());
        assert_eq!(report.sightings.len(), 1);
    }

    #[test]
    fn missing_paths_are_problems_not_panics() {
        let report = scan_paths(&[PathBuf::from("/nonexistent/lifeboat/path")], &options());
        assert_eq!(report.problems.len(), 1);
        assert!(report.problems[0].to_string().contains("/nonexistent/lifeboat/path"));
    }

    #[test]
    fn public_sightings_carry_no_secret() {
        let sighting = Sighting {
            rule_id: "postgres_url".into(),
            label: "PostgreSQL connection URL with password".into(),
            family: "postgres".into(),
            severity: CredentialSeverity::High,
            secret: Secret::new("postgres://app:Tr0ub4dor-9x@db:5432/rentals"),
            source: SightingSource::File {
                path: "/srv/app/.env".into(),
                line: 3,
            },
        };
        let key = FingerprintKey::random();
        let public = sighting.public(&key);
        let json = serde_json::to_string(&public).expect("serialize");
        assert!(!json.contains("Tr0ub4dor"), "{json}");
        assert_eq!(public.preview, "postgres://app:Tr…9x@db:5432/rentals");
        assert_eq!(public.fingerprint, key.fingerprint(&sighting.secret));
        assert!(json.contains("\"source\":\"file\""), "{json}");
        assert!(json.contains("\"line\":3"), "{json}");
    }

    #[test]
    fn duplicates_are_dropped_and_order_is_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["b.env", "a.env", "c/d.env"] {
            write(
                &dir.path().join(name),
                format!("{RAILWAY_LINE}{RAILWAY_LINE}").as_bytes(),
            );
        }
        let paths = vec![dir.path().to_path_buf(), dir.path().join("a.env")];
        let report = scan_paths(&paths, &options());
        let lines: Vec<(PathBuf, u32)> = report
            .sightings
            .iter()
            .map(|s| match &s.source {
                SightingSource::File { path, line } => {
                    (path.strip_prefix(dir.path()).expect("under").to_path_buf(), *line)
                }
                other => panic!("unexpected source {other:?}"),
            })
            .collect();
        let expected: Vec<(PathBuf, u32)> = ["a.env", "a.env", "b.env", "b.env", "c/d.env", "c/d.env"]
            .iter()
            .zip([1, 2, 1, 2, 1, 2])
            .map(|(name, line)| (PathBuf::from(name), line))
            .collect();
        assert_eq!(lines, expected);
    }
}
