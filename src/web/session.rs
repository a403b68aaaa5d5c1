//! Who may see the pages. With no API tokens configured, loopback clients only (the REST API's
//! rule). Otherwise `/login` takes an API token and sets a session cookie whose value is
//! `expiry.mac`: an HMAC-SHA256 of the expiry under a key derived from the configured tokens.
//! Nothing is stored server-side; changing the tokens (a reload) ends every session.
//!
//! Forms are CSRF-safe twice over: every POST carries a token (an HMAC of the session cookie
//! value, or of a per-process secret for loopback use) checked by the handler, and the
//! `Origin` / `Sec-Fetch-Site` headers must say the request came from this site.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::WebState;
use super::{PageError, render};
use crate::auth::{is_loopback_peer, is_valid_token};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "respool_session";
/// How long a login lasts.
const SESSION_SECS: i64 = 7 * 24 * 3600;

type HmacSha256 = Hmac<Sha256>;

/// A per-process secret: the CSRF key when there are no tokens (and so no cookie).
pub struct Secrets {
    loopback_key: [u8; 32],
}

impl Secrets {
    pub fn new() -> Self {
        let mut loopback_key = [0u8; 32];
        rand::rng().fill_bytes(&mut loopback_key);
        Secrets { loopback_key }
    }
}

/// The signed-in viewer, as the handlers see it: the token their forms must carry.
#[derive(Clone)]
pub struct Session {
    pub csrf: String,
    /// Whether there is a login to end (false in loopback mode).
    pub can_logout: bool,
}

impl Session {
    /// Checks a form's CSRF token.
    pub fn check_csrf(&self, given: &str) -> Result<(), PageError> {
        if crate::auth::constant_time_eq(&self.csrf, given) {
            Ok(())
        } else {
            Err(PageError::Forbidden(
                "This form has expired or did not come from this site; reload the page and try again."
                    .into(),
            ))
        }
    }
}

/// The session key: derived from every configured token, so a rotation ends the sessions.
fn session_key(tokens: &[SecretString]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"respool web session v1");
    for t in tokens {
        let t = t.expose_secret().as_bytes();
        h.update((t.len() as u64).to_be_bytes());
        h.update(t);
    }
    h.finalize().to_vec()
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// A cookie value good until `expires` (unix seconds).
pub fn sign_session(tokens: &[SecretString], expires: i64) -> String {
    let key = session_key(tokens);
    let sig = mac(&key, &[b"session:", expires.to_string().as_bytes()]);
    format!("{expires}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Whether a cookie value is ours and not expired.
pub fn verify_session(tokens: &[SecretString], value: &str, now_secs: i64) -> bool {
    let Some((exp, sig)) = value.split_once('.') else {
        return false;
    };
    let (Ok(expires), Ok(sig)) = (exp.parse::<i64>(), URL_SAFE_NO_PAD.decode(sig)) else {
        return false;
    };
    if expires <= now_secs {
        return false;
    }
    let key = session_key(tokens);
    let Ok(mut m) = <HmacSha256 as Mac>::new_from_slice(&key) else {
        return false;
    };
    m.update(b"session:");
    m.update(expires.to_string().as_bytes());
    m.verify_slice(&sig).is_ok()
}

fn csrf_for(key: &[u8], session_value: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, &[b"csrf:", session_value.as_bytes()]))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether a state-changing request came from our own pages: `Sec-Fetch-Site` (when the
/// browser sends it) must be `same-origin`, and `Origin` (when sent) must be this host.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return false;
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
            let bare = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            matches!((bare, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
        }
    }
}

/// Lets a request through with a [`Session`], or sends it to `/login` (a page) or away (a
/// POST, or a non-loopback client when there are no tokens).
pub async fn require_session(
    State(state): State<WebState>,
    Extension(secrets): Extension<Arc<Secrets>>,
    mut req: Request,
    next: Next,
) -> Response {
    let config = state.config.get();
    let tokens = &config.api.tokens;
    let is_post = req.method() == Method::POST;
    if is_post && !same_origin(req.headers()) {
        return PageError::Forbidden("cross-site form posts are refused".into()).into_response();
    }
    let session = if tokens.is_empty() {
        if !is_loopback_peer(&req) {
            return PageError::Forbidden(
                "No API tokens are configured, so these pages are served to loopback clients only."
                    .into(),
            )
            .into_response();
        }
        Session {
            csrf: csrf_for(&secrets.loopback_key, "loopback"),
            can_logout: false,
        }
    } else {
        let now = state.clock.now_ms() / 1000;
        match cookie_value(req.headers(), SESSION_COOKIE) {
            Some(v) if verify_session(tokens, v, now) => Session {
                csrf: csrf_for(&session_key(tokens), v),
                can_logout: true,
            },
            _ if is_post => {
                return PageError::Forbidden("sign in first".into()).into_response();
            }
            _ => {
                let next_path = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                let target = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", &next_path)
                    .finish();
                return Redirect::to(&format!("/login?{target}")).into_response();
            }
        }
    };
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// Only local paths are followed after login (no `//evil.example`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn login_form(
    State(state): State<WebState>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, PageError> {
    if state.config.get().api.tokens.is_empty() {
        return Ok(Redirect::to("/").into_response());
    }
    render(
        "login.html",
        minijinja::context! { next => safe_next(q.next.as_deref()), error => None::<String> },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

pub async fn login(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, PageError> {
    if !same_origin(&headers) {
        return Err(PageError::Forbidden(
            "cross-site form posts are refused".into(),
        ));
    }
    let config = state.config.get();
    let tokens = &config.api.tokens;
    let next = safe_next(f.next.as_deref());
    if tokens.is_empty() {
        return Ok(Redirect::to("/").into_response());
    }
    if !is_valid_token(tokens, f.token.trim()) {
        tracing::info!("web login refused: wrong token");
        let mut resp = render(
            "login.html",
            minijinja::context! { next, error => "That token is not one of this daemon's API tokens." },
        )?;
        *resp.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
        return Ok(resp);
    }
    let now = state.clock.now_ms() / 1000;
    let value = sign_session(tokens, now + SESSION_SECS);
    let secure = if is_https(config.public_url.as_deref()) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={value}; Max-Age={SESSION_SECS}; Path=/; HttpOnly; SameSite=Strict{secure}"
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
}

fn is_https(public_url: Option<&str>) -> bool {
    public_url.is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
}

/// A form that only carries its CSRF token. A missing token is an empty one, so it is refused
/// by the check (403), not by the form parser.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&f.csrf)?;
    let secure = if is_https(state.config.get().public_url.as_deref()) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict{secure}");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_round_trip() {
        let tokens = vec![SecretString::from("t1")];
        let v = sign_session(&tokens, 1000);
        assert!(verify_session(&tokens, &v, 999));
        assert!(!verify_session(&tokens, &v, 1000), "expired");
        assert!(
            !verify_session(&[SecretString::from("t2")], &v, 0),
            "other key"
        );
        let forged = v.replacen("1000", "9999", 1);
        assert!(!verify_session(&tokens, &forged, 0), "expiry is signed");
        assert!(!verify_session(&tokens, "garbage", 0));
    }

    #[test]
    fn next_is_local() {
        assert_eq!(safe_next(Some("/jobs/x")), "/jobs/x");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn origin_rule() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&h));
    }
}
