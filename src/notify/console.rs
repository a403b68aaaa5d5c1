//! The console sink: one log line per finished job. The seam later sinks plug into.

use super::{Message, SinkError};

/// Logs each notification at `info`.
#[derive(Debug)]
pub struct ConsoleSink {
    name: String,
}

impl ConsoleSink {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }

    pub fn deliver(&self, msg: &Message<'_>) -> Result<(), SinkError> {
        let job = msg.job;
        let excerpt: String = job
            .output_text
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        tracing::info!(
            sink = %self.name,
            event = msg.event,
            job_id = %job.id,
            name = %job.name,
            status = %job.status,
            error = job.error_code.as_deref().unwrap_or(""),
            excerpt = %excerpt,
            "notification"
        );
        Ok(())
    }
}
