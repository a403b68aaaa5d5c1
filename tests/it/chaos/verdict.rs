//! The chaos run's verdict: from the daemon's view of each job, what the simulator created for
//! it and what the receiver got, the counts of the summary line. Pure functions of that
//! evidence (no clock, no network), so the same evidence always gives the same verdict.
//!
//! - **lost**: the job is not terminal; or it differs (status, output text, response id) from
//!   the response the simulator says it ran: its one response not cancelled (when several
//!   were not cancelled, the one the job names); or it has no such response at all (none
//!   created, or all cancelled); or it is `completed` with no output text.
//! - **paid twice**: the simulator created more than one response for the job that was not
//!   cancelled before it finished. Responses created and then cancelled are counted apart.
//! - **notified twice**: one (job, event) reached the receiver (answered 2xx) under two
//!   `webhook-id`s, or was delivered again after the receiver had answered 2xx *and* the
//!   daemon had recorded the delivery (`delivered_at` earlier than the later arrival). A
//!   redelivery before the record (a kill between the 2xx and the record) is at-least-once,
//!   dedupable by `webhook-id`, and counted apart as "redelivered (deduped by id)".
//! - **unnotified** (reported apart, and failing the run too): a terminal job whose final
//!   event (`job.<status>`) never got a 2xx from the receiver.

use std::collections::{BTreeMap, BTreeSet};

use respool::sim::SimResponse;
use serde_json::Value;

use crate::helpers::receiver::Hit;

/// One notification the receiver got, as the verdict reads it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Wall-clock arrival, Unix milliseconds.
    pub at_ms: i64,
    pub webhook_id: String,
    pub job_id: String,
    /// `job.completed`, `job.failed`, …
    pub event: String,
    /// What the receiver answered; `None` when it hung.
    pub answered: Option<u16>,
}

impl Delivery {
    /// Reads a request to the receiver: its `webhook-id` and the job and event its body names.
    pub fn of(hit: &Hit) -> Self {
        let event: Value = serde_json::from_slice(&hit.body).unwrap_or(Value::Null);
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("?").to_string();
        Self {
            at_ms: hit.at_ms,
            webhook_id: hit
                .headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string(),
            job_id: text(event.pointer("/data/job/id")),
            event: text(event.get("type")),
            answered: hit.answered,
        }
    }

    pub fn ok(&self) -> bool {
        self.answered.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The daemon's view of one job at the end.
#[derive(Debug, Clone)]
pub struct JobEnd {
    pub id: String,
    pub status: String,
    pub output_text: Option<String>,
    pub response_id: Option<String>,
    /// `delivered_at` (Unix ms) of the job's notification rows, by event.
    pub delivered_at: BTreeMap<String, i64>,
    /// The job's timeline: (kind, message) of each event.
    pub events: Vec<(String, String)>,
}

impl JobEnd {
    pub fn from_view(view: &Value, notifications: &[Value], events: &[Value]) -> Self {
        let text = |k: &str| view[k].as_str().map(str::to_string);
        let delivered_at = notifications
            .iter()
            .filter_map(|n| {
                Some((
                    n["event"].as_str()?.to_string(),
                    n["delivered_at"].as_i64()?,
                ))
            })
            .collect();
        Self {
            id: text("id").unwrap_or_default(),
            status: text("status").unwrap_or_else(|| "?".into()),
            output_text: text("output_text"),
            response_id: text("response_id"),
            delivered_at,
            events: events
                .iter()
                .map(|e| {
                    let t = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    (t("kind"), t("message"))
                })
                .collect(),
        }
    }

    /// A kill cut one of the job's create calls off (its lease ran out, so the daemon never
    /// read that call's answer).
    fn killed_mid_create(&self) -> bool {
        self.events.iter().any(|(kind, msg)| {
            kind == "submit_uncertain" && msg.contains("respool stopped mid-call")
        })
    }

    /// Whether `r` is the one fault no client recovers from (README, "Chaos"): a kill cut
    /// the job's create off after the simulator created `r` and answered (so the simulator's
    /// `--webhook-drop-spares-lost-answers` could not know the answer was lost), the fault
    /// then dropped `r`'s webhook, and nothing in the job's timeline ever named `r`. With no
    /// list endpoint nothing can reveal `r`, and the `resubmit` policy sends again.
    fn unrevealable(&self, r: &SimResponse) -> bool {
        r.answer == "ok"
            && r.webhook_dropped
            && self.killed_mid_create()
            && !self.events.iter().any(|(_, msg)| msg.contains(&r.id))
    }

    fn terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "incomplete" | "cancelled"
        )
    }
}

/// Counts and, per broken job, why.
#[derive(Debug, Default)]
pub struct Verdict {
    pub jobs: usize,
    pub completed: usize,
    pub lost: BTreeMap<String, String>,
    pub paid_twice: BTreeMap<String, String>,
    pub cancelled_extras: usize,
    pub notified_twice: BTreeMap<String, String>,
    pub redelivered_deduped: usize,
    pub unnotified: BTreeMap<String, String>,
    /// Jobs whose extra responses were all unrevealable (see [`JobEnd::unrevealable`]):
    /// reported apart, not failing the run.
    pub unrevealable: BTreeMap<String, String>,
}

