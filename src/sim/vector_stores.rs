//! Vector stores (`docs/upstream-api.md` §5.2): the store, its files and file batches, and
//! how their statuses follow from the storage clock ([`super::files::Now`]).
//!
//! A file attached to a store is `in_progress` for
//! [`SimConfig::file_processing_time`](super::SimConfig::file_processing_time), then
//! `completed`, or `failed` with a `last_error`: a file named `*.bin` fails `unsupported_file`, one whose content holds
//! `SIM_INVALID_FILE` fails `invalid_file`, one holding `SIM_SERVER_ERROR` fails
//! `server_error`. Statuses are computed when looked at, so `file_counts` always agree with the
//! files. A store is `in_progress` while any of its files is, `expired` once
//! `expires_after.days` passed since it was last active (its files are then removed), else
//! `completed`. The vector-store-file id is the file id.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::error::ApiError;
use super::files::{Now, Storage, StoredFile};

/// Content marker that makes a file fail `invalid_file` when a store processes it.
pub(crate) const INVALID_MARKER: &[u8] = b"SIM_INVALID_FILE";
/// Content marker that makes a file fail `server_error` when a store processes it.
pub(crate) const SERVER_ERROR_MARKER: &[u8] = b"SIM_SERVER_ERROR";

/// How a file's processing ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Processed {
    Completed,
    Failed { code: &'static str, message: String },
}

impl Processed {
    /// Decides how processing `filename` with `content` ends.
    pub(crate) fn of(filename: &str, content: &[u8]) -> Self {
        let contains = |needle: &[u8]| content.windows(needle.len()).any(|w| w == needle);
        let extension = filename
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase());
        if extension.as_deref() == Some("bin") {
            Self::Failed {
                code: "unsupported_file",
                message: "Files with extensions [.bin] are not supported for retrieval. See https://platform.openai.com/docs/assistants/tools/file-search#supported-files".into(),
            }
        } else if contains(INVALID_MARKER) {
            Self::Failed {
                code: "invalid_file",
                message: format!("The file {filename} could not be parsed."),
            }
        } else if contains(SERVER_ERROR_MARKER) {
            Self::Failed {
                code: "server_error",
                message: "An internal error occurred while processing the file.".into(),
            }
        } else {
            Self::Completed
        }
    }
}

/// A file in a vector store.
#[derive(Debug, Clone)]
pub(crate) struct StoreFile {
    pub file_id: String,
    pub filename: String,
    pub content: Bytes,
    pub created_at: i64,
    pub ready_at: Instant,
    pub processed: Processed,
    pub cancelled: bool,
    pub attributes: Value,
    pub chunking_strategy: Value,
}

impl StoreFile {
    /// `in_progress`, `completed`, `failed` or `cancelled` at `now`.
    pub fn status(&self, now: Now) -> &'static str {
        if self.cancelled {
            "cancelled"
        } else if now.at < self.ready_at {
            "in_progress"
        } else if self.processed == Processed::Completed {
            "completed"
        } else {
            "failed"
        }
    }

    /// Whether search finds it at `now`.
    pub fn searchable(&self, now: Now) -> bool {
        self.status(now) == "completed"
    }

    fn usage_bytes(&self, now: Now) -> usize {
        if self.searchable(now) {
            self.content.len()
        } else {
            0
        }
    }

    /// How long until processing ends (zero once it has).
    pub fn remaining(&self, now: Now) -> Duration {
        self.ready_at.saturating_duration_since(now.at)
    }

    /// The `vector_store.file` object.
    pub fn view(&self, store_id: &str, now: Now) -> Value {
        let status = self.status(now);
        let last_error = match &self.processed {
            Processed::Failed { code, message } if status == "failed" => {
                json!({"code": code, "message": message})
            }
            _ => Value::Null,
        };
        json!({
            "id": self.file_id,
            "object": "vector_store.file",
            "usage_bytes": self.usage_bytes(now),
            "created_at": self.created_at,
            "vector_store_id": store_id,
            "status": status,
            "last_error": last_error,
            "chunking_strategy": self.chunking_strategy,
            "attributes": self.attributes,
        })
    }
}

