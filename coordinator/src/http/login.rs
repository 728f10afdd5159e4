//! Operator login for the status page, for people with a browser.
//!
//! `GET /login` shows a form; `POST /login` with an operator token (`lbo_…`, from
//! `operator-token create`) opens a session and redirects back; `POST /logout` closes it. The
//! session is a random 256-bit id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` when the
//! status page is served over HTTPS), kept in this process's memory with the token it was opened
//! with: every request checks the token again, so revoking or expiring the token ends the
//! session at once. Sessions do not survive a restart and are per replica (behind a load
//! balancer, use sticky sessions or a bearer token). No script is needed: plain HTML forms.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use axum::Form;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::AppState;
use super::status_page::{escape, html_response};

/// The session cookie.
pub(super) const COOKIE_NAME: &str = "lifeboat_session";
/// How long a session lasts.
const SESSION_TTL: Duration = Duration::hours(12);
/// Sessions kept at most; the oldest go first.
const MAX_SESSIONS: usize = 10_000;
/// Longest operator token accepted in the form (they are 47 characters).
const MAX_TOKEN_LEN: usize = 256;
/// The form posts to this page only; no script at all.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";
const STYLE: &str = "body{font:16px/1.45 system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}\
     label,input,button{display:block;width:100%;font:inherit}input{margin:.25rem 0 1rem;padding:.4rem}\
     button{padding:.5rem;cursor:pointer}.error{color:#cf222e}";

/// The open sessions of this process.
#[derive(Default)]
pub(super) struct Sessions {
    /// SHA-256 of the session id → the session.
    open: Mutex<HashMap<[u8; 32], Session>>,
}

struct Session {
    /// The operator token the session was opened with, checked on every request. Never
    /// logged, never sent back.
    token: String,
    expires_at: DateTime<Utc>,
}

impl Sessions {
    /// Opens a session for `token`; returns its id.
    fn open(&self, token: String, now: DateTime<Utc>) -> String {
        let mut id = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        let id = URL_SAFE_NO_PAD.encode(id);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= MAX_SESSIONS {
            open.retain(|_, session| session.expires_at > now);
        }
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, session)| session.expires_at)
                .map(|(key, _)| *key)
        {
            open.remove(&oldest);
        }
        open.insert(
            key(&id),
            Session {
                token,
                expires_at: now + SESSION_TTL,
            },
        );
        id
    }

    /// The token of a live session.
    pub(super) fn token(&self, id: &str, now: DateTime<Utc>) -> Option<String> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&key(id))
            .filter(|session| session.expires_at > now)
            .map(|session| session.token.clone())
    }

    fn close(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(id));
    }
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The session id in the request's cookies.
pub(super) fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// Where to go after logging in: a path on this site, nothing else.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && path.bytes().all(|byte| byte.is_ascii_graphic() && byte != b'\\') =>
        {
            path
        }
        _ => "/",
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `GET /login`.
pub(super) async fn form(Query(query): Query<NextQuery>) -> Response {
    login_page(StatusCode::OK, local_path(query.next.as_deref()), None)
}

/// `POST /login`: a valid operator token opens a session and goes back to `next`.
pub(super) async fn submit(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site login refused\n").into_response();
    }
    let next = local_path(form.next.as_deref()).to_owned();
    let token = form.token.trim();
    let now = Utc::now();
    let valid = if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        Ok(None)
    } else {
        state.store().operator_token_valid(token, now).await
    };
    match valid {
        Ok(Some(operator)) => {
            let id = state.inner.sessions.open(token.to_owned(), now);
            tracing::info!(%operator, "operator logged in to the status page");
            let secure = state.secure_cookies(&headers);
            redirect(&next, Some(cookie(&id, SESSION_TTL.num_seconds(), secure)))
        }
        Ok(None) => login_page(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That operator token is not valid."),
        ),
        Err(err) => {
            tracing::error!(error = %err, "login failed in the store");
            login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &next,
                Some("The store did not answer; try again."),
            )
        }
    }
}

