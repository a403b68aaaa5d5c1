//! The REST API (axum): jobs under `/v1`, the webhook endpoints respool manages
//! (`/v1/webhook`), the schedules (`/v1/schedules`), stats (`/v1/stats`), reload
//! (`/v1/admin/reload`), and the OpenAPI document. A leaf: [`router`] is merged by the HTTP
//! root (`http`) beside the pages and the webhook receiver, and imports neither. One
//! [`ApiError`] maps every failure to `{"error": {"message", "type", "param"}}`; a 500 says
//! nothing more, the log has the chain.

mod admin;
mod artifacts;
mod attachments;
mod auth;
mod budget;
mod database;
pub mod endpoint_test;
pub mod endpoints;
pub(crate) mod error;
mod extract;
mod follow;
mod job_schema;
pub(crate) mod jobs;
mod notifications;
mod openapi;
mod params;
mod respond;
mod schedules;
pub mod stats;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use artifacts::ArtifactList;
pub use error::ApiError;
pub use jobs::JobList;
pub use notifications::NotificationList;
pub use schedules::{ScheduleList, ScheduleRunList, ScheduleRunView, ScheduleView};

use crate::clock::Clock;
use crate::config;
use crate::inbound::Verifier;
use crate::orchestrator::Orchestrator;
use crate::reload::Reloader;
use crate::store::Store;

/// The largest request body the API reads.
pub const BODY_LIMIT: usize = crate::job::spec::MAX_JOB_BODY_BYTES;
/// [`BODY_LIMIT`] in words, for the error that refuses a larger body.
const BODY_LIMIT_TEXT: &str = "4 MiB";

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub config: config::Live,
    pub clock: Clock,
    /// Behaviour that is the orchestrator's: accepting and retrying jobs, waking the workers,
    /// budgets, the upstream client in force.
    pub orchestrator: Orchestrator,
    /// The receiver's keys, reloaded after a register or a rotation.
    pub verifier: Arc<Verifier>,
    /// `POST /v1/admin/reload`.
    pub reloader: Reloader,
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

/// The API's routes, each with its part of the document.
fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::create_job, jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::get_events))
        .routes(routes!(jobs::get_response))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::retry_job))
        .routes(routes!(respond::respond))
        .routes(routes!(artifacts::list_artifacts))
        .routes(routes!(artifacts::get_artifact))
        .routes(routes!(notifications::list_notifications))
        .routes(routes!(notifications::retry_notification))
        .routes(routes!(schedules::list_schedules))
        .routes(routes!(schedules::list_runs))
        .routes(routes!(admin::reload))
        .routes(routes!(budget::get_budget))
        .routes(routes!(stats::get_stats))
        .routes(routes!(database::backup))
        .routes(routes!(database::vacuum))
        .routes(routes!(endpoints::overview))
        .routes(routes!(endpoints::register))
        .routes(routes!(endpoints::rotate))
        .routes(routes!(endpoint_test::test))
        .routes(routes!(attachments::get_attachment))
        .merge(
            // An upload may be larger than a JSON body: this route's limit is its own.
            OpenApiRouter::new()
                .routes(routes!(attachments::upload))
                .layer(DefaultBodyLimit::max(attachments::UPLOAD_BODY_LIMIT)),
        )
}

/// The finished OpenAPI document (without the live config's sink names).
pub fn document() -> serde_json::Value {
    let (_, doc) = routes().split_for_parts();
    openapi::finish(doc)
}

/// `/v1` (behind the token check) and `/openapi.json`.
pub fn router(state: ApiState) -> Router {
    let (v1, openapi) = routes().split_for_parts();
    let openapi = Arc::new(openapi::finish(openapi));
    let v1 = v1
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    Router::new()
        .merge(v1)
        .route(
            "/openapi.json",
            axum::routing::get(move |State(state): State<ApiState>| {
                let doc = openapi.clone();
                async move {
                    let sinks: Vec<String> = state.config.get().sinks.keys().cloned().collect();
                    axum::Json(openapi::with_sinks(&doc, &sinks))
                }
            }),
        )
        .with_state(state)
}
