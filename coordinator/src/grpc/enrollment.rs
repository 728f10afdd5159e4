//! The `Enrollment` service: join token + CSR → agent certificate.
//!
//! The only RPC without a client certificate. The token is looked up by hash; its environment
//! becomes the agent's, fixed in the certificate. A retry with the same token and the same key
//! (the response was lost) gets the same identity back instead of burning the token.

use std::sync::Arc;

use chrono::Utc;
use lifeboat_proto::v1 as pb;
use lifeboat_proto::v1::enrollment_server::Enrollment;
use lifeboat_shared::ids::Environment;
use lifeboat_shared::protocol::to_timestamp;
use lifeboat_shared::tls;
use tonic::{Request, Response, Status};

use crate::ca::{self, CertificateAuthority};
use crate::store::{IssuedCertificate, Store, StoreError, TokenClaim};
use crate::tokens;

/// Implements `lifeboat.v1.Enrollment`.
pub struct EnrollmentApi {
    pub store: Store,
    pub ca: Arc<CertificateAuthority>,
    pub certificate_ttl: std::time::Duration,
}

fn claim_status(err: StoreError) -> Status {
    match err {
        StoreError::TokenUnknown => Status::unauthenticated("join token not recognised"),
        StoreError::TokenExpired => {
            Status::unauthenticated("join token expired: create a new one with `lifeboat-coordinator token create`")
        }
        StoreError::TokenExhausted => Status::permission_denied(
            "join token has already been used (tokens are single-use unless created with --uses)",
        ),
        other => {
            tracing::error!(error = %other, "enrollment failed in the store");
            Status::unavailable("storage unavailable")
        }
    }
}

#[tonic::async_trait]
impl Enrollment for EnrollmentApi {
    async fn enroll(&self, request: Request<pb::EnrollRequest>) -> Result<Response<pb::EnrollResponse>, Status> {
        let request = request.into_inner();
        if !tokens::looks_valid(&request.token) {
            return Err(Status::unauthenticated("join token not recognised"));
        }
        let name = request.name.trim();
        if name.is_empty() || name.len() > lifeboat_shared::protocol::MAX_NAME_LEN {
            return Err(Status::invalid_argument("name must be 1-256 characters"));
        }
        let key_fingerprint =
            ca::csr_key_fingerprint(&request.csr_pem).map_err(|err| Status::invalid_argument(err.to_string()))?;
        let token_hash = tokens::hash(&request.token);

        if !request.environment.is_empty() {
            let wanted = Environment::parse(&request.environment)
                .map_err(|err| Status::invalid_argument(format!("environment: {err}")))?;
            let actual = self
                .store
                .join_token_environment(&token_hash)
                .await
                .map_err(claim_status)?
                .ok_or_else(|| Status::unauthenticated("join token not recognised"))?;
            if actual != wanted {
                return Err(Status::permission_denied(format!(
                    "join token is for environment {actual}, not {wanted}"
                )));
            }
        }

        let claimed = self
            .store
            .claim_join_token(&TokenClaim {
                token_hash,
                key_fingerprint: key_fingerprint.clone(),
                agent_name: name.to_owned(),
                now: Utc::now(),
            })
            .await
            .map_err(claim_status)?;

        let reusable = claimed.certificate_pem.filter(|pem| {
            tls::certs_from_pem(pem)
                .ok()
                .and_then(|certs| certs.first().and_then(|der| tls::not_after(der).ok()))
                .is_some_and(|not_after| not_after > Utc::now() + chrono::Duration::minutes(5))
        });
        let (certificate_pem, not_after) = match reusable {
            Some(pem) => {
                let der = tls::certs_from_pem(&pem).map_err(|_| Status::internal("stored certificate unreadable"))?;
                let not_after =
                    tls::not_after(&der[0]).map_err(|_| Status::internal("stored certificate unreadable"))?;
                tracing::info!(agent_id = %claimed.agent_id, "enrollment retried; returning the issued certificate");
                (pem, not_after)
            }
            None => {
                let issued = self
                    .ca
                    .sign_agent_csr(
                        &request.csr_pem,
                        &claimed.environment,
                        claimed.agent_id,
                        self.certificate_ttl,
                    )
                    .map_err(|err| Status::invalid_argument(err.to_string()))?;
                self.store
                    .save_certificate(&IssuedCertificate {
                        agent_id: claimed.agent_id,
                        serial: issued.serial.clone(),
                        not_after: issued.not_after,
                        pem: issued.pem.clone(),
                        key_fingerprint: key_fingerprint.clone(),
                        issued_at: Utc::now(),
                    })
                    .await
                    .map_err(claim_status)?;
                tracing::info!(
                    agent_id = %claimed.agent_id,
                    environment = %claimed.environment,
                    name,
                    retry = claimed.retry,
                    "agent enrolled"
                );
                (issued.pem, issued.not_after)
            }
        };
        Ok(Response::new(pb::EnrollResponse {
            agent_id: claimed.agent_id.to_string(),
            environment: claimed.environment.to_string(),
            certificate_pem,
            ca_certificate_pem: self.ca.cert_pem().to_owned(),
            not_after: Some(to_timestamp(not_after)),
        }))
    }
}
