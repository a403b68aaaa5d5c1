//! Uploaded files (`docs/upstream-api.md` §5.1) and the storage clock they share with vector
//! stores and code interpreter containers: the [`Storage`] that lives in the simulator's state
//! (behind its one lock), the `file` object as OpenAI shows it, and expiry.
//!
//! Time here is lazy: nothing is scheduled. Every storage operation first calls
//! [`Storage::tick`], which expires files, vector stores and containers whose time has come
//! (an expired file behaves as deleted and leaves every vector store; an expired store or
//! container loses its files), so what a client sees never lags. Tests move this clock forward with
//! [`SimHandle::advance_storage_clock`](super::SimHandle::advance_storage_clock) instead of
//! waiting an hour for an expiry.

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::containers::Container;
use super::error::ApiError;
use super::vector_stores::VectorStore;

/// The purposes an upload may name.
pub(crate) const PURPOSES: &[&str] = &[
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];

/// The shortest and longest `expires_after[seconds]` of an upload (1 hour to 30 days).
pub(crate) const EXPIRY_SECONDS: std::ops::RangeInclusive<i64> = 3600..=2_592_000;

/// How long a `batch` file lives when the upload names no expiry (30 days).
const BATCH_DEFAULT_EXPIRY: i64 = 30 * 24 * 3600;

/// The storage clock's "now": a monotonic instant (processing delays) and Unix seconds
/// (`created_at`, `expires_at`), both moved by the test offset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub at: Instant,
    pub unix: i64,
}

/// One uploaded file. Deleted and expired files are kept (with `deleted` set) so that
/// [`SimHandle::files`](super::SimHandle::files) can show them.
#[derive(Debug, Clone)]
pub(crate) struct StoredFile {
    pub id: String,
    pub filename: String,
    pub purpose: String,
    pub content: Bytes,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub deleted: bool,
}

impl StoredFile {
    /// The `file` object (`OpenAIFile`).
    pub fn view(&self) -> Value {
        json!({
            "id": self.id,
            "object": "file",
            "bytes": self.content.len(),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": null,
        })
    }
}

/// One uploaded file, for tests ([`SimHandle::files`](super::SimHandle::files)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFile {
    /// `file-…`.
    pub id: String,
    /// The name it was uploaded with.
    pub filename: String,
    /// `assistants`, `batch`, `fine-tune`, `vision`, `user_data` or `evals`.
    pub purpose: String,
    /// The bytes uploaded.
    pub content: Vec<u8>,
    /// Deleted (through the API or
    /// [`SimHandle::delete_file`](super::SimHandle::delete_file)) or expired.
    pub deleted: bool,
}

/// A validated upload, before it gets an id.
#[derive(Debug)]
pub(crate) struct Upload {
    pub filename: String,
    pub purpose: String,
    pub content: Bytes,
    /// `expires_after[seconds]`, when given.
    pub expires_after: Option<i64>,
}

/// Files and vector stores, behind the simulator's lock.
#[derive(Debug, Default)]
pub(crate) struct Storage {
    /// Every file ever uploaded, oldest first.
    pub files: Vec<StoredFile>,
    /// Every vector store, oldest first (deleted ones removed).
    pub stores: Vec<VectorStore>,
    /// Every code interpreter container, oldest first (deleted ones flagged).
    pub containers: Vec<Container>,
    /// How far tests moved the storage clock ahead of the real one.
    offset: Duration,
}

/// A fresh file id: `file-` and 22 letters and digits, like OpenAI's.
fn file_id() -> String {
    let tail: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(22)
        .map(char::from)
        .collect();
    format!("file-{tail}")
}

/// OpenAI's 404 for a file id it does not know (or no longer has).
pub(crate) fn file_not_found(id: &str) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::NOT_FOUND,
        ..ApiError::invalid(format!("No such File object: {id}"), Some("id"), None)
    }
}

impl Storage {
    /// The storage clock now, without expiring anything.
    pub fn now(&self) -> Now {
        let secs = i64::try_from(self.offset.as_secs()).unwrap_or(i64::MAX);
        Now {
            at: Instant::now() + self.offset,
            unix: chrono::Utc::now().timestamp().saturating_add(secs),
        }
    }

