//! `pg_dump_dir` sources: a directory of pg_dump outputs, each entry one recovery point.
//!
//! - custom format (`-Fc`): a file starting with `PGDMP`;
//! - directory format (`-Fd`): a directory with `toc.dat` (starting with `PGDMP`);
//! - tar format (`-Ft`): a tar whose `toc.dat` member starts with `PGDMP`;
//! - plain format (`-Fp`): SQL text, possibly gzip-compressed, with pg_dump's header comment.
//!
//! The archive formats are dated by their header's creation time and checked with the real
//! `pg_restore --list` (the highest installed version), which also gives the server version; a
//! failure of `pg_restore` becomes the point's `metadata_error`, the header's facts are kept.
//! Plain dumps carry a time only when made with `--verbose` (`-- Started on …`); otherwise the
//! file mtime is used, and the point says so.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::pg_archive::{self, ArchiveHeader, FORMAT_CUSTOM, FORMAT_DIRECTORY, FORMAT_TAR, HeaderError};
use super::source_dir::{self, Detail, Entry};
use super::tar::{self, TarReader};
use super::timestamps::{PgTime, assume_local, parse_pg_time, postgres_major};
use super::tools::{self, PG_RESTORE};
use super::{BackupError, BackupFormat, DiscoverOptions, RecoveryPoint, TimestampSource, run_blocking};

/// Bytes read from the start of a file (or of its decompressed content) to recognise it.
const SNIFF_BYTES: u64 = 8 * 1024;
/// `pg_restore --list` reads only the table of contents: this is generous.
const PG_RESTORE_TIMEOUT: Duration = Duration::from_secs(120);
/// Tar members looked at for `toc.dat` (pg_dump writes it first).
const TAR_MEMBERS_SCANNED: usize = 8;
/// Lines of a plain dump searched for its header comments.
const PLAIN_HEADER_LINES: usize = 200;

/// Names that say "this is a custom-format dump" when the content does not.
const CUSTOM_SUFFIXES: &[&str] = &[
    ".dump", ".pgdump", ".pg_dump", ".backup", ".custom", ".dmp", ".pgdmp", ".bak",
];

/// Finds the recovery points of a `pg_dump_dir` source.
pub(super) async fn discover(
    source: &Path,
    options: DiscoverOptions,
    jail: &crate::jail::Jail,
) -> Result<Vec<RecoveryPoint>, BackupError> {
    let source_owned = source.to_path_buf();
    let candidates = run_blocking(source, move || {
        let entries = source_dir::list(&source_owned)?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| inspect(entry, options))
            .collect::<Vec<_>>())
    })
    .await?;
    let pg_restore = if candidates.iter().any(|candidate| candidate.needs_pg_restore) {
        Some(tools::find_postgres_program(PG_RESTORE)?)
    } else {
        None
    };
    let mut points = Vec::with_capacity(candidates.len());
    for mut candidate in candidates {
        if let (true, Some(program)) = (candidate.needs_pg_restore, &pg_restore) {
            candidate.listing = Some(list_archive(program, &candidate.path, source, jail).await?);
        }
        points.push(candidate.into_point());
    }
    Ok(points)
}

/// An entry recognised as a dump, before `pg_restore` was asked about it.
#[derive(Debug)]
struct Candidate {
    id: String,
    path: PathBuf,
    format: BackupFormat,
    size_bytes: u64,
    checksum: Option<String>,
    mtime: DateTime<Utc>,
    archive: Option<ArchiveHeader>,
    plain: Option<PlainHeader>,
    needs_pg_restore: bool,
    /// What `pg_restore --list` said: `Ok` listing or `Err` complaint.
    listing: Option<Result<Listing, String>>,
    /// Why `created_at` falls back to the mtime, when it does.
    mtime_reason: &'static str,
    detail: Detail,
}

impl Candidate {
    fn new(entry: &Entry, format: BackupFormat) -> Self {
        Self {
            id: entry.name.clone(),
            path: entry.path.clone(),
            format,
            size_bytes: entry.metadata.len(),
            checksum: None,
            mtime: entry.mtime(),
            archive: None,
            plain: None,
            needs_pg_restore: false,
            listing: None,
            mtime_reason: "the backup's metadata is unreadable",
            detail: Detail::default(),
        }
    }

