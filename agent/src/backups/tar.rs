//! Just enough of the tar format to find a few named members of an archive (pg_dump's `toc.dat`,
//! a base backup's `backup_label` and `PG_VERSION`) without unpacking it: ustar/GNU headers, GNU
//! long names and pax `path` records.
//!
//! Reading is bounded by the caller (a number of members, a number of bytes) and every field is
//! checked, so a corrupt or hostile archive gives an error, never a panic or an unbounded read.

use std::fs::File;
use std::io::{self, BufReader, Read};

/// The size of a tar block; headers and data are padded to it.
const BLOCK: u64 = 512;
/// GNU long names and pax headers longer than this are refused.
const MAX_EXTENDED_HEADER: u64 = 64 * 1024;

/// Why a tar archive cannot be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum TarError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a tar archive (bad header checksum at byte {0})")]
    BadChecksum(u64),
    #[error("corrupt tar header at byte {offset}: {what}")]
    Corrupt { offset: u64, what: &'static str },
    #[error("the tar archive ends in the middle of a block")]
    Truncated,
}

/// One member of an archive, as its header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TarMember {
    /// Path inside the archive, without a leading `./`.
    pub name: String,
    pub size: u64,
    /// `0`/NUL regular file, `5` directory, `2` symlink…
    pub typeflag: u8,
}

/// A byte stream that can skip forward: seek on a file, read and discard on a decoder.
pub(super) trait Skip: Read + Sized {
    fn skip(&mut self, bytes: u64) -> io::Result<()> {
        let skipped = io::copy(&mut self.by_ref().take(bytes), &mut io::sink())?;
        if skipped < bytes {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

impl Skip for BufReader<File> {
    fn skip(&mut self, bytes: u64) -> io::Result<()> {
        let bytes = i64::try_from(bytes).map_err(|_| io::Error::other("member too large"))?;
        self.seek_relative(bytes)
    }
}

impl<R: io::BufRead> Skip for flate2::bufread::MultiGzDecoder<R> {}

impl Skip for &[u8] {}

/// Reads the members of a tar stream one after the other.
pub(super) struct TarReader<R> {
    inner: R,
    /// Data of the current member not read yet.
    data_left: u64,
    /// Padding after the current member's data.
    padding_left: u64,
    /// Bytes of the archive consumed so far, skipped data included.
    consumed: u64,
}

impl<R: Skip> TarReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            data_left: 0,
            padding_left: 0,
            consumed: 0,
        }
    }

    /// Returns how far into the archive the reader is.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Moves to the next member; `None` at the end-of-archive marker or a clean end of stream.
    pub fn next_member(&mut self) -> Result<Option<TarMember>, TarError> {
        let mut long_name: Option<String> = None;
        loop {
            self.skip_pending()?;
            let offset = self.consumed;
            let Some(block) = self.read_block()? else {
                return Ok(None);
            };
            if block.iter().all(|byte| *byte == 0) {
                return Ok(None);
            }
            if !checksum_matches(&block) {
                return Err(TarError::BadChecksum(offset));
            }
            let size = parse_number(&block[124..136]).ok_or(TarError::Corrupt {
                offset,
                what: "size field",
            })?;
            let padded = size
                .checked_add(BLOCK - 1)
                .map(|end| end / BLOCK * BLOCK)
                .ok_or(TarError::Corrupt {
                    offset,
                    what: "size field",
                })?;
            self.data_left = size;
            self.padding_left = padded - size;
            let typeflag = block[156];
            match typeflag {
                b'L' | b'x' => {
                    if size > MAX_EXTENDED_HEADER {
                        return Err(TarError::Corrupt {
                            offset,
                            what: "extended header too large",
                        });
                    }
                    let data = self.read_data(MAX_EXTENDED_HEADER)?;
                    let name = if typeflag == b'L' {
                        Some(text_field(&data))
                    } else {
                        pax_path(&data)
                    };
                    if name.is_some() {
                        long_name = name;
                    }
                }
                b'g' | b'K' => {}
                _ => {
                    let name = long_name.take().unwrap_or_else(|| header_name(&block));
                    let name = name.trim_start_matches("./").to_owned();
                    return Ok(Some(TarMember { name, size, typeflag }));
                }
            }
        }
    }

