//! The console sink: one log line per finished job.

use super::{Notification, SinkError};

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

    pub fn deliver(&self, n: &Notification<'_>) -> Result<(), SinkError> {
        tracing::info!(
            sink = %self.name,
            event = n.event,
            job_id = %n.job.id,
            name = %n.job.name,
            status = %n.job.status,
            error = n.job.error_code.as_deref().unwrap_or(""),
            excerpt = %super::markdown::excerpt(n.job.output_text.as_deref().unwrap_or(""), 200),
            "notification"
        );
        Ok(())
    }
}
