//! Issue 14, "Jobs that act": the ledger of turns against a real SQLite file. A response that
//! ends asking for function outputs or MCP approvals is one turn of its job: it is kept, its
//! actions wait for handlers or a person, a late sighting of it never takes the next turn's
//! place, answers are checked and taken all at once, and the next turn is claimed like a
//! create, with the usage of every turn added up.

use std::collections::BTreeMap;
use std::path::Path;

use respool::job::handler::ActionKind;
use respool::job::{JobId, JobStatus, Observation, ResponseId};
use respool::store::{
    ApplyContext, ApplyOutcome, Attach, AttachContext, ClaimLimits, Lease, OutboxEntry,
    PersonAnswer, Responded, Settle, Store, SubmitState,
};
use serde_json::{Value, json};

use crate::helpers::ledger;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn open_store(db: &Path) -> Store {
    Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap()
}

async fn insert(store: &Store, now: i64) -> JobId {
    ledger::insert(
        store,
        json!({"name": "acts", "model": "gpt-4.1", "input": "Weather in Zürich?",
               "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}),
        "acts",
        now,
    )
    .await
}

fn limits(per_model: &BTreeMap<String, usize>) -> ClaimLimits<'_> {
    ledger::limits(100, per_model)
}

fn attach_ctx(now: i64) -> AttachContext<'static> {
    ledger::attach_ctx(now)
}

fn usage(input: u64, output: u64) -> Value {
    json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
           "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
           "total_tokens": input + output})
}

fn observation(rid: &str, status: JobStatus, output: Value, u: Value) -> Observation {
    Observation {
        response_id: ResponseId::parse(rid).unwrap(),
        status,
        output_text: Some(String::new()),
        usage: Some(u.clone()),
        error: None,
        raw: json!({"id": rid, "status": status.as_str(), "output": output, "usage": u}),
    }
}

async fn apply(
    store: &Store,
    id: &JobId,
    obs: &Observation,
    now: i64,
    outbox: &[OutboxEntry],
) -> ApplyOutcome {
    let ctx = ApplyContext {
        now,
        next_poll_at: now + 1_000,
        poll_interval_ms: 1_000,
        cancel_reason: None,
        outbox,
        source: "poll",
        request_id: None,
        artifacts: &[],
        image_prices: Default::default(),
    };
    store.apply_observation(id, obs, &ctx).await.unwrap()
}

