//! `/v1/jobs`: submit, list, show, timeline, stored response, cancel, retry.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::extract::{ApiJson, ApiPath, parse_query};
use super::params::{After, JobLimit, MetadataPair, Since};
use super::{ApiError, ApiState};
use crate::job::{JobId, JobSpec, JobStatus};
use crate::orchestrator::{AcceptError, RetryError};
use crate::store::filter::{Cursor, parse_metadata_pair, parse_since};
use crate::store::{EventRow, InsertOutcome, JobFilter, JobRow};
use crate::view::{DuplicateView, JobView};

fn view(state: &ApiState, row: &JobRow) -> JobView {
    JobView::priced(row, &state.config.get().pricing())
}

/// A spec as the API shows it. Specs are user input, but a Responses body can carry
/// credentials for remote tools (an MCP tool's `authorization`, its `headers`, a secret in its
/// `server_url`): those are redacted ([`crate::job::redact`]), so a reader of the job cannot
/// lift them. The stored spec keeps them (a retry needs them).
fn shown_spec(spec: &JobSpec) -> Option<Value> {
    let mut v = serde_json::to_value(spec).ok()?;
    crate::job::redact::redact_spec(&mut v);
    Some(v)
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub object: String,
    pub data: Vec<JobView>,
    pub has_more: bool,
    /// Pass as `after` to get the next page.
    pub next_cursor: Option<String>,
}

/// A job's timeline.
#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub object: String,
    pub data: Vec<EventRow>,
}

/// The job list's query. `metadata` may repeat, which `serde_urlencoded` cannot collect: the
/// handler takes those pairs out of the query first (see [`split_metadata`]).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only jobs with this status.
    #[param(inline)]
    pub status: Option<JobStatus>,
    /// Only jobs with this name.
    pub name: Option<String>,
    /// Only jobs using this model.
    pub model: Option<String>,
    /// Full-text search over the job's name, input and output text. Every word must match
    /// (as a whole token, case-insensitive); quotes and operators are plain text.
    pub search: Option<String>,
    /// Only jobs whose metadata has this `key=value` pair; repeat for several (all must match).
    // Never in what serde reads: `split_metadata` takes the pairs out first.
    #[serde(default)]
    #[param(inline, style = Form, explode)]
    pub metadata: Vec<MetadataPair>,
    /// Only jobs created since: a duration back from now (`7d`, `2h`), an RFC 3339 time or unix
    /// seconds.
    #[param(inline)]
    pub since: Option<Since>,
    /// Page size, 1 to 100 (default 20).
    #[param(inline)]
    pub limit: Option<JobLimit>,
    /// The `next_cursor` of the previous page.
    #[param(inline)]
    pub after: Option<After>,
    /// Only the jobs of this chain: its first job's id (a job's `chain_id`).
    pub chain: Option<String>,
}

/// The query without its `metadata` pairs, and those pairs checked.
fn split_metadata(raw: &str) -> Result<(String, Vec<MetadataPair>), ApiError> {
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    let mut metadata = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if k == "metadata" {
            let pair = MetadataPair::parse(&v)
                .ok()
                .filter(|p| parse_metadata_pair(p.as_str()).is_some())
                .ok_or_else(|| {
                    ApiError::invalid(
                        format!("`metadata` must be `key=value` with a key, not `{v}`"),
                        Some("metadata".into()),
                    )
                })?;
            metadata.push(pair);
        } else {
            rest.append_pair(&k, &v);
        }
    }
    Ok((rest.finish(), metadata))
}

/// A job's path: `/v1/jobs/{id}`.
#[derive(Deserialize)]
pub struct JobPath {
    pub(super) id: String,
}

pub(super) fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no job with id `{id}`"))
}

/// A job id from the path; one that cannot be an id names no job.
pub(super) fn parse_id(raw: &str) -> Result<JobId, ApiError> {
    JobId::parse(raw).map_err(|_| not_found(raw))
}

/// A spec error's field (`input.0.content.0.text`) as the API names parameters, the way
/// OpenAI's API does and the typed bodies' errors do: `input[0].content[0].text`. A map key
/// of digits (`metadata.0`) stays a key.
fn param_of(field: &str) -> String {
    let mut out = String::new();
    let mut in_map = false;
    for (i, part) in field.split('.').enumerate() {
        if i > 0 && !in_map && !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if i > 0 {
                out.push('.');
            }
            out.push_str(part);
        }
        in_map = part == "metadata" && i == 0;
    }
    out
}

