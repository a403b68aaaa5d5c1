//! The ledger driven through the store, as the orchestrator drives it: jobs taken in, claims
//! and their limits, response ids attached. For the tests that check the store's rules
//! directly (on either backend).

use std::collections::BTreeMap;

use respool::job::{JobId, JobSpec};
use respool::store::{AttachContext, ClaimLimits, InsertOutcome, NewJob, Store};
use serde_json::Value;

/// Takes in the job `spec` describes (as `POST /v1/jobs` would, named `name`); its id.
pub async fn insert(store: &Store, spec: Value, name: &str, now: i64) -> JobId {
    let spec = JobSpec::from_value(spec, name).unwrap();
    let job = NewJob {
        id: JobId::generate(),
        spec_hash: respool::orchestrator::spec_hash(&spec),
        spec,
        now,
        deadline_at: None,
        origin: "test".into(),
    };
    match store.insert_job(job).await.unwrap() {
        InsertOutcome::Created(row) => row.id,
        _ => panic!("job {name} was not created"),
    }
}

/// Claim limits of `max_in_flight` with `per_model`, no budget.
pub fn limits(max_in_flight: i64, per_model: &BTreeMap<String, usize>) -> ClaimLimits<'_> {
    ClaimLimits {
        max_in_flight,
        per_model,
        over_budget: None,
    }
}

/// What a create's answer attaches with: the first poll due at once.
pub fn attach_ctx(now: i64) -> AttachContext<'static> {
    AttachContext {
        now,
        first_poll_at: now,
        poll_interval_ms: 1_000,
        kind: respool::store::EventKind::Submitted,
        how: "create",
        request_id: None,
        turn: None,
    }
}
