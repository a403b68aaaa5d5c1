//! The job list, the job page, its downloads and its Cancel and Retry forms, and the New job
//! form.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use minijinja::{Value as Tpl, context};
use serde::Deserialize;
use serde_json::Value;

use super::WebState;
use super::session::{CsrfForm, Session};
use super::view::{self, JobSummary};
use super::{PageError, render};
use crate::job::{JobId, JobStatus};
use crate::notify::markdown;
use crate::orchestrator::RetryError;
use crate::store::JobFilter;
use crate::store::filter::{Cursor, parse_metadata_pair, parse_since};

const PAGE_SIZE: i64 = 25;

/// The list's query string; empty fields count as absent (that is what a form sends).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    name: Option<String>,
    model: Option<String>,
    since: Option<String>,
    q: Option<String>,
    /// One `key=value` pair the job's metadata must have (the API's `metadata` filter).
    metadata: Option<String>,
    after: Option<String>,
    /// Only the jobs of this chain (its first job's id).
    chain: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A job id from the path; one that cannot be an id names no job.
fn parse_id(raw: &str) -> Result<JobId, PageError> {
    JobId::parse(raw).map_err(|_| PageError::NotFound(format!("There is no job with id {raw}.")))
}

pub async fn list(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Result<Response, PageError> {
    let config = state.config.get();
    let now = state.clock.now_ms();
    let status = non_empty(&q.status)
        .map(|s| s.parse::<JobStatus>())
        .transpose()
        .map_err(PageError::BadRequest)?;
    let since = non_empty(&q.since)
        .map(|s| parse_since(&s, now))
        .transpose()
        .map_err(|e| PageError::BadRequest(e.to_string()))?;
    let before = non_empty(&q.after)
        .map(|c| Cursor::decode(&c))
        .transpose()
        .map_err(|e| PageError::BadRequest(e.to_string()))?
        .map(|c| (c.created_at, c.id));
    let metadata = non_empty(&q.metadata)
        .map(|kv| {
            parse_metadata_pair(&kv).ok_or_else(|| {
                PageError::BadRequest(format!(
                    "The metadata filter must be `key=value`, not `{kv}`."
                ))
            })
        })
        .transpose()?;
    let filter = JobFilter {
        status,
        name: non_empty(&q.name),
        model: non_empty(&q.model),
        search: non_empty(&q.q),
        metadata: metadata.into_iter().collect(),
        since,
        before,
        chain: non_empty(&q.chain),
        limit: PAGE_SIZE + 1,
    };
    let mut rows = state.store.list_jobs(&filter).await?;
    let has_more = rows.len() as i64 > PAGE_SIZE;
    rows.truncate(PAGE_SIZE as usize);
    // The next page keeps the filters and moves the cursor.
    let next_page = has_more
        .then(|| rows.last().map(|r| Cursor::encode(r.created_at, &r.id)))
        .flatten()
        .map(|cursor| {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in [
                ("status", &q.status),
                ("name", &q.name),
                ("model", &q.model),
                ("since", &q.since),
                ("q", &q.q),
                ("metadata", &q.metadata),
                ("chain", &q.chain),
            ] {
                if let Some(v) = non_empty(v) {
                    s.append_pair(k, &v);
                }
            }
            s.append_pair("after", &cursor);
            format!("/?{}", s.finish())
        });
    let jobs: Vec<JobSummary> = rows
        .iter()
        .map(|r| JobSummary::new(r, &config, now))
        .collect();
    let filtered = [
        &q.status,
        &q.name,
        &q.model,
        &q.since,
        &q.q,
        &q.metadata,
        &q.chain,
    ]
    .iter()
    .any(|v| non_empty(v).is_some());
    render(
        "list.html",
        context! {
            page => "list",
            session => super::ser(SessionView::from(&session)),
            jobs => super::ser(jobs),
            statuses => JobStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            f => context! {
                status => non_empty(&q.status),
                name => non_empty(&q.name),
                model => non_empty(&q.model),
                since => non_empty(&q.since),
                q => non_empty(&q.q),
                metadata => non_empty(&q.metadata),
                chain => non_empty(&q.chain),
            },
            filtered,
            paged => q.after.is_some(),
            next_page,
        },
    )
}

/// What the base template needs of the session.
#[derive(serde::Serialize)]
pub struct SessionView {
    csrf: String,
    can_logout: bool,
}

impl From<&Session> for SessionView {
    fn from(s: &Session) -> Self {
        SessionView {
            csrf: s.csrf.clone(),
            can_logout: s.can_logout,
        }
    }
}

pub async fn job(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let store = &state.store;
    let config = state.config.get();
    let now = state.clock.now_ms();
    let row = store
        .get_job(&id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no job with id {id}.")))?;
    let response = store.get_response(&id).await?;
    let events = store.list_events(&id).await?;
    let retried_by = store.retried_by(&id).await?;
    let chain = crate::view::ChainView::of(store, &row).await?;
    let prices = config.pricing();
    let duplicates: Vec<_> = store
        .duplicates_of(&id)
        .await?
        .iter()
        .map(|d| {
            let v = crate::view::DuplicateView::priced(d, &row.model, &prices);
            context! {
                response_id => v.response_id,
                status => v.status,
                cost => v.cost_usd.map(view::money),
                found_by => v.found_by,
            }
        })
        .collect();
    let notifications = store.list_notifications(None, Some(&id), 50).await?;
    let attachments: Vec<_> = store
        .job_attachments(id.as_str())
        .await?
        .into_iter()
        .map(|a| {
            context! {
                filename => a.filename,
                media_type => a.media_type,
                size => human_bytes(a.bytes),
            }
        })
        .collect();
    let artifact_rows = store.artifacts(&id).await?;
    // A cited container file links to its kept copy.
    let kept: std::collections::BTreeMap<String, String> = artifact_rows
        .iter()
        .filter(|a| a.is_kept())
        .map(|a| {
            let url = format!(
                "/jobs/{id}/artifacts/{}",
                crate::artifacts::encode_name(&a.name)
            );
            (a.name.clone(), url)
        })
        .collect();
    let artifacts: Vec<_> = artifact_rows
        .into_iter()
        .map(|a| {
            let url = format!(
                "/jobs/{id}/artifacts/{}",
                crate::artifacts::encode_name(&a.name)
            );
            context! {
                image => a.kind == "image" || a.media_type.starts_with("image/"),
                url,
                name => a.name,
                size => human_bytes(a.bytes.max(0) as u64),
                error => a.error,
                path => a.path,
            }
        })
        .collect();
    let full = markdown::Report::of(
        row.output_text.as_deref().unwrap_or_default(),
        response.as_ref(),
    );
    let activity = full.activity.clone();
    // Links from model output: http(s) only, so no `javascript:` reaches an href.
    let citations: Vec<_> = full
        .citations
        .clone()
        .into_iter()
        .map(|c| {
            let url = c
                .url
                .filter(|u| {
                    let l = u.to_ascii_lowercase();
                    l.starts_with("https://") || l.starts_with("http://")
                })
                .or_else(|| kept.get(&c.title).cloned());
            context! { title => c.title, url }
        })
        .collect();
    let reasoning = response
        .as_ref()
        .map(markdown::reasoning_summaries)
        .unwrap_or_default();
    // A JSON answer shows as tables; its text is not a report.
    let output_json = row
        .status
        .is_terminal()
        .then(|| crate::structured::output_json(&row.spec.request, row.output_text.as_deref()))
        .flatten();
    let answer_html = output_json
        .as_ref()
        .map(|v| Tpl::from_safe_string(super::json_view::to_html(v)));
    // Model output is untrusted: only ammonia's output (and the escaping JSON view) is marked
    // safe.
    let report_html = Some(full.body.as_str())
        .filter(|t| !t.trim().is_empty() && output_json.is_none())
        .map(|t| Tpl::from_safe_string(markdown::to_safe_html(t)));
    let tokens = view::tokens(row.usage.as_ref()).map(|t| {
        context! {
            input => view::thousands(t.input),
            cached => view::thousands(t.cached),
            output => view::thousands(t.output),
            reasoning => view::thousands(t.reasoning),
            total => view::thousands(t.total),
        }
    });
    let error = row.error();
    let timeline: Vec<_> = events
        .iter()
        .map(|e| {
            context! {
                at => view::timestamp(e.at),
                kind => e.kind.clone(),
                message => e.message.clone(),
            }
        })
        .collect();
    let notifications: Vec<_> = notifications
        .iter()
        .map(|n| {
            context! {
                sink => n.sink.clone(),
                event => n.event.clone(),
                state => n.state.clone(),
                attempts => n.attempts,
                last_error => n.last_error.clone(),
                at => view::timestamp(n.delivered_at.unwrap_or(n.created_at)),
            }
        })
        .collect();
    let response_pretty = response
        .as_ref()
        .and_then(|r| serde_json::to_string_pretty(r).ok());
    let metadata = row
        .spec
        .request
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), v)
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let actions = store.job_actions(&id).await?;
    render(
        "job.html",
        context! {
            page => "job",
            session => super::ser(SessionView::from(&session)),
            job => super::ser(JobSummary::new(&row, &config, now)),
            response_id => row.response_id.as_ref().map(ToString::to_string),
            submitted => row.submitted_at.map(view::timestamp),
            finished => row.finished_at.map(view::timestamp),
            deadline => row.deadline_at.map(view::timestamp),
            error => error.map(|e| context! { code => e.code, message => e.message }),
            cancel_reason => row.cancel_reason.clone(),
            tokens,
            attachments,
            artifacts,
            metadata => super::ser(metadata),
            report_html,
            answer_html,
            activity,
            output_json_pretty => output_json.as_ref().and_then(|v| serde_json::to_string_pretty(v).ok()),
            citations,
            reasoning,
            timeline,
            notifications,
            response_pretty,
            has_output => row.output_text.as_deref().is_some_and(|t| !t.is_empty()),
            can_cancel => !row.status.is_terminal() && row.cancel_requested == 0,
            can_retry => row.status.is_terminal(),
            retry_key => row.status.is_terminal().then(retry_nonce),
            retry_of => row.retry_of.as_ref().map(ToString::to_string),
            retried_by,
            chain => super::ser(chain),
            duplicates,
            waiting => actions.iter().any(|a| a.state == "waiting"),
            actions => super::ser(&actions),
        },
    )
}