/// A file batch: the files it attached, by id.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub id: String,
    pub created_at: i64,
    pub file_ids: Vec<String>,
    pub cancelled: bool,
}

/// One vector store.
#[derive(Debug, Clone)]
pub(crate) struct VectorStore {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub created_at: i64,
    pub metadata: Map<String, Value>,
    /// `expires_after.days` (anchor `last_active_at`).
    pub expires_days: Option<i64>,
    pub last_active_at: i64,
    pub expired: bool,
    pub files: Vec<StoreFile>,
    pub batches: Vec<Batch>,
}

/// One file search result.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub file_id: String,
    pub filename: String,
    pub score: f64,
    pub text: String,
    pub attributes: Value,
}

impl VectorStore {
    /// `expires_at`: `expires_after.days` after `last_active_at`.
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_days
            .map(|d| self.last_active_at.saturating_add(d.saturating_mul(86_400)))
    }

    /// Expires the store (removing its files) once `expires_at` has passed.
    pub fn expire_if_due(&mut self, now: Now) {
        if !self.expired && self.expires_at().is_some_and(|at| at <= now.unix) {
            self.expired = true;
            self.files.clear();
        }
    }

    /// Marks the store used now (its expiry counts from here).
    pub fn touch(&mut self, now: Now) {
        self.last_active_at = now.unix;
    }

    /// Removes a file from the store; `false` if it was not in it.
    pub fn detach(&mut self, file_id: &str) -> bool {
        let before = self.files.len();
        self.files.retain(|f| f.file_id != file_id);
        self.files.len() != before
    }

    pub fn file(&self, file_id: &str) -> Option<&StoreFile> {
        self.files.iter().find(|f| f.file_id == file_id)
    }

    /// Attaches `file` (processing starts now); a file already in the store is left as it is.
    pub fn attach(
        &mut self,
        file: &StoredFile,
        attributes: Value,
        chunking_strategy: Value,
        now: Now,
        processing: Duration,
    ) -> &StoreFile {
        let pos = match self.files.iter().position(|f| f.file_id == file.id) {
            Some(pos) => pos,
            None => {
                self.files.push(StoreFile {
                    file_id: file.id.clone(),
                    filename: file.filename.clone(),
                    content: file.content.clone(),
                    created_at: now.unix,
                    ready_at: now.at + processing,
                    processed: Processed::of(&file.filename, &file.content),
                    cancelled: false,
                    attributes,
                    chunking_strategy,
                });
                self.files.len() - 1
            }
        };
        &self.files[pos]
    }

    /// `file_counts` over the files whose id `only` accepts.
    pub fn file_counts(&self, now: Now, only: impl Fn(&str) -> bool) -> Value {
        let (mut in_progress, mut completed, mut failed, mut cancelled) = (0, 0, 0, 0);
        for f in self.files.iter().filter(|f| only(&f.file_id)) {
            match f.status(now) {
                "in_progress" => in_progress += 1,
                "completed" => completed += 1,
                "failed" => failed += 1,
                _ => cancelled += 1,
            }
        }
        json!({
            "in_progress": in_progress,
            "completed": completed,
            "failed": failed,
            "cancelled": cancelled,
            "total": in_progress + completed + failed + cancelled,
        })
    }

    /// `expired`, `in_progress` (some file still is) or `completed` (ready for use).
    pub fn status(&self, now: Now) -> &'static str {
        if self.expired {
            "expired"
        } else if self.files.iter().any(|f| f.status(now) == "in_progress") {
            "in_progress"
        } else {
            "completed"
        }
    }

    /// The `vector_store` object.
    pub fn view(&self, now: Now) -> Value {
        let usage_bytes: usize = self.files.iter().map(|f| f.usage_bytes(now)).sum();
        json!({
            "id": self.id,
            "object": "vector_store",
            "created_at": self.created_at,
            "name": self.name,
            "description": self.description,
            "usage_bytes": usage_bytes,
            "file_counts": self.file_counts(now, |_| true),
            "status": self.status(now),
            "expires_after": self.expires_days.map(|d| json!({"anchor": "last_active_at", "days": d})),
            "expires_at": self.expires_at(),
            "last_active_at": self.last_active_at,
            "metadata": self.metadata,
        })
    }

    pub fn batch(&self, id: &str) -> Option<&Batch> {
        self.batches.iter().find(|b| b.id == id)
    }

    /// The `vector_store.file_batch` object.
    pub fn batch_view(&self, batch: &Batch, now: Now) -> Value {
        let counts = self.file_counts(now, |id| batch.file_ids.iter().any(|b| b == id));
        let status = if batch.cancelled {
            "cancelled"
        } else if counts["in_progress"].as_u64().unwrap_or(0) > 0 {
            "in_progress"
        } else {
            "completed"
        };
        json!({
            "id": batch.id,
            "object": "vector_store.file_batch",
            "created_at": batch.created_at,
            "vector_store_id": self.id,
            "status": status,
            "file_counts": counts,
        })
    }

    /// Cancels a batch: its files still in progress end `cancelled`.
    pub fn cancel_batch(&mut self, batch_id: &str, now: Now) -> bool {
        let Some(batch) = self.batches.iter_mut().find(|b| b.id == batch_id) else {
            return false;
        };
        let in_batch = batch.file_ids.clone();
        let mut any = false;
        for f in &mut self.files {
            if in_batch.contains(&f.file_id) && f.status(now) == "in_progress" {
                f.cancelled = true;
                any = true;
            }
        }
        // A batch with nothing left to cancel is complete; cancelling it changes nothing.
        batch.cancelled = any || batch.cancelled;
        true
    }

    /// Search results for `query` among the store's processed files, best first.
    pub fn search(&self, query: &str, now: Now) -> Vec<Hit> {
        let words: Vec<String> = query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= 3)
            .map(str::to_lowercase)
            .collect();
        let mut hits: Vec<Hit> = self
            .files
            .iter()
            .filter(|f| f.searchable(now))
            .map(|f| {
                // The first MiB is plenty to rank by, and keeps a search under the lock short.
                let head = &f.content[..f.content.len().min(1 << 20)];
                let text = String::from_utf8_lossy(head);
                let lower = text.to_lowercase();
                let found = words.iter().filter(|w| lower.contains(w.as_str())).count();
                let share = if words.is_empty() {
                    0.0
                } else {
                    found as f64 / words.len() as f64
                };
                Hit {
                    file_id: f.file_id.clone(),
                    filename: f.filename.clone(),
                    // 0.5 for a file that shares no word with the query, 0.99 for one that has
                    // them all, rounded as OpenAI's scores are printed.
                    score: ((0.5 + 0.49 * share) * 10_000.0).round() / 10_000.0,
                    text: text.chars().take(400).collect(),
                    attributes: f.attributes.clone(),
                }
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits
    }
}

/// OpenAI's 404 for an unknown vector store.
pub(crate) fn store_not_found(id: &str) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::NOT_FOUND,
        ..ApiError::invalid(format!("No vector store found with id '{id}'."), None, None)
    }
}

impl Storage {
    /// A vector store (expired ones included) and the clock's now.
    pub fn store(&mut self, id: &str) -> Result<(Now, &mut VectorStore), ApiError> {
        let now = self.tick();
        self.stores
            .iter_mut()
            .find(|s| s.id == id)
            .map(|s| (now, s))
            .ok_or_else(|| store_not_found(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_files_fail_with_the_right_code() {
        assert_eq!(Processed::of("notes.txt", b"fine"), Processed::Completed);
        let code = |name: &str, content: &[u8]| match Processed::of(name, content) {
            Processed::Failed { code, .. } => code,
            Processed::Completed => "completed",
        };
        assert_eq!(code("blob.BIN", b"x"), "unsupported_file");
        assert_eq!(code("a.txt", b"abc SIM_INVALID_FILE def"), "invalid_file");
        assert_eq!(code("a.txt", b"SIM_SERVER_ERROR"), "server_error");
        assert_eq!(code("bin", b""), "completed");
    }
}
