//! `/v1/containers`: code interpreter containers (create, list, retrieve, delete) and their
//! files (list, retrieve, content, delete), behind the simulator's auth and fault gate. The
//! state, expiry and the 404s live in `containers.rs`. A container whose files are asked for
//! is used, so its expiry counts again from now; an expired one still answers
//! `GET /v1/containers/{id}` (`status: expired`) but its files are gone (404).
//! `container_file_drop` answers the first download of a file with a 500.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::containers::{
    DEFAULT_EXPIRY_MINUTES, MEMORY_LIMITS, NewContainer, container_file_not_found,
};
use super::endpoint_params::{check_name, object_body, required};
use super::error::ApiError;
use super::list::ListQuery;
use super::server::App;
use super::validate::{invalid_type, quoted};
use super::vector_store_params::file_ids;

/// The most files a container create may copy in.
const MAX_CONTAINER_FILE_IDS: usize = 50;
/// The longest `expires_after.minutes` accepted (OpenAI's own bound is unconfirmed).
const MAX_EXPIRY_MINUTES: i64 = 1440;

/// The routes, merged into the simulator's `/v1` router.
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/containers", get(list).post(create))
        .route("/containers/{id}", get(retrieve).delete(delete))
        .route("/containers/{id}/files", get(list_files))
        .route(
            "/containers/{id}/files/{file_id}",
            get(retrieve_file).delete(delete_file),
        )
        .route("/containers/{id}/files/{file_id}/content", get(content))
}

fn answer(value: Value) -> Response {
    axum::Json(value).into_response()
}

/// `expires_after`: `{"anchor": "last_active_at", "minutes": 1..=1440}`.
fn expiry_minutes(v: &Value) -> Result<i64, ApiError> {
    let Value::Object(o) = v else {
        return Err(invalid_type("expires_after", "an object", v));
    };
    match o.get("anchor") {
        Some(Value::String(a)) if a == "last_active_at" => {}
        Some(Value::String(a)) => {
            return Err(ApiError::invalid(
                format!("Invalid value: '{a}'. Supported values are: 'last_active_at'."),
                Some("expires_after.anchor"),
                Some("invalid_value"),
            ));
        }
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "Missing required parameter: 'expires_after.anchor'.",
                Some("expires_after.anchor"),
                Some("missing_required_parameter"),
            ));
        }
        Some(other) => return Err(invalid_type("expires_after.anchor", "a string", other)),
    }
    match o.get("minutes") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(m) if (1..=MAX_EXPIRY_MINUTES).contains(&m) => Ok(m),
            _ => Err(ApiError::invalid(
                format!(
                    "Invalid 'expires_after.minutes': expected an integer between 1 and {MAX_EXPIRY_MINUTES}, but got {n}."
                ),
                Some("expires_after.minutes"),
                Some("invalid_value"),
            )),
        },
        None | Some(Value::Null) => Err(ApiError::invalid(
            "Missing required parameter: 'expires_after.minutes'.",
            Some("expires_after.minutes"),
            Some("missing_required_parameter"),
        )),
        Some(other) => Err(invalid_type("expires_after.minutes", "an integer", other)),
    }
}

async fn create(State(app): State<App>, raw: Bytes) -> Result<Response, ApiError> {
    let body = object_body(
        &raw,
        &[
            "name",
            "expires_after",
            "file_ids",
            "memory_limit",
            "network_policy",
            "skills",
        ],
    )?;
    let name = check_name(required(&body, "name")?)?;
    let expiry = match body.get("expires_after") {
        None | Some(Value::Null) => DEFAULT_EXPIRY_MINUTES,
        Some(v) => expiry_minutes(v)?,
    };
    let memory_limit = match body.get("memory_limit") {
        None | Some(Value::Null) => "1g".to_owned(),
        Some(Value::String(m)) if MEMORY_LIMITS.contains(&m.as_str()) => m.clone(),
        Some(Value::String(m)) => {
            return Err(ApiError::invalid(
                format!(
                    "Invalid value: '{m}'. Supported values are: {}.",
                    quoted(MEMORY_LIMITS)
                ),
                Some("memory_limit"),
                Some("invalid_value"),
            ));
        }
        Some(other) => return Err(invalid_type("memory_limit", "a string", other)),
    };
    let wanted = match body.get("file_ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => file_ids(v, "file_ids", MAX_CONTAINER_FILE_IDS)?,
    };
    let new = NewContainer {
        name,
        expiry_minutes: expiry,
        memory_limit,
        file_ids: wanted,
    };
    let mut inner = app.shared.lock();
    let view = inner.storage.create_container(new, "file_ids")?.view();
    Ok(answer(view))
}