    /// Records the archive header, or why it is unreadable; a readable archive is then listed
    /// with `pg_restore`.
    ///
    /// pg_dump writes the tar code into a directory dump's `toc.dat` (the layouts share it), so
    /// a directory accepts both codes.
    fn with_header(mut self, header: Result<ArchiveHeader, HeaderError>, expected_format: u8) -> Self {
        match header {
            Ok(header) => {
                let accepted = header.format == expected_format
                    || (expected_format == FORMAT_DIRECTORY && header.format == FORMAT_TAR);
                if !accepted {
                    self.detail.error(format!(
                        "the archive header says format {}, the layout is {}",
                        header.format_name(),
                        format_name(expected_format)
                    ));
                }
                self.archive = Some(header);
                self.needs_pg_restore = true;
            }
            Err(HeaderError::NoMagic) => self.detail.error(HeaderError::NoMagic.to_string()),
            Err(err) => {
                self.detail.error(err.to_string());
                // pg_restore may say more precisely what is wrong.
                self.needs_pg_restore = true;
            }
        }
        self
    }

    fn into_point(self) -> RecoveryPoint {
        let mut detail = self.detail;
        let mut server_version = None;
        match self.listing {
            Some(Ok(listing)) => {
                server_version = listing.server_version.clone();
                detail.set("pg_restore_list", listing.to_json());
            }
            Some(Err(complaint)) => detail.error(format!("pg_restore --list failed: {complaint}")),
            None => {}
        }
        let mut created = None;
        if let Some(header) = &self.archive {
            let format_name = if self.format == BackupFormat::PgDirectory {
                "directory"
            } else {
                header.format_name()
            };
            detail.set(
                "archive",
                json!({
                    "version": header.version_text(),
                    "format": format_name,
                    "compression": header.compression,
                    "database": header.database,
                    "server_version": header.server_version,
                    "pg_dump_version": header.pg_dump_version,
                }),
            );
            server_version = server_version.or_else(|| header.server_version.clone());
            if let Some((wall_clock, is_dst)) = header.created {
                detail.set("archive_created_local", wall_clock.to_string());
                created = Some((assume_local(wall_clock, is_dst), TimestampSource::ArchiveHeader));
            } else {
                detail.mtime_because("archives older than format 1.4 have no creation time");
            }
        }
        if let Some(plain) = &self.plain {
            detail.set(
                "plain",
                json!({
                    "cluster_dump": plain.cluster_dump,
                    "server_version": plain.server_version,
                    "pg_dump_version": plain.pg_dump_version,
                    "started_on": plain.started_on,
                }),
            );
            server_version = server_version.or_else(|| plain.server_version.clone());
            match plain.started_on.as_deref().map(parse_pg_time) {
                Some(Some(PgTime::Exact(at))) => created = Some((at, TimestampSource::PlainDumpHeader)),
                Some(Some(PgTime::Zoned { wall_clock, zone })) => {
                    detail.set(
                        "timestamp_note",
                        format!("the time zone {zone:?} of \"Started on\" was read as the agent's local time zone"),
                    );
                    created = Some((assume_local(wall_clock, None), TimestampSource::PlainDumpHeader));
                }
                Some(None) => detail.error(format!(
                    "unreadable \"Started on\" time {:?}",
                    plain.started_on.as_deref().unwrap_or_default()
                )),
                None => {}
            }
        }
        let (created_at, timestamp_source) = created.unwrap_or_else(|| {
            detail.mtime_because(self.mtime_reason);
            (self.mtime, TimestampSource::FileMtime)
        });
        detail.set_some("server_version", server_version.clone());
        RecoveryPoint {
            id: self.id,
            path: self.path,
            format: self.format,
            created_at,
            timestamp_source,
            size_bytes: self.size_bytes,
            checksum: self.checksum,
            server_major: server_version.as_deref().and_then(postgres_major),
            detail: detail.into_value(),
        }
    }
}

fn format_name(code: u8) -> &'static str {
    match code {
        FORMAT_CUSTOM => "custom",
        FORMAT_TAR => "tar",
        FORMAT_DIRECTORY => "directory",
        _ => "unknown",
    }
}

/// Recognises one entry; `None` for entries that are not dumps.
fn inspect(entry: Entry, options: DiscoverOptions) -> Option<Candidate> {
    if entry.metadata.is_dir() {
        inspect_directory(&entry)
    } else if entry.metadata.is_file() {
        let mut candidate = inspect_file(&entry)?;
        candidate.checksum = source_dir::checksum(&entry.path, options, &mut candidate.detail);
        Some(candidate)
    } else {
        tracing::debug!(path = %entry.path.display(), "skipping a special file in a pg_dump_dir source");
        None
    }
}

