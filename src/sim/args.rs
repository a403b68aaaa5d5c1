//! Command-line flags of `respool sim` ([`SimArgs`]) and their translation into a
//! [`SimConfig`]. Durations use humantime (`300ms`, `1.5s`, `5m`).

use std::net::SocketAddr;
use std::time::Duration;

use super::{Faults, SimConfig, SimError, check_secrets};

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// Flags of `respool sim`: where to listen, how fast responses run, where webhooks go and which
/// faults to inject.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The only API key accepted; when unset any bearer key is accepted.
    #[arg(long, env = "RESPOOL_SIM_API_KEY")]
    pub api_key: Option<String>,
    /// URL that receives webhook deliveries for background responses.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Webhook signing secret (`whsec_…`); repeat it to sign with several (rotation).
    #[arg(
        long = "webhook-secret",
        env = "RESPOOL_SIM_WEBHOOK_SECRET",
        value_delimiter = ' '
    )]
    pub webhook_secrets: Vec<String>,
    /// How long a background response stays `queued`.
    #[arg(long, default_value = "300ms", value_parser = duration)]
    pub queue_time: Duration,
    /// How long a response stays `in_progress`.
    #[arg(long, default_value = "1500ms", value_parser = duration)]
    pub run_time: Duration,
    /// Seed for every random decision (reproducible runs).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Age after which a stream can no longer be resumed.
    #[arg(long, default_value = "5m", value_parser = duration)]
    pub resume_window: Duration,
    /// Cancelling clears the partial output instead of keeping it.
    #[arg(long)]
    pub cancel_clears_output: bool,
    /// Cancelling a completed response answers 200 with it instead of 400.
    #[arg(long)]
    pub cancel_completed_ok: bool,
    /// A webhook attempt that takes longer than this counts as failed.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub webhook_timeout: Duration,
    /// Waits between webhook attempts (comma-separated); their count bounds the retries.
    #[arg(long, value_delimiter = ',', default_value = "200ms,500ms,1s,2s,5s", value_parser = duration)]
    pub webhook_retry_schedule: Vec<Duration>,
    /// How long finished responses stay retrievable.
    #[arg(long, default_value = "24h", value_parser = duration)]
    pub retention: Duration,
    /// How long a file attached to a vector store stays `in_progress` before it is
    /// `completed` (or `failed`).
    #[arg(long, default_value = "300ms", value_parser = duration)]
    pub file_processing_time: Duration,
    /// How long a webhook endpoint's old secret keeps signing after a rotation that keeps it
    /// (`keep_old_secret_active_for_24_hours`).
    #[arg(long, default_value = "24h", value_parser = duration)]
    pub secret_rotation_overlap: Duration,

    /// Probability that a webhook is never sent.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub webhook_drop: f64,
    /// Probability that a webhook is sent twice with the same webhook-id.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub webhook_duplicate: f64,
    /// Extra delay before every webhook.
    #[arg(long, default_value = "0s", value_parser = duration, help_heading = "Faults")]
    pub webhook_delay: Duration,
    /// Maximum random extra delay per webhook (reorders deliveries).
    #[arg(long, default_value = "0s", value_parser = duration, help_heading = "Faults")]
    pub webhook_reorder: Duration,
    /// Probability of an extra webhook with an unexpected event type.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub webhook_extra_events: f64,
    /// Probability that a request gets 429 rate_limit_exceeded.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub rate_limit: f64,
    /// The Retry-After advertised by rate-limit 429s.
    #[arg(long, default_value = "1s", value_parser = duration, help_heading = "Faults")]
    pub retry_after: Duration,
    /// Probability that a request gets 429 insufficient_quota.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub quota_exceeded: f64,
    /// Probability that a request gets a 500/502/503.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub server_error: f64,
    /// Share of --server-error answers that carry `x-should-retry: false`.
    #[arg(long, default_value_t = 0.5, help_heading = "Faults")]
    pub server_error_noretry: f64,
    /// Probability that a create is accepted, then its connection closed with no answer.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub create_then_drop: f64,
    /// Probability that a create is accepted, then answered by a proxy 502/504 (HTML, no
    /// x-request-id).
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub create_then_gateway_error: f64,
    /// Probability that a create's connection is closed with no answer, nothing created.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub drop_before_create: f64,
    /// Probability that a create gets a proxy 502/504 (HTML, no x-request-id), nothing created.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub gateway_error_before_create: f64,
    /// Probability that a file upload is stored, then its connection closed with no answer.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub upload_then_drop: f64,
    /// Probability that a file upload's connection is closed with no answer, nothing stored.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub upload_drop_before: f64,
    /// Delay before a file upload is stored and answered (a client that disconnects
    /// meanwhile leaves nothing stored).
    #[arg(long, default_value = "0s", value_parser = duration, help_heading = "Faults")]
    pub upload_delay: Duration,
    /// Never drop (--webhook-drop) the webhook of a response whose create answer was lost.
    #[arg(long, help_heading = "Faults")]
    pub webhook_drop_spares_lost_answers: bool,
    /// Delay before a create is answered.
    #[arg(long, default_value = "0s", value_parser = duration, help_heading = "Faults")]
    pub slow_create: Duration,
    /// Probability that a create is accepted but its reply held back for --hang-for.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub accept_then_hang: f64,
    /// How long a hung create reply is held back.
    #[arg(long, default_value = "30s", value_parser = duration, help_heading = "Faults")]
    pub hang_for: Duration,
    /// Probability that a background response stays queued forever.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub stuck_queued: f64,
    /// Probability that a response fails (error.code server_error).
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub fail: f64,
    /// Probability that a response ends incomplete.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub incomplete: f64,
    /// Probability that a live stream is cut after a few events.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub stream_drop: f64,
    /// Probability that a stream carries an unknown event type.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub stream_unknown_events: f64,
    /// Probability that aborting a stream while queued leaves the response queued forever.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub stream_abort_sticks: f64,
    /// Probability that a code interpreter container is already expired when its response
    /// completes (its files 404).
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub container_expired: f64,
    /// Probability that a code interpreter file's first content download answers 500.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub container_file_drop: f64,
}

