//! Join tokens, enrollment claims and issued certificates.
//!
//! A claim is one transaction that checks the token, consumes a use and creates the agent. It is
//! race-safe on both engines: PostgreSQL locks the token row (`FOR UPDATE`), SQLite starts the
//! transaction holding the write lock (`BEGIN IMMEDIATE`), so two claims of a single-use token
//! are serialised and the second sees the use consumed.

use chrono::{DateTime, Utc};
use lifeboat_shared::ids::{AgentId, Environment};
use uuid::Uuid;

use super::{Store, StoreError, parse_environment, to_millis};

/// A join token to store. The secret itself is never stored, only its hash.
#[derive(Debug, Clone)]
pub struct NewJoinToken {
    pub token_hash: String,
    /// The environment every agent enrolled with this token belongs to.
    pub environment: Environment,
    pub expires_at: DateTime<Utc>,
    /// How many distinct agent keys may enroll with the token.
    pub uses_allowed: u32,
    pub created_at: DateTime<Utc>,
}

/// An agent's attempt to enroll with a join token.
#[derive(Debug, Clone)]
pub struct TokenClaim {
    pub token_hash: String,
    /// Fingerprint of the agent's public key: a retry with the same key is the same agent.
    pub key_fingerprint: String,
    pub agent_name: String,
    pub now: DateTime<Utc>,
}

/// The agent a successful claim admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub agent_id: AgentId,
    pub environment: Environment,
    /// True when this key had already enrolled with this token: no use was consumed.
    pub retry: bool,
    /// On a retry, the certificate already issued for this key, if it was saved.
    pub certificate_pem: Option<String>,
}

/// A certificate the CA signed for an agent.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub agent_id: AgentId,
    pub serial: String,
    pub not_after: DateTime<Utc>,
    pub pem: String,
    /// Links the certificate to the enrollment of the same key, so a retry can get it back.
    pub key_fingerprint: String,
    pub issued_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    environment: String,
    expires_at: i64,
    uses_allowed: i64,
    uses_consumed: i64,
}

#[derive(sqlx::FromRow)]
struct EnrollmentRow {
    agent_id: Uuid,
    environment: String,
    certificate_pem: Option<String>,
}

const INSERT_TOKEN: &str = "INSERT INTO join_tokens \
     (token_hash, environment, expires_at, uses_allowed, uses_consumed, created_at) \
     VALUES ($1, $2, $3, $4, 0, $5)";

const SELECT_TOKEN_ENVIRONMENT: &str = "SELECT environment FROM join_tokens WHERE token_hash = $1";

const SELECT_ENROLLMENT: &str = "SELECT e.agent_id, a.environment, e.certificate_pem \
     FROM enrollments e JOIN agents a ON a.id = e.agent_id \
     WHERE e.token_hash = $1 AND e.key_fingerprint = $2";

const CONSUME_TOKEN_USE: &str = "UPDATE join_tokens SET uses_consumed = uses_consumed + 1 WHERE token_hash = $1";

const INSERT_AGENT: &str = "INSERT INTO agents (id, name, environment, capabilities, connected, created_at) \
     VALUES ($1, $2, $3, 'null', FALSE, $4)";

const INSERT_ENROLLMENT: &str =
    "INSERT INTO enrollments (token_hash, key_fingerprint, agent_id, enrolled_at) VALUES ($1, $2, $3, $4)";

const SET_CERT_NOT_AFTER: &str = "UPDATE agents SET cert_not_after = $2 WHERE id = $1";

const INSERT_CERTIFICATE: &str = "INSERT INTO certificates \
     (serial, agent_id, key_fingerprint, not_after, pem, issued_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";

const SET_ENROLLMENT_CERTIFICATE: &str =
    "UPDATE enrollments SET certificate_pem = $3 WHERE agent_id = $1 AND key_fingerprint = $2";

