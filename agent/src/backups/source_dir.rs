//! What every directory-based source shares: listing its entries, bounded reads, sizes,
//! checksums and the `detail` object of a recovery point.
//!
//! All functions here block; callers run them inside `spawn_blocking`.

use std::fs::Metadata;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::timestamps::from_system_time;
use super::{BackupError, DiscoverOptions};

/// One top-level entry of a source directory.
#[derive(Debug)]
pub(super) struct Entry {
    /// The entry's file name (lossy UTF-8): the recovery point's id.
    pub name: String,
    pub path: PathBuf,
    /// Metadata of the entry, symlinks followed.
    pub metadata: Metadata,
}

impl Entry {
    /// Returns the entry's modification time.
    pub fn mtime(&self) -> DateTime<Utc> {
        mtime(&self.metadata)
    }

    /// Returns whether the lowercased name ends with one of `suffixes`.
    pub fn name_ends_with(&self, suffixes: &[&str]) -> bool {
        let lower = self.name.to_ascii_lowercase();
        suffixes.iter().any(|suffix| lower.ends_with(suffix))
    }
}

/// Returns a file's modification time (the epoch if the platform has none).
pub(super) fn mtime(metadata: &Metadata) -> DateTime<Utc> {
    from_system_time(metadata.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH))
}