#[tokio::test]
async fn a_turn_waits_for_answers_then_the_next_one_is_claimed_like_a_create() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("t.db")).await;
    let now = now_ms();
    let id = insert(&store, now).await;
    let per_model = BTreeMap::new();

    // Turn 0: claimed and answered with a response.
    let claim = store
        .claim_submission(now, Lease::unowned(60_000), &limits(&per_model))
        .await
        .unwrap()
        .claim
        .unwrap();
    assert_eq!(claim.turn, 0);
    let first = "resp_turn0";
    let attached = store
        .attach_response(&id, &ResponseId::parse(first).unwrap(), &attach_ctx(now))
        .await
        .unwrap();
    assert!(matches!(attached, Attach::Attached { .. }));

    // It ends asking for a function and an approval (non-ASCII arguments).
    let asked = json!([
        {"type": "function_call", "id": "fc_1", "call_id": "call_w", "name": "get_weather", "arguments": "{\"city\":\"Zürich\"}"},
        {"type": "mcp_approval_request", "id": "mcpr_9", "server_label": "docs", "name": "search", "arguments": "{}"},
    ]);
    let outbox = vec![OutboxEntry {
        sink: "mail".into(),
        on: vec![JobStatus::Completed, JobStatus::RequiresAction],
    }];
    let out = apply(
        &store,
        &id,
        &observation(first, JobStatus::Completed, asked, usage(100, 10)),
        now + 1,
        &outbox,
    )
    .await;
    assert!(matches!(out, ApplyOutcome::Acting { .. }), "{out:?}");
    let row = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(
        row.status,
        JobStatus::InProgress,
        "a turn that asks is not the job's end"
    );
    assert_eq!(row.submit_state, SubmitState::Acting);
    assert_eq!(row.response_id, None);
    assert!(row.finished_at.is_none());
    assert_eq!(
        store.turn_response_id(&id, 0).await.unwrap().as_deref(),
        Some(first)
    );
    // No notification for a turn's end.
    assert!(
        store
            .list_notifications(None, Some(&id), 100)
            .await
            .unwrap()
            .is_empty()
    );

    // The same completion seen again (a webhook's poll) changes nothing; a late attach of
    // turn 0's response is not taken for the next turn's.
    let again = store
        .attach_response(
            &id,
            &ResponseId::parse(first).unwrap(),
            &attach_ctx(now + 2),
        )
        .await
        .unwrap();
    assert_eq!(again, Attach::Already);
    assert_eq!(store.get_job(&id).await.unwrap().unwrap().response_id, None);

    // The acting worker claims it and settles: the function by a person, the approval too.
    let acting = store
        .claim_acting(now + 3, Lease::unowned(60_000), 10)
        .await
        .unwrap();
    assert_eq!(acting.len(), 1);
    assert!(
        store
            .claim_acting(now + 3, Lease::unowned(60_000), 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let claim = &acting[0];
    let settled = vec![
        ("call_w".to_string(), Settle::Person),
        ("mcpr_9".to_string(), Settle::Person),
    ];
    assert!(
        store
            .settle_actions(claim, &settled, now + 4, now + 86_400_000, &outbox)
            .await
            .unwrap()
    );
    let row = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::RequiresAction);
    let notes = store
        .list_notifications(None, Some(&id), 100)
        .await
        .unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].event, "job.requires_action");
    // Nothing can move it on while it waits.
    assert!(!store.start_next_turn(claim, now + 5).await.unwrap());

    // Answers are checked: unknown ids and wrong kinds are refused, and nothing is taken.
    let fn_answer = PersonAnswer {
        item_id: "call_w".into(),
        kind: ActionKind::Function,
        output: "{\"temp_c\": 3, \"sky\": \"bewölkt\"}".into(),
    };
    let unknown = PersonAnswer {
        item_id: "call_nope".into(),
        kind: ActionKind::Function,
        output: String::new(),
    };
    let r = store
        .respond(&id, &[fn_answer.clone(), unknown], now + 6)
        .await
        .unwrap();
    assert!(matches!(r, Responded::Unknown(1, _)), "{r:?}");
    let wrong_kind = PersonAnswer {
        item_id: "mcpr_9".into(),
        kind: ActionKind::Function,
        output: "yes".into(),
    };
    assert!(matches!(
        store.respond(&id, &[wrong_kind], now + 6).await.unwrap(),
        Responded::Unknown(0, _)
    ));
    let actions = store.job_actions(&id).await.unwrap();
    assert!(
        actions.iter().all(|a| a.state == "waiting"),
        "a refused answer took nothing"
    );

    // One answer: still waiting for the other.
    let r = store.respond(&id, &[fn_answer], now + 7).await.unwrap();
    assert_eq!(r, Responded::Taken { remaining: 1 });
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().status,
        JobStatus::RequiresAction
    );
    let approve = PersonAnswer {
        item_id: "mcpr_9".into(),
        kind: ActionKind::Approval,
        output: respool::job::handler::approval_output(true, Some("fine")),
    };
    let r = store
        .respond(&id, std::slice::from_ref(&approve), now + 8)
        .await
        .unwrap();
    assert_eq!(r, Responded::Taken { remaining: 0 });
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().status,
        JobStatus::InProgress
    );
    // Answering again: it no longer waits.
    assert_eq!(
        store.respond(&id, &[approve], now + 9).await.unwrap(),
        Responded::NotWaiting(JobStatus::InProgress)
    );

    // Claimed again, everything answered: the next turn is ready and claimed as turn 1.
    let acting = store
        .claim_acting(now + 10, Lease::unowned(60_000), 10)
        .await
        .unwrap();
    assert_eq!(acting.len(), 1);
    assert!(store.start_next_turn(&acting[0], now + 11).await.unwrap());
    let next = store
        .claim_submission(now + 12, Lease::unowned(60_000), &limits(&per_model))
        .await
        .unwrap()
        .claim
        .unwrap();
    assert_eq!((next.id.clone(), next.turn), (id.clone(), 1));
    let answers: Vec<_> = store
        .turn_actions(&id, 0)
        .await
        .unwrap()
        .iter()
        .filter_map(|a| a.answer())
        .collect();
    assert_eq!(answers.len(), 2);

    // Turn 1's response ends the job: the usage is both turns'.
    let second = "resp_turn1";
    assert!(matches!(
        store
            .attach_response(
                &id,
                &ResponseId::parse(second).unwrap(),
                &attach_ctx(now + 13)
            )
            .await
            .unwrap(),
        Attach::Attached {
            reopened_from: None
        }
    ));
    let done = json!([{"type": "message", "content": [{"type": "output_text", "text": "3 °C"}]}]);
    let out = apply(
        &store,
        &id,
        &observation(second, JobStatus::Completed, done, usage(300, 5)),
        now + 14,
        &outbox,
    )
    .await;
    assert!(
        matches!(
            out,
            ApplyOutcome::Applied {
                to: JobStatus::Completed,
                ..
            }
        ),
        "{out:?}"
    );
    let row = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Completed);
    let u = row.usage.unwrap();
    assert_eq!(u["input_tokens"], 400);
    assert_eq!(u["output_tokens"], 15);
    assert_eq!(u["total_tokens"], 415);
    // A late webhook for turn 0 is still nobody's duplicate.
    assert_eq!(
        store
            .attach_response(
                &id,
                &ResponseId::parse(first).unwrap(),
                &attach_ctx(now + 15)
            )
            .await
            .unwrap(),
        Attach::Already
    );
    let kinds: Vec<String> = store
        .list_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for k in ["actions", "action", "turn"] {
        assert!(kinds.iter().any(|x| x == k), "no `{k}` event: {kinds:?}");
    }
    store.close().await;
}

