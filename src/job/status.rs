//! The job status machine. Statuses only move forward; [`JobStatus::can_move_to`] is the one
//! place that says which moves are legal, and every status write in the store goes through it.
//! `pending` and `held` are the two "not yet submitted" statuses: a job moves between them as
//! its budget allows, and from either to any later status.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life. `pending` and `held` are ours (not yet submitted; `held` waits
/// for budget); the rest mirror OpenAI's response statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    /// Not submitted because a budget is reached; back to `pending` when it allows.
    Held,
    Queued,
    InProgress,
    /// Ours: the response asked for a function output or an MCP approval that a person must
    /// give (`POST /v1/jobs/{id}/respond`); the job goes on when they answer.
    RequiresAction,
    Completed,
    Failed,
    Incomplete,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 9] = [
        Self::Pending,
        Self::Held,
        Self::Queued,
        Self::InProgress,
        Self::RequiresAction,
        Self::Completed,
        Self::Failed,
        Self::Incomplete,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Held => "held",
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::RequiresAction => "requires_action",
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
            // Equal ranks: `pending ↔ held` are both legal, neither is progress.
            Self::Pending | Self::Held => 0,
            Self::Queued => 1,
            // Equal ranks: a job waits for a person and goes on, as often as its turns ask.
            Self::InProgress | Self::RequiresAction => 2,
            _ => 3,
        }
    }

    /// Whether a job may move from `self` to `next`. Staying put is allowed (a repeated
    /// observation); moving backward or out of a terminal status is not. `pending` may jump
    /// straight to any later status (a response can be observed first as `in_progress` or even
    /// finished, and a job cancelled before submission never leaves us). `pending` and `held`
    /// may move into each other (a budget reached, then available again), and so may
    /// `in_progress` and `requires_action` (a turn waits for a person, who answers).
    pub fn can_move_to(self, next: JobStatus) -> bool {
        if self == next {
            return true;
        }
        if self.is_terminal() {
            return false;
        }
        next.rank() > self.rank()
            || (self.rank() == 0 && next.rank() == 0)
            || (self.rank() == 2 && next.rank() == 2)
    }

    /// Whether the job was not submitted yet (`pending` or `held`).
    pub fn is_unsubmitted(self) -> bool {
        self.rank() == 0
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
    fn held_is_a_not_yet_submitted_status() {
        assert!(Pending.can_move_to(Held));
        assert!(Held.can_move_to(Pending));
        assert!(Held.can_move_to(Held));
        assert!(Held.can_move_to(Queued));
        assert!(Held.can_move_to(Cancelled));
        assert!(!Held.is_terminal());
        assert!(Held.is_unsubmitted() && Pending.is_unsubmitted());
        assert!(!Queued.is_unsubmitted());
        assert!(!Queued.can_move_to(Held));
        assert!(!InProgress.can_move_to(Held));
        assert!(!Cancelled.can_move_to(Held));
        assert_eq!("held".parse::<JobStatus>().unwrap(), Held);
    }

    #[test]
    fn requires_action_goes_back_and_forth_with_in_progress() {
        assert!(InProgress.can_move_to(RequiresAction));
        assert!(RequiresAction.can_move_to(InProgress));
        assert!(Queued.can_move_to(RequiresAction));
        assert!(RequiresAction.can_move_to(Cancelled));
        assert!(!RequiresAction.can_move_to(Queued));
        assert!(!RequiresAction.can_move_to(Pending));
        assert!(!RequiresAction.is_terminal() && !RequiresAction.is_unsubmitted());
        assert!(!Completed.can_move_to(RequiresAction));
    }

    #[test]
    fn parses_every_status() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), s);
        }
        assert!("done".parse::<JobStatus>().is_err());
    }
}
