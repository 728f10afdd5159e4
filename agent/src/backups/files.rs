//! `files_dir` sources: a directory of file backups, each entry one recovery point: a directory
//! snapshot, or a `.tar` / `.tar.gz` / `.tgz` archive.
//!
//! Checksum manifests are recorded, not verified (verification reads everything and belongs to
//! the restore): `SHA256SUMS`-style files (`<sha256>  <path>` lines, or BSD `SHA256 (path) = …`)
//! at a snapshot's root, and for an archive a sibling `<archive>.sha256` or a source-level
//! manifest that lists it. File backups carry no time of their own: points are dated by mtime
//! (of the snapshot directory, as rsnapshot-style tools touch it when done, or of the archive)
//! unless the manifest has a `# created: <RFC 3339 time>` (or `# date:`) comment line.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::source_dir::{self, Detail, Entry};
use super::tar;
use super::timestamps::{PgTime, parse_pg_time};
use super::{BackupError, BackupFormat, DiscoverOptions, RecoveryPoint, TimestampSource, run_blocking};

/// Manifests larger than this are not read.
const MANIFEST_MAX: u64 = 64 * 1024 * 1024;
/// File names taken for checksum manifests (and any `*.sha256`).
const MANIFEST_NAMES: &[&str] = &[
    "SHA256SUMS",
    "SHA256SUMS.txt",
    "sha256sums",
    "sha256sums.txt",
    "MANIFEST",
    "MANIFEST.txt",
    "manifest",
    "manifest.txt",
];

/// Finds the recovery points of a `files_dir` source.
pub(super) async fn discover(source: &Path, options: DiscoverOptions) -> Result<Vec<RecoveryPoint>, BackupError> {
    let source_owned = source.to_path_buf();
    run_blocking(source, move || {
        let entries = source_dir::list(&source_owned)?;
        let source_manifests: Vec<Manifest> = entries
            .iter()
            .filter(|entry| entry.metadata.is_file() && is_manifest_name(&entry.name))
            .filter_map(|entry| Manifest::read(&entry.path, &entry.name).ok())
            .collect();
        Ok(entries
            .into_iter()
            .filter_map(|entry| inspect(entry, &source_manifests, options))
            .collect())
    })
    .await
}

fn inspect(entry: Entry, source_manifests: &[Manifest], options: DiscoverOptions) -> Option<RecoveryPoint> {
    let mut detail = Detail::default();
    let (format, size_bytes, checksum, manifest_date) = if entry.metadata.is_dir() {
        let stats = source_dir::dir_stats(&entry.path);
        detail.set("files", stats.files);
        if stats.unreadable > 0 {
            detail.error(format!("{} entries of the snapshot cannot be read", stats.unreadable));
        }
        let date = snapshot_manifest(&entry.path, &mut detail);
        (BackupFormat::FilesDir, stats.bytes, None, date)
    } else if entry.metadata.is_file() {
        let format = archive_format(&entry, &mut detail)?;
        let date = archive_manifest(&entry, source_manifests, &mut detail);
        let checksum = source_dir::checksum(&entry.path, options, &mut detail);
        (format, entry.metadata.len(), checksum, date)
    } else {
        return None;
    };
    let (created_at, timestamp_source) = match manifest_date {
        Some(at) => (at, TimestampSource::BackupManifest),
        None => {
            detail.mtime_because("file backups carry no creation time and no manifest gives one");
            (entry.mtime(), TimestampSource::FileMtime)
        }
    };
    Some(RecoveryPoint {
        id: entry.name,
        path: entry.path,
        format,
        created_at,
        timestamp_source,
        size_bytes,
        checksum,
        server_major: None,
        detail: detail.into_value(),
    })
}

