//! The header of a pg_dump archive (a custom-format file; `toc.dat` of the directory and tar
//! formats): archive version, format, compression, creation time, database name, and the server
//! and pg_dump versions.
//!
//! Read directly rather than through `pg_restore`, so that the facts survive when the installed
//! `pg_restore` is too old for the archive ("unsupported version (1.16) in file header"). The
//! layout is pg_dump's `WriteHead`: `PGDMP`, version bytes, integer and offset sizes, the format,
//! the compression (an integer before 1.15, an algorithm byte since), the creation time as
//! `struct tm` fields in the dumping machine's local time, then length-prefixed strings.

use chrono::{NaiveDate, NaiveDateTime};

/// The signature every pg_dump archive starts with.
pub(super) const MAGIC: &[u8] = b"PGDMP";

/// Format codes of the header (`ArchiveFormat` in pg_dump).
pub(super) const FORMAT_CUSTOM: u8 = 1;
pub(super) const FORMAT_TAR: u8 = 3;
pub(super) const FORMAT_DIRECTORY: u8 = 5;

/// Strings longer than this are taken for corruption (names and versions are short).
const MAX_STRING: i64 = 4_096;

/// What a pg_dump archive header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ArchiveHeader {
    /// Archive format version (major, minor, revision), e.g. (1, 14, 0) for pg_dump 12–15.
    pub version: (u8, u8, u8),
    /// [`FORMAT_CUSTOM`], [`FORMAT_TAR`] or [`FORMAT_DIRECTORY`] (older codes are accepted).
    pub format: u8,
    /// `none`, `gzip`, `gzip level 6`, `lz4`, `zstd`.
    pub compression: String,
    /// Wall-clock creation time on the dumping machine, and whether daylight-saving time was in
    /// effect (`None`: unknown). Archives before version 1.4 have none.
    pub created: Option<(NaiveDateTime, Option<bool>)>,
    pub database: Option<String>,
    pub server_version: Option<String>,
    pub pg_dump_version: Option<String>,
}

impl ArchiveHeader {
    /// Returns the version as `pg_restore --list` shows it: `1.14-0`.
    pub fn version_text(&self) -> String {
        let (major, minor, revision) = self.version;
        format!("{major}.{minor}-{revision}")
    }

    /// Returns the format's name.
    pub fn format_name(&self) -> &'static str {
        match self.format {
            FORMAT_CUSTOM => "custom",
            2 => "files",
            FORMAT_TAR => "tar",
            4 => "null",
            FORMAT_DIRECTORY => "directory",
            _ => "unknown",
        }
    }
}

/// Why an archive header cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum HeaderError {
    #[error("not a pg_dump archive: the PGDMP signature is missing")]
    NoMagic,
    #[error("the archive header is truncated")]
    Truncated,
    #[error("the archive header is corrupt: {0}")]
    Corrupt(String),
}