    /// Reads up to `max` bytes of the current member's data.
    pub fn read_data(&mut self, max: u64) -> Result<Vec<u8>, TarError> {
        let mut data = Vec::new();
        let limit = max.min(self.data_left);
        self.inner.by_ref().take(limit).read_to_end(&mut data)?;
        let read = data.len() as u64;
        self.data_left -= read;
        self.consumed += read;
        Ok(data)
    }

    fn skip_pending(&mut self) -> Result<(), TarError> {
        let pending = self.data_left + self.padding_left;
        if pending > 0 {
            self.inner.skip(pending)?;
            self.consumed += pending;
            self.data_left = 0;
            self.padding_left = 0;
        }
        Ok(())
    }

    /// Reads one block; `None` at a clean end of stream.
    fn read_block(&mut self) -> Result<Option<[u8; 512]>, TarError> {
        let mut block = [0u8; 512];
        let mut filled = 0;
        while filled < block.len() {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err.into()),
            }
        }
        self.consumed += filled as u64;
        match filled {
            0 => Ok(None),
            512 => Ok(Some(block)),
            _ => Err(TarError::Truncated),
        }
    }
}

/// How many members [`audit`] reads before it stops.
const AUDIT_MAX_MEMBERS: usize = 1_000_000;
/// How many findings [`audit`] reports.
const AUDIT_MAX_SIGNS: usize = 5;

