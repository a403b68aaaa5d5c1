//! Code interpreter containers and their files, on the storage clock of `files.rs`
//! ([`super::files::Now`]).
//!
//! A container is `running` until `expires_after.minutes` (20 by default) pass after its
//! `last_active_at`; then it is `expired` and its files are gone (their routes answer 404, as
//! a real expired container's do, its data deleted). Using a running container moves
//! `last_active_at` to now: a response whose code runs in it, retrieving it, listing or
//! retrieving its files, downloading their content. Deleted containers are kept (flagged) so
//! that [`SimHandle::containers`](super::SimHandle::containers) can show them; the API no
//! longer knows them.
//!
//! The two container faults are decided when a response's code runs: its container expired at
//! once (`container_expired`), or each file's first download answering 500
//! (`container_file_drop`).

use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Value, json};

use super::code_interpreter::{Analysis, CitedFile, CodeRun, CodeTool, ContainerChoice, DATA_DIR};
use super::error::ApiError;
use super::files::{Now, Storage};
use super::ids;

/// Minutes of inactivity after which a container expires, unless created with another
/// `expires_after.minutes`.
pub(crate) const DEFAULT_EXPIRY_MINUTES: i64 = 20;

/// Memory limits a container may have (`1g` by default).
pub(crate) const MEMORY_LIMITS: &[&str] = &["1g", "4g", "16g", "64g"];

/// One file in a container.
#[derive(Debug, Clone)]
pub(crate) struct ContainerFile {
    pub id: String,
    pub path: String,
    pub content: Bytes,
    pub created_at: i64,
    /// `assistant` (made by the code) or `user` (copied in from a file id).
    pub source: &'static str,
    /// The next content download answers 500 (`container_file_drop`), once.
    pub fail_next_download: bool,
}

impl ContainerFile {
    /// The `container.file` object.
    pub fn view(&self, container_id: &str) -> Value {
        json!({
            "id": self.id,
            "object": "container.file",
            "created_at": self.created_at,
            "bytes": self.content.len(),
            "container_id": container_id,
            "path": self.path,
            "source": self.source,
        })
    }
}

/// One container.
#[derive(Debug, Clone)]
pub(crate) struct Container {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_active_at: i64,
    pub expiry_minutes: i64,
    pub memory_limit: String,
    pub expired: bool,
    pub deleted: bool,
    pub files: Vec<ContainerFile>,
}

impl Container {
    fn expires_at(&self) -> i64 {
        self.last_active_at
            .saturating_add(self.expiry_minutes.saturating_mul(60))
    }

    /// Expires the container (its files gone) once its time has come.
    pub fn expire_if_due(&mut self, now: Now) {
        if !self.expired && self.expires_at() <= now.unix {
            self.expire();
        }
    }

    /// Expires the container now: its files are gone.
    pub fn expire(&mut self) {
        self.expired = true;
        self.files.clear();
    }

    /// Marks a running container used now.
    pub fn touch(&mut self, now: Now) {
        if !self.expired {
            self.last_active_at = now.unix;
        }
    }

    /// `running` or `expired`.
    pub fn status(&self) -> &'static str {
        if self.expired { "expired" } else { "running" }
    }

    /// The `container` object.
    pub fn view(&self) -> Value {
        json!({
            "id": self.id,
            "object": "container",
            "created_at": self.created_at,
            "status": self.status(),
            "expires_after": {"anchor": "last_active_at", "minutes": self.expiry_minutes},
            "last_active_at": self.last_active_at,
            "memory_limit": self.memory_limit,
            "name": self.name,
        })
    }

    /// Saves a file at `path`, replacing one already there (as writing it again would).
    fn put(
        &mut self,
        path: String,
        content: Bytes,
        source: &'static str,
        fail_first: bool,
        now: Now,
    ) -> &ContainerFile {
        self.files.retain(|f| f.path != path);
        self.files.push(ContainerFile {
            id: ids::new("cfile"),
            path,
            content,
            created_at: now.unix,
            source,
            fail_next_download: fail_first,
        });
        let last = self.files.len() - 1;
        &self.files[last]
    }
}

/// One container, for tests ([`SimHandle::containers`](super::SimHandle::containers)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimContainer {
    /// `cntr_…`.
    pub id: String,
    /// Its `name`.
    pub name: String,
    /// `running`, `expired`, or `deleted` (which the API no longer knows).
    pub status: String,
    /// `last_active_at`, Unix seconds on the storage clock.
    pub last_active_at: i64,
    /// Its files, oldest first (none once expired or deleted).
    pub files: Vec<SimContainerFile>,
}