/// Parses the header at the start of `bytes` (a few KiB of the file are plenty).
pub(super) fn parse(bytes: &[u8]) -> Result<ArchiveHeader, HeaderError> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(HeaderError::NoMagic)?;
    let mut cursor = Cursor {
        bytes: rest,
        at: 0,
        int_size: 0,
        signed: false,
    };
    let major = cursor.byte()?;
    let minor = cursor.byte()?;
    let revision = if major > 1 || (major == 1 && minor > 0) {
        cursor.byte()?
    } else {
        0
    };
    let version = (major, minor, revision);
    if major != 1 {
        return Err(HeaderError::Corrupt(format!("unknown archive version {major}.{minor}")));
    }
    cursor.signed = version > (1, 0, 0);
    let int_size = cursor.byte()?;
    if !(1..=32).contains(&int_size) {
        return Err(HeaderError::Corrupt(format!("integer size {int_size}")));
    }
    cursor.int_size = usize::from(int_size);
    if version >= (1, 7, 0) {
        let offset_size = cursor.byte()?;
        if !(1..=32).contains(&offset_size) {
            return Err(HeaderError::Corrupt(format!("offset size {offset_size}")));
        }
    }
    let format = cursor.byte()?;
    if !(1..=5).contains(&format) {
        return Err(HeaderError::Corrupt(format!("format code {format}")));
    }
    let compression = if version >= (1, 15, 0) {
        match cursor.byte()? {
            0 => "none".to_owned(),
            1 => "gzip".to_owned(),
            2 => "lz4".to_owned(),
            3 => "zstd".to_owned(),
            other => format!("unknown ({other})"),
        }
    } else if version >= (1, 2, 0) {
        let level = if version < (1, 4, 0) {
            i64::from(cursor.byte()?)
        } else {
            cursor.int()?
        };
        match level {
            0 => "none".to_owned(),
            -1 => "gzip".to_owned(),
            level => format!("gzip level {level}"),
        }
    } else {
        "gzip".to_owned()
    };
    let (created, database) = if version >= (1, 4, 0) {
        let fields: [i64; 7] = [
            cursor.int()?,
            cursor.int()?,
            cursor.int()?,
            cursor.int()?,
            cursor.int()?,
            cursor.int()?,
            cursor.int()?,
        ];
        let database = cursor.string()?;
        (Some(creation_time(fields)?), database)
    } else {
        (None, None)
    };
    let (server_version, pg_dump_version) = if version >= (1, 10, 0) {
        (cursor.string()?, cursor.string()?)
    } else {
        (None, None)
    };
    Ok(ArchiveHeader {
        version,
        format,
        compression,
        created,
        database,
        server_version,
        pg_dump_version,
    })
}