fn inspect_directory(entry: &Entry) -> Option<Candidate> {
    let toc = entry.path.join("toc.dat");
    let stats = source_dir::dir_stats(&entry.path);
    let mut candidate = if toc.is_file() {
        let candidate = Candidate::new(entry, BackupFormat::PgDirectory);
        match source_dir::read_prefix(&toc, SNIFF_BYTES) {
            Ok(prefix) => candidate.with_header(pg_archive::parse(&prefix), FORMAT_DIRECTORY),
            Err(err) => {
                let mut candidate = candidate;
                candidate.detail.error(format!("cannot read toc.dat: {err}"));
                candidate
            }
        }
    } else if has_dump_data_files(&entry.path) {
        let mut candidate = Candidate::new(entry, BackupFormat::PgDirectory);
        candidate
            .detail
            .error("toc.dat is missing: the directory holds dump data files but no table of contents");
        candidate
    } else {
        tracing::debug!(path = %entry.path.display(), "skipping a directory that is not a directory-format dump");
        return None;
    };
    candidate.size_bytes = stats.bytes;
    candidate.detail.set("files", stats.files);
    if stats.unreadable > 0 {
        candidate.detail.error(format!(
            "{} entries of the dump directory cannot be read",
            stats.unreadable
        ));
    }
    Some(candidate)
}

/// Returns whether a directory holds pg_dump data files (`1234.dat`, `1234.dat.gz`, `blobs.toc`).
fn has_dump_data_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = name.split('.').next().unwrap_or_default();
        name == "blobs.toc" || (!stem.is_empty() && stem.chars().all(|c| c.is_ascii_digit()) && name.contains(".dat"))
    })
}

fn inspect_file(entry: &Entry) -> Option<Candidate> {
    let named_custom = entry.name_ends_with(CUSTOM_SUFFIXES);
    let named_tar = entry.name_ends_with(&[".tar"]);
    let named_plain = entry.name_ends_with(&[".sql"]);
    let named_plain_gzip = entry.name_ends_with(&[".sql.gz"]);
    let by_name = || {
        if named_plain_gzip {
            Some(BackupFormat::PgPlain { gzip: true })
        } else if named_plain {
            Some(BackupFormat::PgPlain { gzip: false })
        } else if named_tar {
            Some(BackupFormat::PgTar)
        } else if named_custom {
            Some(BackupFormat::PgCustom)
        } else {
            None
        }
    };
    let prefix = match source_dir::read_prefix(&entry.path, SNIFF_BYTES) {
        Ok(prefix) => prefix,
        Err(err) => {
            let mut candidate = Candidate::new(entry, by_name()?);
            candidate.detail.error(format!("cannot read the file: {err}"));
            return Some(candidate);
        }
    };
    if prefix.is_empty() {
        let mut candidate = Candidate::new(entry, by_name()?);
        candidate.detail.error("the file is empty");
        return Some(candidate);
    }
    if prefix.starts_with(pg_archive::MAGIC) {
        return Some(
            Candidate::new(entry, BackupFormat::PgCustom).with_header(pg_archive::parse(&prefix), FORMAT_CUSTOM),
        );
    }
    if prefix.starts_with(&[0x1f, 0x8b]) {
        return inspect_gzip(entry, by_name());
    }
    if tar::is_header(&prefix) {
        return inspect_tar(entry, named_tar);
    }
    if let Some(plain) = PlainHeader::find(&prefix) {
        let mut candidate = Candidate::new(entry, BackupFormat::PgPlain { gzip: false });
        candidate.mtime_reason = plain.mtime_reason();
        candidate.plain = Some(plain);
        return Some(candidate);
    }
    let mut candidate = Candidate::new(entry, by_name()?);
    match candidate.format {
        BackupFormat::PgPlain { .. } if !prefix.contains(&0) => {
            candidate.detail.set(
                "header_note",
                "no pg_dump header comment: the dumping server's version is unknown",
            );
            candidate.mtime_reason = "plain SQL without a pg_dump header carries no time";
        }
        BackupFormat::PgPlain { .. } => candidate.detail.error("not a text file: it cannot be SQL"),
        BackupFormat::PgTar => candidate.detail.error("not a tar archive"),
        _ => candidate.detail.error(HeaderError::NoMagic.to_string()),
    }
    Some(candidate)
}