/// Reads an archive's headers (not its data) for members no backup of files needs: paths that
/// leave the archive's directory (absolute, or through `..`) and device nodes. Returns them in
/// words, as signs of tampering; an unreadable archive gives none (its restore reports it).
pub fn audit(path: &std::path::Path, gzip: bool) -> Vec<String> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let reader = BufReader::new(file);
    if gzip {
        audit_members(TarReader::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else {
        audit_members(TarReader::new(reader))
    }
}

fn audit_members<R: Skip>(mut archive: TarReader<R>) -> Vec<String> {
    let mut signs = Vec::new();
    let mut count = 0;
    while let Ok(Some(member)) = archive.next_member() {
        count += 1;
        if count > AUDIT_MAX_MEMBERS || signs.len() >= AUDIT_MAX_SIGNS {
            break;
        }
        let escapes = member.name.starts_with('/') || member.name.split('/').any(|part| part == "..");
        if escapes {
            signs.push(format!(
                "the archive's member {:?} points outside the directory it restores into",
                member.name
            ));
        } else if matches!(member.typeflag, b'3' | b'4') {
            signs.push(format!("the archive's member {:?} is a device node", member.name));
        }
    }
    signs
}

/// Returns whether `block` is a tar header: not all zeros, with a matching checksum.
pub(super) fn is_header(block: &[u8]) -> bool {
    block.len() >= 512 && block[..512].iter().any(|byte| *byte != 0) && checksum_matches(&block[..512])
}

/// The header checksum: the sum of its bytes with the checksum field read as spaces (unsigned,
/// or signed as some old tars wrote it).
fn checksum_matches(block: &[u8]) -> bool {
    let Some(stored) = parse_octal(&block[148..156]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (index, byte) in block[..512].iter().enumerate() {
        let byte = if (148..156).contains(&index) { b' ' } else { *byte };
        unsigned += u64::from(byte);
        signed += i64::from(byte as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|stored| stored == signed)
}

/// A numeric field: octal text, or GNU base-256 when the high bit of its first byte is set.
fn parse_number(field: &[u8]) -> Option<u64> {
    match field.first() {
        Some(first) if first & 0x80 != 0 => {
            let mut value: u64 = u64::from(first & 0x7f);
            for byte in &field[1..] {
                value = value.checked_mul(256)?.checked_add(u64::from(*byte))?;
            }
            Some(value)
        }
        _ => parse_octal(field),
    }
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// A NUL-terminated text field.
fn text_field(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|byte| *byte == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The name of a ustar header: `prefix/name` when the prefix is set.
fn header_name(block: &[u8]) -> String {
    let name = text_field(&block[..100]);
    let is_ustar = &block[257..262] == b"ustar";
    let prefix = if is_ustar {
        text_field(&block[345..500])
    } else {
        String::new()
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// The `path` record of a pax extended header (`<len> path=<value>\n` records).
fn pax_path(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|record| {
        let (_, pair) = record.split_once(' ')?;
        pair.strip_prefix("path=").map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a ustar header block for tests.
    fn header(name: &str, size: u64, typeflag: u8) -> [u8; 512] {
        let mut block = [0u8; 512];
        block[..name.len()].copy_from_slice(name.as_bytes());
        block[100..108].copy_from_slice(b"0000644\0");
        block[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        block[136..148].copy_from_slice(b"00000000000\0");
        block[156] = typeflag;
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        block[148..156].copy_from_slice(b"        ");
        let sum: u64 = block.iter().map(|byte| u64::from(*byte)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        block
    }

    fn archive(members: &[(&str, &[u8], u8)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (name, data, typeflag) in members {
            bytes.extend_from_slice(&header(name, data.len() as u64, *typeflag));
            bytes.extend_from_slice(data);
            bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        }
        bytes.extend_from_slice(&[0u8; 1024]);
        bytes
    }

    #[test]
    fn reads_members_and_data() {
        let long = "d/".repeat(80) + "file";
        let bytes = archive(&[
            ("./backup_label", b"START TIME: x\n", b'0'),
            ("././@LongLink", long.as_bytes(), b'L'),
            ("truncated-name", b"long", b'0'),
            ("PG_VERSION", b"15\n", b'0'),
        ]);
        assert!(is_header(&bytes));
        let mut reader = TarReader::new(bytes.as_slice());
        let first = reader.next_member().unwrap().unwrap();
        assert_eq!((first.name.as_str(), first.size), ("backup_label", 14));
        assert_eq!(reader.read_data(5).unwrap(), b"START");
        let second = reader.next_member().unwrap().unwrap();
        assert_eq!(second.name, long);
        let third = reader.next_member().unwrap().unwrap();
        assert_eq!(third.name, "PG_VERSION");
        assert_eq!(reader.read_data(100).unwrap(), b"15\n");
        assert_eq!(reader.next_member().unwrap(), None);
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let mut noise = vec![0u8; 2048];
        let mut state: u32 = 12345;
        for byte in &mut noise {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *byte = (state >> 16) as u8;
        }
        assert!(!is_header(&noise));
        assert!(matches!(
            TarReader::new(noise.as_slice()).next_member(),
            Err(TarError::BadChecksum(0))
        ));

        let bytes = archive(&[("a", &[7u8; 3000], b'0'), ("b", b"x", b'0')]);
        let cut = &bytes[..1000];
        let mut reader = TarReader::new(cut);
        assert_eq!(reader.next_member().unwrap().unwrap().name, "a");
        assert!(reader.next_member().is_err());
        let cut = &bytes[..700];
        let mut reader = TarReader::new(cut);
        reader.next_member().unwrap();
        assert!(reader.next_member().is_err());
        assert!(matches!(
            TarReader::new(&bytes[..100]).next_member(),
            Err(TarError::Truncated)
        ));
        assert!(TarReader::new(&[][..]).next_member().unwrap().is_none());
    }

    #[test]
    fn parses_base_256_sizes() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[11] = 0x02;
        field[10] = 0x01;
        assert_eq!(parse_number(&field), Some(258));
        assert_eq!(parse_number(&[0xff; 12]), None);
        assert_eq!(parse_number(b"00000000012\0"), Some(10));
        assert_eq!(parse_number(b"000000000z2\0"), None);
    }
}
