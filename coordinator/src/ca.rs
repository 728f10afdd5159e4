//! The coordinator's certificate authority.
//!
//! Generated on first start in `data_dir/ca/` (key file mode 0600) or loaded from configured PEM
//! files. It signs the coordinator's own server certificate (re-issued at every start for the
//! configured names) and short-lived agent certificates. Agent certificates are built from
//! fresh parameters: only the CSR's public key is used, never its requested names or
//! extensions, and the identity goes in a URI SAN `lifeboat://ENV/agent/ID`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_shared::ids::{AgentId, Environment};
use lifeboat_shared::tls::{self, CaPin};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::config::CaConfig;

/// Lifetime of a generated CA.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Lifetime of the coordinator's server certificate (re-issued at every start).
const SERVER_CERT_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// Tolerated clock skew between coordinator and agents.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A CA problem.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid certificate signing request: {0}")]
    BadCsr(String),
    #[error("certificate authority: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A certificate this CA issued for an agent.
#[derive(Debug, Clone)]
pub struct AgentCertificate {
    pub pem: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the certified public key, hex: identifies the agent's key across retries.
    pub key_fingerprint: String,
}

/// The coordinator's CA: its certificate and signing key.
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("pin", &self.pin())
            .finish()
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CaError + use<> {
    let path = path.to_owned();
    move |source| CaError::Io { action, path, source }
}

impl CertificateAuthority {
    /// Loads the configured CA, or the one in `data_dir/ca/`, generating it there if absent.
    pub fn load_or_create(data_dir: &Path, config: &CaConfig) -> Result<Self, CaError> {
        let (cert_path, key_path) = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => return Self::load(cert, key),
            _ => (data_dir.join("ca").join("ca.pem"), data_dir.join("ca").join("ca.key")),
        };
        if cert_path.exists() {
            return Self::load(&cert_path, &key_path);
        }
        let ca_dir = data_dir.join("ca");
        fs::create_dir_all(&ca_dir).map_err(io_error("create", &ca_dir))?;
        fs::set_permissions(&ca_dir, fs::Permissions::from_mode(0o700)).map_err(io_error("protect", &ca_dir))?;
        let (cert_pem, key_pem) = Self::generate_pem()?;
        // Key first, created exclusively: a concurrent first start loses the race cleanly.
        match write_new(&key_path, key_pem.as_bytes(), 0o600) {
            Ok(()) => {}
            Err(CaError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                std::thread::sleep(Duration::from_millis(200));
                return Self::load(&cert_path, &key_path);
            }
            Err(err) => return Err(err),
        }
        write_new(&cert_path, cert_pem.as_bytes(), 0o644)?;
        tracing::info!(path = %cert_path.display(), "generated a new certificate authority");
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// Loads a CA from PEM files.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        let cert_pem = fs::read_to_string(cert_path).map_err(io_error("read", cert_path))?;
        let key_pem = fs::read_to_string(key_path).map_err(io_error("read", key_path))?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// Generates a new self-signed CA, returned as (certificate PEM, key PEM).
    pub fn generate_pem() -> Result<(String, String), CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Lifeboat coordinator CA");
        params.distinguished_name.push(DnType::OrganizationName, "Lifeboat");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_LIFETIME;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Builds a CA from its certificate and key PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert_der = tls::certs_from_pem(cert_pem)?
            .into_iter()
            .next()
            .ok_or(tls::TlsError::NoCertificate)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The pin agents pass to `enroll --ca-pin`.
    pub fn pin(&self) -> CaPin {
        CaPin::of(&self.cert_der)
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses); returns the chain
    /// (server certificate, then the CA) and the fresh private key.
    pub fn issue_server_certificate(
        &self,
        names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().map_or("lifeboat", String::as_str));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + SERVER_CERT_LIFETIME;
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key_der))
    }

    /// Signs the public key of `csr_pem` into an agent certificate valid for `ttl` from now.
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        environment: &Environment,
        agent_id: AgentId,
        ttl: Duration,
    ) -> Result<AgentCertificate, CaError> {
        // Not backdated: only the coordinator checks agent certificates, against its own clock,
        // and the agent's renewal point (2/3 of the life) must not be skewed towards now.
        let now = time::OffsetDateTime::now_utc();
        self.sign_agent_csr_valid(csr_pem, environment, agent_id, now, now + ttl)
    }

    /// Like [`Self::sign_agent_csr`] with an explicit validity window (tests use it to make
    /// expired certificates).
    pub fn sign_agent_csr_valid(
        &self,
        csr_pem: &str,
        environment: &Environment,
        agent_id: AgentId,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Result<AgentCertificate, CaError> {
        if csr_pem.len() > 16 * 1024 {
            return Err(CaError::BadCsr("larger than 16 KiB".into()));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|err| CaError::BadCsr(err.to_string()))?;
        let public_key = csr.public_key;
        let key_fingerprint = hex::encode(Sha256::digest(public_key.der_bytes()));

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, agent_id.to_string());
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, environment.as_str());
        params.subject_alt_names = vec![SanType::URI(
            tls::agent_uri(environment, agent_id)
                .try_into()
                .map_err(|err: rcgen::Error| CaError::BadCsr(err.to_string()))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let serial = random_serial();
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        let cert = params.signed_by(&public_key, &self.issuer)?;
        let not_after = DateTime::from_timestamp(not_after.unix_timestamp(), 0).unwrap_or_else(Utc::now);
        Ok(AgentCertificate {
            pem: cert.pem(),
            serial: serial_hex,
            not_after,
            key_fingerprint,
        })
    }
}