impl SimArgs {
    /// Builds the simulator config, checking probabilities and webhook secrets.
    pub fn to_config(&self) -> Result<SimConfig, SimError> {
        let faults = Faults {
            webhook_drop: self.webhook_drop,
            webhook_duplicate: self.webhook_duplicate,
            webhook_delay: self.webhook_delay,
            webhook_reorder: self.webhook_reorder,
            webhook_extra_events: self.webhook_extra_events,
            rate_limit: self.rate_limit,
            rate_limit_next: 0,
            retry_after: self.retry_after,
            quota_exceeded: self.quota_exceeded,
            server_error: self.server_error,
            server_error_next: 0,
            not_found_next: 0,
            server_error_noretry: Some(self.server_error_noretry),
            create_then_drop: self.create_then_drop,
            create_then_gateway_error: self.create_then_gateway_error,
            drop_before_create: self.drop_before_create,
            gateway_error_before_create: self.gateway_error_before_create,
            upload_then_drop: self.upload_then_drop,
            upload_drop_before: self.upload_drop_before,
            upload_delay: self.upload_delay,
            webhook_drop_spares_lost_answers: self.webhook_drop_spares_lost_answers,
            slow_create: self.slow_create,
            create_accept_then_hang: self.accept_then_hang,
            hang_for: self.hang_for,
            stuck_queued: self.stuck_queued,
            fail: self.fail,
            incomplete: self.incomplete,
            stream_drop: self.stream_drop,
            stream_unknown_events: self.stream_unknown_events,
            stream_abort_sticks: self.stream_abort_sticks,
            ratelimit_requests: 0,
            ratelimit_window: std::time::Duration::ZERO,
            container_expired: self.container_expired,
            container_file_drop: self.container_file_drop,
        };
        faults.validate().map_err(SimError::Config)?;
        check_secrets(&self.webhook_secrets)?;
        Ok(SimConfig {
            listen: Some(self.listen),
            api_key: self.api_key.clone(),
            webhook_url: self.webhook_url.clone(),
            webhook_secrets: self.webhook_secrets.clone(),
            queue_time: self.queue_time,
            run_time: self.run_time,
            faults,
            seed: self.seed,
            stream_resume_window: self.resume_window,
            cancel_clears_output: self.cancel_clears_output,
            cancel_completed_ok: self.cancel_completed_ok,
            webhook_timeout: self.webhook_timeout,
            webhook_retry_schedule: self.webhook_retry_schedule.clone(),
            retention: self.retention,
            secret_rotation_overlap: self.secret_rotation_overlap,
            file_processing_time: self.file_processing_time,
            ..SimConfig::default()
        })
    }
}
