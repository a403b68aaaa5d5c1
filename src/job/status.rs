//! The job status machine. Statuses only move forward; [`JobStatus::can_move_to`] is the one
//! place that says which moves are legal, and every status write in the store goes through it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life. `pending` is ours (not yet submitted); the rest mirror
/// OpenAI's response statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Queued,
    InProgress,
    Completed,
    Failed,
    Incomplete,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 7] = [
        Self::Pending,
        Self::Queued,
        Self::InProgress,
        Self::Completed,
        Self::Failed,
        Self::Incomplete,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Incomplete => "incomplete",
            Self::Cancelled => "cancelled",
        }
    }

    /// A terminal status never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Incomplete | Self::Cancelled
        )
    }

    fn rank(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Queued => 1,
            Self::InProgress => 2,
            _ => 3,
        }
    }

    /// Whether a job may move from `self` to `next`. Staying put is allowed (a repeated
    /// observation); moving backward or out of a terminal status is not. `pending` may jump
    /// straight to any later status (a response can be observed first as `in_progress` or even
    /// finished, and a job cancelled before submission never leaves us).
    pub fn can_move_to(self, next: JobStatus) -> bool {
        if self == next {
            return true;
        }
        if self.is_terminal() {
            return false;
        }
        next.rank() > self.rank()
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a job status (one of: {})",
                    Self::ALL.map(|s| s.as_str()).join(", ")
                )
            })
    }
}

impl TryFrom<String> for JobStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;
    use super::*;

    #[test]
    fn only_forward_moves() {
        assert!(Pending.can_move_to(Queued));
        assert!(Pending.can_move_to(Completed));
        assert!(Queued.can_move_to(InProgress));
        assert!(InProgress.can_move_to(Cancelled));
        assert!(!InProgress.can_move_to(Queued));
        assert!(!Completed.can_move_to(Failed));
        assert!(!Cancelled.can_move_to(Completed));
        assert!(Completed.can_move_to(Completed));
    }

    #[test]
    fn parses_every_status() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), s);
        }
        assert!("done".parse::<JobStatus>().is_err());
    }
}
