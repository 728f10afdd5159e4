//! `sqlite_dir` sources: a directory of SQLite database copies, each file one recovery point.
//!
//! A file is a SQLite database when it starts with `SQLite format 3\0`. SQLite files carry no
//! creation time, so points are dated by file mtime (and say so). The 100-byte header gives the
//! page size and page count, which catch a copy cut short without opening the database.

use std::path::Path;

use super::source_dir::{self, Detail, Entry};
use super::{BackupError, BackupFormat, DiscoverOptions, RecoveryPoint, TimestampSource, run_blocking};

/// The first 16 bytes of every SQLite 3 database.
const MAGIC: &[u8] = b"SQLite format 3\0";
/// The database header's size.
const HEADER_BYTES: usize = 100;
/// Names that say "this is a SQLite database" when the content does not.
const SQLITE_SUFFIXES: &[&str] = &[".sqlite", ".sqlite3", ".db", ".db3", ".sdb", ".s3db"];

/// Finds the recovery points of a `sqlite_dir` source.
pub(super) async fn discover(source: &Path, options: DiscoverOptions) -> Result<Vec<RecoveryPoint>, BackupError> {
    let source_owned = source.to_path_buf();
    run_blocking(source, move || {
        let entries = source_dir::list(&source_owned)?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| inspect(entry, &source_owned, options))
            .collect())
    })
    .await
}

fn inspect(entry: Entry, source: &Path, options: DiscoverOptions) -> Option<RecoveryPoint> {
    if !entry.metadata.is_file() {
        tracing::debug!(path = %entry.path.display(), "skipping a non-file in a sqlite_dir source");
        return None;
    }
    let named_sqlite = entry.name_ends_with(SQLITE_SUFFIXES);
    let mut detail = Detail::default();
    match source_dir::read_prefix(&entry.path, HEADER_BYTES as u64) {
        Ok(header) if header.starts_with(MAGIC) => {
            describe_header(&header, entry.metadata.len(), &mut detail);
        }
        Ok(_) if !named_sqlite => {
            tracing::debug!(path = %entry.path.display(), "skipping a file that is not a SQLite database");
            return None;
        }
        Ok(header) if header.is_empty() => detail.error("the file is empty"),
        Ok(_) => detail.error("not a SQLite database: the \"SQLite format 3\" header is missing"),
        Err(_) if !named_sqlite => return None,
        Err(err) => detail.error(format!("cannot read the file: {err}")),
    }
    let wal = source.join(format!("{}-wal", entry.name));
    if std::fs::metadata(&wal).is_ok_and(|wal| wal.len() > 0) {
        detail.set(
            "wal_note",
            "a non-empty -wal file sits beside this copy: transactions in it are not part of the copy",
        );
    }
    detail.mtime_because("SQLite files carry no creation time");
    let checksum = source_dir::checksum(&entry.path, options, &mut detail);
    Some(RecoveryPoint {
        created_at: entry.mtime(),
        size_bytes: entry.metadata.len(),
        id: entry.name,
        path: entry.path,
        format: BackupFormat::SqliteFile,
        timestamp_source: TimestampSource::FileMtime,
        checksum,
        server_major: None,
        detail: detail.into_value(),
    })
}