impl Store {
    /// Stores a new join token with no use consumed.
    pub async fn insert_join_token(&self, token: &NewJoinToken) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(INSERT_TOKEN)
                .bind(token.token_hash.as_str())
                .bind(token.environment.as_str())
                .bind(to_millis(token.expires_at))
                .bind(i64::from(token.uses_allowed))
                .bind(to_millis(token.created_at))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Returns the environment of the join token with this hash, if it exists (expired or not).
    pub async fn join_token_environment(&self, token_hash: &str) -> Result<Option<Environment>, StoreError> {
        let environment: Option<String> = with_pool!(self, |pool| {
            sqlx::query_scalar(SELECT_TOKEN_ENVIRONMENT)
                .bind(token_hash)
                .fetch_optional(pool)
                .await?
        });
        environment.as_deref().map(parse_environment).transpose()
    }

    /// Enrolls an agent with a join token, in one transaction.
    ///
    /// Fails with [`StoreError::TokenUnknown`], [`StoreError::TokenExpired`] or, when every use
    /// is consumed, [`StoreError::TokenExhausted`]. A key that already enrolled with this token
    /// gets its agent back (`retry`) without consuming a use, as long as the token has not
    /// expired.
    pub async fn claim_join_token(&self, claim: &TokenClaim) -> Result<Claimed, StoreError> {
        let now = to_millis(claim.now);
        with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            let token: Option<TokenRow> = sqlx::query_as(dialect.select_token_for_claim)
                .bind(claim.token_hash.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let token = token.ok_or(StoreError::TokenUnknown)?;
            if token.expires_at <= now {
                return Err(StoreError::TokenExpired);
            }

            let previous: Option<EnrollmentRow> = sqlx::query_as(SELECT_ENROLLMENT)
                .bind(claim.token_hash.as_str())
                .bind(claim.key_fingerprint.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(previous) = previous {
                tx.commit().await?;
                return Ok(Claimed {
                    agent_id: AgentId(previous.agent_id),
                    environment: parse_environment(&previous.environment)?,
                    retry: true,
                    certificate_pem: previous.certificate_pem,
                });
            }

            if token.uses_consumed >= token.uses_allowed {
                return Err(StoreError::TokenExhausted);
            }
            let environment = parse_environment(&token.environment)?;
            let agent_id = AgentId::new();
            sqlx::query(CONSUME_TOKEN_USE)
                .bind(claim.token_hash.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_AGENT)
                .bind(agent_id.0)
                .bind(claim.agent_name.as_str())
                .bind(environment.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_ENROLLMENT)
                .bind(claim.token_hash.as_str())
                .bind(claim.key_fingerprint.as_str())
                .bind(agent_id.0)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Claimed {
                agent_id,
                environment,
                retry: false,
                certificate_pem: None,
            })
        })
    }

    /// Records an issued certificate: its row, the agent's certificate expiry, and the PEM on the
    /// enrollment of the same key (so a retried enrollment gets it back).
    ///
    /// Fails with [`StoreError::AgentNotFound`] if the agent does not exist.
    pub async fn save_certificate(&self, cert: &IssuedCertificate) -> Result<(), StoreError> {
        with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            let updated = sqlx::query(SET_CERT_NOT_AFTER)
                .bind(cert.agent_id.0)
                .bind(to_millis(cert.not_after))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                return Err(StoreError::AgentNotFound(cert.agent_id));
            }
            sqlx::query(INSERT_CERTIFICATE)
                .bind(cert.serial.as_str())
                .bind(cert.agent_id.0)
                .bind(cert.key_fingerprint.as_str())
                .bind(to_millis(cert.not_after))
                .bind(cert.pem.as_str())
                .bind(to_millis(cert.issued_at))
                .execute(&mut *tx)
                .await?;
            sqlx::query(SET_ENROLLMENT_CERTIFICATE)
                .bind(cert.agent_id.0)
                .bind(cert.key_fingerprint.as_str())
                .bind(cert.pem.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