/// `GET /jobs/{id}/live`: the job's timeline as server-sent events, for the page's live view
/// (an `EventSource` cannot send the API's bearer token; this one rides the page's session).
pub async fn live(
    State(state): State<WebState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let after = crate::live::last_event_id(&headers).map_err(PageError::BadRequest)?;
    if state.store.get_job(&id).await?.is_none() {
        return Err(PageError::NotFound(format!(
            "There is no job with id {id}."
        )));
    }
    Ok(crate::live::timeline(&state.store, id, after))
}

/// The job page's answer form: one waiting action's output, or an approval or a denial.
#[derive(Debug, serde::Deserialize)]
pub struct RespondForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    item_id: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    approve: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /jobs/{id}/respond`: the answer form, then the job page (303).
pub async fn respond(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(f): Form<RespondForm>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    session.check_csrf(&f.csrf)?;
    let answer = match f.kind.as_str() {
        "function" => crate::store::PersonAnswer {
            item_id: f.item_id.clone(),
            kind: crate::job::handler::ActionKind::Function,
            output: f.output.clone().unwrap_or_default(),
        },
        "approval" => {
            let approve = match f.approve.as_deref() {
                Some("true") => true,
                Some("false") => false,
                _ => {
                    return Err(PageError::BadRequest(
                        "The form says neither Approve nor Deny; reload the job page and try again.".into(),
                    ));
                }
            };
            let reason = f.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
            crate::store::PersonAnswer {
                item_id: f.item_id.clone(),
                kind: crate::job::handler::ActionKind::Approval,
                output: crate::job::handler::approval_output(approve, reason),
            }
        }
        _ => {
            return Err(PageError::BadRequest(
                "The answer form is malformed; reload the job page and try again.".into(),
            ));
        }
    };
    match state.orchestrator.respond(&id, &[answer]).await? {
        crate::store::Responded::Taken { .. } => {
            tracing::info!(job_id = %id, item_id = %f.item_id, "answered from the web page");
            Ok(Redirect::to(&format!("/jobs/{id}#actions")).into_response())
        }
        crate::store::Responded::Missing => Err(PageError::NotFound(format!(
            "There is no job with id {id}."
        ))),
        crate::store::Responded::NotWaiting(status) => Err(PageError::BadRequest(format!(
            "Job {id} does not wait for an answer any more (it is {status})."
        ))),
        crate::store::Responded::Unknown(_, reason) => Err(PageError::BadRequest(format!(
            "That answer was not taken: {reason}."
        ))),
    }
}

/// `GET /jobs/{id}/artifacts/{name}`: one artifact's bytes, as the API serves them
/// (`?download=true` makes an image a download too).
pub async fn artifact(
    State(state): State<WebState>,
    Path((id, name)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<std::collections::BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let store = &state.store;
    let row = store
        .artifact(&id, &name)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("Job {id} has no artifact named {name}.")))?;
    let download = q.get("download").is_some_and(|v| v == "true" || v == "1");
    crate::artifacts::file_response(store, &id, &row, download)
        .await
        .map_err(|e| match e {
            crate::artifacts::ServeError::Read { .. } => {
                tracing::error!(error = %crate::telemetry::chain(&e), "cannot serve an artifact");
                PageError::NotFound("This artifact cannot be read now.".into())
            }
            other => PageError::NotFound(format!("{other}.")),
        })
}

/// A fresh Retry form key: 16 random bytes as hex. Each render of the job page gets its own,
/// so a double submit of one rendered form replays the first retry instead of making another.
fn retry_nonce() -> String {
    crate::job::spec::random_idempotency_key()
}

/// The Retry form's fields.
#[derive(Debug, Deserialize)]
pub struct RetryForm {
    #[serde(default)]
    csrf: String,
    /// The page's [`retry_nonce`].
    #[serde(default)]
    key: String,
}

/// A download name: the job's name made filename-safe, then the id.
fn filename(name: &str, id: &str, ext: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    format!("{clean}-{id}.{ext}")
}

pub async fn report_md(
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let store = &state.store;
    let row = store
        .get_job(&id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no job with id {id}.")))?;
    let response = store.get_response(&id).await?;
    let body = markdown::Report::of(
        row.output_text.as_deref().unwrap_or_default(),
        response.as_ref(),
    )
    .markdown();
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/markdown; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}\"",
                    filename(&row.name, &row.id, "md")
                ),
            ),
        ],
        body,
    )
        .into_response())
}

pub async fn response_json(
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let store = &state.store;
    let row = store
        .get_job(&id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no job with id {id}.")))?;
    let response = store
        .get_response(&id)
        .await?
        .ok_or_else(|| PageError::NotFound("This job has no stored response yet.".into()))?;
    let body = serde_json::to_string_pretty(&response).unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}\"",
                    filename(&row.name, &row.id, "json")
                ),
            ),
        ],
        body,
    )
        .into_response())
}

pub async fn cancel(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    session.check_csrf(&f.csrf)?;
    let row = state
        .orchestrator
        .cancel_job(&id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no job with id {id}.")))?;
    tracing::info!(job_id = %row.id, "cancel requested from the web page");
    Ok(Redirect::to(&format!("/jobs/{}", row.id)).into_response())
}

/// The Retry form: a new job from this one's spec, then its page (303).
pub async fn retry(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(f): Form<RetryForm>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    session.check_csrf(&f.csrf)?;
    let nonce_ok = (16..=64).contains(&f.key.len()) && f.key.bytes().all(|b| b.is_ascii_hexdigit());
    if !nonce_ok {
        return Err(PageError::BadRequest(
            "The Retry form's `key` is missing or malformed; reload the job page and try again."
                .into(),
        ));
    }
    let row = match state.orchestrator.retry_job(&id, Some(&f.key)).await {
        Ok(Some((row, _replayed))) => row,
        Ok(None) => {
            return Err(PageError::NotFound(format!(
                "There is no job with id {id}."
            )));
        }
        Err(RetryError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(PageError::BadRequest(e.to_string())),
    };
    tracing::info!(job_id = %row.id, retry_of = %id, "retry requested from the web page");
    Ok(Redirect::to(&format!("/jobs/{}", row.id)).into_response())
}

/// The New job form's fields, as typed (empty ones are absent).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
pub struct NewJobForm {
    #[serde(default, skip_serializing)]
    csrf: String,
    /// The page's [`retry_nonce`]: the job's idempotency key, so a double submit makes one job.
    #[serde(default, skip_serializing)]
    key: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    instructions: String,
    #[serde(default)]
    input: String,
    #[serde(default)]
    schema: String,
    /// `on` when the Strict box is ticked (a form sends nothing when it is not).
    #[serde(default, deserialize_with = "checkbox")]
    strict: bool,
    /// Files already taken from an earlier try of this form (their attachment ids): a form
    /// shown again with its faults keeps them, as a browser cannot refill a file input.
    #[serde(default, skip_deserializing)]
    attached: Vec<crate::job::attachment::AttachmentMeta>,
}

fn checkbox<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    Ok(!s.is_empty())
}

/// The New job form, empty (or as the user typed it, with what was wrong).
fn new_job_page(
    session: &Session,
    f: &NewJobForm,
    key: &str,
    errors: &[String],
) -> Result<Response, PageError> {
    let models: Vec<&String> = crate::pricing::builtin().keys().collect();
    render(
        "new.html",
        context! {
            page => "new",
            session => super::ser(SessionView::from(session)),
            f => super::ser(f),
            key,
            errors => errors.to_vec(),
            models,
        },
    )
}

pub async fn new_job(Extension(session): Extension<Session>) -> Result<Response, PageError> {
    let f = NewJobForm {
        strict: true,
        ..NewJobForm::default()
    };
    new_job_page(&session, &f, &retry_nonce(), &[])
}

/// Creates a job from the form with the API's checks (`JobSpec::from_value`), the page's key
/// as its idempotency key; then shows it. A form with faults is shown again as typed, with
/// each fault (400), and nothing is stored.
pub async fn create_job(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    request: axum::extract::Request,
) -> Result<Response, PageError> {
    let (mut f, files, attached) = read_new_job_form(request).await?;
    session.check_csrf(&f.csrf)?;
    // Files first: each checked, the good ones kept (so a form shown again still has them).
    let mut file_errors = Vec::new();
    let now = state.clock.now_ms();
    let known = state.store.attachments(&attached).await?;
    f.attached = known.into_iter().flatten().collect();
    for (filename, data) in files {
        match crate::job::attachment::check(&filename, &data) {
            Ok(meta) => {
                state.store.put_attachment(&meta, &data, now).await?;
                if !f.attached.iter().any(|m| m.id == meta.id) {
                    f.attached.push(meta);
                }
            }
            Err(m) => file_errors.push(format!("Attachments: {m}")),
        }
    }
    let nonce_ok = (16..=64).contains(&f.key.len()) && f.key.bytes().all(|b| b.is_ascii_hexdigit());
    if !nonce_ok {
        return Err(PageError::BadRequest(
            "The New job form's `key` is missing or malformed; reload the form and try again."
                .into(),
        ));
    }
    let again = |errors: Vec<String>| -> Result<Response, PageError> {
        let mut page = new_job_page(&session, &f, &f.key, &errors)?;
        *page.status_mut() = axum::http::StatusCode::BAD_REQUEST;
        Ok(page)
    };
    let mut body = serde_json::Map::new();
    body.insert("model".into(), Value::String(f.model.trim().to_string()));
    body.insert("input".into(), Value::String(f.input.clone()));
    body.insert(
        "idempotency_key".into(),
        Value::String(format!("web-{}", f.key)),
    );
    if !f.name.trim().is_empty() {
        body.insert("name".into(), Value::String(f.name.trim().to_string()));
    }
    if !f.instructions.trim().is_empty() {
        body.insert("instructions".into(), Value::String(f.instructions.clone()));
    }
    if !file_errors.is_empty() {
        return again(file_errors);
    }
    if !f.attached.is_empty() {
        body.insert(
            "attachments".into(),
            f.attached
                .iter()
                .map(|m| Value::String(m.id.clone()))
                .collect(),
        );
    }
    if !f.schema.trim().is_empty() {
        match serde_json::from_str::<Value>(&f.schema) {
            Ok(schema) => {
                body.insert(
                    "text".into(),
                    serde_json::json!({"format": {"type": "json_schema", "name": "answer",
                                                  "schema": schema, "strict": f.strict}}),
                );
            }
            Err(e) => return again(vec![format!("JSON Schema: not JSON ({e})")]),
        }
    }
    let spec = match crate::job::JobSpec::from_value(Value::Object(body), "(form)") {
        Ok(spec) => spec,
        Err(errs) => {
            return again(
                errs.iter()
                    .map(|e| format!("{}: {}", form_field(&e.field), e.message))
                    .collect(),
            );
        }
    };
    // A schema strict mode refuses would be refused by OpenAI at submit: a fault of the form.
    let warnings = spec.warnings();
    let refused: Vec<String> = warnings
        .iter()
        .filter(|w| w.field.starts_with("text.format.schema"))
        .map(|w| format!("{}: {}", form_field(&w.field), w.message))
        .collect();
    if !refused.is_empty() {
        return again(refused);
    }
    match state.orchestrator.accept(spec, "web").await {
        Ok(
            crate::store::InsertOutcome::Created(row) | crate::store::InsertOutcome::Existing(row),
        ) => {
            if !warnings.is_empty() {
                tracing::info!(job_id = %row.id, warnings = warnings.len(), "job created from the web page with warnings");
            }
            tracing::info!(job_id = %row.id, "job created from the web page");
            Ok(Redirect::to(&format!("/jobs/{}", row.id)).into_response())
        }
        Ok(crate::store::InsertOutcome::KeyConflict(row)) => again(vec![format!(
            "This form was already used to create job {} with other values; reload the form to create another job.",
            row.id
        )]),
        Err(crate::orchestrator::AcceptError::Store(e)) => Err(e.into()),
        Err(e) => again(vec![e.to_string()]),
    }
}

/// A file the New job form sent: its name and bytes.
type FormFile = (String, axum::body::Bytes);

/// Reads the New job form: `multipart/form-data` (what the page sends, with its files) or
/// `application/x-www-form-urlencoded` (no files). Returns the fields, the files chosen, and
/// the ids of files kept from an earlier try.
async fn read_new_job_form(
    request: axum::extract::Request,
) -> Result<(NewJobForm, Vec<FormFile>, Vec<String>), PageError> {
    use axum::extract::FromRequest;
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        let Form(f) = Form::<NewJobForm>::from_request(request, &())
            .await
            .map_err(|e| PageError::BadRequest(format!("The form could not be read: {e}")))?;
        return Ok((f, Vec::new(), Vec::new()));
    }
    let bad = |e: axum::extract::multipart::MultipartError| {
        PageError::BadRequest(format!("The form could not be read: {}", e.body_text()))
    };
    let mut multipart = axum::extract::Multipart::from_request(request, &())
        .await
        .map_err(|e| PageError::BadRequest(format!("The form could not be read: {e}")))?;
    let mut f = NewJobForm::default();
    let mut files = Vec::new();
    let mut attached = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "attachments" {
            let filename = field.file_name().unwrap_or_default().to_string();
            let data = field.bytes().await.map_err(bad)?;
            // A file input with nothing chosen sends an empty part without a name.
            if !(filename.is_empty() && data.is_empty()) {
                files.push((filename, data));
            }
            continue;
        }
        let text = field.text().await.map_err(bad)?;
        match name.as_str() {
            "csrf" => f.csrf = text,
            "key" => f.key = text,
            "name" => f.name = text,
            "model" => f.model = text,
            "instructions" => f.instructions = text,
            "input" => f.input = text,
            "schema" => f.schema = text,
            "strict" => f.strict = !text.is_empty(),
            "attached" if crate::job::attachment::is_attachment_id(&text) => attached.push(text),
            _ => {}
        }
    }
    Ok((f, files, attached))
}

/// The form's name for a spec field: `text.format.schema…` is the JSON Schema box.
fn form_field(field: &str) -> String {
    if field.starts_with("text.format.schema") {
        let rest = field
            .trim_start_matches("text.format.schema")
            .trim_start_matches('.');
        if rest.is_empty() {
            "JSON Schema".into()
        } else {
            format!("JSON Schema (at `{rest}`)")
        }
    } else {
        match field {
            "model" => "Model".into(),
            "input" => "Input".into(),
            "name" => "Name".into(),
            "instructions" => "Instructions".into(),
            other => format!("`{other}`"),
        }
    }
}

/// A size for people: `726 B`, `12.4 KiB`, `3.1 MiB`.
fn human_bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}
