//! Who is calling: the agent identity of a verified client certificate.
//!
//! The TLS layer already checked that a presented certificate chains to our CA and is within
//! its validity period. Here we require that one was presented (only enrollment does without),
//! re-check expiry (an HTTP/2 connection outlives the moment of its handshake), and refuse
//! revoked agents. [`super::gate`] applies this before any `AgentService` request body is read;
//! the handlers apply it again to learn the identity.

use chrono::Utc;
use lifeboat_shared::tls::PeerIdentity;
use rustls_pki_types::CertificateDer;
use tonic::{Request, Status};

use crate::revocation::Revocations;

/// Returns the caller's identity, or the status that explains why it has none.
pub fn authenticate<T>(request: &Request<T>, revocations: &Revocations) -> Result<PeerIdentity, Status> {
    identify(request.peer_certs().as_deref().map(Vec::as_slice), revocations)
}

/// Returns the identity in a peer's certificate chain (`None`: no certificate was presented).
pub fn identify(certs: Option<&[CertificateDer<'static>]>, revocations: &Revocations) -> Result<PeerIdentity, Status> {
    let certs = certs.ok_or_else(|| {
        Status::unauthenticated("a client certificate issued by this coordinator is required: enroll the agent first")
    })?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("the client certificate chain is empty"))?;
    let identity = PeerIdentity::from_der(leaf)
        .map_err(|err| Status::unauthenticated(format!("the client certificate is not an agent identity: {err}")))?;
    if identity.not_after <= Utc::now() {
        return Err(Status::unauthenticated(format!(
            "the client certificate expired at {}: re-enroll needed",
            identity.not_after.to_rfc3339()
        )));
    }
    if revocations.is_revoked(identity.agent_id) {
        return Err(Status::permission_denied(format!(
            "agent {} has been revoked",
            identity.agent_id
        )));
    }
    Ok(identity)
}
