//! Jobs: the spec a user writes ([`spec`]), the ids ([`JobId`], [`ResponseId`]) and the status
//! machine ([`JobStatus`]). Everything here is pure: no I/O, no SQL.

pub mod artifact;
pub mod attachment;
pub mod chain;
pub mod files;
pub mod handler;
pub mod progress;
pub mod redact;
pub mod schedule;
pub mod spec;
mod status;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use spec::{JobSpec, SpecError, SpecWarning};
pub use status::JobStatus;

/// An id that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("`{0}` is not a job id (ids are `job_` and a ULID)")]
    Job(String),
    #[error("`{0}` is not a response id")]
    Response(String),
}

/// Our id for a job: `job_` and a ULID, so ids sort by creation time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// A fresh id.
    pub fn generate() -> Self {
        Self(format!("job_{}", ulid::Ulid::new()))
    }

    /// Parses an id given by a user or read back from the store.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::Job(s.to_string());
        let rest = s.strip_prefix("job_").ok_or_else(bad)?;
        ulid::Ulid::from_string(rest).map_err(|_| bad())?;
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

/// Read-only access to the text (an id is a string with a guarantee; nothing can change it).
impl std::ops::Deref for JobId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for JobId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for JobId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl AsRef<str> for JobId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An upstream response id (`resp_…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResponseId(String);

impl ResponseId {
    /// Accepts what OpenAI returns: a non-empty id of URL-safe characters, at most 128 long.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(IdError::Response(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ResponseId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<ResponseId> for String {
    fn from(id: ResponseId) -> String {
        id.0
    }
}

/// Read-only access to the text (an id is a string with a guarantee; nothing can change it).
impl std::ops::Deref for ResponseId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ResponseId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ResponseId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl AsRef<str> for ResponseId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResponseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The metadata key respool puts on every create so a response can be traced to its job.
pub const METADATA_JOB_KEY: &str = "respool_job_id";

/// The value of [`METADATA_JOB_KEY`] on a create: the job id for its first response, and
/// `job_…:N` for the response of its turn `N` (function outputs or approvals sent back), so
/// that a response revealed later is taken for the turn it belongs to, never another's.
pub fn turn_tag(job: &JobId, turn: i64) -> String {
    if turn == 0 {
        job.to_string()
    } else {
        format!("{job}:{turn}")
    }
}

/// The job and turn a [`turn_tag`] names (`None` for anything else).
pub fn parse_turn_tag(tag: &str) -> Option<(JobId, i64)> {
    match tag.split_once(':') {
        None => Some((JobId::parse(tag).ok()?, 0)),
        Some((job, turn)) => {
            let turn: i64 = turn.parse().ok().filter(|t| *t > 0)?;
            if turn.to_string() != tag[job.len() + 1..] {
                return None;
            }
            Some((JobId::parse(job).ok()?, turn))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn turn_tags_round_trip() {
        let id = super::JobId::generate();
        for turn in [0, 1, 2, 99] {
            let tag = super::turn_tag(&id, turn);
            assert_eq!(super::parse_turn_tag(&tag), Some((id.clone(), turn)));
        }
        assert_eq!(super::turn_tag(&id, 0), id.to_string());
        for bad in [
            "",
            "x",
            ":1",
            &format!("{id}:"),
            &format!("{id}:0"),
            &format!("{id}:-1"),
            &format!("{id}:01"),
            &format!("{id}:1:2"),
            &format!("{id}:+1"),
        ] {
            assert_eq!(super::parse_turn_tag(bad), None, "{bad}");
        }
    }

    use super::*;

    #[test]
    fn job_ids_round_trip_and_reject_garbage() {
        let id = JobId::generate();
        assert!(id.as_str().starts_with("job_"));
        assert_eq!(JobId::parse(id.as_str()).unwrap(), id);
        assert!(JobId::parse("job_nope").is_err());
        assert!(JobId::parse("resp_123").is_err());
    }

    #[test]
    fn response_ids() {
        assert!(ResponseId::parse("resp_abc123").is_ok());
        assert!(ResponseId::parse("").is_err());
        assert!(ResponseId::parse("a/b").is_err());
    }
}

/// What one look at an upstream response told us, reduced to what the ledger keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub response_id: ResponseId,
    pub status: JobStatus,
    /// Every `output_text` part of every `message` item, joined (what the SDKs call
    /// `output_text`).
    pub output_text: Option<String>,
    pub usage: Option<serde_json::Value>,
    /// `error {code, message}` of a failed response, or `incomplete_details.reason`.
    pub error: Option<JobError>,
    /// The whole Response JSON, as received.
    pub raw: serde_json::Value,
}

impl Observation {
    /// The status upstream reported (`completed` for a refusal, which the job records as
    /// `failed`), else the observed one.
    pub fn upstream_status(&self) -> &str {
        self.raw
            .get("status")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(self.status.as_str())
    }
}

/// Why a job did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: String,
}