/// `POST /logout`: closes the session and clears the cookie.
pub(super) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site logout refused\n").into_response();
    }
    if let Some(id) = session_id(&headers) {
        state.inner.sessions.close(id);
    }
    let secure = state.secure_cookies(&headers);
    redirect("/login", Some(cookie("", 0, secure)))
}

/// The login form, answered with `status` at the page the visitor asked for.
pub(super) fn login_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let mut html = String::with_capacity(2048);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Log in · Lifeboat</title><link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head><body><main>\
         <h1>Lifeboat</h1><p>The status page needs an operator token \
         (<code>lifeboat-coordinator operator-token create</code>).</p>"
    );
    if let Some(error) = error {
        let _ = write!(html, "<p class=\"error\" role=\"alert\">{}</p>", escape(error));
    }
    let _ = write!(
        html,
        "<form method=\"post\" action=\"/login\">\
         <input type=\"text\" name=\"operator\" autocomplete=\"username\" value=\"operator\" hidden>\
         <label for=\"token\">Operator token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
         <input type=\"hidden\" name=\"next\" value=\"{}\"><button type=\"submit\">Log in</button></form>\
         </main></body></html>",
        escape(next)
    );
    html_response(status, html, CSP)
}

/// A `303 See Other` to `location`, setting `cookie` when given.
fn redirect(location: &str, cookie: Option<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, location);
    }
    if let Some(cookie) = cookie {
        headers.insert(SET_COOKIE, cookie);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn cookie(id: &str, max_age_seconds: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={id}; Path=/; Max-Age={max_age_seconds}; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("lifeboat_session=; Path=/; Max-Age=0"))
}

/// A form post from another site is refused. Browsers say where a request comes from in
/// `Sec-Fetch-Site`, and in `Origin`, which must then name the host the request was sent to
/// (`null` when the page's referrer policy hides it, as ours does).
fn same_origin(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|value| value.to_str().ok());
    if fetch_site.is_some_and(|site| site != "same-origin" && site != "none") {
        return false;
    }
    let Some(origin) = headers
        .get(ORIGIN)
        .and_then(|value| value.to_str().ok())
        .filter(|origin| *origin != "null")
    else {
        return true;
    };
    let Some(host) = headers.get(HOST).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, origin_host)| origin_host.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_local_path_or_the_overview() {
        assert_eq!(local_path(Some("/assets/prod/db")), "/assets/prod/db");
        assert_eq!(local_path(Some("/?x=1")), "/?x=1");
        for hostile in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "/a b",
            "",
            "javascript:x",
        ] {
            assert_eq!(local_path(Some(hostile)), "/", "{hostile}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn sessions_open_expire_and_close() {
        let sessions = Sessions::default();
        let now = Utc::now();
        let id = sessions.open("lbo_x".into(), now);
        assert_eq!(id.len(), 43);
        assert_eq!(sessions.token(&id, now).as_deref(), Some("lbo_x"));
        assert_eq!(sessions.token(&id, now + SESSION_TTL), None, "expired");
        assert_eq!(sessions.token("forged", now), None);
        sessions.close(&id);
        assert_eq!(sessions.token(&id, now), None);
    }

    #[test]
    fn the_session_cookie_is_read_among_others_and_is_strict() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("theme=dark; lifeboat_session=abc"));
        assert_eq!(session_id(&headers), Some("abc"));
        let cookie = cookie("abc", 60, true);
        let text = cookie.to_str().expect("ascii");
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Strict") && text.ends_with("; Secure"));
        assert!(
            !self::cookie("abc", 60, false)
                .to_str()
                .expect("ascii")
                .contains("Secure")
        );
    }

    #[test]
    fn posts_from_another_origin_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("lifeboat.example:8080"));
        assert!(same_origin(&headers), "no Origin: not a browser form post");
        headers.insert(ORIGIN, HeaderValue::from_static("http://lifeboat.example:8080"));
        assert!(same_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(same_origin(&headers), "a hidden origin of a same-origin form");
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&headers));
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&headers));
    }
}