/// The request's `Idempotency-Key` header, if it has one, checked.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(key) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let param = || Some("Idempotency-Key".to_string());
    let key = key
        .to_str()
        .map_err(|_| ApiError::invalid("Idempotency-Key must be ASCII", param()))?;
    crate::job::spec::check_idempotency_key(key)
        .map_err(|m| ApiError::invalid(format!("Idempotency-Key {m}"), param()))?;
    Ok(Some(key))
}

/// Submit a job: a Responses API create body plus respool's keys.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body(content = Object, description = "A job spec"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays return the same job")),
    responses((status = 201, description = "Created, or an idempotent replay (header `Idempotent-Replayed: true`)", body = JobView), (status = 400, body = ErrorBody), (status = 403, description = "It brings its own `handlers:` and the config does not allow jobs' handlers (`actions.job_handlers`); code `job_handlers_not_allowed`, `param` names it", body = ErrorBody), (status = 404, description = "An attachment it names is not stored: upload it with `POST /v1/attachments` first; `param` names it", body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_job(
    State(state): State<ApiState>,
    headers: HeaderMap,
    ApiJson(mut value): ApiJson<Value>,
) -> Result<Response, ApiError> {
    if let Some(key) = idempotency_key(&headers)?
        && let Value::Object(m) = &mut value
    {
        match m.get("idempotency_key").and_then(Value::as_str) {
            // Two keys for one request: which one the client meant is not ours to guess. A
            // conflict between two values, each well formed, so 409 like a reused key.
            Some(k) if k != key => {
                return Err(ApiError::conflict(
                    "the Idempotency-Key header and the body's `idempotency_key` differ",
                    Some("idempotency_key".into()),
                ));
            }
            // Absent or null: the header's key is the job's. Present but not a string: left for
            // the spec's check to refuse, naming the field.
            None if m.get("idempotency_key").is_none_or(Value::is_null) => {
                m.insert("idempotency_key".into(), Value::String(key.to_string()));
            }
            _ => {}
        }
    }
    if let Some((field, message)) = value
        .as_object()
        .and_then(super::job_schema::refused_over_rest)
    {
        return Err(ApiError::invalid(
            format!("field `{field}`: {message}"),
            Some(field.into()),
        ));
    }
    let spec = JobSpec::from_value(value, "(request)").map_err(|errs| {
        let param = errs.first().map(|e| param_of(&e.field));
        let message = errs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::invalid(message, param)
    })?;
    if spec.schedule.is_some() {
        return Err(ApiError::invalid(
            "field `schedule`: schedules are read from the daemon's jobs file (`jobs_file`); \
             send the job without `schedule` to run it once",
            Some("schedule".into()),
        ));
    }
    let warnings: Vec<String> = spec.warnings().iter().map(ToString::to_string).collect();
    match state.orchestrator.accept(spec, "api").await {
        Ok(InsertOutcome::Created(row)) => {
            let mut v = view(&state, &row);
            v.warnings = warnings;
            Ok((StatusCode::CREATED, Json(v)).into_response())
        }
        // A replay answers as the original did, marked as a replay.
        Ok(InsertOutcome::Existing(row)) => Ok((
            StatusCode::CREATED,
            [("idempotent-replayed", "true")],
            Json(view(&state, &row)),
        )
            .into_response()),
        Ok(InsertOutcome::KeyConflict(row)) => Err(ApiError::conflict(
            format!(
                "this idempotency key was used for job {} with a different spec",
                row.id
            ),
            Some("idempotency_key".into()),
        )),
        Err(e @ AcceptError::UnknownSink { .. }) => {
            Err(ApiError::invalid(e.to_string(), Some("notify".into())))
        }
        Err(e @ AcceptError::UnknownAttachment { index, .. }) => {
            let mut err = ApiError::not_found(e.to_string()).with_code("attachment_not_found");
            err.param = Some(format!("attachments.{index}"));
            Err(err)
        }
        Err(e @ AcceptError::Attachments { .. }) => {
            Err(ApiError::invalid(e.to_string(), Some("attachments".into())))
        }
        Err(e @ AcceptError::UnknownKnowledge { index, .. }) => {
            let mut err = ApiError::not_found(e.to_string()).with_code("knowledge_not_found");
            err.param = Some(format!("knowledge.{index}"));
            Err(err)
        }
        Err(e @ AcceptError::KnowledgeUnreadable { .. }) => {
            tracing::error!(error = %e, "a configured knowledge set cannot be read");
            Err(ApiError::internal(&e))
        }
        Err(e @ AcceptError::JobHandlers { .. }) => {
            let param = match &e {
                AcceptError::JobHandlers { function, .. } => format!("handlers.{function}"),
                _ => "handlers".into(),
            };
            Err(ApiError::forbidden(e.to_string(), Some(param))
                .with_code("job_handlers_not_allowed"))
        }
        Err(e @ AcceptError::UnknownPredecessor { .. }) => {
            let is_id = matches!(&e, AcceptError::UnknownPredecessor { after, .. }
                if crate::job::JobId::parse(after).is_ok());
            let mut err = if is_id {
                ApiError::not_found(e.to_string()).with_code("predecessor_not_found")
            } else {
                ApiError::invalid(e.to_string(), None)
            };
            err.param = Some("after".into());
            Err(err)
        }
        Err(AcceptError::Store(e)) => Err(e.into()),
    }
}

/// List jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListParams),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody)))]
pub async fn list_jobs(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<JobList>, ApiError> {
    let (rest, metadata) = split_metadata(raw.as_deref().unwrap_or(""))?;
    let mut p: ListParams = parse_query(&rest)?;
    p.metadata = metadata;
    let limit = JobLimit::get(p.limit);
    let now = state.clock.now_ms();
    let since = p
        .since
        .as_ref()
        .map(|s| parse_since(s.as_str(), now))
        .transpose()?;
    let before = p
        .after
        .as_ref()
        .map(|a| Cursor::decode(a.as_str()))
        .transpose()?
        .map(|c| (c.created_at, c.id));
    let filter = JobFilter {
        status: p.status,
        name: p.name,
        model: p.model,
        search: p.search,
        metadata: p
            .metadata
            .iter()
            .filter_map(|m| parse_metadata_pair(m.as_str()))
            .collect(),
        since,
        before,
        chain: p.chain,
        limit: limit + 1,
    };
    let mut rows = state.store.list_jobs(&filter).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_more {
        rows.last().map(|r| Cursor::encode(r.created_at, &r.id))
    } else {
        None
    };
    Ok(Json(JobList {
        object: "list".into(),
        data: rows.iter().map(|r| view(&state, r)).collect(),
        has_more,
        next_cursor,
    }))
}

/// Show a job.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(state): State<ApiState>,
    ApiPath(JobPath { id }): ApiPath<JobPath>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_id(&id)?;
    let row = state
        .store
        .get_job(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let mut v = view(&state, &row);
    v.spec = shown_spec(&row.spec);
    v.retried_by = state.store.retried_by(&row.id).await?;
    v.actions = state.store.job_actions(&row.id).await?;
    v.chain = crate::view::ChainView::of(&state.store, &row).await?;
    let config = state.config.get();
    v.duplicates = state
        .store
        .duplicates_of(&row.id)
        .await?
        .iter()
        .map(|d| DuplicateView::priced(d, &row.model, &config.pricing()))
        .collect();
    Ok(Json(v))
}

/// `GET /v1/jobs/{id}/events`'s query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// `true`: answer with `text/event-stream`, the events written so far, then each new one
    /// until the job ends (`id:` is the event's id: reconnect with `Last-Event-ID` to go on
    /// after it; `event:` its kind; `data:` the event as JSON).
    pub follow: Option<bool>,
}

/// A job's timeline, oldest first; or, with `follow=true`, followed live as server-sent
/// events (`src/api/follow.rs`).
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path), EventsParams,
        ("Last-Event-ID" = Option<i64>, Header, description = "With `follow=true`: go on after this event id.")),
    responses((status = 200, content((EventList = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_events(
    State(state): State<ApiState>,
    ApiPath(JobPath { id }): ApiPath<JobPath>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let params: EventsParams = parse_query(raw.as_deref().unwrap_or(""))?;
    let store = &state.store;
    // Not `get_job`: the timeline of a job whose row no longer decodes (quarantined) is where
    // the reason is, so it must be readable.
    if !store.job_exists(&id).await? {
        return Err(not_found(&id));
    }
    // Checked whether or not it follows: a header the document describes is never ignored
    // when malformed.
    let after = super::follow::last_event_id(&headers)?;
    if params.follow == Some(true) {
        return Ok(super::follow::follow(&state, id, after));
    }
    Ok(Json(EventList {
        object: "list".into(),
        data: store.list_events(&id).await?,
    })
    .into_response())
}

/// The stored upstream Response JSON, whole but for credentials in its echoed `tools`.
#[utoipa::path(get, path = "/v1/jobs/{id}/response", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody),
        (status = 409, description = "The job has no stored response yet (code `no_response_yet`)", body = ErrorBody)))]
pub async fn get_response(
    State(state): State<ApiState>,
    ApiPath(JobPath { id }): ApiPath<JobPath>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let store = state.store;
    store.get_job(&id).await?.ok_or_else(|| not_found(&id))?;
    let resp = store.get_response(&id).await?.ok_or_else(|| {
        // The job is there; its response is not (yet): not a 404, which would say the job
        // is not.
        ApiError::state_conflict(format!("job `{id}` has no stored response yet"), None)
            .with_code("no_response_yet")
    })?;
    Ok(Json(resp))
}

/// Cancel a job: upstream too if it was submitted.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
pub async fn cancel_job(
    State(state): State<ApiState>,
    ApiPath(JobPath { id }): ApiPath<JobPath>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_id(&id)?;
    let row = state
        .orchestrator
        .cancel_job(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(view(&state, &row)))
}

/// Retry a finished job: a new job from the same spec (without its idempotency key), linked
/// by `retry_of`. The original gets a `retried` event. With an `Idempotency-Key`, a repeat for
/// the same job answers the retry made the first time (header `Idempotent-Replayed: true`).
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Repeats for the same job return the same retry")),
    responses((status = 201, description = "The new job, or an idempotent replay (header `Idempotent-Replayed: true`); `Location` names it", body = JobView),
        (status = 400, description = "A bad `Idempotency-Key`, or the spec names a sink the config no longer has", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The job is not finished (type `not_terminal`), or the key is held by another job", body = ErrorBody)))]
pub async fn retry_job(
    State(state): State<ApiState>,
    ApiPath(JobPath { id }): ApiPath<JobPath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let key = idempotency_key(&headers)?;
    match state.orchestrator.retry_job(&id, key).await {
        Ok(Some((row, replayed))) => {
            let location = format!("/v1/jobs/{}", row.id);
            let mut resp = (
                StatusCode::CREATED,
                [(axum::http::header::LOCATION, location)],
                Json(view(&state, &row)),
            )
                .into_response();
            // A replay answers as the original did, marked as a replay (as `create_job`).
            if replayed {
                resp.headers_mut().insert(
                    "idempotent-replayed",
                    axum::http::HeaderValue::from_static("true"),
                );
            }
            Ok(resp)
        }
        Ok(None) => Err(not_found(&id)),
        Err(e) => Err(retry_error(e)),
    }
}

/// The API's answer to a refused retry (the web page has its own).
fn retry_error(e: RetryError) -> ApiError {
    match e {
        e @ RetryError::NotTerminal { .. } => ApiError {
            status: StatusCode::CONFLICT,
            kind: "not_terminal",
            message: e.to_string(),
            param: None,
            code: Some("not_terminal"),
        },
        e @ RetryError::UnknownSink { .. } => {
            ApiError::invalid(e.to_string(), Some("notify".into()))
        }
        e @ RetryError::KeyConflict { .. } => {
            ApiError::conflict(e.to_string(), Some("Idempotency-Key".into()))
        }
        RetryError::Store(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_name_list_items_in_brackets() {
        assert_eq!(param_of("temperature"), "temperature");
        assert_eq!(
            param_of("input.0.content.1.text"),
            "input[0].content[1].text"
        );
        assert_eq!(param_of("notify.2.sink"), "notify[2].sink");
        assert_eq!(param_of("metadata.0"), "metadata.0");
        assert_eq!(param_of("metadata.owner"), "metadata.owner");
    }

    #[test]
    fn shown_spec_redacts_tool_credentials() {
        let spec = JobSpec::from_value(
            serde_json::json!({
                "model": "m",
                "input": "i",
                "tools": [
                    {"type": "mcp", "server_label": "s", "server_url": "https://mcp.example",
                     "authorization": "sk-secret", "headers": {"X-Key": "k-secret"}},
                    {"type": "web_search_preview"}
                ]
            }),
            "#1",
        )
        .unwrap();
        let shown = shown_spec(&spec).unwrap();
        let text = shown.to_string();
        assert!(
            !text.contains("sk-secret") && !text.contains("k-secret"),
            "{text}"
        );
        let redacted = crate::job::redact::REDACTED;
        assert_eq!(shown["request"]["tools"][0]["authorization"], redacted);
        assert_eq!(shown["request"]["tools"][0]["headers"]["X-Key"], redacted);
        assert_eq!(shown["request"]["tools"][1]["type"], "web_search_preview");
        assert_eq!(shown["request"]["input"], "i");
    }
}