impl Verdict {
    /// The one summary line.
    pub fn line(&self) -> String {
        format!(
            "jobs {}, completed {}, lost {}, paid twice {}, notified twice {}",
            self.jobs,
            self.completed,
            self.lost.len(),
            self.paid_twice.len(),
            self.notified_twice.len()
        )
    }

    /// The counts reported apart from the summary line.
    pub fn extras(&self) -> String {
        format!(
            "extra responses created then cancelled {}, redelivered (deduped by id) {}, unnotified {}, \
             unrevealable (killed mid-create, webhook dropped) {}",
            self.cancelled_extras,
            self.redelivered_deduped,
            self.unnotified.len(),
            self.unrevealable.len()
        )
    }

    pub fn passed(&self, submitted: usize) -> bool {
        self.jobs == submitted
            && self.lost.is_empty()
            && self.paid_twice.is_empty()
            && self.notified_twice.is_empty()
            && self.unnotified.is_empty()
    }

    /// Every job id the verdict has something to say about.
    pub fn broken_jobs(&self) -> BTreeSet<String> {
        [
            &self.lost,
            &self.paid_twice,
            &self.notified_twice,
            &self.unnotified,
        ]
        .iter()
        .flat_map(|m| m.keys().cloned())
        .collect()
    }
}

fn describe(r: &SimResponse) -> String {
    let dropped = if r.webhook_dropped {
        ", webhook dropped"
    } else {
        ""
    };
    format!("{} {} (answer {}{dropped})", r.id, r.status, r.answer)
}

