//! `/v1/vector_stores` (`docs/upstream-api.md` §5.2): stores (create, list, retrieve, update,
//! delete), their files (attach, list with `filter`, retrieve, update attributes, detach) and
//! file batches (create, retrieve, cancel, list files). The state and its statuses live in
//! `vector_stores.rs`; the request checks in `vector_store_params.rs`. Retrieving a file or a
//! batch still processing answers `openai-poll-after-ms`, which the SDKs' `*_and_poll`
//! helpers sleep for.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::endpoint_params::{object_body, required};
use super::error::ApiError;
use super::files::{Now, Storage, StoredFile};
use super::ids;
use super::list::ListQuery;
use super::server::App;
use super::validate::check_metadata;
use super::vector_store_params::{
    MAX_BATCH_FILES, MAX_STORE_FILE_IDS, attributes, chunking_strategy, expires_after, file_ids,
    opt_string,
};
use super::vector_stores::{Batch, VectorStore};

const FILE_STATUSES: &[&str] = &["in_progress", "completed", "failed", "cancelled"];

/// The routes, merged into the simulator's `/v1` router (behind its auth and fault gate).
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/vector_stores", post(create).get(list))
        .route(
            "/vector_stores/{vs}",
            get(retrieve).post(update).delete(delete),
        )
        .route("/vector_stores/{vs}/files", post(attach).get(list_files))
        .route(
            "/vector_stores/{vs}/files/{file_id}",
            get(retrieve_file).post(update_file).delete(detach),
        )
        .route("/vector_stores/{vs}/file_batches", post(create_batch))
        .route(
            "/vector_stores/{vs}/file_batches/{batch}",
            get(retrieve_batch),
        )
        .route(
            "/vector_stores/{vs}/file_batches/{batch}/cancel",
            post(cancel_batch),
        )
        .route(
            "/vector_stores/{vs}/file_batches/{batch}/files",
            get(list_batch_files),
        )
}

fn answer(value: Value) -> Response {
    axum::Json(value).into_response()
}

/// An answer with `openai-poll-after-ms` while something is still processing.
fn polled(value: Value, remaining: Duration) -> Response {
    let mut response = answer(value);
    if !remaining.is_zero() {
        let ms = remaining.as_millis().clamp(10, 1000);
        if let Ok(v) = HeaderValue::from_str(&ms.to_string()) {
            response.headers_mut().insert("openai-poll-after-ms", v);
        }
    }
    response
}

fn not_found(status: StatusCode, message: String, param: &str) -> ApiError {
    ApiError {
        status,
        ..ApiError::invalid(message, Some(param), None)
    }
}

/// A file a body names that does not exist (or no longer does).
fn unknown_file(id: &str, param: &str) -> ApiError {
    not_found(
        StatusCode::NOT_FOUND,
        format!("No file found with id '{id}'."),
        param,
    )
}

fn store_file_not_found(store: &str, file: &str) -> ApiError {
    not_found(
        StatusCode::NOT_FOUND,
        format!("No file found with id '{file}' in vector store '{store}'."),
        "file_id",
    )
}

fn batch_not_found(store: &str, batch: &str) -> ApiError {
    not_found(
        StatusCode::NOT_FOUND,
        format!("No file batch found with id '{batch}' in vector store '{store}'."),
        "batch_id",
    )
}

/// Live files by id, in order, or the 404 naming the first unknown one.
fn live_files(
    storage: &mut Storage,
    ids: &[String],
    param: &str,
) -> Result<Vec<StoredFile>, ApiError> {
    ids.iter()
        .map(|id| {
            storage
                .live_file(id)
                .cloned()
                .map_err(|_| unknown_file(id, param))
        })
        .collect()
}

fn refuse_expired(store: &VectorStore) -> Result<(), ApiError> {
    if store.expired {
        return Err(ApiError::invalid(
            format!(
                "Vector store {} has expired; files can no longer be added.",
                store.id
            ),
            Some("vector_store_id"),
            None,
        ));
    }
    Ok(())
}