/// Recognises a tar archive by content (gzip-compressed or not), or by name with an error when
/// the content disagrees; `None` for files that are not archives.
fn archive_format(entry: &Entry, detail: &mut Detail) -> Option<BackupFormat> {
    let named_gzip = entry.name_ends_with(&[".tar.gz", ".tgz"]);
    let named_tar = entry.name_ends_with(&[".tar"]);
    let by_name = if named_gzip {
        Some(BackupFormat::FilesTar { gzip: true })
    } else if named_tar {
        Some(BackupFormat::FilesTar { gzip: false })
    } else {
        None
    };
    let prefix = match source_dir::read_prefix(&entry.path, 512) {
        Ok(prefix) => prefix,
        Err(err) => {
            detail.error(format!("cannot read the file: {err}"));
            return by_name;
        }
    };
    if prefix.starts_with(&[0x1f, 0x8b]) {
        let mut first_block = Vec::new();
        let read = File::open(&entry.path).and_then(|file| {
            flate2::bufread::MultiGzDecoder::new(BufReader::new(file))
                .take(512)
                .read_to_end(&mut first_block)
        });
        return match read {
            Ok(_) if tar::is_header(&first_block) => Some(BackupFormat::FilesTar { gzip: true }),
            Ok(_) if by_name.is_some() => {
                detail.error("gzip-compressed, but not a tar archive");
                by_name
            }
            Ok(_) => None,
            Err(err) if by_name.is_some() => {
                detail.error(format!("cannot decompress the archive: {err}"));
                by_name
            }
            Err(_) => None,
        };
    }
    if tar::is_header(&prefix) {
        if named_gzip {
            detail.set("format_note", "named like a gzip archive, but not compressed");
        }
        return Some(BackupFormat::FilesTar { gzip: false });
    }
    if by_name.is_some() {
        detail.error(if prefix.is_empty() {
            "the file is empty"
        } else {
            "not a tar archive"
        });
    }
    by_name
}

/// Records the checksum manifest at a snapshot's root, if any; returns its date.
fn snapshot_manifest(snapshot: &Path, detail: &mut Detail) -> Option<DateTime<Utc>> {
    let mut names: Vec<String> = std::fs::read_dir(snapshot)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| is_manifest_name(name))
        .collect();
    names.sort();
    let name = names.first()?;
    match Manifest::read(&snapshot.join(name), name) {
        Ok(manifest) => {
            detail.set("manifest", manifest.to_json());
            manifest.date
        }
        Err(err) => {
            detail.error(format!("the checksum manifest {name} is unreadable: {err}"));
            None
        }
    }
}

/// Records what a manifest says about an archive (a sibling `<name>.sha256`, else a source-level
/// manifest listing it); returns the manifest's date.
fn archive_manifest(entry: &Entry, source_manifests: &[Manifest], detail: &mut Detail) -> Option<DateTime<Utc>> {
    let sibling_name = format!("{}.sha256", entry.name);
    let sibling = entry.path.with_file_name(&sibling_name);
    let sibling = if sibling.is_file() {
        match Manifest::read(&sibling, &sibling_name) {
            Ok(manifest) => Some(manifest),
            Err(err) => {
                detail.error(format!("the checksum file {sibling_name} is unreadable: {err}"));
                None
            }
        }
    } else {
        None
    };
    let listed = sibling
        .iter()
        .chain(source_manifests)
        .find_map(|manifest| manifest.sha256_of(&entry.name).map(|sum| (manifest, sum)));
    let (manifest, sum) = listed?;
    detail.set("expected_sha256", sum);
    detail.set("manifest", manifest.to_json());
    manifest.date
}

fn is_manifest_name(name: &str) -> bool {
    MANIFEST_NAMES.contains(&name) || name.to_ascii_lowercase().ends_with(".sha256")
}

/// A sha256 checksum manifest.
#[derive(Debug, Clone, Default)]
struct Manifest {
    file: String,
    /// (lowercase hex sha256, path as written).
    entries: Vec<(String, String)>,
    unparsed_lines: usize,
    date: Option<DateTime<Utc>>,
}

impl Manifest {
    fn read(path: &Path, name: &str) -> std::io::Result<Manifest> {
        let text = source_dir::read_small_text(path, MANIFEST_MAX)?;
        Ok(Manifest::parse(&text, name))
    }

