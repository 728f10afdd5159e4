//! `lifeboat-agent enroll`: join a coordinator with a single-use token.
//!
//! The key is generated here and never leaves the machine; only a CSR is sent. The coordinator
//! is trusted through the CA pin the operator copied from `token create`: the TLS handshake
//! fails unless the server's chain carries exactly that CA, and the CA certificate returned by
//! the coordinator is checked against the pin once more before it is stored.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lifeboat_proto::v1 as pb;
use lifeboat_proto::v1::enrollment_client::EnrollmentClient;
use lifeboat_shared::ids::{AgentId, Environment};
use lifeboat_shared::tls::{self, CaPin};

use crate::connect::{self, ConnectError};
use crate::identity::{self, Identity, IdentityError};

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("{}", connect::error_chain(.0))]
    Connect(#[from] ConnectError),
    #[error("the coordinator refused enrollment: {}", .0.message())]
    Rejected(tonic::Status),
    #[error("the CA certificate sent by the coordinator does not match the pin {0}")]
    PinMismatch(CaPin),
    #[error("the coordinator sent an unusable certificate: {0}")]
    BadResponse(String),
}

/// What to enroll with.
#[derive(Debug, Clone)]
pub struct EnrollRequest {
    pub coordinator: String,
    pub token: String,
    pub ca_pin: CaPin,
    /// Agent name shown in `agents list` (default: the hostname).
    pub name: String,
    /// When set, the token must be for this environment.
    pub environment: Option<Environment>,
}

/// The result of a successful enrollment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Enrolled {
    pub agent_id: AgentId,
    pub environment: Environment,
    pub not_after: DateTime<Utc>,
    pub identity_dir: Option<PathBuf>,
}

/// Enrolls and stores the identity in `identity_dir` (key.pem 0600, cert.pem, ca.pem).
pub async fn enroll_to_dir(request: &EnrollRequest, identity_dir: &Path) -> Result<Enrolled, EnrollError> {
    identity::create_dir(identity_dir)?;
    let key_pem = identity::load_or_create_key(identity_dir)?;
    let identity = request_identity(request, key_pem).await?;
    // CA first: cert.pem is what marks the directory as enrolled.
    identity::write_atomic(&identity_dir.join("ca.pem"), identity.ca_pem.as_bytes(), 0o644)?;
    identity::write_atomic(&identity_dir.join("cert.pem"), identity.cert_pem.as_bytes(), 0o644)?;
    Ok(Enrolled {
        agent_id: identity.agent_id,
        environment: identity.environment,
        not_after: identity.not_after,
        identity_dir: Some(identity_dir.to_owned()),
    })
}

/// Enrolls with a fresh in-memory key (simulated agents in tests and benchmarks).
pub async fn enroll_in_memory(request: &EnrollRequest) -> Result<Identity, EnrollError> {
    request_identity(request, identity::generate_key()?).await
}

async fn request_identity(request: &EnrollRequest, key_pem: String) -> Result<Identity, EnrollError> {
    tls::install_crypto_provider();
    let csr_pem = identity::csr_pem(&key_pem, &request.name)?;
    let tls = tls::pinned_client_config(request.ca_pin).map_err(IdentityError::from)?;
    let channel = connect::channel(&request.coordinator, Arc::new(tls)).await?;
    let response = EnrollmentClient::new(channel)
        .enroll(pb::EnrollRequest {
            token: request.token.clone(),
            csr_pem,
            name: request.name.clone(),
            environment: request
                .environment
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        })
        .await
        .map_err(EnrollError::Rejected)?
        .into_inner();

    let ca =
        tls::certs_from_pem(&response.ca_certificate_pem).map_err(|err| EnrollError::BadResponse(err.to_string()))?;
    if !ca.first().is_some_and(|ca| request.ca_pin.matches(ca)) {
        return Err(EnrollError::PinMismatch(request.ca_pin));
    }
    let identity = Identity::from_pem(key_pem, response.certificate_pem, response.ca_certificate_pem)
        .map_err(|err| EnrollError::BadResponse(err.to_string()))?;
    if identity.agent_id.to_string() != response.agent_id {
        return Err(EnrollError::BadResponse(
            "certificate and response name different agents".into(),
        ));
    }
    Ok(identity)
}
