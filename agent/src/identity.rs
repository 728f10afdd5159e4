//! The agent's identity: its private key (generated here, never sent anywhere, mode 0600), its
//! short-lived certificate and the coordinator CA.
//!
//! On disk it is three PEM files in `identity_dir`: `key.pem`, `cert.pem`, `ca.pem`. A renewed
//! certificate is written to a temporary file, synced and renamed over `cert.pem`, so a crash
//! leaves either the old or the new certificate, never a torn one. The key is kept across
//! renewals for the same reason (a key and certificate written separately could disagree).
//! Simulated agents in tests and benchmarks keep the same data in memory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use lifeboat_shared::ids::{AgentId, Environment};
use lifeboat_shared::tls::{self, PeerIdentity, TlsError};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

/// Problem with the agent identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no identity in {0}: run `lifeboat-agent enroll` first")]
    NotEnrolled(PathBuf),
    #[error("the agent certificate expired at {0}: re-enroll needed (`lifeboat-agent enroll` with a new token)")]
    Expired(DateTime<Utc>),
    #[error("key: {0}")]
    Key(#[from] rcgen::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + use<> {
    let path = path.to_owned();
    move |source| IdentityError::Io { action, path, source }
}

/// A complete, parsed identity.
#[derive(Clone)]
pub struct Identity {
    pub key_pem: String,
    pub cert_pem: String,
    pub ca_pem: String,
    pub agent_id: AgentId,
    pub environment: Environment,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("agent_id", &self.agent_id)
            .field("environment", &self.environment)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Parses and cross-checks the three PEM documents.
    pub fn from_pem(key_pem: String, cert_pem: String, ca_pem: String) -> Result<Self, IdentityError> {
        let cert = tls::certs_from_pem(&cert_pem)?.remove(0);
        let peer = PeerIdentity::from_der(&cert)?;
        tls::certs_from_pem(&ca_pem)?;
        tls::key_from_pem(&key_pem)?;
        Ok(Self {
            not_before: tls::not_before(&cert)?,
            not_after: peer.not_after,
            agent_id: peer.agent_id,
            environment: peer.environment,
            key_pem,
            cert_pem,
            ca_pem,
        })
    }

    /// The moment to renew: two thirds into the certificate's life.
    pub fn renew_at(&self) -> DateTime<Utc> {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }

    /// Fails with a clear "re-enroll needed" error when the certificate has expired.
    pub fn ensure_valid(&self) -> Result<(), IdentityError> {
        if self.not_after <= Utc::now() {
            return Err(IdentityError::Expired(self.not_after));
        }
        Ok(())
    }

    /// The mutual-TLS client configuration for this identity.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, IdentityError> {
        Ok(tls::mtls_client_config(
            &tls::certs_from_pem(&self.ca_pem)?,
            tls::certs_from_pem(&self.cert_pem)?,
            tls::key_from_pem(&self.key_pem)?,
        )?)
    }

    /// A CSR for this identity's key (used for renewal).
    pub fn csr(&self) -> Result<String, IdentityError> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        csr_for(&key, &self.agent_id.to_string())
    }
}

/// Generates a new private key, PEM (PKCS#8).
pub fn generate_key() -> Result<String, IdentityError> {
    Ok(KeyPair::generate()?.serialize_pem())
}

/// Builds a PEM CSR for `key`. The coordinator only uses its public key.
pub fn csr_pem(key_pem: &str, name: &str) -> Result<String, IdentityError> {
    csr_for(&KeyPair::from_pem(key_pem)?, name)
}

fn csr_for(key: &KeyPair, name: &str) -> Result<String, IdentityError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    Ok(params.serialize_request(key)?.pem()?)
}

/// Where an identity lives.
#[derive(Debug, Clone)]
pub enum IdentityStore {
    /// `key.pem`, `cert.pem`, `ca.pem` in a directory.
    Dir(PathBuf),
    /// In memory (simulated agents).
    Memory(Arc<Mutex<Identity>>),
}

impl IdentityStore {
    /// Reads the current identity.
    pub fn load(&self) -> Result<Identity, IdentityError> {
        match self {
            Self::Dir(dir) => {
                let read = |name: &str| {
                    let path = dir.join(name);
                    fs::read_to_string(&path).map_err(|source| match source.kind() {
                        std::io::ErrorKind::NotFound => IdentityError::NotEnrolled(dir.clone()),
                        _ => IdentityError::Io {
                            action: "read",
                            path,
                            source,
                        },
                    })
                };
                Identity::from_pem(read("key.pem")?, read("cert.pem")?, read("ca.pem")?)
            }
            Self::Memory(identity) => identity
                .lock()
                .map(|identity| identity.clone())
                .map_err(|_| IdentityError::NotEnrolled(PathBuf::from("<memory>"))),
        }
    }

    /// Replaces the certificate (after renewal). The new one is durable before the old is gone.
    pub fn replace_certificate(&self, cert_pem: &str) -> Result<Identity, IdentityError> {
        let current = self.load()?;
        let renewed = Identity::from_pem(current.key_pem, cert_pem.to_owned(), current.ca_pem)?;
        if renewed.agent_id != current.agent_id {
            return Err(IdentityError::Tls(TlsError::Certificate(
                "renewed certificate names another agent".into(),
            )));
        }
        match self {
            Self::Dir(dir) => write_atomic(&dir.join("cert.pem"), cert_pem.as_bytes(), 0o644)?,
            Self::Memory(identity) => {
                if let Ok(mut identity) = identity.lock() {
                    *identity = renewed.clone();
                }
            }
        }
        Ok(renewed)
    }
}

/// Creates the identity directory (mode 0700).
pub fn create_dir(dir: &Path) -> Result<(), IdentityError> {
    fs::create_dir_all(dir).map_err(io_error("create", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error("protect", dir))
}

/// Returns the key in `dir/key.pem`, generating it (mode 0600) when absent. Reusing an existing
/// key makes an enrollment retry present the same key, so the coordinator recognises the retry.
pub fn load_or_create_key(dir: &Path) -> Result<String, IdentityError> {
    let path = dir.join("key.pem");
    match fs::read_to_string(&path) {
        Ok(pem) => return Ok(pem),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(IdentityError::Io {
                action: "read",
                path,
                source,
            });
        }
    }
    let pem = generate_key()?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_error("create", &path))?;
    file.write_all(pem.as_bytes()).map_err(io_error("write", &path))?;
    file.sync_all().map_err(io_error("sync", &path))?;
    Ok(pem)
}

/// Writes `contents` to `path` atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error("create", &tmp))?;
    file.write_all(contents).map_err(io_error("write", &tmp))?;
    file.sync_all().map_err(io_error("sync", &tmp))?;
    fs::rename(&tmp, path).map_err(io_error("rename", path))?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error("sync", parent))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        create_dir(dir.path()).expect("dir");
        let first = load_or_create_key(dir.path()).expect("key");
        let again = load_or_create_key(dir.path()).expect("key");
        assert_eq!(first, again, "a retry must reuse the key");
        let mode = fs::metadata(dir.path().join("key.pem"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let csr = csr_pem(&first, "host-1").expect("csr");
        assert!(csr.contains("CERTIFICATE REQUEST"));
    }

    #[test]
    fn missing_identity_says_enroll_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = IdentityStore::Dir(dir.path().to_owned()).load().expect_err("empty");
        assert!(err.to_string().contains("enroll"), "{err}");
    }
}
