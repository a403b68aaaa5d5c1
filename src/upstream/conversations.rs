//! Conversations (`POST /conversations`, `DELETE /conversations/{id}`; docs/upstream-api.md
//! §6.1): the Conversation respool creates for a job that asks for a new one
//! (`conversation: new`), which the jobs that run after it share.
//!
//! OpenAI lists no conversations, so a create whose answer was lost leaves no evidence: the
//! caller records its intent first and may create again, leaving at worst an empty
//! conversation nobody uses (`store/chains.rs` keeps only the first one recorded).

// Errors are rare and sit next to an HTTP call: their size does not matter.
#![allow(clippy::result_large_err)]

use serde_json::{Value, json};

use super::{Client, UpstreamError, urlencode};

impl Client {
    /// `POST /conversations` with `metadata` (respool's tag naming the job). Sent again inline
    /// only when it surely did not reach OpenAI. Returns the conversation's id.
    pub async fn create_conversation(
        &self,
        metadata: &serde_json::Map<String, Value>,
    ) -> Result<String, UpstreamError> {
        let body = json!({ "metadata": metadata });
        let raw = self
            .call_json(
                || {
                    self.request(reqwest::Method::POST, "/conversations")
                        .json(&body)
                },
                |e| !e.create_may_have_happened(),
            )
            .await?;
        match raw.get("id").and_then(Value::as_str) {
            Some(id) if id.starts_with("conv_") => Ok(id.to_string()),
            _ => Err(UpstreamError::InvalidResponse(
                "a created conversation without a `conv_…` id".into(),
            )),
        }
    }

    /// `DELETE /conversations/{id}`: an extra conversation respool made and will not use.
    pub async fn delete_conversation(&self, id: &str) -> Result<(), UpstreamError> {
        let path = format!("/conversations/{}", urlencode(id));
        self.call_json(|| self.request(reqwest::Method::DELETE, &path), |_| true)
            .await
            .map(|_| ())
    }
}
