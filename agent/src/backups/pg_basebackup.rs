//! `pg_basebackup_dir` sources: a directory of base backups, each a directory of its own.
//!
//! - plain (`pg_basebackup -Fp`): a copy of the data directory with `backup_label`,
//!   `PG_VERSION` and (PostgreSQL 13+) `backup_manifest`;
//! - tar (`pg_basebackup -Ft`): `base.tar` (or `.tar.gz`, `.tar.lz4`, `.tar.zst`), `pg_wal.tar`,
//!   one tar per tablespace, and `backup_manifest`. `backup_label` and `PG_VERSION` are read from
//!   inside `base.tar` (pg_basebackup writes `backup_label` first), with bounded reads.
//!
//! The time is `START TIME` of `backup_label`; when its zone is an ambiguous abbreviation, or the
//! label cannot be read, the manifest's time of `backup_label` (always GMT) is used.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::source_dir::{self, Detail, Entry};
use super::tar::{self, Skip, TarReader};
use super::timestamps::{PgTime, assume_local, parse_pg_time, postgres_major};
use super::{BackupError, BackupFormat, RecoveryPoint, TimestampSource, run_blocking};

/// `backup_label` and `PG_VERSION` are a few hundred bytes.
const SMALL_FILE_MAX: u64 = 64 * 1024;
/// Manifests list every file (about 150 bytes each); larger ones are not parsed.
const MANIFEST_MAX: u64 = 512 * 1024 * 1024;
/// Members of `base.tar` looked at for `backup_label` and `PG_VERSION`.
const TAR_MEMBERS_SCANNED: usize = 100_000;
/// Bytes of a compressed `base.tar` decompressed while looking for them.
const COMPRESSED_TAR_BYTES_SCANNED: u64 = 64 * 1024 * 1024;

/// Base tar names pg_basebackup writes, with their compression.
const BASE_TARS: &[(&str, Compression)] = &[
    ("base.tar", Compression::None),
    ("base.tar.gz", Compression::Gzip),
    ("base.tgz", Compression::Gzip),
    ("base.tar.lz4", Compression::Other("lz4")),
    ("base.tar.zst", Compression::Other("zstd")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Other(&'static str),
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Other(name) => name,
        }
    }
}

/// Finds the recovery points of a `pg_basebackup_dir` source.
pub(super) async fn discover(source: &Path) -> Result<Vec<RecoveryPoint>, BackupError> {
    let source_owned = source.to_path_buf();
    run_blocking(source, move || {
        let entries = source_dir::list(&source_owned)?;
        Ok(entries.into_iter().filter_map(inspect).collect())
    })
    .await
}

fn inspect(entry: Entry) -> Option<RecoveryPoint> {
    if !entry.metadata.is_dir() {
        tracing::debug!(path = %entry.path.display(), "skipping a file in a pg_basebackup_dir source");
        return None;
    }
    let dir = &entry.path;
    let base_tar = BASE_TARS
        .iter()
        .map(|(name, compression)| (dir.join(name), *compression))
        .find(|(path, _)| path.is_file());
    let has_label = dir.join("backup_label").is_file();
    let looks_like_data_dir = dir.join("PG_VERSION").is_file() || dir.join("global").is_dir();
    let has_manifest = dir.join("backup_manifest").is_file();
    let mut detail = Detail::default();
    let (format, facts) = match base_tar {
        Some((path, compression)) if !has_label => (
            BackupFormat::PgBaseBackupTar,
            tar_facts(&path, compression, &mut detail),
        ),
        _ if has_label || looks_like_data_dir => (BackupFormat::PgBaseBackupPlain, plain_facts(dir, &mut detail)),
        _ if has_manifest => {
            detail.error("only backup_manifest is here: neither a data directory nor base.tar");
            (BackupFormat::PgBaseBackupPlain, LabelFacts::default())
        }
        _ => {
            tracing::debug!(path = %dir.display(), "skipping a directory that is not a base backup");
            return None;
        }
    };
    let manifest = read_manifest(dir, &mut detail);
    let stats = source_dir::dir_stats(dir);
    detail.set("files", stats.files);
    if stats.unreadable > 0 {
        detail.error(format!("{} entries of the backup cannot be read", stats.unreadable));
    }
    if let Some(label) = &facts.label {
        detail.set("backup_label", label.to_json());
    }
    let server_major = facts.pg_version.as_deref().and_then(postgres_major);
    detail.set_some("pg_version", facts.pg_version);
    let (created_at, timestamp_source) =
        created_at(facts.label.as_ref(), manifest.as_ref(), entry.mtime(), &mut detail);
    Some(RecoveryPoint {
        id: entry.name,
        path: entry.path,
        format,
        created_at,
        timestamp_source,
        size_bytes: stats.bytes,
        checksum: None,
        server_major,
        detail: detail.into_value(),
    })
}