async fn create(State(app): State<App>, raw: Bytes) -> Result<Response, ApiError> {
    let body = object_body(
        &raw,
        &[
            "file_ids",
            "name",
            "description",
            "expires_after",
            "metadata",
            "chunking_strategy",
        ],
    )?;
    let wanted = match body.get("file_ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => file_ids(v, "file_ids", MAX_STORE_FILE_IDS)?,
    };
    let name = opt_string(&body, "name")?;
    let description = opt_string(&body, "description")?;
    let expires_days = body
        .get("expires_after")
        .map(expires_after)
        .transpose()?
        .flatten();
    let metadata = check_metadata(&body)?;
    let chunking = chunking_strategy(body.get("chunking_strategy"))?;
    let processing = app.shared.config.file_processing_time;
    let mut inner = app.shared.lock();
    let storage = &mut inner.storage;
    let now = storage.tick();
    let files = live_files(storage, &wanted, "file_ids")?;
    let mut store = VectorStore {
        id: ids::new("vs"),
        name,
        description,
        created_at: now.unix,
        metadata,
        expires_days,
        last_active_at: now.unix,
        expired: false,
        files: Vec::new(),
        batches: Vec::new(),
    };
    for file in &files {
        store.attach(file, Value::Null, chunking.clone(), now, processing);
    }
    let view = store.view(now);
    storage.stores.push(store);
    Ok(answer(view))
}

async fn list(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = ListQuery::parse(raw.as_deref(), 20, 100)?;
    let mut inner = app.shared.lock();
    let storage = &mut inner.storage;
    let now = storage.tick();
    let items = storage
        .stores
        .iter()
        .map(|s| (s.id.clone(), s.view(now)))
        .collect();
    Ok(answer(q.page(items)))
}

async fn retrieve(State(app): State<App>, Path(vs): Path<String>) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let (now, store) = inner.storage.store(&vs)?;
    Ok(answer(store.view(now)))
}

async fn update(
    State(app): State<App>,
    Path(vs): Path<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let body = object_body(&raw, &["name", "expires_after", "metadata"])?;
    let name = opt_string(&body, "name")?;
    // `expires_after: null` removes the expiry; absent leaves it.
    let expiry = body.get("expires_after").map(expires_after).transpose()?;
    let metadata = body
        .contains_key("metadata")
        .then(|| check_metadata(&body))
        .transpose()?;
    let mut inner = app.shared.lock();
    let (now, store) = inner.storage.store(&vs)?;
    if let Some(name) = name {
        store.name = Some(name);
    }
    if let Some(days) = expiry {
        store.expires_days = days;
    }
    if let Some(metadata) = metadata {
        store.metadata = metadata;
    }
    Ok(answer(store.view(now)))
}

async fn delete(State(app): State<App>, Path(vs): Path<String>) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    inner.storage.store(&vs)?;
    inner.storage.stores.retain(|s| s.id != vs);
    Ok(answer(
        json!({"id": vs, "object": "vector_store.deleted", "deleted": true}),
    ))
}

async fn attach(
    State(app): State<App>,
    Path(vs): Path<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let body = object_body(&raw, &["file_id", "attributes", "chunking_strategy"])?;
    let file_id = match required(&body, "file_id")? {
        Value::String(s) => s.clone(),
        other => return Err(super::validate::invalid_type("file_id", "a string", other)),
    };
    let attrs = attributes(body.get("attributes"))?;
    let chunking = chunking_strategy(body.get("chunking_strategy"))?;
    let processing = app.shared.config.file_processing_time;
    let mut inner = app.shared.lock();
    let storage = &mut inner.storage;
    storage.store(&vs)?;
    let file = live_files(storage, std::slice::from_ref(&file_id), "file_id")?;
    let (now, store) = storage.store(&vs)?;
    refuse_expired(store)?;
    store.touch(now);
    let mut view = Value::Null;
    for f in &file {
        view = store
            .attach(f, attrs.clone(), chunking.clone(), now, processing)
            .view(&vs, now);
    }
    Ok(answer(view))
}

