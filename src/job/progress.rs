//! How respool follows a job while it runs: `progress: poll` (polls and webhooks only) or
//! `progress: stream` (the create is sent with `stream: true` and the stream's milestones go
//! to the job's timeline; polls and webhooks still decide how the job ends).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A job's `progress` key (and the config's `jobs.progress` default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    /// Polls and webhooks only (the default).
    #[default]
    Poll,
    /// Live progress from the response's event stream, polls and webhooks as the safety net.
    Stream,
}

impl Progress {
    /// Every value, as written in a job or the config.
    pub const NAMES: [&'static str; 2] = ["poll", "stream"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Stream => "stream",
        }
    }

    /// Parses a written value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "poll" => Some(Self::Poll),
            "stream" => Some(Self::Stream),
            _ => None,
        }
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a job's `progress` key (taken out of the body). `None` leaves the choice to the
/// config's `jobs.progress`. A user's `stream: true` is refused by the spec with a pointer here:
/// respool sends `stream: true` itself for a `progress: stream` job, and a second way to say
/// the same thing would be one more thing to keep in step.
pub(crate) fn take_progress(progress: Option<Value>) -> Result<Option<Progress>, String> {
    match progress {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Progress::parse(&s)
            .map(Some)
            .ok_or_else(|| format!("must be `poll` or `stream`, not `{s}`")),
        Some(_) => Err("must be `poll` or `stream`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn progress_is_poll_or_stream() {
        assert_eq!(take_progress(None), Ok(None));
        assert_eq!(take_progress(Some(Value::Null)), Ok(None));
        assert_eq!(
            take_progress(Some(json!("stream"))),
            Ok(Some(Progress::Stream))
        );
        assert_eq!(take_progress(Some(json!("poll"))), Ok(Some(Progress::Poll)));
        assert!(
            take_progress(Some(json!("live")))
                .unwrap_err()
                .contains("`live`")
        );
        assert!(take_progress(Some(json!(true))).is_err());
    }
}