/// A gzip file: a compressed plain dump, or something pg_restore cannot read directly.
fn inspect_gzip(entry: &Entry, by_name: Option<BackupFormat>) -> Option<Candidate> {
    let plain_gzip = BackupFormat::PgPlain { gzip: true };
    let mut content = Vec::new();
    let read = File::open(&entry.path).and_then(|file| {
        flate2::bufread::MultiGzDecoder::new(BufReader::new(file))
            .take(SNIFF_BYTES)
            .read_to_end(&mut content)
    });
    if let Err(err) = read {
        let mut candidate = Candidate::new(entry, by_name.unwrap_or(plain_gzip));
        candidate
            .detail
            .error(format!("cannot decompress the gzip file: {err}"));
        return Some(candidate);
    }
    if let Some(plain) = PlainHeader::find(&content) {
        let mut candidate = Candidate::new(entry, plain_gzip);
        candidate.mtime_reason = plain.mtime_reason();
        candidate.plain = Some(plain);
        return Some(candidate);
    }
    if content.starts_with(pg_archive::MAGIC) || tar::is_header(&content) {
        // A real dump, compressed after the fact: report it rather than hide it.
        let format = if content.starts_with(pg_archive::MAGIC) {
            BackupFormat::PgCustom
        } else {
            BackupFormat::PgTar
        };
        let mut candidate = Candidate::new(entry, format);
        if let Ok(header) = pg_archive::parse(&content) {
            candidate.archive = Some(header);
        }
        candidate
            .detail
            .error("the pg_dump archive was gzip-compressed after it was written: pg_restore cannot read it as it is");
        return Some(candidate);
    }
    let mut candidate = Candidate::new(entry, by_name?);
    if candidate.format == plain_gzip {
        candidate.detail.set(
            "header_note",
            "no pg_dump header comment: the dumping server's version is unknown",
        );
        candidate.mtime_reason = "plain SQL without a pg_dump header carries no time";
    } else {
        candidate.detail.error("gzip-compressed, but not a pg_dump output");
    }
    Some(candidate)
}

/// A tar file: a pg_dump tar-format archive when its `toc.dat` starts with `PGDMP`.
fn inspect_tar(entry: &Entry, named_tar: bool) -> Option<Candidate> {
    let candidate = Candidate::new(entry, BackupFormat::PgTar);
    match find_toc_in_tar(&entry.path) {
        Ok(Some(toc)) => Some(candidate.with_header(pg_archive::parse(&toc), FORMAT_TAR)),
        Ok(None) if named_tar => {
            let mut candidate = candidate;
            candidate
                .detail
                .error("a tar archive without toc.dat: not made by pg_dump --format=tar");
            Some(candidate)
        }
        Ok(None) => {
            tracing::debug!(path = %entry.path.display(), "skipping a tar archive that is not a pg_dump archive");
            None
        }
        Err(err) => {
            let mut candidate = candidate;
            candidate.detail.error(format!("unreadable tar archive: {err}"));
            Some(candidate)
        }
    }
}

/// Returns the first bytes of `toc.dat` in a tar archive, if it is among the first members.
fn find_toc_in_tar(path: &Path) -> Result<Option<Vec<u8>>, tar::TarError> {
    let mut reader = TarReader::new(BufReader::new(File::open(path)?));
    for _ in 0..TAR_MEMBERS_SCANNED {
        let Some(member) = reader.next_member()? else {
            return Ok(None);
        };
        if member.name == "toc.dat" {
            return Ok(Some(reader.read_data(SNIFF_BYTES)?));
        }
    }
    Ok(None)
}

/// The header comments of a plain dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PlainHeader {
    /// Made by pg_dumpall (`-- PostgreSQL database cluster dump`).
    cluster_dump: bool,
    server_version: Option<String>,
    pg_dump_version: Option<String>,
    /// `-- Started on …`, present with `--verbose`.
    started_on: Option<String>,
}

