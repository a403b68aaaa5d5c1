//! `/v1/conversations` (`docs/upstream-api.md` §6.1): create, retrieve, update (metadata),
//! delete, and the items of a conversation (list, append, retrieve, delete), behind the
//! simulator's auth and fault gate, with OpenAI's error envelope and cursor lists. The store
//! and what a create on a conversation does live in `conversations.rs`; every handler first
//! settles the responses that finished, so their items are there.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::conversations::{not_found, parse_items};
use super::endpoint_params::object_body;
use super::error::ApiError;
use super::list::ListQuery;
use super::server::App;
use super::validate::check_metadata;

/// The routes, merged into the simulator's `/v1` router.
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/conversations", axum::routing::post(create))
        .route(
            "/conversations/{id}",
            get(retrieve).post(update).delete(delete),
        )
        .route("/conversations/{id}/items", get(list_items).post(add_items))
        .route(
            "/conversations/{id}/items/{item_id}",
            get(retrieve_item).delete(delete_item),
        )
}

fn answer(value: Value) -> Response {
    axum::Json(value).into_response()
}

async fn create(State(app): State<App>, body: Bytes) -> Result<Response, ApiError> {
    let body = object_body(&body, &["metadata", "items"])?;
    let metadata = check_metadata(&body)?;
    let items = parse_items(body.get("items"), false)?;
    let view = app.shared.lock().conversations.create(metadata, items);
    Ok(answer(view))
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    app.shared.settle_conversations();
    let mut inner = app.shared.lock();
    let c = inner
        .conversations
        .get(&id)
        .ok_or_else(|| not_found(&id, None))?;
    Ok(answer(c.view()))
}

async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = object_body(&body, &["metadata"])?;
    if !body.contains_key("metadata") {
        return Err(ApiError::invalid(
            "Missing required parameter: 'metadata'.",
            Some("metadata"),
            Some("missing_required_parameter"),
        ));
    }
    let metadata = check_metadata(&body)?;
    let mut inner = app.shared.lock();
    let c = inner
        .conversations
        .get(&id)
        .ok_or_else(|| not_found(&id, None))?;
    c.metadata = metadata;
    Ok(answer(c.view()))
}

async fn delete(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let c = inner
        .conversations
        .get(&id)
        .ok_or_else(|| not_found(&id, None))?;
    c.deleted = true;
    c.items.clear();
    Ok(answer(
        json!({"id": id, "object": "conversation.deleted", "deleted": true}),
    ))
}

async fn list_items(
    State(app): State<App>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = ListQuery::parse(raw.as_deref(), 20, 100)?;
    app.shared.settle_conversations();
    let mut inner = app.shared.lock();
    let c = inner
        .conversations
        .get(&id)
        .ok_or_else(|| not_found(&id, None))?;
    let items = c.items.iter().map(|i| (item_id(i), i.clone())).collect();
    Ok(answer(q.page(items)))
}

fn item_id(item: &Value) -> String {
    item.get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

async fn add_items(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = object_body(&body, &["items"])?;
    let items = parse_items(body.get("items"), true)?;
    app.shared.settle_conversations();
    let mut inner = app.shared.lock();
    let c = inner
        .conversations
        .get(&id)
        .ok_or_else(|| not_found(&id, None))?;
    c.items.extend(items.iter().cloned());
    let first = items.first().map(item_id);
    let last = items.last().map(item_id);
    Ok(answer(
        json!({"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": false}),
    ))
}

/// The 404 of an item the conversation does not hold (wording UNCONFIRMED).
fn item_not_found(item_id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        ..ApiError::invalid(format!("Item with id '{item_id}' not found."), None, None)
    }
}

async fn retrieve_item(
    State(app): State<App>,
    Path((id, item)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    app.shared.settle_conversations();
    let mut inner = app.shared.lock();
    let c = inner
        .conversations
        .get(&id)
        .ok_or_else(|| not_found(&id, None))?;
    let found = c
        .items
        .iter()
        .find(|i| item_id(i) == item)
        .ok_or_else(|| item_not_found(&item))?;
    Ok(answer(found.clone()))
}

async fn delete_item(
    State(app): State<App>,
    Path((id, item)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    app.shared.settle_conversations();
    let mut inner = app.shared.lock();
    let c = inner
        .conversations
        .get(&id)
        .ok_or_else(|| not_found(&id, None))?;
    let at = c
        .items
        .iter()
        .position(|i| item_id(i) == item)
        .ok_or_else(|| item_not_found(&item))?;
    c.items.remove(at);
    Ok(answer(c.view()))
}
