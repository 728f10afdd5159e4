//! Operator authentication, checked against the hashed tokens in the store on every request (a
//! revoked token stops working at once).
//!
//! - `/api/v1/*` ([`require_operator`]): `Authorization: Bearer lbo_…`. Anything else is
//!   answered `401` with a JSON error and a `WWW-Authenticate` challenge; the reason (missing,
//!   malformed, unknown, expired) is not told apart on the wire.
//! - The status page, asset pages and `/metrics` ([`require_viewer`]): a bearer token (Prometheus)
//!   or the session cookie of a [`login`](super::login); without either, a page answers `401`
//!   with the login form and `/metrics` a plain `401`. `public_status = true` opens them.

use axum::extract::{Request, State};
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::AppState;
use super::api::ApiError;
use super::login;

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

/// Lets the request through when the status page is public, or the request carries a valid
/// operator token or session.
pub(super) async fn require_viewer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.inner.public_status {
        return next.run(request).await;
    }
    let now = Utc::now();
    let headers = request.headers();
    let token = crate::operators::bearer_token(headers)
        .map(str::to_owned)
        .or_else(|| login::session_id(headers).and_then(|id| state.inner.sessions.token(id, now)));
    let valid = match token {
        Some(token) => state.store().operator_token_valid(&token, now).await,
        None => Ok(None),
    };
    match valid {
        Ok(Some(_operator)) => next.run(request).await,
        Ok(None) if request.uri().path() == "/metrics" => {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                "an operator token is required: Authorization: Bearer lbo_...\n",
            )
                .into_response();
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"lifeboat\""));
            response
        }
        Ok(None) => {
            let here = request
                .uri()
                .path_and_query()
                .map_or("/", |path| path.as_str())
                .to_owned();
            login::login_page(StatusCode::UNAUTHORIZED, &here, None)
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot check a viewer's token in the store");
            (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable\n").into_response()
        }
    }
}

fn unauthorized() -> Response {
    let mut response = ApiError::Unauthorized.into_response();
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"lifeboat\""));
    response
}