impl PlainHeader {
    /// Finds pg_dump's header comments in the first lines of `bytes`; `None` if it has none.
    fn find(bytes: &[u8]) -> Option<PlainHeader> {
        if bytes.contains(&0) {
            return None;
        }
        let text = String::from_utf8_lossy(bytes);
        let mut header = PlainHeader::default();
        let mut is_dump = false;
        for line in text.lines().take(PLAIN_HEADER_LINES) {
            let line = line.trim_end();
            if line == "-- PostgreSQL database dump" {
                is_dump = true;
            } else if line == "-- PostgreSQL database cluster dump" {
                is_dump = true;
                header.cluster_dump = true;
            } else if let Some(version) = line.strip_prefix("-- Dumped from database version ") {
                is_dump = true;
                header.server_version.get_or_insert_with(|| version.trim().to_owned());
            } else if let Some(version) = line
                .strip_prefix("-- Dumped by pg_dump version ")
                .or_else(|| line.strip_prefix("-- Dumped by pg_dumpall version "))
            {
                header.pg_dump_version.get_or_insert_with(|| version.trim().to_owned());
            } else if let Some(started) = line.strip_prefix("-- Started on ") {
                header.started_on.get_or_insert_with(|| started.trim().to_owned());
            }
        }
        is_dump.then_some(header)
    }

    fn mtime_reason(&self) -> &'static str {
        "plain dumps record their start time only when made with pg_dump --verbose"
    }
}

/// What `pg_restore --list` says about an archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Listing {
    archive_created_at: Option<String>,
    database: Option<String>,
    toc_entries: Option<u64>,
    table_data_entries: u64,
    compression: Option<String>,
    dump_version: Option<String>,
    format: Option<String>,
    server_version: Option<String>,
    pg_dump_version: Option<String>,
}

impl Listing {
    fn parse(text: &str) -> Listing {
        let mut listing = Listing::default();
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix(';') {
                let comment = comment.trim();
                let field = |prefix: &str| comment.strip_prefix(prefix).map(|value| value.trim().to_owned());
                if let Some(value) = field("Archive created at ") {
                    listing.archive_created_at = Some(value);
                } else if let Some(value) = field("dbname:") {
                    listing.database = Some(value);
                } else if let Some(value) = field("TOC Entries:") {
                    listing.toc_entries = value.parse().ok();
                } else if let Some(value) = field("Compression:") {
                    listing.compression = Some(value);
                } else if let Some(value) = field("Dump Version:") {
                    listing.dump_version = Some(value);
                } else if let Some(value) = field("Format:") {
                    listing.format = Some(value);
                } else if let Some(value) = field("Dumped from database version:") {
                    listing.server_version = Some(value);
                } else if let Some(value) = field("Dumped by pg_dump version:") {
                    listing.pg_dump_version = Some(value);
                }
            } else if line.contains(" TABLE DATA ") {
                listing.table_data_entries += 1;
            }
        }
        listing
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "archive_created_at": self.archive_created_at,
            "database": self.database,
            "toc_entries": self.toc_entries,
            "table_data_entries": self.table_data_entries,
            "compression": self.compression,
            "dump_version": self.dump_version,
            "format": self.format,
        })
    }
}