/// Judges every job.
pub fn judge(jobs: &[JobEnd], responses: &[SimResponse], hits: &[Delivery]) -> Verdict {
    let mut v = Verdict {
        jobs: jobs.len(),
        ..Verdict::default()
    };
    for job in jobs {
        let mine: Vec<&SimResponse> = responses
            .iter()
            .filter(|r| r.job_id.as_deref() == Some(job.id.as_str()))
            .collect();
        let live: Vec<&SimResponse> = mine
            .iter()
            .copied()
            .filter(|r| r.status != "cancelled")
            .collect();
        v.cancelled_extras += mine.len() - live.len();
        if job.status == "completed" {
            v.completed += 1;
        }
        let names_a_live_one = live.iter().any(|r| Some(&r.id) == job.response_id.as_ref());
        let unexplained = live
            .iter()
            .filter(|r| Some(&r.id) != job.response_id.as_ref() && !job.unrevealable(r))
            .count();
        if live.len() > 1 && names_a_live_one && unexplained == 0 {
            let list: Vec<String> = live.iter().map(|r| describe(r)).collect();
            v.unrevealable.insert(job.id.clone(), list.join(", "));
        } else if live.len() > 1 {
            let list: Vec<String> = live.iter().map(|r| describe(r)).collect();
            v.paid_twice.insert(
                job.id.clone(),
                format!(
                    "{} responses not cancelled: {}",
                    live.len(),
                    list.join(", ")
                ),
            );
        }
        let reference = live
            .iter()
            .find(|r| Some(&r.id) == job.response_id.as_ref())
            .or(live.first());
        let lost = if !job.terminal() {
            Some(format!("not terminal at the end ({})", job.status))
        } else if let Some(r) = reference {
            if job.status != r.status {
                Some(format!(
                    "ended {} but its response {} ended {}",
                    job.status,
                    describe(r),
                    r.status
                ))
            } else if job.output_text != r.output_text {
                Some(format!("its output differs from its response {}'s", r.id))
            } else if job.response_id.as_deref() != Some(r.id.as_str()) {
                Some(format!(
                    "names response {:?}, but the one that ran is {}",
                    job.response_id,
                    describe(r)
                ))
            } else if job.status == "completed"
                && job.output_text.as_deref().unwrap_or("").is_empty()
            {
                Some("completed without output".into())
            } else {
                None
            }
        } else if mine.is_empty() {
            Some(format!(
                "ended {} and no response was ever created for it",
                job.status
            ))
        } else {
            Some(format!(
                "ended {} and every response created for it was cancelled",
                job.status
            ))
        };
        if let Some(why) = lost {
            v.lost.insert(job.id.clone(), why);
        }

        // Notifications.
        let mut by_event: BTreeMap<&str, Vec<&Delivery>> = BTreeMap::new();
        for h in hits.iter().filter(|h| h.job_id == job.id && h.ok()) {
            by_event.entry(h.event.as_str()).or_default().push(h);
        }
        for (event, delivered) in &by_event {
            let ids: BTreeSet<&str> = delivered.iter().map(|h| h.webhook_id.as_str()).collect();
            if ids.len() > 1 {
                v.notified_twice.insert(
                    job.id.clone(),
                    format!("{event} delivered under {} webhook-ids: {ids:?}", ids.len()),
                );
                continue;
            }
            let recorded = job.delivered_at.get(*event).copied();
            for again in delivered.iter().skip(1) {
                match recorded {
                    Some(at) if at < again.at_ms => {
                        v.notified_twice.insert(
                            job.id.clone(),
                            format!(
                                "{event} delivered again at {} after the daemon recorded it at {at}",
                                again.at_ms
                            ),
                        );
                    }
                    _ => v.redelivered_deduped += 1,
                }
            }
        }
        if job.terminal() {
            let last = format!("job.{}", job.status);
            if !by_event.contains_key(last.as_str()) {
                v.unnotified
                    .insert(job.id.clone(), format!("{last} never reached the receiver"));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: &str, text: Option<&str>, resp: Option<&str>) -> JobEnd {
        JobEnd {
            id: "job_1".into(),
            status: status.into(),
            output_text: text.map(str::to_string),
            response_id: resp.map(str::to_string),
            delivered_at: BTreeMap::from([("job.completed".to_string(), 1_000)]),
            events: Vec::new(),
        }
    }

    fn resp(id: &str, status: &str, text: Option<&str>) -> SimResponse {
        SimResponse {
            id: id.into(),
            job_id: Some("job_1".into()),
            status: status.into(),
            output_text: text.map(str::to_string),
            error_code: None,
            created_ms: 0,
            finished_ms: Some(1),
            answer: "ok".into(),
            webhook_dropped: false,
        }
    }

    fn hit(at_ms: i64, webhook_id: &str) -> Delivery {
        Delivery {
            at_ms,
            webhook_id: webhook_id.into(),
            job_id: "job_1".into(),
            event: "job.completed".into(),
            answered: Some(200),
        }
    }

    #[test]
    fn the_definitions() {
        let ok = [job("completed", Some("hi"), Some("resp_a"))];
        let a = [resp("resp_a", "completed", Some("hi"))];
        let v = judge(&ok, &a, &[hit(900, "msg_1")]);
        assert!(v.passed(1), "{v:?}");
        // Lost: a different status, no response at all, or none delivered.
        let v = judge(&[job("failed", None, None)], &a, &[]);
        assert_eq!((v.lost.len(), v.unnotified.len()), (1, 1), "{v:?}");
        assert_eq!(judge(&ok, &[], &[hit(900, "msg_1")]).lost.len(), 1);
        // Paid twice only when the second one was not cancelled.
        let b = resp("resp_b", "completed", Some("other"));
        assert_eq!(
            judge(&ok, &[a[0].clone(), b], &[hit(900, "msg_1")])
                .paid_twice
                .len(),
            1
        );
        let c = resp("resp_c", "cancelled", None);
        let v = judge(&ok, &[a[0].clone(), c], &[hit(900, "msg_1")]);
        assert_eq!((v.paid_twice.len(), v.cancelled_extras), (0, 1));
        // Unrevealable, counted apart: a kill cut the create off, the fault dropped the first
        // response's webhook and the timeline never named it. Any other evidence makes it paid
        // twice again.
        let killed = (
            "submit_uncertain".to_string(),
            "the create call was interrupted (respool stopped mid-call): it may or may not have reached OpenAI".to_string(),
        );
        let mut hidden = resp("resp_0", "completed", Some("first"));
        hidden.webhook_dropped = true;
        let mut cut = ok[0].clone();
        cut.events.push(killed.clone());
        let v = judge(
            &[cut.clone()],
            &[hidden.clone(), a[0].clone()],
            &[hit(900, "msg_1")],
        );
        assert!(v.passed(1), "{v:?}");
        assert_eq!(v.unrevealable.len(), 1, "{v:?}");
        let mut named = cut.clone();
        named
            .events
            .push(("webhook".into(), "response resp_0 seen".into()));
        let mut sent = hidden.clone();
        sent.webhook_dropped = false;
        let mut lost_answer = hidden.clone();
        lost_answer.answer = "create_then_drop".into();
        for (job, first) in [
            (&named, &hidden),
            (&ok[0], &hidden),
            (&cut, &sent),
            (&cut, &lost_answer),
        ] {
            let v = judge(
                std::slice::from_ref(job),
                &[first.clone(), a[0].clone()],
                &[hit(900, "msg_1")],
            );
            assert_eq!(
                (v.paid_twice.len(), v.unrevealable.len()),
                (1, 0),
                "{job:?} {first:?}"
            );
        }
        // Notified twice: two ids, or the same id after the record (at 1 000 ms).
        let v = judge(&ok, &a, &[hit(900, "msg_1"), hit(950, "msg_2")]);
        assert_eq!(v.notified_twice.len(), 1);
        let v = judge(&ok, &a, &[hit(900, "msg_1"), hit(990, "msg_1")]);
        assert_eq!((v.notified_twice.len(), v.redelivered_deduped), (0, 1));
        let v = judge(&ok, &a, &[hit(900, "msg_1"), hit(1_500, "msg_1")]);
        assert_eq!(v.notified_twice.len(), 1);
    }
}