/// What `backup_label` and `PG_VERSION` say.
#[derive(Debug, Default)]
struct LabelFacts {
    label: Option<Label>,
    pg_version: Option<String>,
}

fn plain_facts(dir: &Path, detail: &mut Detail) -> LabelFacts {
    let label = match source_dir::read_small_text(&dir.join("backup_label"), SMALL_FILE_MAX) {
        Ok(text) => Some(Label::parse(&text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            detail.error(
                "backup_label is missing: a copy of a data directory without it cannot be restored consistently",
            );
            None
        }
        Err(err) => {
            detail.error(format!("cannot read backup_label: {err}"));
            None
        }
    };
    let pg_version = match source_dir::read_small_text(&dir.join("PG_VERSION"), SMALL_FILE_MAX) {
        Ok(text) => Some(text.trim().to_owned()),
        Err(err) => {
            detail.error(format!("cannot read PG_VERSION: {err}"));
            None
        }
    };
    LabelFacts { label, pg_version }
}

fn tar_facts(base_tar: &Path, compression: Compression, detail: &mut Detail) -> LabelFacts {
    detail.set("compression", compression.name());
    if let Some(dir) = base_tar.parent() {
        detail.set("archives", tar_files(dir));
    }
    let scanned = match compression {
        Compression::None => File::open(base_tar)
            .map_err(tar::TarError::from)
            .and_then(|file| scan_base_tar(TarReader::new(BufReader::new(file)), u64::MAX)),
        Compression::Gzip => File::open(base_tar).map_err(tar::TarError::from).and_then(|file| {
            let decoder = flate2::bufread::MultiGzDecoder::new(BufReader::new(file));
            scan_base_tar(TarReader::new(decoder), COMPRESSED_TAR_BYTES_SCANNED)
        }),
        Compression::Other(name) => {
            detail.set(
                "label_note",
                format!("base.tar is {name}-compressed: backup_label and PG_VERSION inside it are not read"),
            );
            return LabelFacts::default();
        }
    };
    let name = base_tar
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    match scanned {
        Ok(scan) => {
            if scan.facts.label.is_none() {
                if scan.complete {
                    detail.error(format!("{name} has no backup_label: it is not a base backup"));
                } else {
                    detail.set(
                        "label_note",
                        format!("backup_label was not found near the start of {name}"),
                    );
                }
            }
            scan.facts
        }
        Err(err) => {
            detail.error(format!("{name} is unreadable: {err}"));
            LabelFacts::default()
        }
    }
}

/// The tar files of a tar-format base backup (`base.tar`, `pg_wal.tar`, one per tablespace).
fn tar_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tar"))
        .collect();
    names.sort();
    names
}

struct TarScan {
    facts: LabelFacts,
    /// The whole archive was read (so a missing member is really missing).
    complete: bool,
}

fn scan_base_tar<R: Skip>(mut reader: TarReader<R>, max_bytes: u64) -> Result<TarScan, tar::TarError> {
    let mut facts = LabelFacts::default();
    for _ in 0..TAR_MEMBERS_SCANNED {
        if reader.consumed() > max_bytes {
            break;
        }
        let Some(member) = reader.next_member()? else {
            return Ok(TarScan { facts, complete: true });
        };
        match member.name.as_str() {
            "backup_label" => {
                let text = String::from_utf8_lossy(&reader.read_data(SMALL_FILE_MAX)?).into_owned();
                facts.label = Some(Label::parse(&text));
            }
            "PG_VERSION" => {
                let text = String::from_utf8_lossy(&reader.read_data(SMALL_FILE_MAX)?).into_owned();
                facts.pg_version = Some(text.trim().to_owned());
            }
            _ => {}
        }
        if facts.label.is_some() && facts.pg_version.is_some() {
            break;
        }
    }
    Ok(TarScan { facts, complete: false })
}

/// `backup_label`: `KEY: value` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Label {
    fields: Vec<(String, String)>,
}

impl Label {
    fn parse(text: &str) -> Label {
        let fields = text
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                Some((key.trim().to_owned(), value.trim().to_owned()))
            })
            .collect();
        Label { fields }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    fn to_json(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .fields
            .iter()
            .map(|(key, value)| (key.to_ascii_lowercase().replace(' ', "_"), value.clone().into()))
            .collect();
        serde_json::Value::Object(map)
    }
}

