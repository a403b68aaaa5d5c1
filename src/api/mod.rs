//! The REST API (axum): jobs under `/v1`, the webhook endpoints respool manages
//! (`/v1/webhook`), the schedules (`/v1/schedules`), stats (`/v1/stats`), reload
//! (`/v1/admin/reload`), health, metrics, the OpenAPI document, and the webhook receiver's
//! route. One [`ApiError`] maps every failure to `{"error": {"message", "type", "param"}}`; a
//! 500 says nothing more, the log has the chain.

mod admin;
pub(crate) mod auth;
mod budget;
mod database;
mod error;
mod health;
pub(crate) mod jobs;
mod notifications;
mod schedules;
pub mod stats;
pub mod webhook_admin;
pub mod webhook_test;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use jobs::{DuplicateView, JobList, JobView};
pub use notifications::NotificationList;
pub use schedules::{ScheduleList, ScheduleRunList, ScheduleRunView, ScheduleView};

use crate::orchestrator::Orchestrator;
use crate::webhook::Verifier;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub orchestrator: Orchestrator,
    pub verifier: Arc<Verifier>,
    /// `POST /v1/admin/reload`.
    pub reloader: crate::reload::Reloader,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "respool",
        description = "Durable OpenAI background-response jobs"
    ),
    components(schemas(crate::job::JobStatus, crate::job::JobError))
)]
struct ApiDoc;

/// Builds the whole HTTP app.
pub fn router(state: AppState) -> Router {
    let config = state.orchestrator.config().clone();
    let (v1, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::create_job, jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::get_events))
        .routes(routes!(jobs::get_response))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::retry_job))
        .routes(routes!(notifications::list_notifications))
        .routes(routes!(notifications::retry_notification))
        .routes(routes!(schedules::list_schedules))
        .routes(routes!(schedules::list_runs))
        .routes(routes!(admin::reload))
        .routes(routes!(budget::get_budget))
        .routes(routes!(stats::get_stats))
        .routes(routes!(database::backup))
        .routes(routes!(database::vacuum))
        .routes(routes!(webhook_admin::overview))
        .routes(routes!(webhook_admin::register))
        .routes(routes!(webhook_admin::rotate))
        .routes(routes!(webhook_test::test))
        .split_for_parts();
    let openapi = Arc::new(openapi);
    let v1 = v1
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(4 * 1024 * 1024));
    let webhook = Router::new()
        .route(&config.webhook.path, post(crate::webhook::receive))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(config.webhook.max_body_bytes));
    Router::new()
        .merge(v1)
        .merge(webhook)
        .merge(crate::web::router(state.clone()))
        .route("/healthz", axum::routing::get(health::healthz))
        .route("/readyz", axum::routing::get(health::readyz))
        .route("/metrics", axum::routing::get(health::metrics))
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = openapi.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                // The path only: query strings and headers can carry tokens.
                tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown`, with peer addresses for the loopback rule.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