/// Runs `pg_restore --list` on an archive, in the discovery jail. A failing or hung `pg_restore`
/// is the archive's problem (`Err` complaint); a missing `pg_restore` or a jail that cannot run
/// fails the discovery.
async fn list_archive(
    program: &Path,
    archive: &Path,
    source: &Path,
    jail: &crate::jail::Jail,
) -> Result<Result<Listing, String>, BackupError> {
    let command = jail
        .clone()
        .readable(archive, source)
        .allow(&["pg_restore"])
        .command(program)
        .arg("--list")
        .arg(archive);
    match tools::run(PG_RESTORE, command, archive, PG_RESTORE_TIMEOUT).await {
        Ok(output) if output.status.success() => Ok(Ok(Listing::parse(&output.stdout))),
        Ok(output) => Ok(Err(output.complaint())),
        Err(err @ (BackupError::ToolMissing { .. } | BackupError::Jail(_))) => Err(err),
        Err(err) => Ok(Err(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::io::Write;

    use super::super::test_cluster::TestCluster;
    use super::*;

    fn by_id<'a>(points: &'a [RecoveryPoint], id: &str) -> &'a RecoveryPoint {
        points
            .iter()
            .find(|point| point.id == id)
            .unwrap_or_else(|| panic!("no point {id} in {points:#?}"))
    }

    fn assert_recent(point: &RecoveryPoint, started: DateTime<Utc>) {
        let delta = (point.created_at - started).num_seconds().abs();
        assert!(
            delta <= 60,
            "{} created_at {} is {delta} s from {started}",
            point.id,
            point.created_at
        );
    }

    #[tokio::test]
    async fn finds_every_dump_format_of_a_real_server() {
        let cluster = TestCluster::start();
        cluster.psql(
            "create table bookings (id int primary key, created_at timestamptz default now());
             insert into bookings (id) select generate_series(1, 500);",
        );
        let source = tempfile::tempdir().unwrap();
        let out = |name: &str| source.path().join(name).into_os_string();
        // Archive headers have one-second resolution: start a fresh second so "started" is not later.
        let started = Utc::now() - chrono::Duration::seconds(1);
        let dump = |format: &str, name: &str, extra: &[&str]| {
            let mut args: Vec<&OsStr> = vec![OsStr::new(format)];
            args.extend(extra.iter().map(OsStr::new));
            let target = out(name);
            args.push(OsStr::new("-f"));
            args.push(&target);
            cluster.run("pg_dump", &args);
        };
        dump("-Fc", "rentals-custom.dump", &[]);
        dump("-Fd", "rentals-directory", &[]);
        dump("-Ft", "rentals.tar", &[]);
        dump("-Fp", "rentals-plain.sql", &[]);
        dump("-Fp", "rentals-plain.sql.gz", &["-Z", "6"]);
        dump("-Fp", "rentals-verbose.sql", &["--verbose"]);

        // A dump cut short, random bytes named like a dump, an empty dump, and bystanders.
        let custom = std::fs::read(source.path().join("rentals-custom.dump")).unwrap();
        // Cut inside the table of contents, which follows the ~120-byte header.
        std::fs::write(source.path().join("truncated.dump"), &custom[..200]).unwrap();
        std::fs::write(source.path().join("header-only.dump"), &custom[..20]).unwrap();
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(source.path().join("garbage.dump"), &noise).unwrap();
        std::fs::write(source.path().join("empty.dump"), b"").unwrap();
        std::fs::write(source.path().join("README.txt"), b"nightly dumps of rentals\n").unwrap();
        std::fs::write(source.path().join("noise.bin"), &noise).unwrap();
        // An old plain dump, so the order is visible.
        std::fs::write(
            source.path().join("old.sql"),
            b"--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 14.2\n",
        )
        .unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(40 * 86_400);
        File::options()
            .write(true)
            .open(source.path().join("old.sql"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        super::super::grant_sandbox_read(source.path());

        let points = super::super::discover(&super::super::SourceSpec {
            kind: super::super::BackupKind::PgDumpDir,
            path: source.path().to_path_buf(),
            restic_password: None,
            jail: super::super::test_jail(),
        })
        .await
        .unwrap();

        let ids: Vec<&str> = points.iter().map(|point| point.id.as_str()).collect();
        assert_eq!(points.len(), 11, "{ids:?}");
        assert!(!ids.contains(&"README.txt") && !ids.contains(&"noise.bin"), "{ids:?}");
        assert_eq!(ids.last(), Some(&"old.sql"), "newest first: {ids:?}");
        for pair in points.windows(2) {
            assert!(pair[0].created_at >= pair[1].created_at, "{ids:?}");
        }

        let major = Some(cluster.major());
        for (id, format) in [
            ("rentals-custom.dump", BackupFormat::PgCustom),
            ("rentals-directory", BackupFormat::PgDirectory),
            ("rentals.tar", BackupFormat::PgTar),
        ] {
            let point = by_id(&points, id);
            assert_eq!(point.format, format, "{id}");
            assert_eq!(point.timestamp_source, TimestampSource::ArchiveHeader, "{id}");
            assert_recent(point, started);
            assert_eq!(point.server_major, major, "{id}");
            assert_eq!(point.metadata_error(), None, "{id}: {:#}", point.detail);
            assert_eq!(point.detail["pg_restore_list"]["database"], "postgres", "{id}");
            assert_eq!(point.detail["pg_restore_list"]["table_data_entries"], 1, "{id}");
            assert!(point.size_bytes > 0, "{id}");
        }
        assert!(
            by_id(&points, "rentals-custom.dump")
                .checksum
                .as_deref()
                .unwrap()
                .starts_with("blake3:")
        );
        assert_eq!(by_id(&points, "rentals-directory").checksum, None);

        let plain = by_id(&points, "rentals-plain.sql");
        assert_eq!(plain.format, BackupFormat::PgPlain { gzip: false });
        assert_eq!(plain.timestamp_source, TimestampSource::FileMtime);
        assert!(plain.detail["timestamp_note"].as_str().unwrap().contains("--verbose"));
        assert_eq!(plain.server_major, major);
        let gzip = by_id(&points, "rentals-plain.sql.gz");
        assert_eq!(gzip.format, BackupFormat::PgPlain { gzip: true });
        assert_eq!(gzip.server_major, major);
        assert_eq!(gzip.metadata_error(), None);
        let verbose = by_id(&points, "rentals-verbose.sql");
        assert_eq!(verbose.timestamp_source, TimestampSource::PlainDumpHeader);
        assert_recent(verbose, started);
        assert_eq!(by_id(&points, "old.sql").server_major, Some(14));

        let truncated = by_id(&points, "truncated.dump");
        assert_eq!(truncated.format, BackupFormat::PgCustom);
        assert_eq!(truncated.timestamp_source, TimestampSource::ArchiveHeader);
        assert!(
            truncated.metadata_error().unwrap().contains("pg_restore --list failed"),
            "{:#}",
            truncated.detail
        );
        let header_only = by_id(&points, "header-only.dump");
        assert_eq!(header_only.timestamp_source, TimestampSource::FileMtime);
        assert!(
            header_only.metadata_error().unwrap().contains("truncated"),
            "{:#}",
            header_only.detail
        );
        let garbage = by_id(&points, "garbage.dump");
        assert_eq!(garbage.format, BackupFormat::PgCustom);
        assert_eq!(garbage.timestamp_source, TimestampSource::FileMtime);
        assert!(garbage.metadata_error().unwrap().contains("PGDMP"));
        assert!(by_id(&points, "empty.dump").metadata_error().unwrap().contains("empty"));
    }

    #[tokio::test]
    async fn keeps_an_archive_from_a_newer_pg_dump_with_its_header_facts() {
        let source = tempfile::tempdir().unwrap();
        let header = pg_archive::for_test::header(16, FORMAT_CUSTOM, [2026, 11, 25, 3, 0, 0], "17.2");
        let mut file = File::create(source.path().join("from-17.dump")).unwrap();
        file.write_all(&header).unwrap();
        file.write_all(&[0u8; 256]).unwrap();
        drop(file);

        let points = discover(source.path(), DiscoverOptions::default(), &super::super::test_jail())
            .await
            .unwrap();
        let point = &points[0];
        assert_eq!(point.format, BackupFormat::PgCustom);
        assert_eq!(point.server_major, Some(17));
        assert_eq!(point.timestamp_source, TimestampSource::ArchiveHeader);
        assert_eq!(point.detail["archive_created_local"], "2026-11-25 03:00:00");
        let error = point.metadata_error().unwrap();
        assert!(error.contains("unsupported version (1.16)"), "{error}");
    }

    #[tokio::test]
    async fn reports_a_directory_dump_without_its_table_of_contents() {
        let source = tempfile::tempdir().unwrap();
        let dump = source.path().join("half-copied");
        std::fs::create_dir(&dump).unwrap();
        std::fs::write(dump.join("3338.dat.gz"), b"\x1f\x8b").unwrap();
        std::fs::create_dir(source.path().join("unrelated")).unwrap();
        let points = discover(source.path(), DiscoverOptions::default(), &super::super::test_jail())
            .await
            .unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].format, BackupFormat::PgDirectory);
        assert!(points[0].metadata_error().unwrap().contains("toc.dat is missing"));
    }

    #[test]
    fn reads_plain_dump_headers() {
        let text = b"--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n\
            -- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)\n\
            -- Dumped by pg_dump version 16.1\n\n-- Started on 2026-11-25 03:00:00 UTC\n\nSET x = 0;\n";
        let header = PlainHeader::find(text).unwrap();
        assert_eq!(header.server_version.as_deref(), Some("15.18 (Debian 15.18-0+deb12u1)"));
        assert_eq!(header.pg_dump_version.as_deref(), Some("16.1"));
        assert_eq!(header.started_on.as_deref(), Some("2026-11-25 03:00:00 UTC"));
        assert!(!header.cluster_dump);
        assert_eq!(PlainHeader::find(b"select 1;\n"), None);
        assert_eq!(PlainHeader::find(b"-- PostgreSQL database dump\0"), None);
    }
}