/// One file in a container, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimContainerFile {
    /// `cfile_…`.
    pub id: String,
    /// `/mnt/data/…`.
    pub path: String,
    /// The bytes its content download answers.
    pub content: Vec<u8>,
    /// `assistant` (the code saved it) or `user` (copied in from an uploaded file).
    pub source: String,
    /// Its next download will answer 500 (`container_file_drop`).
    pub fails_next_download: bool,
}

impl SimContainer {
    pub(crate) fn of(c: &Container) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            status: if c.deleted { "deleted" } else { c.status() }.to_owned(),
            last_active_at: c.last_active_at,
            files: c
                .files
                .iter()
                .map(|f| SimContainerFile {
                    id: f.id.clone(),
                    path: f.path.clone(),
                    content: f.content.to_vec(),
                    source: f.source.to_owned(),
                    fails_next_download: f.fail_next_download,
                })
                .collect(),
        }
    }
}

/// OpenAI's 404 for a container it does not know.
pub(crate) fn container_not_found(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        ..ApiError::invalid(format!("Container with id '{id}' not found."), None, None)
    }
}

/// The 404 for the files of an expired container: their data is gone.
fn container_expired(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        ..ApiError::invalid(
            format!("Container with id '{id}' is expired; its files are gone."),
            None,
            None,
        )
    }
}

/// The 404 for a file a container does not hold.
pub(crate) fn container_file_not_found(container: &str, file: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        ..ApiError::invalid(
            format!("File with id '{file}' not found in container '{container}'."),
            None,
            None,
        )
    }
}

/// How the container faults hit one code run.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunFaults {
    /// The container is expired as soon as the code ran.
    pub expired: bool,
    /// Per saved file, in order: its first download answers 500.
    pub drop_first_download: Vec<bool>,
}

/// What a new container is made with.
#[derive(Debug, Clone)]
pub(crate) struct NewContainer {
    pub name: String,
    pub expiry_minutes: i64,
    pub memory_limit: String,
    /// Live uploaded files copied in (`source: user`).
    pub file_ids: Vec<String>,
}

impl Storage {
    /// A container the API still knows (running or expired, not deleted), after expiring
    /// what is due, and the clock's now.
    pub fn container(&mut self, id: &str) -> Result<(Now, &mut Container), ApiError> {
        let now = self.tick();
        self.containers
            .iter_mut()
            .find(|c| c.id == id && !c.deleted)
            .map(|c| (now, c))
            .ok_or_else(|| container_not_found(id))
    }

    /// A running container, touched (its files are used); expired ones answer 404.
    pub fn running_container(&mut self, id: &str) -> Result<(Now, &mut Container), ApiError> {
        let (now, container) = self.container(id)?;
        if container.expired {
            return Err(container_expired(id));
        }
        container.touch(now);
        Ok((now, container))
    }

    /// Makes a container; every file id must name a live file (else a 404 naming `param`).
    pub fn create_container(
        &mut self,
        new: NewContainer,
        param: &str,
    ) -> Result<&Container, ApiError> {
        let now = self.tick();
        let mut copies = Vec::new();
        for id in &new.file_ids {
            let file = self.live_file(id).map_err(|_| ApiError {
                status: StatusCode::NOT_FOUND,
                ..ApiError::invalid(format!("No file found with id '{id}'."), Some(param), None)
            })?;
            copies.push((
                format!("{DATA_DIR}/{}", file.filename),
                file.content.clone(),
            ));
        }
        let mut container = Container {
            id: ids::new("cntr"),
            name: new.name,
            created_at: now.unix,
            last_active_at: now.unix,
            expiry_minutes: new.expiry_minutes,
            memory_limit: new.memory_limit,
            expired: false,
            deleted: false,
            files: Vec::new(),
        };
        for (path, content) in copies {
            container.put(path, content, "user", false, now);
        }
        self.containers.push(container);
        let last = self.containers.len() - 1;
        Ok(&self.containers[last])
    }