/// Records the header's facts, and a truncation when the file is shorter than the header says.
fn describe_header(header: &[u8], file_len: u64, detail: &mut Detail) {
    if header.len() < HEADER_BYTES {
        detail.error(format!(
            "the file is truncated: {} bytes, shorter than the SQLite header",
            header.len()
        ));
        return;
    }
    let be32 = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let page_size: u64 = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        size => u64::from(size),
    };
    let change_counter = be32(24);
    let page_count = be32(28);
    let version_valid_for = be32(92);
    let sqlite_version = be32(96);
    let journal_mode = match (header[18], header[19]) {
        (1, 1) => "rollback",
        (2, 2) => "wal",
        _ => "unknown",
    };
    detail.set("page_size", page_size);
    detail.set("journal_mode", journal_mode);
    detail.set(
        "sqlite_version",
        format!(
            "{}.{}.{}",
            sqlite_version / 1_000_000,
            sqlite_version / 1_000 % 1_000,
            sqlite_version % 1_000
        ),
    );
    if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
        detail.error(format!("the header's page size {page_size} is invalid"));
        return;
    }
    // The page count is trustworthy only when written by SQLite 3.7.0+ in the same transaction.
    if page_count > 0 && version_valid_for == change_counter {
        detail.set("page_count", page_count);
        let expected = u64::from(page_count) * page_size;
        if file_len < expected {
            detail.error(format!(
                "the file is truncated: the header says {page_count} pages of {page_size} bytes ({expected} bytes), \
                 the file has {file_len}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SQLite header as SQLite 3.40.1 writes it, for `page_count` pages of 4096 bytes.
    fn header(page_count: u32) -> Vec<u8> {
        let mut header = vec![0u8; HEADER_BYTES];
        header[..16].copy_from_slice(MAGIC);
        header[16..18].copy_from_slice(&4096u16.to_be_bytes());
        header[18] = 1;
        header[19] = 1;
        header[21] = 64;
        header[22] = 32;
        header[23] = 32;
        header[24..28].copy_from_slice(&3u32.to_be_bytes());
        header[28..32].copy_from_slice(&page_count.to_be_bytes());
        header[92..96].copy_from_slice(&3u32.to_be_bytes());
        header[96..100].copy_from_slice(&3_040_001u32.to_be_bytes());
        header
    }

    fn database(page_count: u32, len: usize) -> Vec<u8> {
        let mut bytes = header(page_count);
        bytes.resize(len, 0);
        bytes
    }

    #[tokio::test]
    async fn finds_databases_by_their_magic_and_flags_damaged_ones() {
        let source = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| std::fs::write(source.path().join(name), bytes).unwrap();
        write("app-2026-11-25.sqlite3", &database(2, 8192));
        write("no-extension-copy", &database(1, 4096));
        write("cut-short.db", &database(10, 4096 * 3));
        write("not-sqlite.db", b"this is a text file, not a database");
        write("empty.sqlite", b"");
        write("notes.txt", b"the app's database is copied nightly");
        write("app-2026-11-25.sqlite3-wal", b"wal frames");

        let spec = super::super::SourceSpec {
            kind: super::super::BackupKind::SqliteDir,
            path: source.path().to_path_buf(),
            restic_password: None,
            jail: super::super::test_jail(),
        };
        let points = super::super::discover(&spec).await.unwrap();
        let mut ids: Vec<&str> = points.iter().map(|point| point.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [
                "app-2026-11-25.sqlite3",
                "cut-short.db",
                "empty.sqlite",
                "no-extension-copy",
                "not-sqlite.db"
            ]
        );
        let get = |id: &str| points.iter().find(|point| point.id == id).unwrap();

        let good = get("app-2026-11-25.sqlite3");
        assert_eq!(good.format, BackupFormat::SqliteFile);
        assert_eq!(good.timestamp_source, TimestampSource::FileMtime);
        assert!(
            good.detail["timestamp_note"]
                .as_str()
                .unwrap()
                .contains("no creation time")
        );
        assert_eq!(good.metadata_error(), None);
        assert_eq!(good.size_bytes, 8192);
        assert_eq!(good.detail["sqlite_version"], "3.40.1");
        assert_eq!(good.detail["page_count"], 2);
        assert!(good.detail["wal_note"].is_string());
        let expected = format!("blake3:{}", blake3::hash(&database(2, 8192)).to_hex());
        assert_eq!(good.checksum.as_deref(), Some(expected.as_str()));

        assert_eq!(get("no-extension-copy").metadata_error(), None);
        assert!(get("cut-short.db").metadata_error().unwrap().contains("truncated"));
        assert!(
            get("not-sqlite.db")
                .metadata_error()
                .unwrap()
                .contains("header is missing")
        );
        assert!(get("empty.sqlite").metadata_error().unwrap().contains("empty"));
    }

    #[test]
    fn odd_headers_are_reported_not_panicked_on() {
        let mut detail = Detail::default();
        describe_header(&header(1)[..40], 40, &mut detail);
        assert!(detail.has_error());
        let mut bad_page = header(1);
        bad_page[16..18].copy_from_slice(&1000u16.to_be_bytes());
        let mut detail = Detail::default();
        describe_header(&bad_page, 4096, &mut detail);
        assert!(
            detail.into_value()["metadata_error"]
                .as_str()
                .unwrap()
                .contains("page size")
        );
        let mut big_pages = header(u32::MAX);
        big_pages[16..18].copy_from_slice(&1u16.to_be_bytes());
        let mut detail = Detail::default();
        describe_header(&big_pages, 10, &mut detail);
        assert!(detail.has_error());
    }
}