    fn parse(text: &str, name: &str) -> Manifest {
        let mut manifest = Manifest {
            file: name.to_owned(),
            ..Manifest::default()
        };
        let bare_target = name.strip_suffix(".sha256").unwrap_or(name);
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                if manifest.date.is_none() {
                    manifest.date = comment_date(comment);
                }
                continue;
            }
            if let Some(entry) = parse_entry(line, bare_target) {
                manifest.entries.push(entry);
            } else {
                manifest.unparsed_lines += 1;
            }
        }
        manifest
    }

    /// The expected sha256 of the file `name` (matched by its last path component).
    fn sha256_of(&self, name: &str) -> Option<String> {
        self.entries.iter().find_map(|(sum, path)| {
            let listed = path.trim_start_matches("./");
            (listed == name || listed.rsplit('/').next() == Some(name)).then(|| sum.clone())
        })
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "file": self.file,
            "algorithm": "sha256",
            "entries": self.entries.len(),
            "unparsed_lines": self.unparsed_lines,
            "date": self.date,
        })
    }
}

/// `<hex>  <path>`, `<hex> *<path>`, `SHA256 (<path>) = <hex>`, or a bare `<hex>` (the sum of
/// `bare_target`, as in `x.tar.gz.sha256`).
fn parse_entry(line: &str, bare_target: &str) -> Option<(String, String)> {
    let is_sha256 = |text: &str| text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit());
    if let Some(rest) = line.strip_prefix("SHA256 (") {
        let (path, sum) = rest.rsplit_once(") = ")?;
        return is_sha256(sum.trim()).then(|| (sum.trim().to_ascii_lowercase(), path.to_owned()));
    }
    match line.split_once(char::is_whitespace) {
        Some((sum, path)) if is_sha256(sum) => {
            let path = path.trim_start();
            let path = path.strip_prefix('*').unwrap_or(path);
            (!path.is_empty()).then(|| (sum.to_ascii_lowercase(), path.to_owned()))
        }
        None if is_sha256(line) => Some((line.to_ascii_lowercase(), bare_target.to_owned())),
        _ => None,
    }
}

