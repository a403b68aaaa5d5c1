//! The file sink: a Markdown report and the event JSON per notification, in a directory, as
//! `<YYYY-MM-DD>-<job name slug>-<job id>.md` and `.json` (the date the job finished, UTC).
//!
//! Each file is written atomically (a temp file in the same directory, fsynced, renamed over
//! the final name, then the directory fsynced), so a reader never sees half a report and a
//! crash leaves either the old file or the new one. A retry of the same notification rewrites
//! the same names, so delivering twice is harmless. The I/O runs on the blocking pool.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Notification, Part, SinkError, Templates};
use crate::config::sinks::FileSink as FileConfig;

/// The longest slug of a job name in a file name.
const MAX_SLUG: usize = 60;

/// Writes reports into one directory.
#[derive(Debug)]
pub struct FileSink {
    name: String,
    dir: PathBuf,
    templates: Templates,
}

impl FileSink {
    /// Compiles the sink's templates. The directory is created at the first delivery (it may
    /// live on a disk that is not mounted yet).
    pub fn new(name: &str, cfg: &FileConfig) -> Result<Self, SinkError> {
        if cfg.dir.as_os_str().is_empty() {
            return Err(SinkError::Config("`dir` is required".into()));
        }
        Ok(Self {
            name: name.to_string(),
            dir: cfg.dir.clone(),
            templates: Templates::load(&cfg.templates)?,
        })
    }

    /// Writes `<base>.json`, then `<base>.md` (so a watcher of `.md` files finds the JSON
    /// beside it).
    pub async fn deliver(&self, n: &Notification<'_>) -> Result<(), SinkError> {
        let markdown = self.templates.render(Part::Markdown, n.ctx)?;
        let mut json = serde_json::to_vec_pretty(&n.event_json())
            .map_err(|e| SinkError::Permanent(format!("cannot serialize the event: {e}")))?;
        json.push(b'\n');
        let base = base_name(
            n.job.finished_at.unwrap_or(n.job.updated_at),
            &n.job.name,
            &n.job.id,
        );
        let dir = self.dir.clone();
        let files = vec![
            (format!("{base}.json"), json),
            (format!("{base}.md"), markdown.into_bytes()),
        ];
        tokio::task::spawn_blocking(move || write_all_atomically(&dir, &files))
            .await
            .map_err(|e| SinkError::temporary(format!("the file writer stopped: {e}")))?
            .map_err(|(path, e)| io_error(&path, &e))?;
        tracing::debug!(sink = %self.name, job_id = %n.job.id, file = %base, "report written");
        Ok(())
    }
}

/// `2026-01-31-my-report-job_01J…`.
fn base_name(finished_ms: i64, job_name: &str, job_id: &str) -> String {
    let date = chrono::DateTime::from_timestamp_millis(finished_ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "0000-00-00".into());
    // Job ids are ours (`job_` + ULID); keep them file-name safe all the same.
    let id: String = job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{date}-{}-{id}", slug(job_name))
}

/// Lowercase ASCII letters and digits, other runs as one `-`, at most [`MAX_SLUG`] long;
/// `job` when nothing is left.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= MAX_SLUG {
            break;
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        "job".into()
    } else {
        trimmed.to_string()
    }
}

/// Creates `dir` if needed, writes each file atomically, then fsyncs the directory so the
/// renames survive a power cut. Returns the path an error concerns.
fn write_all_atomically(
    dir: &Path,
    files: &[(String, Vec<u8>)],
) -> Result<(), (PathBuf, io::Error)> {
    std::fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), e))?;
    for (name, bytes) in files {
        let target = dir.join(name);
        let mut tmp = tempfile::Builder::new()
            .prefix(".respool-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| (dir.to_path_buf(), e))?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| (tmp.path().to_path_buf(), e))?;
        // Replaces an earlier copy (a retry) atomically; on error the temp file is removed.
        tmp.persist(&target)
            .map_err(|e| (target.clone(), e.error))?;
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| (dir.to_path_buf(), e))
}

/// A full disk or a missing mount may clear; a refusal will not.
fn io_error(path: &Path, e: &io::Error) -> SinkError {
    let message = format!("cannot write {}: {e}", path.display());
    match e.kind() {
        io::ErrorKind::PermissionDenied
        | io::ErrorKind::ReadOnlyFilesystem
        | io::ErrorKind::NotADirectory => SinkError::Permanent(message),
        _ => SinkError::temporary(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_short_lowercase_ascii() {
        assert_eq!(slug("Weekly Market Report"), "weekly-market-report");
        assert_eq!(slug("  --Ünïcode / and ../dots!! "), "n-code-and-dots");
        assert_eq!(slug("日本語"), "job");
        assert_eq!(slug(""), "job");
        let long = slug(&"abc ".repeat(100));
        assert!(long.len() <= MAX_SLUG && !long.ends_with('-'), "{long}");
    }

    #[test]
    fn names_carry_the_finish_date_in_utc() {
        // 2026-03-01T23:30:00Z
        let ms = 1_772_407_800_000;
        assert_eq!(
            base_name(ms, "My Job", "job_01ABC"),
            "2026-03-01-my-job-job_01ABC"
        );
        assert_eq!(base_name(ms, "x", "job/../1"), "2026-03-01-x-job____1");
    }

    #[test]
    fn atomic_writes_replace_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        let files = vec![("r.md".to_string(), b"one".to_vec())];
        write_all_atomically(&sub, &files).unwrap();
        let files = vec![("r.md".to_string(), b"two".to_vec())];
        write_all_atomically(&sub, &files).unwrap();
        assert_eq!(std::fs::read(sub.join("r.md")).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.md")]);
    }

    #[test]
    fn permission_problems_are_final_and_the_rest_temporary() {
        let p = Path::new("/x");
        assert!(matches!(
            io_error(p, &io::Error::from(io::ErrorKind::PermissionDenied)),
            SinkError::Permanent(_)
        ));
        assert!(matches!(
            io_error(p, &io::Error::from(io::ErrorKind::StorageFull)),
            SinkError::Temporary { .. }
        ));
    }
}