/// `struct tm` fields (sec, min, hour, mday, mon 0-11, year - 1900, isdst) to a wall-clock time.
fn creation_time(fields: [i64; 7]) -> Result<(NaiveDateTime, Option<bool>), HeaderError> {
    let [sec, min, hour, mday, mon, year, isdst] = fields;
    let corrupt = || {
        HeaderError::Corrupt(format!(
            "creation time fields {year}+1900-{mon}+1-{mday} {hour}:{min}:{sec} are not a time"
        ))
    };
    let part = |value: i64| u32::try_from(value).map_err(|_| corrupt());
    let year = i32::try_from(year.checked_add(1_900).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
    let month = part(mon)?.checked_add(1).ok_or_else(corrupt)?;
    // A leap second (60, or 61 in old C libraries) is read as the second before it.
    let second = part(sec)?.min(59);
    let date = NaiveDate::from_ymd_opt(year, month, part(mday)?).ok_or_else(corrupt)?;
    let time = date.and_hms_opt(part(hour)?, part(min)?, second).ok_or_else(corrupt)?;
    let is_dst = match isdst {
        0 => Some(false),
        1.. => Some(true),
        _ => None,
    };
    Ok((time, is_dst))
}

/// Reads pg_dump's integers (a sign byte since 1.1, then `int_size` little-endian bytes) and
/// length-prefixed strings.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    int_size: usize,
    signed: bool,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, HeaderError> {
        let byte = *self.bytes.get(self.at).ok_or(HeaderError::Truncated)?;
        self.at += 1;
        Ok(byte)
    }

    fn int(&mut self) -> Result<i64, HeaderError> {
        let negative = self.signed && self.byte()? != 0;
        let mut value: u64 = 0;
        for index in 0..self.int_size {
            let byte = self.byte()?;
            if index < 8 {
                value |= u64::from(byte) << (8 * index);
            } else if byte != 0 {
                return Err(HeaderError::Corrupt("integer out of range".to_owned()));
            }
        }
        let value = i64::try_from(value).map_err(|_| HeaderError::Corrupt("integer out of range".to_owned()))?;
        Ok(if negative { -value } else { value })
    }

    fn string(&mut self) -> Result<Option<String>, HeaderError> {
        let length = self.int()?;
        if length < 0 {
            return Ok(None);
        }
        if length > MAX_STRING {
            return Err(HeaderError::Corrupt(format!("string of {length} bytes")));
        }
        // In range by the check above.
        let length = usize::try_from(length).map_err(|_| HeaderError::Truncated)?;
        let end = self.at.checked_add(length).ok_or(HeaderError::Truncated)?;
        let bytes = self.bytes.get(self.at..end).ok_or(HeaderError::Truncated)?;
        self.at = end;
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// Builds archive headers for tests, e.g. one from a pg_dump newer than the installed pg_restore.
#[cfg(test)]
pub(super) mod for_test {
    /// Returns a custom-format header of archive version `1.minor` (layout of 1.15 and later when
    /// `minor >= 15`), created at the given wall-clock time, with the given server version.
    pub fn header(minor: u8, format: u8, created: [i64; 6], server_version: &str) -> Vec<u8> {
        let mut bytes = b"PGDMP".to_vec();
        bytes.extend_from_slice(&[1, minor, 0, 4, 8, format]);
        let int = |bytes: &mut Vec<u8>, value: i64| {
            bytes.push(u8::from(value < 0));
            let magnitude = u32::try_from(value.unsigned_abs()).unwrap_or(u32::MAX);
            bytes.extend_from_slice(&magnitude.to_le_bytes());
        };
        let string = |bytes: &mut Vec<u8>, text: &str| {
            int(bytes, i64::try_from(text.len()).unwrap_or(0));
            bytes.extend_from_slice(text.as_bytes());
        };
        if minor >= 15 {
            bytes.push(0);
        } else {
            int(&mut bytes, -1);
        }
        let [year, month, day, hour, minute, second] = created;
        for field in [second, minute, hour, day, month - 1, year - 1_900, 0] {
            int(&mut bytes, field);
        }
        string(&mut bytes, "rentals");
        string(&mut bytes, server_version);
        string(&mut bytes, server_version);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_version_1_14_header() {
        let bytes = for_test::header(
            14,
            FORMAT_CUSTOM,
            [2026, 11, 25, 3, 0, 7],
            "15.18 (Debian 15.18-0+deb12u1)",
        );
        let header = parse(&bytes).unwrap();
        assert_eq!(header.version_text(), "1.14-0");
        assert_eq!(header.format_name(), "custom");
        assert_eq!(header.compression, "gzip");
        assert_eq!(header.database.as_deref(), Some("rentals"));
        assert_eq!(header.server_version.as_deref(), Some("15.18 (Debian 15.18-0+deb12u1)"));
        let (created, is_dst) = header.created.unwrap();
        assert_eq!(created.to_string(), "2026-11-25 03:00:07");
        assert_eq!(is_dst, Some(false));
    }

    #[test]
    fn reads_a_version_1_16_header_from_a_newer_pg_dump() {
        let bytes = for_test::header(16, FORMAT_DIRECTORY, [2027, 1, 2, 23, 59, 60], "18.1");
        let header = parse(&bytes).unwrap();
        assert_eq!(header.version, (1, 16, 0));
        assert_eq!(header.format_name(), "directory");
        assert_eq!(header.compression, "none");
        assert_eq!(header.created.unwrap().0.to_string(), "2027-01-02 23:59:59");
        assert_eq!(header.pg_dump_version.as_deref(), Some("18.1"));
    }

    #[test]
    fn every_prefix_of_a_header_and_noise_are_errors_not_panics() {
        let bytes = for_test::header(14, FORMAT_CUSTOM, [2026, 11, 25, 3, 0, 0], "15.18");
        for end in 0..bytes.len() {
            assert!(parse(&bytes[..end]).is_err(), "prefix of {end} bytes");
        }
        assert_eq!(parse(b"SQLite format 3\0"), Err(HeaderError::NoMagic));
        let mut state: u64 = 99;
        for _ in 0..2_000 {
            let mut noise = b"PGDMP".to_vec();
            for _ in 0..64 {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                noise.push((state >> 56) as u8);
            }
            let _ = parse(&noise);
        }
        let mut bad_date = for_test::header(14, FORMAT_CUSTOM, [2026, 13, 45, 3, 0, 0], "15.18");
        assert!(matches!(parse(&bad_date), Err(HeaderError::Corrupt(_))));
        bad_date[5] = 2;
        assert!(matches!(parse(&bad_date), Err(HeaderError::Corrupt(_))));
    }
}
