//! Join tokens: how an operator lets a new agent in.
//!
//! A token is 32 random bytes, shown once (`lbt_` + base64url). Only its SHA-256 is stored, so a
//! copy of the store does not let anyone enroll. Tokens expire, are single-use by default, and
//! are bound to one environment.

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix that makes tokens recognisable (in logs, and to secret scanners).
pub const TOKEN_PREFIX: &str = "lbt_";

/// Mints a new random join token.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Returns the stored form of a token: SHA-256, hex.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` has the shape of a join token (checked before any store lookup).
pub fn looks_valid(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_well_formed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(looks_valid(&a), "{a}");
        assert!(!looks_valid("lbt_short"));
        assert!(!looks_valid(&a.replace(TOKEN_PREFIX, "xyz_")));
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
    }
}
