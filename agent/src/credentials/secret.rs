//! A secret value and the only two things about it that may leave the agent: a keyed
//! fingerprint (BLAKE3 keyed with the agent's fingerprint key) and a redacted preview
//! (`AKIA…WXYZ`): secrets never leave the environment.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

/// A secret value found or declared on this machine. Not `Serialize`; `Debug` redacts.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for analysers that must use it (a live database connection, matching
    /// a declared value with a found one). Never log or send what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `AKIA…WXYZ`: at most 4 characters at each end, and none at all of a short value, so a
    /// preview never reveals more than 8 characters nor more than a third of the value.
    pub fn preview(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        let shown = (chars.len() / 6).min(4);
        if shown == 0 {
            return "…".to_owned();
        }
        let head: String = chars[..shown].iter().collect();
        let tail: String = chars[chars.len() - shown..].iter().collect();
        format!("{head}…{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.preview())
    }
}

/// The key of the fingerprint hash. Kept by the agent (0600), so fingerprints are stable across
/// scans of one agent but useless to anyone who only sees them.
#[derive(Clone)]
pub struct FingerprintKey([u8; 32]);

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(…)")
    }
}

impl FingerprintKey {
    /// A fresh random key (fingerprints then compare only within one process).
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// Loads `path`, or creates it with a random key (mode 0600) when it does not exist.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                Ok(Self(key))
            }
            Ok(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a 32-byte fingerprint key", path.display()),
            )),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::random();
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut file = std::fs::OpenOptions::new();
                file.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
                let mut file = file.open(path)?;
                file.write_all(&key.0)?;
                file.sync_all()?;
                Ok(key)
            }
            Err(err) => Err(err),
        }
    }

    /// `fp:<first 16 bytes of keyed BLAKE3, hex>`.
    pub fn fingerprint(&self, secret: &Secret) -> String {
        let hash = blake3::keyed_hash(&self.0, secret.expose().as_bytes());
        format!("fp:{}", hex::encode(&hash.as_bytes()[..16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_reveal_little_and_debug_redacts() {
        let key = Secret::new("AKIAIOSFODNN7EXAMPLEWXYZ");
        assert_eq!(key.preview(), "AKIA…WXYZ");
        assert_eq!(Secret::new("hunter2").preview(), "h…2");
        assert_eq!(Secret::new("abc").preview(), "…");
        assert!(!format!("{key:?}").contains("IOSFODNN7"));
    }

    #[test]
    fn fingerprints_are_keyed_and_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fingerprint.key");
        let first = FingerprintKey::load_or_create(&path).expect("create");
        let again = FingerprintKey::load_or_create(&path).expect("load");
        let secret = Secret::new("s3cret-value");
        assert_eq!(first.fingerprint(&secret), again.fingerprint(&secret));
        assert_ne!(
            first.fingerprint(&secret),
            FingerprintKey::random().fingerprint(&secret)
        );
        assert!(!first.fingerprint(&secret).contains("s3cret"));
    }
}