/// Returns the SHA-256 (hex) of the public key in a CSR, without signing anything.
pub fn csr_key_fingerprint(csr_pem: &str) -> Result<String, CaError> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|err| CaError::BadCsr(err.to_string()))?;
    Ok(hex::encode(Sha256::digest(csr.public_key.der_bytes())))
}

/// A positive 128-bit random serial number.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_error("create", path))?;
    file.write_all(contents).map_err(io_error("write", path))?;
    file.sync_all().map_err(io_error("sync", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr() -> (KeyPair, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["evil.example.com".to_owned()]).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = params.serialize_request(&key).expect("csr").pem().expect("pem");
        (key, csr)
    }

    #[test]
    fn agent_certificate_carries_identity_and_ignores_csr_fields() {
        tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::load_or_create(dir.path(), &CaConfig::default()).expect("ca");
        let env = Environment::parse("pocketos-prod").expect("env");
        let agent_id = AgentId::new();
        let (_key, csr_pem) = csr();
        let cert = ca
            .sign_agent_csr(&csr_pem, &env, agent_id, Duration::from_secs(3600))
            .expect("signed");
        let der = tls::certs_from_pem(&cert.pem).expect("pem").remove(0);
        let identity = tls::PeerIdentity::from_der(&der).expect("identity");
        assert_eq!(identity.agent_id, agent_id);
        assert_eq!(identity.environment, env);
        assert_eq!(identity.serial, cert.serial);
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("x509");
        assert!(!parsed.is_ca(), "CSR asked for CA; must not be honoured");
        let sans = parsed.subject_alternative_name().expect("san").expect("present");
        assert_eq!(sans.value.general_names.len(), 1, "only our URI SAN");
    }

    #[test]
    fn ca_is_persisted_with_private_key_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = CertificateAuthority::load_or_create(dir.path(), &CaConfig::default()).expect("ca");
        let again = CertificateAuthority::load_or_create(dir.path(), &CaConfig::default()).expect("ca");
        assert_eq!(first.pin(), again.pin());
        let mode = fs::metadata(dir.path().join("ca/ca.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn garbage_csr_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::load_or_create(dir.path(), &CaConfig::default()).expect("ca");
        let env = Environment::parse("e").expect("env");
        let err = ca
            .sign_agent_csr("not a csr", &env, AgentId::new(), Duration::from_secs(60))
            .expect_err("garbage");
        assert!(matches!(err, CaError::BadCsr(_)));
    }
}