async fn list(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = ListQuery::parse(raw.as_deref(), 20, 100)?;
    let mut inner = app.shared.lock();
    let storage = &mut inner.storage;
    storage.tick();
    let items = storage
        .containers
        .iter()
        .filter(|c| !c.deleted && q.get("name").is_none_or(|n| c.name == n))
        .map(|c| (c.id.clone(), c.view()))
        .collect();
    Ok(answer(q.page(items)))
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let (now, container) = inner.storage.container(&id)?;
    container.touch(now);
    Ok(answer(container.view()))
}

async fn delete(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let (_, container) = inner.storage.container(&id)?;
    container.deleted = true;
    container.files.clear();
    Ok(answer(
        json!({"id": id, "object": "container.deleted", "deleted": true}),
    ))
}

async fn list_files(
    State(app): State<App>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = ListQuery::parse(raw.as_deref(), 20, 100)?;
    let mut inner = app.shared.lock();
    let (_, container) = inner.storage.running_container(&id)?;
    let items = container
        .files
        .iter()
        .map(|f| (f.id.clone(), f.view(&id)))
        .collect();
    Ok(answer(q.page(items)))
}

async fn retrieve_file(
    State(app): State<App>,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let (_, container) = inner.storage.running_container(&id)?;
    let file = container
        .files
        .iter()
        .find(|f| f.id == file_id)
        .ok_or_else(|| container_file_not_found(&id, &file_id))?;
    Ok(answer(file.view(&id)))
}

/// OpenAI's opaque 500.
fn server_error() -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: "The server had an error while processing your request. Sorry about that!"
            .to_owned(),
        kind: "server_error",
        param: None,
        code: None,
        headers: Vec::new(),
    }
}

async fn content(
    State(app): State<App>,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let (_, container) = inner.storage.running_container(&id)?;
    let file = container
        .files
        .iter_mut()
        .find(|f| f.id == file_id)
        .ok_or_else(|| container_file_not_found(&id, &file_id))?;
    if std::mem::take(&mut file.fail_next_download) {
        tracing::debug!(container_id = %id, file_id = %file_id, "container file download dropped");
        return Err(server_error());
    }
    let bytes = file.content.clone();
    inner.stats.container_file_downloads += 1;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        bytes,
    )
        .into_response())
}

async fn delete_file(
    State(app): State<App>,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let (_, container) = inner.storage.running_container(&id)?;
    let before = container.files.len();
    container.files.retain(|f| f.id != file_id);
    if container.files.len() == before {
        return Err(container_file_not_found(&id, &file_id));
    }
    Ok(answer(
        json!({"id": file_id, "object": "container.file.deleted", "deleted": true}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_checked() {
        assert_eq!(
            expiry_minutes(&json!({"anchor": "last_active_at", "minutes": 5})).ok(),
            Some(5)
        );
        for (bad, param) in [
            (
                json!({"anchor": "created_at", "minutes": 5}),
                "expires_after.anchor",
            ),
            (json!({"minutes": 5}), "expires_after.anchor"),
            (
                json!({"anchor": "last_active_at", "minutes": 0}),
                "expires_after.minutes",
            ),
            (json!({"anchor": "last_active_at"}), "expires_after.minutes"),
            (
                json!({"anchor": "last_active_at", "minutes": "5"}),
                "expires_after.minutes",
            ),
            (json!(5), "expires_after"),
        ] {
            let err = expiry_minutes(&bad).expect_err("refused");
            assert_eq!(err.param.as_deref(), Some(param), "{bad}");
        }
    }
}
