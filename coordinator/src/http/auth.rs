//! Operator authentication for `/api/v1/*`: `Authorization: Bearer lbo_…`, checked against the
//! hashed tokens in the store on every request (a revoked token stops working at once).
//!
//! Anything else is answered `401` with a JSON error and a `WWW-Authenticate` challenge; the
//! reason (missing, malformed, unknown, expired) is not told apart on the wire.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::WWW_AUTHENTICATE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::api::ApiError;

/// The name of the operator token a request to `/api/v1/*` carried (put in its extensions).
#[derive(Debug, Clone)]
pub(crate) struct Operator(pub String);

/// Lets the request through when it carries a valid operator token.
pub(super) async fn require_operator(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match crate::operators::operator_of(state.store(), request.headers()).await {
        Ok(Some(name)) => {
            tracing::debug!(operator = %name, path = %request.uri().path(), "api request");
            request.extensions_mut().insert(Operator(name));
            next.run(request).await
        }
        Ok(None) => unauthorized(),
        Err(err) => ApiError::Store(err).into_response(),
    }
}

fn unauthorized() -> Response {
    let mut response = ApiError::Unauthorized.into_response();
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"lifeboat\""));
    response
}
