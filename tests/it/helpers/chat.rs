//! What the chat-sink tests (Slack, Discord, ntfy) share besides the recording receiver
//! ([`super::receiver`]): a sample finished job to notify about.

use std::time::Duration;

use respool::config::Config;
use respool::job::{JobSpec, JobStatus};
use respool::notify::{Context, Notification};
use respool::pricing::ModelPrice;
use respool::store::{JobRow, SubmitState};
use serde_json::{Value, json};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Sample {
    pub job: JobRow,
    pub response: Value,
    pub ctx: Context,
}

impl Sample {
    pub fn new(status: JobStatus, name: &str, output: &str) -> Self {
        let now = 1_750_000_000_000;
        let spec = JobSpec::from_value(
            json!({"name": "sample", "model": "gpt-5", "input": "Research this."}),
            "t",
        )
        .unwrap();
        let usage = json!({"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 0},
                           "output_tokens": 800, "output_tokens_details": {"reasoning_tokens": 300},
                           "total_tokens": 2000});
        let failed = status == JobStatus::Failed;
        let job = JobRow {
            id: respool::job::JobId::parse("job_01JTESTSNACK00000000000000").unwrap(),
            name: name.into(),
            model: "gpt-5".into(),
            status,
            spec,
            idempotency_key: None,
            spec_hash: String::new(),
            response_id: Some(respool::job::ResponseId::parse("resp_test").unwrap()),
            attempt: 1,
            submit_state: SubmitState::Done,
            submissions: 1,
            created_at: now - 65_000,
            updated_at: now,
            submitted_at: Some(now - 64_000),
            finished_at: Some(now),
            deadline_at: None,
            next_check_at: None,
            lease_until: None,
            poll_interval_ms: 0,
            polls: 2,
            wake_pending: 0,
            cancel_requested: 0,
            cancel_reason: None,
            output_text: (!output.is_empty()).then(|| output.to_string()),
            error_code: failed.then(|| "server_error".into()),
            error_message: failed.then(|| "The model <crashed> & burned".into()),
            usage: Some(usage.clone()),
            retry_of: None,
            tools: Default::default(),
            turn: 0,
            chain_id: None,
        };
        let response = json!({"id": "resp_test", "object": "response", "status": status.as_str(), "output": [],
                              "usage": usage});
        let ctx = Context::build(
            &format!("job.{status}"),
            &job,
            Some(&response),
            &[],
            &sample_config(),
        );
        Self { job, response, ctx }
    }

    /// The same job with another error message.
    pub fn with_error(mut self, message: &str) -> Self {
        self.job.error_message = Some(message.to_string());
        self.ctx = Context::build(
            &self.ctx.event,
            &self.job,
            Some(&self.response),
            &[],
            &sample_config(),
        );
        self
    }

    pub fn notification(&self) -> Notification<'_> {
        Notification {
            id: 1,
            event: &self.ctx.event,
            job: &self.job,
            response: Some(&self.response),
            ctx: &self.ctx,
            artifacts: &[],
        }
    }
}

/// Links to jobs on, and a price for `gpt-5`.
pub fn sample_config() -> Config {
    let mut config = Config::default();
    config.public_url = Some("https://respool.example".into());
    config
        .notify
        .pricing
        .insert("gpt-5".into(), ModelPrice::standard(1.25, 10.0, None));
    config
}