/// The parts of `backup_manifest` discovery uses.
#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(rename = "PostgreSQL-Backup-Manifest-Version")]
    version: u32,
    #[serde(rename = "System-Identifier", default)]
    system_identifier: Option<u64>,
    #[serde(rename = "Files", default)]
    files: Vec<ManifestFile>,
    #[serde(rename = "WAL-Ranges", default)]
    wal_ranges: Vec<WalRange>,
    #[serde(rename = "Manifest-Checksum", default)]
    checksum: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    #[serde(rename = "Path", default)]
    path: Option<String>,
    #[serde(rename = "Size", default)]
    size: u64,
    #[serde(rename = "Last-Modified", default)]
    last_modified: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WalRange {
    #[serde(rename = "Timeline")]
    timeline: u32,
    #[serde(rename = "Start-LSN")]
    start_lsn: String,
    #[serde(rename = "End-LSN")]
    end_lsn: String,
}

impl Manifest {
    /// When `backup_label` was written, as the manifest records it (GMT).
    fn label_written_at(&self) -> Option<DateTime<Utc>> {
        let file = self
            .files
            .iter()
            .find(|file| file.path.as_deref() == Some("backup_label"))?;
        match parse_pg_time(file.last_modified.as_deref()?)? {
            PgTime::Exact(at) => Some(at),
            PgTime::Zoned { .. } => None,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let total: u64 = self.files.iter().map(|file| file.size).fold(0, u64::saturating_add);
        json!({
            "version": self.version,
            "system_identifier": self.system_identifier,
            "files": self.files.len(),
            "file_bytes": total,
            "wal_ranges": self.wal_ranges.iter().map(|range| json!({
                "timeline": range.timeline,
                "start_lsn": range.start_lsn,
                "end_lsn": range.end_lsn,
            })).collect::<Vec<_>>(),
            "has_checksum": self.checksum.is_some(),
        })
    }
}

fn read_manifest(dir: &Path, detail: &mut Detail) -> Option<Manifest> {
    let path: PathBuf = dir.join("backup_manifest");
    let size = match std::fs::metadata(&path) {
        Ok(metadata) => metadata.len(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            detail.set(
                "manifest_note",
                "no backup_manifest (made before PostgreSQL 13 or with --no-manifest): pg_verifybackup cannot check it",
            );
            return None;
        }
        Err(err) => {
            detail.error(format!("cannot read backup_manifest: {err}"));
            return None;
        }
    };
    if size > MANIFEST_MAX {
        detail.set(
            "manifest_note",
            format!("backup_manifest is {size} bytes: too large to inspect"),
        );
        return None;
    }
    let parsed = File::open(&path)
        .map_err(|err| err.to_string())
        .and_then(|file| serde_json::from_reader::<_, Manifest>(BufReader::new(file)).map_err(|err| err.to_string()));
    match parsed {
        Ok(manifest) => {
            detail.set("manifest", manifest.to_json());
            Some(manifest)
        }
        Err(err) => {
            detail.error(format!("backup_manifest is not a valid manifest: {err}"));
            None
        }
    }
}

/// Dates the backup: `START TIME` of the label, else the manifest, else the directory's mtime.
fn created_at(
    label: Option<&Label>,
    manifest: Option<&Manifest>,
    mtime: DateTime<Utc>,
    detail: &mut Detail,
) -> (DateTime<Utc>, TimestampSource) {
    let from_manifest = manifest.and_then(Manifest::label_written_at);
    if let Some(start_time) = label.and_then(|label| label.get("START TIME")) {
        match parse_pg_time(start_time) {
            Some(PgTime::Exact(at)) => return (at, TimestampSource::BackupLabel),
            Some(PgTime::Zoned { wall_clock, zone }) => {
                if let Some(at) = from_manifest {
                    detail.set(
                        "timestamp_note",
                        format!(
                            "START TIME is in the ambiguous zone {zone:?}: the manifest's time of backup_label is used"
                        ),
                    );
                    return (at, TimestampSource::BackupManifest);
                }
                detail.set(
                    "timestamp_note",
                    format!("START TIME is in the zone {zone:?}, read as the agent's local time zone"),
                );
                return (assume_local(wall_clock, None), TimestampSource::BackupLabel);
            }
            None => detail.error(format!("unreadable START TIME {start_time:?} in backup_label")),
        }
    }
    if let Some(at) = from_manifest {
        return (at, TimestampSource::BackupManifest);
    }
    detail.mtime_because("neither backup_label nor backup_manifest gives the backup's time");
    (mtime, TimestampSource::FileMtime)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::super::test_cluster::TestCluster;
    use super::*;

    #[tokio::test]
    async fn finds_plain_and_tar_base_backups_of_a_real_server() {
        let cluster = TestCluster::start();
        cluster.psql("create table bookings (id int); insert into bookings select generate_series(1, 100);");
        let source = tempfile::tempdir().unwrap();
        let started = Utc::now() - chrono::Duration::seconds(1);
        for (name, args) in [
            ("plain", &["-Fp"][..]),
            ("tar", &["-Ft"][..]),
            ("tar-gzip", &["-Ft", "-z"][..]),
        ] {
            let target = source.path().join(name).into_os_string();
            let mut all: Vec<&OsStr> = vec![OsStr::new("-D"), &target, OsStr::new("--no-sync")];
            all.extend(args.iter().map(OsStr::new));
            cluster.run("pg_basebackup", &all);
        }
        // A data directory copied without backup_label, and a base.tar that is not one.
        std::fs::create_dir_all(source.path().join("cold-copy/global")).unwrap();
        std::fs::write(source.path().join("cold-copy/PG_VERSION"), "15\n").unwrap();
        std::fs::create_dir(source.path().join("broken-tar")).unwrap();
        std::fs::write(source.path().join("broken-tar/base.tar"), vec![0x5a; 2048]).unwrap();
        std::fs::write(source.path().join("notes.txt"), "weekly base backups").unwrap();

        let points = super::super::discover(&super::super::SourceSpec {
            kind: super::super::BackupKind::PgBasebackupDir,
            path: source.path().to_path_buf(),
            restic_password: None,
            jail: super::super::test_jail(),
        })
        .await
        .unwrap();
        let ids: Vec<&str> = points.iter().map(|point| point.id.as_str()).collect();
        assert_eq!(points.len(), 5, "{ids:?}");

        let major = Some(cluster.major());
        for (id, format) in [
            ("plain", BackupFormat::PgBaseBackupPlain),
            ("tar", BackupFormat::PgBaseBackupTar),
            ("tar-gzip", BackupFormat::PgBaseBackupTar),
        ] {
            let point = points.iter().find(|point| point.id == id).unwrap();
            assert_eq!(point.format, format, "{id}");
            assert_eq!(point.timestamp_source, TimestampSource::BackupLabel, "{id}");
            let delta = (point.created_at - started).num_seconds().abs();
            assert!(delta <= 60, "{id}: {} vs {started}", point.created_at);
            assert_eq!(point.server_major, major, "{id}: {:#}", point.detail);
            assert_eq!(point.metadata_error(), None, "{id}: {:#}", point.detail);
            assert_eq!(point.detail["manifest"]["version"], 1, "{id}");
            assert_eq!(point.detail["backup_label"]["backup_method"], "streamed", "{id}");
            assert!(point.size_bytes > 1_000_000, "{id}: {}", point.size_bytes);
            assert_eq!(point.checksum, None);
        }
        let tar_gzip = points.iter().find(|point| point.id == "tar-gzip").unwrap();
        assert_eq!(tar_gzip.detail["compression"], "gzip");
        assert_eq!(tar_gzip.detail["archives"], json!(["base.tar.gz", "pg_wal.tar.gz"]));

        let cold = points.iter().find(|point| point.id == "cold-copy").unwrap();
        assert_eq!(cold.format, BackupFormat::PgBaseBackupPlain);
        assert_eq!(cold.timestamp_source, TimestampSource::FileMtime);
        assert!(cold.metadata_error().unwrap().contains("backup_label is missing"));
        assert_eq!(cold.server_major, Some(15));
        let broken = points.iter().find(|point| point.id == "broken-tar").unwrap();
        assert_eq!(broken.format, BackupFormat::PgBaseBackupTar);
        assert!(
            broken.metadata_error().unwrap().contains("base.tar is unreadable"),
            "{:#}",
            broken.detail
        );
    }

    #[test]
    fn an_ambiguous_zone_defers_to_the_manifest() {
        let label = Label::parse("START WAL LOCATION: 0/2000028\nSTART TIME: 2026-11-25 04:00:00 CET\n");
        let manifest: Manifest = serde_json::from_str(
            r#"{"PostgreSQL-Backup-Manifest-Version": 2, "System-Identifier": 7441,
                "Files": [{"Path": "backup_label", "Size": 200, "Last-Modified": "2026-11-25 03:00:01 GMT"}],
                "WAL-Ranges": [], "Manifest-Checksum": "ab"}"#,
        )
        .unwrap();
        let mut detail = Detail::default();
        let (at, source) = created_at(Some(&label), Some(&manifest), Utc::now(), &mut detail);
        assert_eq!(source, TimestampSource::BackupManifest);
        assert_eq!(at.to_rfc3339(), "2026-11-25T03:00:01+00:00");
        assert_eq!(manifest.to_json()["system_identifier"], 7441);

        let label = Label::parse("START TIME: 2026-11-25 03:00:00 +01\n");
        let (at, source) = created_at(Some(&label), None, Utc::now(), &mut detail);
        assert_eq!(
            (at.to_rfc3339().as_str(), source),
            ("2026-11-25T02:00:00+00:00", TimestampSource::BackupLabel)
        );
    }
}
