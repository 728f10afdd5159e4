//! Operator tokens on the wire: `Authorization: Bearer lbo_…`, checked against the hashed tokens
//! in the store on every request (a revoked token stops working at once). Every surface an
//! operator, a pipeline or an AI agent calls — the JSON API, the MCP server over HTTP, the
//! Railway gate — names its caller by the token's name.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use chrono::Utc;

use crate::store::{Store, StoreError};

/// The token of an `Authorization: Bearer …` header (the scheme is case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The name of the operator token in `headers`, when it is valid now; `None` when there is none
/// or it is unknown, revoked or expired (not told apart: callers answer all of them alike).
pub async fn operator_of(store: &Store, headers: &HeaderMap) -> Result<Option<String>, StoreError> {
    let Some(token) = bearer_token(headers) else {
        return Ok(None);
    };
    store.operator_token_valid(token, Utc::now()).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        assert_eq!(bearer_token(&headers("Bearer lbo_abc")), Some("lbo_abc"));
        assert_eq!(bearer_token(&headers("bearer  lbo_abc ")), Some("lbo_abc"));
        assert_eq!(bearer_token(&headers("Basic dXNlcjpwdw==")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
