//! Artifacts: the table that lists each job's (`artifacts`, migration 19) and the folder that
//! holds their bytes, one sub-folder per job under the artifact directory.
//!
//! The bytes are written (to a temporary file, synced, renamed into place) before the job's
//! end is recorded, and the rows are written in that same transaction: a job lists its
//! artifacts exactly when its end is recorded, and a crash in between leaves only files
//! the next attempt writes again under the same names. Deleting a job's rows (retention)
//! removes its folder after the commit.

use super::lending::Conn;
use crate::store::sql;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sqlx::FromRow;

use super::{Store, StoreError};
use crate::job::JobId;

/// An artifact to list with a job's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewArtifact {
    pub name: String,
    /// `image` or `container_file`.
    pub kind: &'static str,
    pub media_type: String,
    /// Bytes on disk (0 when `error` is set).
    pub bytes: i64,
    pub sha256: Option<String>,
    /// The output item id of an image, `container_id/file_id` of a container file.
    pub source: String,
    /// The file's path in its container.
    pub path: Option<String>,
    /// Why there are no bytes.
    pub error: Option<String>,
}

/// A listed artifact.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct ArtifactRow {
    pub name: String,
    pub kind: String,
    pub media_type: String,
    pub bytes: i64,
    pub sha256: Option<String>,
    pub source: String,
    pub path: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
}

impl ArtifactRow {
    /// Whether its bytes were kept.
    pub fn is_kept(&self) -> bool {
        self.error.is_none()
    }
}

