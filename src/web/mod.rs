//! The history pages: a server-rendered job list (`/`), a job page (`/jobs/{id}`) with the
//! sanitized report, and `/stats`. Templates are embedded minijinja files (HTML auto-escaped;
//! only the ammonia-sanitized report is marked safe); one stylesheet and a few lines of
//! script for auto-refresh, both served from here so the Content-Security-Policy can stay
//! `'self'`. Who may see the pages is decided in [`session`]: loopback only without API
//! tokens, otherwise a login with a token and a signed, stateless session cookie.

mod json_view;
mod pages;
mod session;
mod stats;
mod view;

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;

use crate::clock::Clock;
use crate::config;
use crate::orchestrator::Orchestrator;
use crate::store::{Store, StoreError};

pub use session::SESSION_COOKIE;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    environment().unwrap_or_else(|e| {
        tracing::error!(error = %e, "a web template does not compile");
        Environment::new()
    })
});

/// The page templates, compiled. `.html` names are auto-escaped (minijinja's default).
fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("list.html", include_str!("templates/list.html")),
        ("job.html", include_str!("templates/job.html")),
        ("new.html", include_str!("templates/new.html")),
        ("stats.html", include_str!("templates/stats.html")),
        ("login.html", include_str!("templates/login.html")),
        ("error.html", include_str!("templates/error.html")),
    ] {
        env.add_template(name, source)?;
    }
    Ok(env)
}

/// What the pages reach.
#[derive(Clone)]
pub struct WebState {
    pub store: Store,
    pub config: config::Live,
    pub clock: Clock,
    /// For a retry from the job page.
    pub orchestrator: Orchestrator,
}

/// The pages' routes; merged by the HTTP root (`http`).
pub fn router(state: WebState) -> Router {
    let secrets = Arc::new(session::Secrets::new());
    Router::new()
        .route("/", get(pages::list))
        .route(
            "/jobs/new",
            get(pages::new_job).post(pages::create_job).layer(
                // The form carries files: a job's body and its attachments at their largest.
                axum::extract::DefaultBodyLimit::max(
                    crate::job::spec::MAX_JOB_BODY_BYTES
                        + crate::job::attachment::MAX_JOB_ATTACHMENT_BYTES as usize
                        + 64 * 1024,
                ),
            ),
        )
        .route("/jobs/{id}", get(pages::job))
        .route("/jobs/{id}/report.md", get(pages::report_md))
        .route("/jobs/{id}/response.json", get(pages::response_json))
        .route("/jobs/{id}/artifacts/{name}", get(pages::artifact))
        .route("/jobs/{id}/cancel", post(pages::cancel))
        .route("/jobs/{id}/respond", post(pages::respond))
        .route("/jobs/{id}/live", get(pages::live))
        .route("/jobs/{id}/retry", post(pages::retry))
        .route("/stats", get(stats::stats))
        .route("/logout", post(session::logout))
        .route_layer(from_fn_with_state(state.clone(), session::require_session))
        .route("/login", get(session::login_form).post(session::login))
        .route("/static/style.css", get(style))
        .route("/static/app.js", get(script))
        .layer(axum::Extension(secrets))
        .layer(from_fn(security_headers))
        // A job the API takes fits the New job form too (axum's default is 2 MB).
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::job::spec::MAX_JOB_BODY_BYTES,
        ))
        .with_state(state)
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("static/style.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("static/app.js"),
    )
        .into_response()
}

/// Headers every page carries: no inline script, no framing, no sniffing, no cross-site
/// referrers.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    // A response that set its own (an artifact's, stricter) keeps it.
    for (name, value) in set {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    resp
}

/// A serializable value as the templates see it.
fn ser<T: serde::Serialize>(v: T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(v))
}

/// Renders a template to an HTML response.
fn render(name: &str, ctx: minijinja::Value) -> Result<Response, PageError> {
    let html = TEMPLATES
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(PageError::Template)?;
    Ok(Html(html).into_response())
}

/// What can go wrong rendering a page; shown as a small HTML error page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("store error")]
    Store(#[from] StoreError),
    #[error("template error")]
    Template(#[source] minijinja::Error),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            PageError::Store(_) | PageError::Template(_) => {
                tracing::error!(error = %crate::telemetry::chain(&self), "web page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong; the daemon's log has the details.".to_string(),
                )
            }
        };
        let body = TEMPLATES
            .get_template("error.html")
            .and_then(|t| {
                t.render(minijinja::context! { title => status.canonical_reason(), message })
            })
            .unwrap_or_else(|_| "error".into());
        (status, Html(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn templates_compile() {
        assert!(
            super::environment().is_ok(),
            "{:?}",
            super::environment().err()
        );
    }
}