#[tokio::test]
async fn a_crash_mid_handler_is_seen_and_an_acting_job_can_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("t.db")).await;
    let now = now_ms();
    let id = insert(&store, now).await;
    let per_model = BTreeMap::new();
    store
        .claim_submission(now, Lease::unowned(60_000), &limits(&per_model))
        .await
        .unwrap();
    store
        .attach_response(&id, &ResponseId::parse("resp_a").unwrap(), &attach_ctx(now))
        .await
        .unwrap();
    let asked = json!([{"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": ""}]);
    apply(
        &store,
        &id,
        &observation("resp_a", JobStatus::Completed, asked, usage(1, 1)),
        now,
        &[],
    )
    .await;
    let claim = store
        .claim_acting(now, Lease::unowned(1_000), 10)
        .await
        .unwrap()
        .remove(0);
    store
        .settle_actions(
            &claim,
            &[("call_1".into(), Settle::Handler("get_weather".into()))],
            now,
            now + 86_400_000,
            &[],
        )
        .await
        .unwrap();
    // Started once; a second start (another pass, another daemon) is refused.
    assert!(store.start_action(&id, 0, "call_1", now).await.unwrap());
    assert!(!store.start_action(&id, 0, "call_1", now).await.unwrap());
    // The "daemon" dies here. The lease runs out, the job is claimed again, and the action
    // is found `running` with its one run counted.
    let again = store
        .claim_acting(now + 2_000, Lease::unowned(1_000), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    let a = &store.turn_actions(&id, 0).await.unwrap()[0];
    assert_eq!((a.state.as_str(), a.runs), ("running", 1));
    // An idempotent handler is sent back to run; then its answer is recorded once.
    assert!(store.rerun_action(&id, 0, "call_1").await.unwrap());
    assert!(
        store
            .start_action(&id, 0, "call_1", now + 2_001)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_action(
                &id,
                (0, "call_1"),
                respool::store::HandlerAnswer {
                    output: "sunny",
                    by: "handler",
                    error: None
                },
                now + 2_002
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_action(
                &id,
                (0, "call_1"),
                respool::store::HandlerAnswer {
                    output: "again",
                    by: "handler",
                    error: None
                },
                now + 2_003
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.turn_actions(&id, 0).await.unwrap()[0]
            .output
            .as_deref(),
        Some("sunny")
    );
    // Ending the job while it acts: once, with its event and notifications.
    let error = respool::job::JobError {
        code: "max_turns".into(),
        message: "too many turns".into(),
    };
    let outbox = vec![OutboxEntry {
        sink: "mail".into(),
        on: vec![JobStatus::Incomplete],
    }];
    assert!(
        store
            .finish_acting(
                &id,
                0,
                respool::store::ActingEnd {
                    status: JobStatus::Incomplete,
                    error: &error,
                    image_prices: Default::default()
                },
                now + 3_000,
                &outbox
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_acting(
                &id,
                0,
                respool::store::ActingEnd {
                    status: JobStatus::Cancelled,
                    error: &error,
                    image_prices: Default::default()
                },
                now + 3_001,
                &outbox
            )
            .await
            .unwrap()
    );
    let row = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Incomplete);
    assert_eq!(row.error_code.as_deref(), Some("max_turns"));
    assert_eq!(
        store
            .list_notifications(None, Some(&id), 100)
            .await
            .unwrap()
            .len(),
        1
    );
    store.close().await;
}

/// Late sightings never take a turn's place: a second create of a turn revealed while its
/// actions are answered, or an earlier turn's revealed when the job is past it, is a paid
/// duplicate of the response that turn kept; an observation of any response but the job's
/// current one changes nothing (the usage is never counted twice).
#[tokio::test]
async fn late_sightings_of_a_turn_are_duplicates_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("t.db")).await;
    let now = now_ms();
    let id = insert(&store, now).await;
    let per_model = BTreeMap::new();
    store
        .claim_submission(now, Lease::unowned(60_000), &limits(&per_model))
        .await
        .unwrap();
    let with_turn = |t: i64| AttachContext {
        turn: Some(t),
        ..attach_ctx(now)
    };
    let kept = ResponseId::parse("resp_kept").unwrap();
    assert!(matches!(
        store
            .attach_response(&id, &kept, &with_turn(0))
            .await
            .unwrap(),
        Attach::Attached { .. }
    ));
    let asked = json!([{"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": "{}"}]);
    let obs = observation(
        "resp_kept",
        JobStatus::Completed,
        asked.clone(),
        usage(10, 1),
    );
    assert!(matches!(
        apply(&store, &id, &obs, now, &[]).await,
        ApplyOutcome::Acting { .. }
    ));
    // The same completion again: stale, the usage not added twice, no second `actions`.
    assert!(matches!(
        apply(&store, &id, &obs, now + 1, &[]).await,
        ApplyOutcome::Stale { .. }
    ));
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().usage.unwrap()["total_tokens"],
        11
    );
    // A second response of turn 0 (its create sent twice) while turn 0's actions wait.
    let twin = ResponseId::parse("resp_twin").unwrap();
    assert_eq!(
        store
            .attach_response(&id, &twin, &with_turn(0))
            .await
            .unwrap(),
        Attach::Duplicate { held: kept.clone() }
    );
    let row = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(
        (row.submit_state, row.response_id),
        (SubmitState::Acting, None)
    );
    // An observation of the twin moves nothing.
    let twin_obs = observation("resp_twin", JobStatus::Completed, asked, usage(10, 1));
    assert!(matches!(
        apply(&store, &id, &twin_obs, now + 2, &[]).await,
        ApplyOutcome::Stale { .. }
    ));
    // On to turn 1; then turn 0's twin revealed again is still turn 0's duplicate, and turn
    // 1's own response is taken.
    let claim = store
        .claim_acting(now + 3, Lease::unowned(60_000), 10)
        .await
        .unwrap()
        .remove(0);
    store
        .settle_actions(
            &claim,
            &[(
                "call_1".into(),
                Settle::Answered {
                    output: "sunny".into(),
                    by: "policy",
                    error: None,
                },
            )],
            now + 3,
            now + 86_400_000,
            &[],
        )
        .await
        .unwrap();
    assert!(store.start_next_turn(&claim, now + 4).await.unwrap());
    assert_eq!(
        store
            .attach_response(&id, &twin, &with_turn(0))
            .await
            .unwrap(),
        Attach::Duplicate { held: kept.clone() }
    );
    assert_eq!(
        store
            .attach_response(
                &id,
                &ResponseId::parse("resp_future").unwrap(),
                &with_turn(5)
            )
            .await
            .unwrap(),
        Attach::Already,
        "a turn the job never reached is left alone"
    );
    assert_eq!(store.get_job(&id).await.unwrap().unwrap().response_id, None);
    let next = ResponseId::parse("resp_next").unwrap();
    assert!(matches!(
        store
            .attach_response(&id, &next, &with_turn(1))
            .await
            .unwrap(),
        Attach::Attached {
            reopened_from: None
        }
    ));
    store.close().await;
}
