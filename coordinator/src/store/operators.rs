//! Operator API tokens: the bearer tokens of `/api/v1/*`.
//!
//! A token is 32 random bytes shown once, at creation, as `lbo_<base64url>`; only its SHA-256
//! (hex) is stored, so a copy of the database does not grant API access. A token is valid until
//! it expires (if it has an expiry) or its name is revoked.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{Store, StoreError, from_millis, from_optional_millis, to_millis};

/// The prefix of every operator token, so a leaked one is recognisable (secret scanners, logs).
pub const OPERATOR_TOKEN_PREFIX: &str = "lbo_";

/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// An operator token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorTokenRecord {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const INSERT_TOKEN: &str =
    "INSERT INTO operator_tokens (token_hash, name, created_at, expires_at) VALUES ($1, $2, $3, $4)";

const SELECT_VALID: &str = "SELECT name FROM operator_tokens WHERE token_hash = $1 AND revoked_at IS NULL \
     AND (expires_at IS NULL OR expires_at > $2)";

const REVOKE_TOKENS: &str = "UPDATE operator_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL";

const SELECT_TOKENS: &str =
    "SELECT name, created_at, expires_at, revoked_at FROM operator_tokens ORDER BY name, created_at";

/// The stored form of a token: SHA-256, hex.
fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh token: the prefix and 32 random bytes, base64url without padding.
fn generate_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{OPERATOR_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

impl Store {
    /// Creates an operator token called `name`, valid until `expires_at` (or until revoked when
    /// `None`), and returns its secret: the only time it is shown.
    pub async fn create_operator_token(
        &self,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<String, StoreError> {
        let token = generate_token();
        let token_hash = hash_token(&token);
        let now = to_millis(Utc::now());
        with_pool!(self, |pool| {
            sqlx::query(INSERT_TOKEN)
                .bind(&token_hash)
                .bind(name)
                .bind(now)
                .bind(expires_at.map(to_millis))
                .execute(pool)
                .await?;
        });
        Ok(token)
    }

    /// Returns the name of the operator token `token` when it is known, not revoked and not
    /// expired at `now`.
    pub async fn operator_token_valid(&self, token: &str, now: DateTime<Utc>) -> Result<Option<String>, StoreError> {
        if !token.starts_with(OPERATOR_TOKEN_PREFIX) {
            return Ok(None);
        }
        let token_hash = hash_token(token);
        let name: Option<String> = with_pool!(self, |pool| {
            sqlx::query_scalar(SELECT_VALID)
                .bind(&token_hash)
                .bind(to_millis(now))
                .fetch_optional(pool)
                .await?
        });
        Ok(name)
    }

    /// Revokes every token called `name`; returns how many were revoked (0 when none was
    /// active). Revoking twice keeps the first revocation time.
    pub async fn revoke_operator_token(&self, name: &str) -> Result<u64, StoreError> {
        let now = to_millis(Utc::now());
        let revoked = with_pool!(self, |pool| {
            sqlx::query(REVOKE_TOKENS)
                .bind(name)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(revoked)
    }

    /// Every operator token ever created (names and times, never secrets), by name.
    pub async fn operator_tokens(&self) -> Result<Vec<OperatorTokenRecord>, StoreError> {
        let rows: Vec<(String, i64, Option<i64>, Option<i64>)> =
            with_pool!(self, |pool| sqlx::query_as(SELECT_TOKENS).fetch_all(pool).await?);
        rows.into_iter()
            .map(|(name, created_at, expires_at, revoked_at)| {
                Ok(OperatorTokenRecord {
                    name,
                    created_at: from_millis("operator_tokens.created_at", created_at)?,
                    expires_at: from_optional_millis("operator_tokens.expires_at", expires_at)?,
                    revoked_at: from_optional_millis("operator_tokens.revoked_at", revoked_at)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let first = generate_token();
        let second = generate_token();
        assert!(first.starts_with(OPERATOR_TOKEN_PREFIX));
        assert_ne!(first, second);
        // 32 bytes in base64url without padding.
        assert_eq!(first.len(), OPERATOR_TOKEN_PREFIX.len() + 43);
        let hash = hash_token(&first);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&first[OPERATOR_TOKEN_PREFIX.len()..]));
    }
}
