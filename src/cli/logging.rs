//! Logging on stderr in one of three formats: `pretty` for people, `json` for log shippers, and
//! `journald` for systemd's journal (no timestamp, the journal adds its own; the level as an
//! `sd-daemon` priority prefix such as `<4>`, so `journalctl -p warning` filters; one line per
//! event, fields as `key=value`). `auto`, the default, picks `journald` when stderr is the
//! journal stream systemd gave us, else `pretty`.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::LogFormat;

/// Logs to stderr; the level from `RESPOOL_LOG` (or `RUST_LOG`), default `info`.
pub fn init_logging(format: LogFormat) {
    init_logging_with(format, "info");
}

/// Logs to stderr; the level from `RESPOOL_LOG` (or `RUST_LOG`), else `default_filter`.
pub fn init_logging_with(format: LogFormat, default_filter: &str) {
    let filter = std::env::var("RESPOOL_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let format = resolve(format, std::env::var("JOURNAL_STREAM").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .try_init(),
        LogFormat::Journald => builder
            .with_ansi(false)
            .event_format(JournaldFormat)
            .try_init(),
        LogFormat::Pretty | LogFormat::Auto => builder
            .with_ansi(ansi_stderr())
            .with_target(false)
            .try_init(),
    };
}

/// Colours in the log only when stderr is a terminal and `NO_COLOR` is not set.
pub fn ansi_stderr() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The format `auto` stands for: `journald` when stderr is the journal, else `pretty`.
fn resolve(format: LogFormat, journal_stream: Option<&str>) -> LogFormat {
    match format {
        LogFormat::Auto if journal_stream.is_some_and(stderr_is) => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Pretty,
        other => other,
    }
}

/// Whether stderr is the stream `$JOURNAL_STREAM` names (`DEVICE:INODE`). systemd sets the
/// variable for a service whose stderr goes to the journal; a child that inherited it but had
/// its stderr redirected (to a file, a terminal) does not match, which is why `systemd.exec(5)`
/// says to compare rather than merely test that the variable is set.
fn stderr_is(journal_stream: &str) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = journal_stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return false;
    }
    let meta = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata());
    meta.is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The `sd-daemon(3)` priority of a level: `<3>` err … `<7>` debug. The journal reads the prefix
/// and stores it as the entry's priority.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `<6>message key=value … span_key=value`, on one line: the journal splits entries at
/// newlines, and a continuation line would lose its priority.
struct JournaldFormat;

impl<S, N> FormatEvent<S, N> for JournaldFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        ctx.format_fields(Writer::new(&mut line), event)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    line.push(' ');
                    line.push_str(fields);
                }
            }
        }
        let line = line.replace('\r', "\\r").replace('\n', "\\n");
        writeln!(writer, "<{}>{line}", priority(event.metadata().level()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_sd_daemon() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
    }

    #[test]
    fn auto_is_pretty_without_a_journal() {
        assert_eq!(resolve(LogFormat::Auto, None), LogFormat::Pretty);
        assert_eq!(
            resolve(LogFormat::Auto, Some("not:numbers")),
            LogFormat::Pretty
        );
        // A device:inode that is not stderr's.
        assert_eq!(resolve(LogFormat::Auto, Some("0:0")), LogFormat::Pretty);
        assert_eq!(resolve(LogFormat::Json, Some("0:0")), LogFormat::Json);
        assert_eq!(resolve(LogFormat::Journald, None), LogFormat::Journald);
    }

    #[test]
    fn journald_lines_carry_priority_fields_and_spans() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| std::io::ErrorKind::Other)?
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(Level::DEBUG)
            .event_format(JournaldFormat)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("job", job_id = "job_1");
            let _g = span.enter();
            tracing::warn!(attempt = 2, reason = %"rate limited", "create deferred");
            tracing::error!(error = %"line one\nline two", "failed");
            tracing::debug!("details");
        });
        let out = String::from_utf8(buf.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "<4>create deferred attempt=2 reason=rate limited job_id=\"job_1\"",
                "<3>failed error=line one\\nline two job_id=\"job_1\"",
                "<7>details job_id=\"job_1\"",
            ],
            "{out}"
        );
    }
}
