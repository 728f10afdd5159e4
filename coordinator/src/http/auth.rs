//! Operator authentication for `/api/v1/*`: `Authorization: Bearer lbo_…`, checked against the
//! hashed tokens in the store on every request (a revoked token stops working at once).
//!
//! Anything else is answered `401` with a JSON error and a `WWW-Authenticate` challenge; the
//! reason (missing, malformed, unknown, expired) is not told apart on the wire.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::AppState;
use super::api::ApiError;

/// Lets the request through when it carries a valid operator token.
pub(super) async fn require_operator(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = bearer_token(request.headers()) else {
        return unauthorized();
    };
    match state.store().operator_token_valid(token, Utc::now()).await {
        Ok(Some(name)) => {
            tracing::debug!(operator = %name, path = %request.uri().path(), "api request");
            next.run(request).await
        }
        Ok(None) => unauthorized(),
        Err(err) => ApiError::Store(err).into_response(),
    }
}

/// The token of an `Authorization: Bearer …` header (the scheme is case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthorized() -> Response {
    let mut response = ApiError::Unauthorized.into_response();
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"lifeboat\""));
    response
}

#[cfg(test)]
mod tests {
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