/// The files of a store whose id `only` accepts, filtered by `filter`, as a list page.
fn file_page(
    store: &VectorStore,
    now: Now,
    q: &ListQuery,
    only: impl Fn(&str) -> bool,
) -> Result<Value, ApiError> {
    let filter = q.get("filter");
    if let Some(f) = filter.filter(|f| !FILE_STATUSES.contains(f)) {
        return Err(ApiError::invalid(
            format!(
                "Invalid value: '{f}'. Supported values are: {}.",
                super::validate::quoted(FILE_STATUSES)
            ),
            Some("filter"),
            Some("invalid_value"),
        ));
    }
    let items = store
        .files
        .iter()
        .filter(|f| only(&f.file_id) && filter.is_none_or(|s| f.status(now) == s))
        .map(|f| (f.file_id.clone(), f.view(&store.id, now)))
        .collect();
    Ok(q.page(items))
}

async fn list_files(
    State(app): State<App>,
    Path(vs): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = ListQuery::parse(raw.as_deref(), 20, 100)?;
    let mut inner = app.shared.lock();
    let (now, store) = inner.storage.store(&vs)?;
    Ok(answer(file_page(store, now, &q, |_| true)?))
}

async fn retrieve_file(
    State(app): State<App>,
    Path((vs, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let (now, store) = inner.storage.store(&vs)?;
    let file = store
        .file(&file_id)
        .ok_or_else(|| store_file_not_found(&vs, &file_id))?;
    Ok(polled(file.view(&vs, now), file.remaining(now)))
}

async fn update_file(
    State(app): State<App>,
    Path((vs, file_id)): Path<(String, String)>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let body = object_body(&raw, &["attributes"])?;
    let attrs = attributes(Some(required(&body, "attributes")?))?;
    let mut inner = app.shared.lock();
    let (now, store) = inner.storage.store(&vs)?;
    let file = store
        .files
        .iter_mut()
        .find(|f| f.file_id == file_id)
        .ok_or_else(|| store_file_not_found(&vs, &file_id))?;
    file.attributes = attrs;
    Ok(answer(file.view(&vs, now)))
}

async fn detach(
    State(app): State<App>,
    Path((vs, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let (_, store) = inner.storage.store(&vs)?;
    if !store.detach(&file_id) {
        return Err(store_file_not_found(&vs, &file_id));
    }
    Ok(answer(
        json!({"id": file_id, "object": "vector_store.file.deleted", "deleted": true}),
    ))
}

/// One file of a batch request: its id and, when given per file, its settings.
struct BatchFile {
    id: String,
    attributes: Option<Value>,
    chunking: Option<Value>,
}

fn batch_files(body: &Map<String, Value>) -> Result<Vec<BatchFile>, ApiError> {
    let plain = |id: String| BatchFile {
        id,
        attributes: None,
        chunking: None,
    };
    match (body.get("file_ids"), body.get("files")) {
        (Some(ids), None) | (Some(ids), Some(Value::Null)) if !ids.is_null() => {
            Ok(file_ids(ids, "file_ids", MAX_BATCH_FILES)?
                .into_iter()
                .map(plain)
                .collect())
        }
        (None | Some(Value::Null), Some(Value::Array(files))) => {
            if files.len() > MAX_BATCH_FILES {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid 'files': array too long. Expected an array with maximum length {MAX_BATCH_FILES}."
                    ),
                    Some("files"),
                    Some("array_above_max_length"),
                ));
            }
            files
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let param = format!("files[{i}].file_id");
                    match f.get("file_id") {
                        Some(Value::String(id)) => Ok(BatchFile {
                            id: id.clone(),
                            attributes: Some(attributes(f.get("attributes"))?),
                            chunking: f
                                .get("chunking_strategy")
                                .filter(|c| !c.is_null())
                                .map(|c| chunking_strategy(Some(c)))
                                .transpose()?,
                        }),
                        _ => Err(ApiError::invalid(
                            format!("Missing required parameter: '{param}'."),
                            Some(&param),
                            Some("missing_required_parameter"),
                        )),
                    }
                })
                .collect()
        }
        (None | Some(Value::Null), None | Some(Value::Null)) => Err(ApiError::invalid(
            "Missing required parameter: 'file_ids'.",
            Some("file_ids"),
            Some("missing_required_parameter"),
        )),
        (None | Some(Value::Null), Some(other)) => {
            Err(super::validate::invalid_type("files", "an array", other))
        }
        _ => Err(ApiError::invalid(
            "Only one of 'file_ids' and 'files' may be given.",
            Some("files"),
            Some("mutually_exclusive_parameters"),
        )),
    }
}