/// A date in a manifest comment: `created: …`, `created_at=…`, `date: …`, `timestamp: …`,
/// `generated: …`, as RFC 3339 or `YYYY-MM-DD HH:MM:SS UTC`.
fn comment_date(comment: &str) -> Option<DateTime<Utc>> {
    let (key, value) = comment.trim().split_once([':', '='])?;
    let key = key.trim().to_ascii_lowercase();
    if !["created", "created_at", "created at", "date", "timestamp", "generated"].contains(&key.as_str()) {
        return None;
    }
    let value = value.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Some(at.with_timezone(&Utc));
    }
    match parse_pg_time(value)? {
        PgTime::Exact(at) => Some(at),
        PgTime::Zoned { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn sha256_line(path: &str) -> String {
        format!("{}  {path}\n", "ab".repeat(32))
    }

    #[tokio::test]
    async fn finds_snapshots_and_archives_with_their_manifests() {
        let source = tempfile::tempdir().unwrap();
        let root = source.path();
        // A directory snapshot with a dated manifest.
        let snapshot = root.join("uploads-2026-11-24");
        std::fs::create_dir_all(snapshot.join("img")).unwrap();
        std::fs::write(snapshot.join("img/a.png"), vec![1u8; 1000]).unwrap();
        std::fs::write(snapshot.join("index.html"), "<html>").unwrap();
        let manifest = format!(
            "# created: 2026-11-24T03:00:00Z\n{}{}",
            sha256_line("img/a.png"),
            sha256_line("index.html")
        );
        std::fs::write(snapshot.join("SHA256SUMS"), manifest).unwrap();
        // Archives made with the real tar, one listed in a source-level manifest.
        let content = tempfile::tempdir().unwrap();
        std::fs::write(content.path().join("data.csv"), "id,name\n1,x\n").unwrap();
        for (name, flags) in [("uploads-2026-11-25.tar.gz", "czf"), ("uploads-2026-11-23.tar", "cf")] {
            let status = Command::new("tar")
                .arg(flags)
                .arg(root.join(name))
                .arg("-C")
                .arg(content.path())
                .arg("data.csv")
                .status()
                .expect("run tar (Debian package tar)");
            assert!(status.success());
        }
        std::fs::write(root.join("SHA256SUMS"), sha256_line("./uploads-2026-11-25.tar.gz")).unwrap();
        // Damage, and bystanders.
        std::fs::write(root.join("broken.tgz"), b"\x1f\x8b\x08\x00garbage").unwrap();
        std::fs::write(root.join("empty.tar"), b"").unwrap();
        std::fs::write(root.join("README"), "uploads backups").unwrap();

        let spec = super::super::SourceSpec {
            kind: super::super::BackupKind::FilesDir,
            path: root.to_path_buf(),
            restic_password: None,
            jail: super::super::test_jail(),
        };
        let points = super::super::discover(&spec).await.unwrap();
        let mut ids: Vec<&str> = points.iter().map(|point| point.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [
                "broken.tgz",
                "empty.tar",
                "uploads-2026-11-23.tar",
                "uploads-2026-11-24",
                "uploads-2026-11-25.tar.gz"
            ]
        );
        let get = |id: &str| points.iter().find(|point| point.id == id).unwrap();

        let snapshot = get("uploads-2026-11-24");
        assert_eq!(snapshot.format, BackupFormat::FilesDir);
        assert_eq!(snapshot.timestamp_source, TimestampSource::BackupManifest);
        assert_eq!(snapshot.created_at.to_rfc3339(), "2026-11-24T03:00:00+00:00");
        assert_eq!(snapshot.detail["manifest"]["entries"], 2);
        assert_eq!(snapshot.detail["files"], 3);
        assert_eq!(snapshot.checksum, None);

        let gzip = get("uploads-2026-11-25.tar.gz");
        assert_eq!(gzip.format, BackupFormat::FilesTar { gzip: true });
        assert_eq!(gzip.timestamp_source, TimestampSource::FileMtime);
        assert!(gzip.detail["timestamp_note"].is_string());
        assert_eq!(gzip.detail["expected_sha256"], "ab".repeat(32));
        assert_eq!(gzip.metadata_error(), None);
        assert!(gzip.checksum.as_deref().unwrap().starts_with("blake3:"));
        let plain = get("uploads-2026-11-23.tar");
        assert_eq!(plain.format, BackupFormat::FilesTar { gzip: false });
        assert_eq!(plain.metadata_error(), None);
        assert!(plain.detail.get("expected_sha256").is_none());

        assert!(get("broken.tgz").metadata_error().unwrap().contains("decompress"));
        assert!(get("empty.tar").metadata_error().unwrap().contains("empty"));
    }

    #[test]
    fn parses_manifest_styles() {
        let sum = "0123456789abcdef".repeat(4);
        let text = format!(
            "# date = 2026-11-25 03:00:00 UTC\n{sum}  a.txt\n{sum} *b.bin\nSHA256 (c/d.txt) = {sum}\nnot a line\n"
        );
        let manifest = Manifest::parse(&text, "MANIFEST");
        assert_eq!(manifest.entries.len(), 3);
        assert_eq!(manifest.unparsed_lines, 1);
        assert_eq!(manifest.date.unwrap().to_rfc3339(), "2026-11-25T03:00:00+00:00");
        assert_eq!(manifest.sha256_of("d.txt"), Some(sum.clone()));
        assert_eq!(manifest.sha256_of("b.bin"), Some(sum.clone()));
        let bare = Manifest::parse(&format!("{sum}\n"), "x.tar.gz.sha256");
        assert_eq!(bare.sha256_of("x.tar.gz"), Some(sum));
        assert_eq!(comment_date(" created: yesterday"), None);
        assert_eq!(comment_date(" note: 2026-11-25T03:00:00Z"), None);
    }
}
