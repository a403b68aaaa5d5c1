//! `/v1/jobs/{id}/artifacts`: what a finished job's response made besides its text —
//! generated images and the files code interpreter wrote — listed, and each served.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::extract::{ApiPath, parse_query};
use super::{ApiError, ApiState};
use crate::artifacts::{ArtifactView, ServeError, file_response};
use crate::job::JobId;

/// A job's artifacts, in the order the response made them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ArtifactList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<ArtifactView>,
}

/// An artifact's path: `/v1/jobs/{id}/artifacts/{name}`.
#[derive(Deserialize)]
pub struct ArtifactPath {
    id: String,
    name: String,
}

/// A job's path.
#[derive(Deserialize)]
pub struct JobOnly {
    id: String,
}

/// How a file is served.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ServeQuery {
    /// `true`: a download (`Content-Disposition: attachment`) even for an image.
    #[serde(default)]
    download: bool,
}

fn no_job(id: &str) -> ApiError {
    ApiError::not_found(format!("no job with id `{id}`"))
}

async fn job_id(state: &ApiState, raw: &str) -> Result<JobId, ApiError> {
    let id = JobId::parse(raw).map_err(|_| no_job(raw))?;
    if !state.store.job_exists(&id).await? {
        return Err(no_job(raw));
    }
    Ok(id)
}

/// List a job's artifacts (empty until it has ended, and for a job whose response made none).
#[utoipa::path(get, path = "/v1/jobs/{id}/artifacts", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = ArtifactList), (status = 404, body = ErrorBody)))]
pub async fn list_artifacts(
    State(state): State<ApiState>,
    ApiPath(JobOnly { id }): ApiPath<JobOnly>,
) -> Result<Json<ArtifactList>, ApiError> {
    let id = job_id(&state, &id).await?;
    let data = state
        .store
        .artifacts(&id)
        .await?
        .into_iter()
        .map(|row| ArtifactView::of(&id, row))
        .collect();
    Ok(Json(ArtifactList {
        object: "list".into(),
        data,
    }))
}

/// One artifact's bytes. Images (PNG, JPEG, WebP, GIF by their bytes) are served inline, every
/// other file as a download; nothing served here runs in a browser.
#[utoipa::path(get, path = "/v1/jobs/{id}/artifacts/{name}", tag = "jobs",
    params(("id" = String, Path), ("name" = String, Path, description = "The artifact's name, as listed"), ServeQuery),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such job or artifact (`artifact_not_found`), or its file is missing from the artifact directory (`artifact_missing`)", body = ErrorBody),
        (status = 409, description = "Listed, but its bytes were not kept (`artifact_not_kept`; the message says why)", body = ErrorBody)))]
pub async fn get_artifact(
    State(state): State<ApiState>,
    ApiPath(ArtifactPath { id, name }): ApiPath<ArtifactPath>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query: ServeQuery = parse_query(raw.as_deref().unwrap_or_default())?;
    let id = job_id(&state, &id).await?;
    let row = state.store.artifact(&id, &name).await?.ok_or_else(|| {
        ApiError::not_found(format!("job `{id}` has no artifact named `{name}`"))
            .with_code("artifact_not_found")
    })?;
    file_response(&state.store, &id, &row, query.download)
        .await
        .map_err(|e| match e {
            ServeError::NotKept { .. } => {
                ApiError::state_conflict(e.to_string(), None).with_code("artifact_not_kept")
            }
            ServeError::Missing(_) => {
                ApiError::not_found(e.to_string()).with_code("artifact_missing")
            }
            ServeError::Read { .. } => ApiError::internal(&e),
        })
}
