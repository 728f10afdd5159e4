//! Certificates and TLS configuration for both sides of the mutual-TLS protocol.
//!
//! - The **CA pin** (`sha256:<hex of the CA certificate DER>`) is how a new agent trusts the
//!   coordinator before it has the CA: the enrollment connection only accepts a server chain that
//!   contains the pinned CA and verifies against it.
//! - An agent certificate names its identity in a URI SAN `lifeboat://ENV/agent/ID`; the
//!   coordinator reads it from the peer certificate with [`PeerIdentity::from_der`].
//! - [`server_config`] asks every client for a certificate issued by the CA but lets a client
//!   without one through the handshake: only the enrollment RPC accepts such a caller, every other
//!   RPC checks for a verified identity. A client that presents a bad certificate (another CA,
//!   expired) fails the handshake itself.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::ids::{AgentId, Environment};

/// ALPN protocol id for gRPC over HTTP/2.
const ALPN_H2: &[u8] = b"h2";

/// A TLS, PEM or certificate problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate found in PEM")]
    NoCertificate,
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("invalid certificate: {0}")]
    Certificate(String),
    #[error("invalid CA pin {0:?}: expected sha256: followed by 64 hex digits")]
    BadPin(String),
    #[error("certificate has no lifeboat identity (URI SAN lifeboat://ENV/agent/ID)")]
    NoIdentity,
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// Installs aws-lc as the process-wide rustls crypto provider. Safe to call more than once.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A pin on the CA certificate: SHA-256 of its DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaPin([u8; 32]);

impl CaPin {
    /// Computes the pin of a CA certificate.
    pub fn of(ca_der: &[u8]) -> Self {
        Self(Sha256::digest(ca_der).into())
    }

    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(text: &str) -> Result<Self, TlsError> {
        let bad = || TlsError::BadPin(text.chars().take(80).collect());
        let hex_digits = text.strip_prefix("sha256:").ok_or_else(bad)?;
        let bytes = hex::decode(hex_digits).map_err(|_| bad())?;
        Ok(Self(bytes.try_into().map_err(|_| bad())?))
    }

    pub fn matches(&self, der: &[u8]) -> bool {
        *self == Self::of(der)
    }
}

impl fmt::Display for CaPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CaPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Builds the URI SAN that carries an agent's identity.
pub fn agent_uri(environment: &Environment, agent_id: AgentId) -> String {
    format!("lifeboat://{environment}/agent/{agent_id}")
}

/// Parses `lifeboat://ENV/agent/ID`.
pub fn parse_agent_uri(uri: &str) -> Option<(Environment, AgentId)> {
    let rest = uri.strip_prefix("lifeboat://")?;
    let (environment, rest) = rest.split_once('/')?;
    let id = rest.strip_prefix("agent/")?;
    Some((Environment::parse(environment).ok()?, AgentId::parse(id).ok()?))
}

/// The identity a verified peer certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub agent_id: AgentId,
    pub environment: Environment,
    /// Certificate serial number, hex.
    pub serial: String,
    pub not_after: DateTime<Utc>,
}

impl PeerIdentity {
    /// Reads the identity from a DER certificate (already verified by the TLS layer).
    pub fn from_der(der: &[u8]) -> Result<Self, TlsError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|err| TlsError::Certificate(err.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|err| TlsError::Certificate(err.to_string()))?
            .ok_or(TlsError::NoIdentity)?;
        let (environment, agent_id) = san
            .value
            .general_names
            .iter()
            .find_map(|name| match name {
                GeneralName::URI(uri) => parse_agent_uri(uri),
                _ => None,
            })
            .ok_or(TlsError::NoIdentity)?;
        let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
            .ok_or_else(|| TlsError::Certificate("not_after out of range".into()))?;
        Ok(Self {
            agent_id,
            environment,
            serial: cert.raw_serial_as_string().replace(':', ""),
            not_after,
        })
    }
}

/// Returns the validity end of a DER certificate.
pub fn not_after(der: &[u8]) -> Result<DateTime<Utc>, TlsError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|err| TlsError::Certificate(err.to_string()))?;
    DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .ok_or_else(|| TlsError::Certificate("not_after out of range".into()))
}

/// Returns the validity start of a DER certificate.
pub fn not_before(der: &[u8]) -> Result<DateTime<Utc>, TlsError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|err| TlsError::Certificate(err.to_string()))?;
    DateTime::from_timestamp(cert.validity().not_before.timestamp(), 0)
        .ok_or_else(|| TlsError::Certificate("not_before out of range".into()))
}

/// Parses every certificate in a PEM document.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Pem(err.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// Parses a private key (PKCS#8, SEC1 or PKCS#1) from PEM.
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|err| TlsError::Pem(err.to_string()))
}

fn root_store(ca: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert.clone())?;
    }
    Ok(roots)
}

/// Server side: presents `chain` (server certificate then CA), requests client certificates
/// issued by `ca`, and admits clients without one (for enrollment only).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca: &[CertificateDer<'static>],
) -> Result<ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder(Arc::new(root_store(ca)?))
        .allow_unauthenticated()
        .build()
        .map_err(|err| TlsError::Verifier(err.to_string()))?;
    let mut config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// Agent side, after enrollment: trusts only `ca` and presents the agent certificate.
pub fn mtls_client_config(
    ca: &[CertificateDer<'static>],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder()
        .with_root_certificates(root_store(ca)?)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// Agent side, before enrollment: trusts a server only if its chain carries the pinned CA and
/// verifies against it. No client certificate.
pub fn pinned_client_config(pin: CaPin) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCaVerifier { pin, provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// Verifies a server chain against the CA whose SHA-256 is pinned.
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: CaPin,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned_ca = intermediates.iter().find(|cert| self.pin.matches(cert)).ok_or_else(|| {
            rustls::Error::General(format!(
                "the coordinator's CA does not match the pin {} (wrong --ca-pin, or not the coordinator you expect)",
                self.pin
            ))
        })?;
        let mut roots = RootCertStore::empty();
        roots.add(pinned_ca.clone().into_owned())?;
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|err| rustls::Error::General(err.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_round_trips_and_rejects_garbage() {
        let pin = CaPin::of(b"certificate bytes");
        assert_eq!(CaPin::parse(&pin.to_string()).expect("valid"), pin);
        for bad in [
            "",
            "sha256:",
            "sha1:00",
            "sha256:zz",
            &format!("sha256:{}", "ab".repeat(31)),
        ] {
            assert!(CaPin::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn agent_uri_round_trips() {
        let env = Environment::parse("pocketos-prod").expect("valid");
        let id = AgentId::new();
        assert_eq!(parse_agent_uri(&agent_uri(&env, id)), Some((env, id)));
        assert_eq!(parse_agent_uri("lifeboat://Bad Env/agent/x"), None);
        assert_eq!(parse_agent_uri("https://example.com"), None);
    }
}