    /// Moves the storage clock forward (tests), then expires what is due.
    pub fn advance(&mut self, by: Duration) {
        self.offset = self.offset.saturating_add(by);
        self.tick();
    }

    /// Expires files and vector stores whose time has passed; returns the clock's now.
    pub fn tick(&mut self) -> Now {
        let now = self.now();
        let expired: Vec<String> = self
            .files
            .iter_mut()
            .filter(|f| !f.deleted && f.expires_at.is_some_and(|at| at <= now.unix))
            .map(|f| {
                f.deleted = true;
                f.id.clone()
            })
            .collect();
        for id in &expired {
            self.detach_everywhere(id);
        }
        for store in &mut self.stores {
            store.expire_if_due(now);
        }
        for container in &mut self.containers {
            container.expire_if_due(now);
        }
        now
    }

    /// Stores an upload; returns the new file's view.
    pub fn add_file(&mut self, upload: Upload) -> Value {
        let now = self.tick();
        let expires_after = upload
            .expires_after
            .or((upload.purpose == "batch").then_some(BATCH_DEFAULT_EXPIRY));
        let file = StoredFile {
            id: file_id(),
            filename: upload.filename,
            purpose: upload.purpose,
            content: upload.content,
            created_at: now.unix,
            expires_at: expires_after.map(|s| now.unix.saturating_add(s)),
            deleted: false,
        };
        let view = file.view();
        self.files.push(file);
        view
    }

    /// A file that exists and is neither deleted nor expired.
    pub fn live_file(&mut self, id: &str) -> Result<&StoredFile, ApiError> {
        self.tick();
        self.files
            .iter()
            .find(|f| f.id == id && !f.deleted)
            .ok_or_else(|| file_not_found(id))
    }

    /// Every live file with `purpose` (any, if `None`), oldest first.
    pub fn live_files(&mut self, purpose: Option<&str>) -> Vec<(String, Value)> {
        self.tick();
        self.files
            .iter()
            .filter(|f| !f.deleted && purpose.is_none_or(|p| f.purpose == p))
            .map(|f| (f.id.clone(), f.view()))
            .collect()
    }

    /// Deletes a file and removes it from every vector store; `false` if it was not live.
    pub fn delete_file(&mut self, id: &str) -> bool {
        self.tick();
        let Some(file) = self.files.iter_mut().find(|f| f.id == id && !f.deleted) else {
            return false;
        };
        file.deleted = true;
        self.detach_everywhere(id);
        true
    }

    fn detach_everywhere(&mut self, file_id: &str) {
        for store in &mut self.stores {
            store.detach(file_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(purpose: &str, expires_after: Option<i64>) -> Upload {
        Upload {
            filename: "a.txt".into(),
            purpose: purpose.into(),
            content: Bytes::from_static(b"hello"),
            expires_after,
        }
    }

    #[test]
    fn ids_look_like_openai_file_ids() {
        let id = file_id();
        assert!(id.starts_with("file-") && id.len() == 27, "{id}");
        assert!(id[5..].chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn batch_files_expire_after_thirty_days_by_default() {
        let mut storage = Storage::default();
        let batch = storage.add_file(upload("batch", None));
        let user = storage.add_file(upload("user_data", None));
        let created = batch["created_at"].as_i64().expect("created_at");
        assert_eq!(
            batch["expires_at"].as_i64(),
            Some(created + BATCH_DEFAULT_EXPIRY)
        );
        assert_eq!(user["expires_at"], Value::Null);
    }

    #[test]
    fn an_expired_file_behaves_as_deleted() {
        let mut storage = Storage::default();
        let view = storage.add_file(upload("user_data", Some(3600)));
        let id = view["id"].as_str().expect("id").to_owned();
        assert!(storage.live_file(&id).is_ok());
        storage.advance(Duration::from_secs(3599));
        assert!(storage.live_file(&id).is_ok());
        storage.advance(Duration::from_secs(1));
        assert!(storage.live_file(&id).is_err());
        assert!(storage.live_files(None).is_empty());
        assert!(!storage.delete_file(&id));
    }
}