    /// Runs a response's code: in a new container (`auto`) or the one the tool names, which
    /// must exist (else a 400 naming `tools[N].container`) and not be expired (400
    /// `Container is expired.`, as OpenAI answers). Saves the analysis's files, applies the
    /// faults, and returns what the answer shows of the run.
    pub fn run_code(
        &mut self,
        tool: &CodeTool,
        response_id: &str,
        analysis: Analysis,
        faults: &RunFaults,
    ) -> Result<CodeRun, ApiError> {
        let container_id = match &tool.container {
            ContainerChoice::Existing(id) => {
                let (now, container) = self.container(id).map_err(|_| {
                    ApiError::invalid(
                        format!("Container with id '{id}' not found."),
                        Some(&tool.param()),
                        Some("invalid_value"),
                    )
                })?;
                if container.expired {
                    return Err(ApiError::invalid("Container is expired.", None, None));
                }
                container.touch(now);
                id.clone()
            }
            ContainerChoice::Auto {
                file_ids,
                memory_limit,
            } => {
                let new = NewContainer {
                    name: format!("Container for {response_id}"),
                    expiry_minutes: DEFAULT_EXPIRY_MINUTES,
                    memory_limit: memory_limit.clone().unwrap_or_else(|| "1g".to_owned()),
                    file_ids: file_ids.clone(),
                };
                let param = format!("{}.file_ids", tool.param());
                self.create_container(new, &param)
                    .map_err(|e| ApiError {
                        status: StatusCode::BAD_REQUEST,
                        ..e
                    })?
                    .id
                    .clone()
            }
        };
        let (now, container) = self.container(&container_id)?;
        let mut files = Vec::new();
        for (i, (filename, bytes)) in analysis.files.into_iter().enumerate() {
            let fail = faults.drop_first_download.get(i).copied().unwrap_or(false);
            let path = format!("{DATA_DIR}/{filename}");
            let file = container.put(path.clone(), Bytes::from(bytes), "assistant", fail, now);
            files.push(CitedFile {
                file_id: file.id.clone(),
                bytes: file.content.len(),
                filename,
                path,
            });
        }
        if faults.expired {
            container.expire();
        }
        Ok(CodeRun {
            container_id,
            code: analysis.code,
            logs: analysis.logs,
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn auto() -> CodeTool {
        CodeTool {
            index: 0,
            container: ContainerChoice::Auto {
                file_ids: Vec::new(),
                memory_limit: None,
            },
        }
    }

    #[test]
    fn a_container_expires_twenty_minutes_after_its_last_use() {
        let mut storage = Storage::default();
        let run = storage
            .run_code(
                &auto(),
                "resp_1",
                Analysis::of("a b c", "t", 2),
                &RunFaults::default(),
            )
            .expect("runs");
        assert_eq!(run.files.len(), 2);
        let id = run.container_id.clone();
        storage.advance(Duration::from_secs(19 * 60));
        assert!(
            storage.running_container(&id).is_ok(),
            "touched at 19 minutes"
        );
        storage.advance(Duration::from_secs(19 * 60));
        assert!(
            storage.running_container(&id).is_ok(),
            "19 minutes after the touch"
        );
        storage.advance(Duration::from_secs(20 * 60));
        assert!(storage.running_container(&id).is_err());
        let (_, c) = storage.container(&id).expect("still known");
        assert_eq!(c.status(), "expired");
        assert!(c.files.is_empty());
    }

    #[test]
    fn runs_in_a_named_container_check_it() {
        let mut storage = Storage::default();
        let first = storage
            .run_code(
                &auto(),
                "resp_1",
                Analysis::of("x", "t", 1),
                &RunFaults::default(),
            )
            .expect("runs");
        let named = CodeTool {
            index: 2,
            container: ContainerChoice::Existing(first.container_id.clone()),
        };
        let again = storage
            .run_code(
                &named,
                "resp_2",
                Analysis::of("y", "t", 2),
                &RunFaults::default(),
            )
            .expect("runs");
        assert_eq!(again.container_id, first.container_id);
        let (_, c) = storage.container(&first.container_id).expect("known");
        assert_eq!(c.files.len(), 2, "results.csv was written again");
        let unknown = CodeTool {
            index: 2,
            container: ContainerChoice::Existing("cntr_nope".into()),
        };
        let err = storage
            .run_code(
                &unknown,
                "r",
                Analysis::of("", "t", 0),
                &RunFaults::default(),
            )
            .expect_err("unknown");
        assert_eq!(
            (err.status, err.param.as_deref()),
            (StatusCode::BAD_REQUEST, Some("tools[2].container"))
        );
        storage
            .container(&first.container_id)
            .expect("known")
            .1
            .expire();
        let err = storage
            .run_code(&named, "r", Analysis::of("", "t", 0), &RunFaults::default())
            .expect_err("expired");
        assert_eq!(err.message, "Container is expired.");
    }
}
