//! Conversations (`docs/upstream-api.md` §6.1): the store behind `/v1/conversations`
//! (`conversation_routes.rs`) and what a create on a conversation does. A create naming one
//! sees its items first (`chain.rs` quotes them in the answer), echoes `conversation: {id}`,
//! and its input and output items are appended once it completes ([`Conversations::settle`],
//! called before every read). While it is queued or in progress, another create on the same
//! conversation is refused with 400 `conversation_locked` ("Another process is currently
//! operating on this conversation. Please retry in a few seconds.", param `conversation`), as
//! clients of the real API report for concurrent requests; that a *background* response
//! holds the lock for its whole run is UNCONFIRMED.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::entry::{Entry, Status};
use super::error::ApiError;
use super::ids;

/// The most items one create or append may carry.
pub(crate) const MAX_ITEMS: usize = 20;

/// One conversation.
#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    pub id: String,
    pub created_at: i64,
    pub metadata: Map<String, Value>,
    /// Its items, oldest first, each with an `id`.
    pub items: Vec<Value>,
    pub deleted: bool,
    /// The response created on it that has not settled yet.
    pub busy: Option<String>,
}

impl Conversation {
    /// The conversation object.
    pub(crate) fn view(&self) -> Value {
        json!({
            "id": self.id,
            "object": "conversation",
            "created_at": self.created_at,
            "metadata": self.metadata,
        })
    }
}

/// Every conversation, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Conversations {
    pub list: Vec<Conversation>,
}

/// The 404 of an unknown or deleted conversation (wording UNCONFIRMED).
pub(crate) fn not_found(id: &str, param: Option<&str>) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::NOT_FOUND,
        ..ApiError::invalid(
            format!("Conversation with id '{id}' not found."),
            param,
            None,
        )
    }
}

/// The 400 of a create on a conversation another response is still using.
pub(crate) fn locked() -> ApiError {
    ApiError::invalid(
        "Another process is currently operating on this conversation. Please retry in a few seconds.",
        Some("conversation"),
        Some("conversation_locked"),
    )
}

/// Checks an `items` array (at most [`MAX_ITEMS`]) and gives each item an id.
pub(crate) fn parse_items(value: Option<&Value>, required: bool) -> Result<Vec<Value>, ApiError> {
    let items = match value {
        None | Some(Value::Null) if !required => return Ok(Vec::new()),
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "Missing required parameter: 'items'.",
                Some("items"),
                Some("missing_required_parameter"),
            ));
        }
        Some(Value::Array(items)) => items,
        Some(other) => return Err(super::validate::invalid_type("items", "an array", other)),
    };
    if items.len() > MAX_ITEMS {
        return Err(ApiError::invalid(
            format!(
                "Invalid 'items': array too long. Expected an array with maximum length {MAX_ITEMS}, but got an array with {} items instead.",
                items.len()
            ),
            Some("items"),
            Some("array_above_max_length"),
        ));
    }
    let (_, items) = super::validate::normalize_items(items).map_err(|mut e| {
        e.param = e.param.map(|p| p.replacen("input", "items", 1));
        e.message = e.message.replacen("'input", "'items", 1);
        e
    })?;
    Ok(items)
}

impl Conversations {
    /// A new conversation holding `items`.
    pub(crate) fn create(&mut self, metadata: Map<String, Value>, items: Vec<Value>) -> Value {
        let c = Conversation {
            id: ids::new("conv"),
            created_at: chrono::Utc::now().timestamp(),
            metadata,
            items,
            deleted: false,
            busy: None,
        };
        let view = c.view();
        self.list.push(c);
        view
    }

    /// A live conversation.
    pub(crate) fn get(&mut self, id: &str) -> Option<&mut Conversation> {
        self.list.iter_mut().find(|c| c.id == id && !c.deleted)
    }

    /// Appends the items of every finished response to its conversation, and frees the
    /// conversation: a `completed` response adds its input and output items, a response that
    /// ended otherwise (or is gone) adds nothing. `entries` must be advanced to now.
    pub(crate) fn settle(&mut self, entries: &HashMap<String, Entry>) {
        for c in &mut self.list {
            let Some(id) = c.busy.clone() else { continue };
            match entries.get(&id) {
                Some(e) if !e.status.is_terminal() => {}
                Some(e) => {
                    if e.status == Status::Completed {
                        c.items.extend(e.input_items.iter().cloned());
                        if let Some(output) = e.snapshot.get("output").and_then(Value::as_array) {
                            c.items.extend(output.iter().cloned());
                        }
                    }
                    c.busy = None;
                }
                None => c.busy = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_checked_and_given_ids() {
        let items = parse_items(Some(&json!([{"role": "user", "content": "Grüezi"}])), true)
            .expect("valid");
        assert!(items[0]["id"].as_str().expect("id").starts_with("msg_"));
        assert_eq!(items[0]["type"], "message");
        let many = Value::Array(vec![json!({"role": "user", "content": "x"}); 21]);
        let err = parse_items(Some(&many), true).expect_err("too many");
        assert_eq!(err.param.as_deref(), Some("items"));
        assert!(parse_items(None, true).is_err());
        assert!(parse_items(None, false).expect("optional").is_empty());
        assert_eq!(
            parse_items(Some(&json!([1])), true)
                .expect_err("not an object")
                .param
                .as_deref(),
            Some("items[0]")
        );
    }
}