/// Lists the entries of a source directory, skipping hidden entries, broken symlinks and
/// symlinks to other entries of the same directory (aliases like `latest.dump`).
pub(super) fn list(source: &Path) -> Result<Vec<Entry>, BackupError> {
    let unreadable = |source_err: io::Error| BackupError::SourceUnreadable {
        path: source.to_path_buf(),
        source: source_err,
    };
    let metadata = std::fs::metadata(source).map_err(unreadable)?;
    if !metadata.is_dir() {
        return Err(unreadable(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    let canonical_source = std::fs::canonicalize(source).map_err(unreadable)?;
    let mut entries = Vec::new();
    for dir_entry in std::fs::read_dir(source).map_err(unreadable)? {
        let dir_entry = dir_entry.map_err(unreadable)?;
        let name = dir_entry.file_name().to_string_lossy().into_owned();
        let path = dir_entry.path();
        if name.starts_with('.') {
            tracing::debug!(path = %path.display(), "skipping hidden entry of a backup source");
            continue;
        }
        let is_symlink = dir_entry.file_type().is_ok_and(|kind| kind.is_symlink());
        if is_symlink {
            match std::fs::canonicalize(&path) {
                Ok(target) if target.parent() == Some(canonical_source.as_path()) => {
                    tracing::debug!(path = %path.display(), "skipping a symlink to another entry of the same source");
                    continue;
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::debug!(path = %path.display(), %err, "skipping a broken symlink in a backup source");
                    continue;
                }
            }
        }
        match std::fs::metadata(&path) {
            Ok(metadata) => entries.push(Entry { name, path, metadata }),
            Err(err) => tracing::debug!(path = %path.display(), %err, "skipping an entry that cannot be examined"),
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Reads at most `max` bytes from the start of a file.
pub(super) fn read_prefix(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads a small text file whole, refusing one larger than `max` bytes.
pub(super) fn read_small_text(path: &Path, max: u64) -> io::Result<String> {
    let bytes = read_prefix(path, max + 1)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Returns `blake3:<hex>` of a file's content.
pub(super) fn blake3_file(path: &Path) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(format!("blake3:{}", hasher.finalize().to_hex()))
}

/// Checksums a single-file backup when `options` ask for it; a file that cannot be read to its
/// end cannot be restored, which `detail` records.
pub(super) fn checksum(path: &Path, options: DiscoverOptions, detail: &mut Detail) -> Option<String> {
    if !options.checksums {
        return None;
    }
    match blake3_file(path) {
        Ok(sum) => Some(sum),
        Err(err) => {
            detail.error(format!("cannot read the whole file: {err}"));
            None
        }
    }
}

/// Sizes of a directory tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct DirStats {
    /// Sum of the sizes of the regular files.
    pub bytes: u64,
    pub files: u64,
    /// Entries that could not be examined (permissions, races).
    pub unreadable: u64,
}

/// Walks a directory tree without following symlinks.
pub(super) fn dir_stats(root: &Path) -> DirStats {
    let mut stats = DirStats::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            stats.unreadable += 1;
            continue;
        };
        for entry in entries {
            let Ok(entry) = entry else {
                stats.unreadable += 1;
                continue;
            };
            match entry.metadata() {
                Ok(metadata) if metadata.is_dir() => pending.push(entry.path()),
                Ok(metadata) if metadata.is_file() => {
                    stats.bytes = stats.bytes.saturating_add(metadata.len());
                    stats.files += 1;
                }
                Ok(_) => {}
                Err(_) => stats.unreadable += 1,
            }
        }
    }
    stats
}

/// The `detail` object of a recovery point under construction.
#[derive(Debug, Default)]
pub(super) struct Detail(Map<String, Value>);

impl Detail {
    /// Sets `key` (a later value replaces an earlier one).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.0.insert(key.to_owned(), value.into());
    }

    /// Sets `key` when there is a value.
    pub fn set_some(&mut self, key: &str, value: Option<impl Into<Value>>) {
        if let Some(value) = value {
            self.set(key, value);
        }
    }

    /// Records why the backup's metadata is unreadable; several reasons are joined.
    pub fn error(&mut self, reason: impl Into<String>) {
        let reason = reason.into();
        let joined = match self.0.get("metadata_error").and_then(Value::as_str) {
            Some(earlier) => format!("{earlier}; {reason}"),
            None => reason,
        };
        self.set("metadata_error", joined);
    }

    /// Returns whether a metadata error was recorded.
    #[cfg(test)]
    pub fn has_error(&self) -> bool {
        self.0.contains_key("metadata_error")
    }

    /// Records why `created_at` is a file mtime.
    pub fn mtime_because(&mut self, why: &str) {
        self.set(
            "timestamp_note",
            format!("{why}: the file modification time is used instead"),
        );
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_entries_without_hidden_files_or_aliases() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("b.dump"), b"b").unwrap();
        std::fs::write(root.path().join("a.dump"), b"a").unwrap();
        std::fs::write(root.path().join(".partial.dump"), b"p").unwrap();
        std::fs::create_dir(root.path().join("dir")).unwrap();
        std::os::unix::fs::symlink(root.path().join("b.dump"), root.path().join("latest.dump")).unwrap();
        std::os::unix::fs::symlink(root.path().join("gone"), root.path().join("broken.dump")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("elsewhere.dump"), b"e").unwrap();
        std::os::unix::fs::symlink(outside.path().join("elsewhere.dump"), root.path().join("linked.dump")).unwrap();

        let names: Vec<String> = list(root.path()).unwrap().into_iter().map(|entry| entry.name).collect();
        assert_eq!(names, ["a.dump", "b.dump", "dir", "linked.dump"]);
    }

    #[test]
    fn measures_trees_and_hashes_files() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("x/y")).unwrap();
        std::fs::write(root.path().join("x/y/f"), b"12345").unwrap();
        std::fs::write(root.path().join("g"), b"abc").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("x/link")).unwrap();
        let stats = dir_stats(root.path());
        assert_eq!((stats.bytes, stats.files, stats.unreadable), (8, 2, 0));
        assert_eq!(
            blake3_file(&root.path().join("g")).unwrap(),
            format!("blake3:{}", blake3::hash(b"abc").to_hex())
        );
    }

    #[test]
    fn detail_joins_errors() {
        let mut detail = Detail::default();
        assert!(!detail.has_error());
        detail.error("first");
        detail.error("second");
        assert_eq!(detail.into_value()["metadata_error"], "first; second");
    }
}
