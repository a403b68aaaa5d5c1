//! The command sink: runs a program (no shell) with the event JSON on stdin and
//! `RESPOOL_EVENT`, `RESPOOL_JOB_ID`, `RESPOOL_JOB_STATUS` and the sink's `env` in its
//! environment. Exit 0 delivers; any other end is retried by the outbox.
//!
//! The program does not inherit the daemon's whole environment, which usually holds the OpenAI
//! key and API tokens: only a few harmless variables ([`PASSED_ENV`]) pass through. Anything
//! else it needs goes in the sink's `env` (which may use `${VAR}` from the daemon's
//! environment). Its output is drained as it comes and only the tail kept, so a chatty program
//! neither blocks on a full pipe nor fills memory; it is killed when it outlives the timeout or
//! when the delivery is abandoned (shutdown).

use std::collections::BTreeMap;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{Notification, SinkError};
use crate::config::sinks::CommandSink as CommandConfig;

/// Variables of the daemon's environment the program sees.
pub(crate) const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
];
/// Bytes of each output stream kept (the tail).
const KEPT_OUTPUT: usize = 8 * 1024;
/// Lines and characters of output quoted in an error.
const QUOTED_LINES: usize = 10;
const QUOTED_CHARS: usize = 1000;

/// Runs one program per notification.
#[derive(Debug)]
pub struct CommandSink {
    name: String,
    program: String,
    args: Vec<String>,
    timeout: Duration,
    env: BTreeMap<String, String>,
}

impl CommandSink {
    /// Checks there is a program; whether it exists is found out at the first delivery (it may
    /// be installed later), and a missing one is then a dead letter.
    pub fn new(name: &str, cfg: &CommandConfig) -> Result<Self, SinkError> {
        let (program, args) = match cfg.command.split_first() {
            Some((p, args)) if !p.is_empty() => (p.clone(), args.to_vec()),
            _ => return Err(SinkError::Config("`command` needs a program".into())),
        };
        Ok(Self {
            name: name.to_string(),
            program,
            args,
            timeout: cfg.timeout,
            env: cfg.env.clone(),
        })
    }

    /// Runs the program to its end or the timeout.
    pub async fn deliver(&self, n: &Notification<'_>) -> Result<(), SinkError> {
        let mut input = serde_json::to_vec(&n.event_json())
            .map_err(|e| SinkError::Permanent(format!("cannot serialize the event: {e}")))?;
        input.push(b'\n');
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).env_clear();
        for key in PASSED_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(&self.env)
            .env("RESPOOL_EVENT", n.event)
            .env("RESPOOL_JOB_ID", n.job.id.as_str())
            .env("RESPOOL_JOB_STATUS", n.job.status.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(&e))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(SinkError::temporary("the program's pipes were not set up"));
        };
        let feed = async move {
            // A program that exits without reading its input is its own business: a broken
            // pipe is not an error, its exit status says how it went.
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        };
        let run = async {
            let (status, (), out, err) =
                tokio::join!(child.wait(), feed, tail(stdout), tail(stderr));
            (status, out, err)
        };
        let (status, out, err) = match tokio::time::timeout(self.timeout, run).await {
            Ok(done) => done,
            Err(_) => {
                // Kills and reaps it (`kill_on_drop` would kill it too, but not reap it).
                let _ = child.kill().await;
                return Err(SinkError::temporary(format!(
                    "`{}` did not finish within {:?} and was killed",
                    self.program, self.timeout
                )));
            }
        };
        let status = status.map_err(|e| {
            SinkError::temporary(format!("waiting for `{}` failed: {e}", self.program))
        })?;
        if status.success() {
            tracing::debug!(sink = %self.name, job_id = %n.job.id, program = %self.program, "command ran");
            return Ok(());
        }
        // Most programs explain a failure on stderr; some only on stdout.
        let said = if err.iter().any(|b| !b.is_ascii_whitespace()) {
            err
        } else {
            out
        };
        Err(SinkError::temporary(format!(
            "`{}` {}{}",
            self.program,
            describe(status),
            quote(&said)
        )))
    }

    /// Not found or not executable will not fix itself; running out of processes or file
    /// descriptors may.
    fn spawn_error(&self, e: &io::Error) -> SinkError {
        let message = format!("cannot run `{}`: {e}", self.program);
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                SinkError::Permanent(message)
            }
            _ => SinkError::temporary(message),
        }
    }
}

/// Reads a stream to its end, keeping the last [`KEPT_OUTPUT`] bytes.
pub(crate) async fn tail(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * KEPT_OUTPUT {
                    kept.drain(..kept.len() - KEPT_OUTPUT);
                }
            }
        }
    }
}

/// `exited with status 3`, `was killed by signal 9`.
pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended with {status}"),
    }
}

/// `: ` and the last few lines of output, bounded; empty when there was none.
pub(crate) fn quote(output: &[u8]) -> String {
    let start = output.len().saturating_sub(KEPT_OUTPUT);
    let text = String::from_utf8_lossy(&output[start..]);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let last = lines[lines.len().saturating_sub(QUOTED_LINES)..].join("\n");
    if last.is_empty() {
        return String::new();
    }
    let count = last.chars().count();
    let bounded: String = last
        .chars()
        .skip(count.saturating_sub(QUOTED_CHARS))
        .collect();
    format!(": {bounded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_is_required() {
        let cfg = |command: Vec<&str>| CommandConfig {
            command: command.into_iter().map(String::from).collect(),
            timeout: Duration::from_secs(1),
            env: BTreeMap::new(),
            max_concurrent: None,
        };
        assert!(matches!(
            CommandSink::new("c", &cfg(vec![])),
            Err(SinkError::Config(_))
        ));
        assert!(matches!(
            CommandSink::new("c", &cfg(vec![""])),
            Err(SinkError::Config(_))
        ));
        assert!(CommandSink::new("c", &cfg(vec!["true"])).is_ok());
    }

    #[test]
    fn quotes_keep_the_last_lines_bounded() {
        assert_eq!(quote(b""), "");
        assert_eq!(quote(b"\n  \n"), "");
        let many: String = (0..50).map(|i| format!("line {i}\n")).collect();
        let q = quote(many.as_bytes());
        assert!(
            q.starts_with(": line 40\n") && q.ends_with("line 49"),
            "{q}"
        );
        let long = "x".repeat(10_000);
        assert_eq!(quote(long.as_bytes()).len(), 2 + QUOTED_CHARS);
    }

    #[tokio::test]
    async fn tails_are_bounded() {
        let data = vec![b'a'; 100_000];
        let kept = tail(&data[..]).await;
        assert!(kept.len() <= 2 * KEPT_OUTPUT && kept.len() >= KEPT_OUTPUT);
    }
}
