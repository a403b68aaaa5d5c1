//! Properties of the job status machine (`JobStatus::can_move_to`): whatever sequence of
//! statuses is observed, a job that applies only the legal moves never goes backward, never
//! leaves a terminal status, and moves between `pending` and `held` only before it is submitted.

use proptest::prelude::*;
use respool::job::JobStatus;

/// Progress as the ledger sees it: `pending` and `held` are both "not submitted yet", every
/// terminal status is the end. Written out here, independently of `status.rs`.
fn rank(s: JobStatus) -> u8 {
    match s {
        JobStatus::Pending | JobStatus::Held => 0,
        JobStatus::Queued => 1,
        // Waiting for a person is still running: it goes back and forth with `in_progress`.
        JobStatus::InProgress | JobStatus::RequiresAction => 2,
        JobStatus::Completed | JobStatus::Failed | JobStatus::Incomplete | JobStatus::Cancelled => {
            3
        }
    }
}

fn status() -> impl Strategy<Value = JobStatus> {
    proptest::sample::select(JobStatus::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Applying a random stream of observations through `can_move_to`, as every status write
    /// does: rank never decreases, a terminal status is final, and the unsubmitted statuses are
    /// only ever reached from each other.
    #[test]
    fn observed_statuses_only_move_forward(
        start in status(),
        observed in proptest::collection::vec(status(), 0..64),
    ) {
        let mut current = start;
        let mut history = vec![current];
        for next in observed {
            if !current.can_move_to(next) {
                continue;
            }
            prop_assert!(rank(next) >= rank(current), "{current} → {next} goes backward");
            if current.is_terminal() {
                prop_assert_eq!(next, current, "{} left its terminal status", current);
            }
            if next.is_unsubmitted() {
                prop_assert!(current.is_unsubmitted(), "{current} → {next}: back to unsubmitted");
            }
            current = next;
            history.push(current);
        }
        // Once terminal, always the same terminal status.
        if let Some(first_terminal) = history.iter().position(|s| s.is_terminal()) {
            prop_assert!(history[first_terminal..].iter().all(|s| *s == history[first_terminal]));
        }
        // Once submitted, never unsubmitted again.
        if let Some(first_submitted) = history.iter().position(|s| !s.is_unsubmitted()) {
            prop_assert!(history[first_submitted..].iter().all(|s| !s.is_unsubmitted()));
        }
        // Rank is monotone along the whole history.
        prop_assert!(history.windows(2).all(|w| rank(w[0]) <= rank(w[1])));
    }

    /// Every pair: staying put is legal; the legal moves are exactly "forward, or between the
    /// two unsubmitted statuses, or between the two running ones (`in_progress` and
    /// `requires_action`)", and never out of a terminal status.
    #[test]
    fn each_move_is_forward_or_between_unsubmitted(from in status(), to in status()) {
        let legal = from.can_move_to(to);
        if from == to {
            prop_assert!(legal);
        } else if from.is_terminal() {
            prop_assert!(!legal, "{from} → {to}");
        } else {
            let running = |s: JobStatus| matches!(s, JobStatus::InProgress | JobStatus::RequiresAction);
            let expected = rank(to) > rank(from)
                || (from.is_unsubmitted() && to.is_unsubmitted())
                || (running(from) && running(to));
            prop_assert_eq!(legal, expected, "{} → {}", from, to);
        }
        prop_assert_eq!(from.is_unsubmitted(), rank(from) == 0);
        prop_assert_eq!(from.is_terminal(), rank(from) == 3);
    }

    /// Any status reached from `pending` by legal moves can reach a terminal status: no job is
    /// stuck by the machine itself.
    #[test]
    fn every_status_can_still_finish(observed in proptest::collection::vec(status(), 0..16)) {
        let mut current = JobStatus::Pending;
        for next in observed {
            if current.can_move_to(next) {
                current = next;
            }
        }
        prop_assert!(JobStatus::ALL.iter().any(|s| s.is_terminal() && current.can_move_to(*s)));
    }

    /// The text form round-trips, as the ledger stores it.
    #[test]
    fn status_text_round_trips(s in status()) {
        prop_assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
        prop_assert_eq!(s.to_string(), s.as_str());
    }
}