async fn create_batch(
    State(app): State<App>,
    Path(vs): Path<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let body = object_body(
        &raw,
        &["file_ids", "files", "attributes", "chunking_strategy"],
    )?;
    let wanted = batch_files(&body)?;
    let attrs = attributes(body.get("attributes"))?;
    let chunking = chunking_strategy(body.get("chunking_strategy"))?;
    let processing = app.shared.config.file_processing_time;
    let mut inner = app.shared.lock();
    let storage = &mut inner.storage;
    storage.store(&vs)?;
    let ids: Vec<String> = wanted.iter().map(|w| w.id.clone()).collect();
    let files = live_files(storage, &ids, "file_ids")?;
    let (now, store) = storage.store(&vs)?;
    refuse_expired(store)?;
    store.touch(now);
    for (file, want) in files.iter().zip(&wanted) {
        let a = want.attributes.clone().unwrap_or_else(|| attrs.clone());
        let c = want.chunking.clone().unwrap_or_else(|| chunking.clone());
        store.attach(file, a, c, now, processing);
    }
    let batch = Batch {
        id: ids::new("vsfb"),
        created_at: now.unix,
        file_ids: ids,
        cancelled: false,
    };
    let view = store.batch_view(&batch, now);
    store.batches.push(batch);
    Ok(answer(view))
}

/// A batch's view and how long until its files are all processed.
fn batch_answer(store: &VectorStore, batch_id: &str, now: Now) -> Result<Response, ApiError> {
    let batch = store
        .batch(batch_id)
        .ok_or_else(|| batch_not_found(&store.id, batch_id))?;
    let remaining = store
        .files
        .iter()
        .filter(|f| batch.file_ids.contains(&f.file_id) && f.status(now) == "in_progress")
        .map(|f| f.remaining(now))
        .max()
        .unwrap_or_default();
    Ok(polled(store.batch_view(batch, now), remaining))
}

async fn retrieve_batch(
    State(app): State<App>,
    Path((vs, batch)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let (now, store) = inner.storage.store(&vs)?;
    batch_answer(store, &batch, now)
}

async fn cancel_batch(
    State(app): State<App>,
    Path((vs, batch)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let (now, store) = inner.storage.store(&vs)?;
    if !store.cancel_batch(&batch, now) {
        return Err(batch_not_found(&vs, &batch));
    }
    batch_answer(store, &batch, now)
}

async fn list_batch_files(
    State(app): State<App>,
    Path((vs, batch)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = ListQuery::parse(raw.as_deref(), 20, 100)?;
    let mut inner = app.shared.lock();
    let (now, store) = inner.storage.store(&vs)?;
    let ids = store
        .batch(&batch)
        .ok_or_else(|| batch_not_found(&vs, &batch))?
        .file_ids
        .clone();
    Ok(answer(file_page(store, now, &q, |id| {
        ids.iter().any(|b| b == id)
    })?))
}