/// Lists `artifacts` for job `id` inside the caller's transaction (the one recording its end).
/// A name already listed keeps its row: the first end recorded wins, as for the job.
pub(super) async fn insert_artifacts(
    conn: &mut Conn,
    id: &JobId,
    artifacts: &[NewArtifact],
    now: i64,
) -> Result<(), StoreError> {
    for (position, a) in artifacts.iter().enumerate() {
        sql::query(
            "INSERT INTO artifacts (job_id, name, position, kind, media_type, bytes, sha256, \
             source, path, error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (job_id, name) DO NOTHING",
        )
        .bind(id)
        .bind(&a.name)
        .bind(position as i64)
        .bind(a.kind)
        .bind(&a.media_type)
        .bind(a.bytes)
        .bind(&a.sha256)
        .bind(&a.source)
        .bind(&a.path)
        .bind(&a.error)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A file being written into a job's artifact folder; [`ArtifactFile::keep`] puts it in place
/// under its SHA-256. Async: the writes go through tokio's blocking pool, never an async
/// thread.
#[derive(Debug)]
pub struct ArtifactFile {
    /// Deleted on drop unless kept.
    temp: tempfile::TempPath,
    file: tokio::fs::File,
    dir: PathBuf,
    hasher: Sha256,
    len: u64,
}

impl ArtifactFile {
    /// Appends `data`.
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.file.write_all(data).await?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties it, to write it again (a download that broke half way).
    pub async fn restart(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncSeekExt;
        self.file.set_len(0).await?;
        self.file.seek(std::io::SeekFrom::Start(0)).await?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    /// Syncs it and renames it into place as its SHA-256 (content-addressed: two writes of
    /// the same job's end that race write the same name only with the same bytes); returns
    /// its size and SHA-256 (hex).
    pub async fn keep(mut self) -> std::io::Result<(u64, String)> {
        use tokio::io::AsyncWriteExt;
        self.file.flush().await?;
        self.file.sync_all().await?;
        drop(self.file);
        let sha = crate::job::attachment::hex(&self.hasher.finalize());
        let target = self.dir.join(&sha);
        let (temp, dir) = (self.temp, self.dir);
        tokio::task::spawn_blocking(move || {
            temp.persist(&target).map_err(|e| e.error)?;
            // The rename is durable once the folder is synced.
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok((self.len, sha))
    }
}

/// Whether `sha` is a SHA-256 in hex, as the files of a job's folder are named.
fn is_sha256(sha: &str) -> bool {
    sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Store {
    /// The artifact directory (none for an in-memory database without `artifacts.dir`).
    pub fn artifact_dir(&self) -> Option<&Path> {
        self.artifact_dir.as_deref().map(PathBuf::as_path)
    }

    /// This store with its artifact directory at `dir` (`artifacts.dir` in the config).
    pub fn with_artifact_dir(mut self, dir: PathBuf) -> Self {
        self.artifact_dir = Some(std::sync::Arc::new(dir));
        self
    }

    /// The folder of job `id`'s artifacts.
    fn job_artifact_dir(&self, id: &JobId) -> Option<PathBuf> {
        self.artifact_dir().map(|d| d.join(id.as_str()))
    }

    /// Where a kept artifact of job `id` is on disk: its folder, and the file named by its
    /// SHA-256 (so no name a model chose ever reaches the file system). `None` without an
    /// artifact directory or for an artifact not kept.
    pub fn artifact_path(&self, id: &JobId, row: &ArtifactRow) -> Option<PathBuf> {
        let sha = row
            .sha256
            .as_deref()
            .filter(|s| row.is_kept() && is_sha256(s))?;
        self.job_artifact_dir(id).map(|d| d.join(sha))
    }

    /// Starts writing an artifact of job `id`, making the job's folder if needed.
    pub async fn artifact_file(&self, id: &JobId) -> std::io::Result<ArtifactFile> {
        let root = self.artifact_dir().map(Path::to_path_buf).ok_or_else(|| {
            std::io::Error::other(
                "no artifact directory (the database is in memory and `artifacts.dir` is not set)",
            )
        })?;
        let dir = root.join(id.as_str());
        let made = dir.clone();
        let temp =
            tokio::task::spawn_blocking(move || -> std::io::Result<tempfile::NamedTempFile> {
                if !made.is_dir() {
                    std::fs::create_dir_all(&made)?;
                    // The new folder's entry is durable once its parents are synced.
                    for d in [Some(made.as_path()), made.parent()].into_iter().flatten() {
                        std::fs::File::open(d)?.sync_all()?;
                    }
                }
                tempfile::Builder::new().prefix(".part-").tempfile_in(&made)
            })
            .await
            .map_err(std::io::Error::other)??;
        let (file, temp) = temp.into_parts();
        Ok(ArtifactFile {
            temp,
            file: tokio::fs::File::from_std(file),
            dir,
            hasher: Sha256::new(),
            len: 0,
        })
    }

    /// The artifacts listed for job `id`, in order.
    pub async fn artifacts(&self, id: &JobId) -> Result<Vec<ArtifactRow>, StoreError> {
        Ok(sql::query_as(
            "SELECT name, kind, media_type, bytes, sha256, source, path, error, created_at \
             FROM artifacts WHERE job_id = ? ORDER BY position, name",
        )
        .bind(id)
        .fetch_all(&self.reads)
        .await?)
    }

    /// Artifact `name` of job `id`, if listed.
    pub async fn artifact(
        &self,
        id: &JobId,
        name: &str,
    ) -> Result<Option<ArtifactRow>, StoreError> {
        Ok(sql::query_as(
            "SELECT name, kind, media_type, bytes, sha256, source, path, error, created_at \
             FROM artifacts WHERE job_id = ? AND name = ?",
        )
        .bind(id)
        .bind(name)
        .fetch_optional(&self.reads)
        .await?)
    }

    /// Removes the artifact folders of jobs that are gone (their rows deleted by retention):
    /// those of `ids`, after the commit that deleted them. A folder that cannot be removed is
    /// logged and left for [`Store::sweep_artifact_dirs`].
    pub async fn remove_artifact_dirs(&self, ids: &[JobId]) {
        let dirs: Vec<PathBuf> = ids
            .iter()
            .filter_map(|id| self.job_artifact_dir(id))
            .collect();
        if dirs.is_empty() {
            return;
        }
        let removed = tokio::task::spawn_blocking(move || {
            for dir in dirs {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a deleted job's artifacts");
                    }
                }
            }
        })
        .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, "removing artifact folders failed");
        }
    }

    /// Removes the folders under the artifact directory whose job no longer exists (a crash
    /// between a retention commit and the removal), and the temporary files of writes a crash
    /// cut short, last written more than `grace_ms` ago (by the system clock, which the
    /// files' times follow). Returns how many folders went.
    pub async fn sweep_artifact_dirs(&self, grace_ms: i64) -> Result<u64, StoreError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let Some(root) = self.artifact_dir().map(Path::to_path_buf) else {
            return Ok(0);
        };
        let listed = tokio::task::spawn_blocking(move || list_job_dirs(&root))
            .await
            .map_err(|e| StoreError::Corrupt(format!("listing artifacts failed: {e}")))?;
        let mut gone = Vec::new();
        for (id, dir) in listed {
            let status: Option<String> = sql::query_scalar("SELECT status FROM jobs WHERE id = ?")
                .bind(&id)
                .fetch_optional(&self.reads)
                .await?;
            let Some(status) = status else {
                gone.push(id);
                continue;
            };
            // A finished job keeps only the files its rows name: others are what a write of
            // its end left when a crash or a race kept its rows from being the ones recorded.
            let keep: Option<std::collections::BTreeSet<String>> = if status
                .parse::<crate::job::JobStatus>()
                .is_ok_and(|s| s.is_terminal())
            {
                let shas: Vec<Option<String>> =
                    sql::query_scalar("SELECT sha256 FROM artifacts WHERE job_id = ?")
                        .bind(&id)
                        .fetch_all(&self.reads)
                        .await?;
                Some(shas.into_iter().flatten().collect())
            } else {
                None
            };
            let cutoff = now_ms - grace_ms;
            tokio::task::spawn_blocking(move || remove_stale_files(&dir, cutoff, keep.as_ref()))
                .await
                .ok();
        }
        let n = gone.len() as u64;
        self.remove_artifact_dirs(&gone).await;
        Ok(n)
    }
}

/// The job folders under `root` (`job_…` names only; anything else is not ours).
fn list_job_dirs(root: &Path) -> Vec<(JobId, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let id = JobId::parse(e.file_name().to_str()?).ok()?;
            Some((id, e.path()))
        })
        .collect()
}

/// Removes from `dir` the files last written before `cutoff_ms` (unix ms) that are
/// unfinished writes (`.part-`), or, when `keep` is given (the job has ended), not in it.
fn remove_stale_files(
    dir: &Path,
    cutoff_ms: i64,
    keep: Option<&std::collections::BTreeSet<String>>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let unneeded = name.starts_with(".part-") || keep.is_some_and(|k| !k.contains(&name));
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .is_some_and(|d| (d.as_millis() as i64) < cutoff_ms);
        if unneeded && old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
