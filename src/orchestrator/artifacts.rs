//! Keeping what a finished response made: its generated images decoded, and the files its
//! code interpreter wrote downloaded from their containers before those expire (20 minutes
//! after their last use), into the job's artifact folder. It runs when a job's end is seen,
//! before the end is recorded, so the rows listing them go in with it and a notification
//! can attach them.
//!
//! What cannot be kept (a container already gone, a file over the limits, a full disk) is
//! listed with the reason instead, and the job ends as it would have: an artifact never
//! holds back a result. An image whose bytes could not be written keeps its base64 in the
//! stored response.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Orchestrator;
use crate::job::artifact::{self, Names};
use crate::job::{JobId, Observation};
use crate::store::{ArtifactFile, EventKind, NewArtifact};
use crate::telemetry::chain;
use crate::upstream::containers::{DownloadError, DownloadSink};

/// How often the job's next poll is pushed back while its artifacts are fetched.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How far it is pushed back each time.
const HOLD_MS: i64 = 60_000;
/// The longest a job's artifacts may take to fetch: its end is recorded after at most this,
/// with what did not come down listed as not kept. Containers expire 20 minutes after their
/// last use, so a fetch that takes longer is racing their expiry anyway.
pub(super) const FETCH_BUDGET: Duration = Duration::from_secs(600);

struct Sink<'a>(&'a mut ArtifactFile);

impl DownloadSink for Sink<'_> {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.write(data).await
    }

    async fn restart(&mut self) -> std::io::Result<()> {
        self.0.restart().await
    }
}

/// The jobs whose artifacts this daemon is fetching; dropping the guard takes the job out.
pub(super) struct Fetching {
    jobs: std::sync::Arc<std::sync::Mutex<BTreeSet<JobId>>>,
    id: JobId,
}

impl Drop for Fetching {
    fn drop(&mut self) {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// A container file to download.
struct Wanted {
    container_id: String,
    file_id: String,
    /// The name it is asked to have (the citation's `filename`, else its path's last part).
    filename: String,
    path: Option<String>,
    bytes: Option<u64>,
}

impl Orchestrator {
    /// Whether a response's end has artifacts to keep.
    pub(super) fn has_artifacts(obs: &Observation) -> bool {
        !artifact::find(&obs.raw, &mut Names::new()).is_empty()
    }

    /// Marks job `id` as being fetched here; `None` when a fetch of it is already running.
    pub(super) fn start_fetching(&self, id: &JobId) -> Option<Fetching> {
        let jobs = self.inner.fetching.clone();
        let fresh = jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone());
        fresh.then(|| Fetching {
            jobs,
            id: id.clone(),
        })
    }

    /// Keeps the artifacts of a response that just ended: `None` when it made none, else the
    /// observation to record (the kept images' base64 taken out) and the artifacts to list.
    /// Takes at most [`FETCH_BUDGET`].
    pub(super) async fn keep_artifacts(
        &self,
        id: &JobId,
        obs: &Observation,
    ) -> Option<(Observation, Vec<NewArtifact>)> {
        let mut names = Names::new();
        let found = artifact::find(&obs.raw, &mut names);
        if found.is_empty() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + FETCH_BUDGET;
        let work = self.fetch_artifacts(id, obs, found, names, deadline);
        Some(self.holding_poll(id, work).await)
    }

    async fn fetch_artifacts(
        &self,
        id: &JobId,
        obs: &Observation,
        found: artifact::Found,
        mut names: Names,
        deadline: tokio::time::Instant,
    ) -> (Observation, Vec<NewArtifact>) {
        let config = self.config();
        let limits = &config.artifacts;
        let store = self.inner.store.clone();
        let mut obs = obs.clone();
        let mut out = Vec::new();
        let mut used: u64 = 0;
        for image in found.images {
            let size = image.data.len() as u64;
            let error = if used.saturating_add(size) > limits.max_job_bytes {
                Some(over_job_limit(limits.max_job_bytes))
            } else {
                let written = async {
                    let mut f = store.artifact_file(id).await?;
                    f.write(&image.data).await?;
                    f.keep().await
                }
                .await;
                match written {
                    Ok((n, sha)) => {
                        used += n;
                        artifact::mark_kept(&mut obs.raw, image.index, &image.name);
                        out.push(NewArtifact {
                            name: image.name,
                            kind: "image",
                            media_type: image.media_type,
                            bytes: n as i64,
                            sha256: Some(sha),
                            source: image.item_id,
                            path: None,
                            error: None,
                        });
                        continue;
                    }
                    Err(e) => Some(format!("cannot write it: {e}")),
                }
            };
            out.push(NewArtifact {
                name: image.name,
                kind: "image",
                media_type: image.media_type,
                bytes: 0,
                sha256: None,
                source: image.item_id,
                path: None,
                error,
            });
        }
        for bad in found.bad_images {
            out.push(NewArtifact {
                name: bad.name,
                kind: "image",
                media_type: "application/octet-stream".into(),
                bytes: 0,
                sha256: None,
                source: bad.item_id,
                path: None,
                error: Some(bad.error),
            });
        }
        let since = obs
            .raw
            .get("created_at")
            .and_then(serde_json::Value::as_i64);
        for w in self
            .wanted_files(id, &found.containers, &found.cited, since)
            .await
        {
            let name = names.claim(&w.filename);
            let media_type = artifact::media_type_of(&name);
            let source = format!("{}/{}", w.container_id, w.file_id);
            let left = limits.max_job_bytes.saturating_sub(used);
            let max = limits.max_file_bytes.min(left);
            let refused = match w.bytes {
                Some(n) if n > limits.max_file_bytes => Some(format!(
                    "it is larger ({n} bytes) than artifacts.max_file_bytes ({})",
                    limits.max_file_bytes
                )),
                Some(n) if n > left => Some(over_job_limit(limits.max_job_bytes)),
                _ => None,
            };
            let result = match refused {
                Some(e) => Err(e),
                None => match tokio::time::timeout_at(deadline, self.download(id, &w, max)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "the job's artifacts took longer than {} to fetch",
                        humantime::format_duration(FETCH_BUDGET)
                    )),
                },
            };
            match result {
                Ok((n, sha)) => {
                    used += n;
                    out.push(NewArtifact {
                        name,
                        kind: "container_file",
                        media_type,
                        bytes: n as i64,
                        sha256: Some(sha),
                        source,
                        path: w.path,
                        error: None,
                    });
                }
                Err(error) => out.push(NewArtifact {
                    name,
                    kind: "container_file",
                    media_type,
                    bytes: 0,
                    sha256: None,
                    source,
                    path: w.path,
                    error: Some(error),
                }),
            }
        }
        (obs, out)
    }

    /// The files to download: those the response's code wrote in each of its containers
    /// (source `assistant`, made since the response was, `since` in Unix seconds: a container
    /// shared with earlier responses keeps their files too), and every file its answer cites,
    /// each once. A container that cannot be listed (gone already) leaves only its cited
    /// files, and says so in the timeline.
    async fn wanted_files(
        &self,
        id: &JobId,
        containers: &[String],
        cited: &[artifact::Cited],
        since: Option<i64>,
    ) -> Vec<Wanted> {
        let client = self.client();
        let mut out: Vec<Wanted> = Vec::new();
        let mut seen = BTreeSet::new();
        let cited_names: BTreeMap<(&str, &str), &str> = cited
            .iter()
            .map(|c| {
                (
                    (c.container_id.as_str(), c.file_id.as_str()),
                    c.filename.as_str(),
                )
            })
            .collect();
        for container in containers {
            match client.container_files(container).await {
                Ok(files) => {
                    for f in files {
                        let cited_name = cited_names.get(&(container.as_str(), f.id.as_str()));
                        let ours = f.source == "assistant"
                            && since.is_none_or(|t| f.created_at == 0 || f.created_at >= t);
                        if !ours && cited_name.is_none() {
                            continue;
                        }
                        if !seen.insert((container.clone(), f.id.clone())) {
                            continue;
                        }
                        let filename = cited_name
                            .filter(|n| !n.is_empty())
                            .map_or_else(|| f.path.clone(), |n| (*n).to_string());
                        let filename = if filename.is_empty() {
                            f.id.clone()
                        } else {
                            filename
                        };
                        out.push(Wanted {
                            container_id: container.clone(),
                            file_id: f.id,
                            filename,
                            path: (!f.path.is_empty()).then_some(f.path),
                            bytes: f.bytes,
                        });
                    }
                }
                Err(e) => {
                    let msg = format!(
                        "cannot list the files of container {container}: {}",
                        e.describe()
                    );
                    tracing::warn!(job_id = %id, container, error = %e.describe(), "cannot list a container's files");
                    self.note(id, &msg).await;
                }
            }
        }
        for c in cited {
            if seen.insert((c.container_id.clone(), c.file_id.clone())) {
                out.push(Wanted {
                    container_id: c.container_id.clone(),
                    file_id: c.file_id.clone(),
                    filename: if c.filename.is_empty() {
                        c.file_id.clone()
                    } else {
                        c.filename.clone()
                    },
                    path: None,
                    bytes: None,
                });
            }
        }
        out
    }

    /// Downloads one container file into the job's folder: its size and SHA-256, or why not.
    async fn download(&self, id: &JobId, w: &Wanted, max: u64) -> Result<(u64, String), String> {
        let mut file = self
            .inner
            .store
            .artifact_file(id)
            .await
            .map_err(|e| format!("cannot write it: {e}"))?;
        let got = self
            .client()
            .download_container_file(&w.container_id, &w.file_id, &mut Sink(&mut file), max)
            .await;
        match got {
            Ok(_) => file
                .keep()
                .await
                .map_err(|e| format!("cannot write it: {e}")),
            Err(DownloadError::Upstream(e)) if e.status() == Some(404) => Err(format!(
                "the container or the file is gone upstream (containers expire 20 minutes after their last use): {}",
                e.describe()
            )),
            Err(DownloadError::Upstream(e)) => {
                Err(format!("the download failed: {}", e.describe()))
            }
            Err(DownloadError::TooLarge(_)) => Err(format!(
                "it is larger than the artifact limits allow (artifacts.max_file_bytes, artifacts.max_job_bytes: {max} bytes left)"
            )),
            Err(DownloadError::Write(e)) => Err(format!("cannot write it: {e}")),
        }
    }

    /// Runs `work` while pushing the job's next poll back every [`HEARTBEAT`], so another
    /// worker does not take the job again while its files come down.
    async fn holding_poll<T>(&self, id: &JobId, work: impl std::future::Future<Output = T>) -> T {
        let hold = move || async move {
            let now = self.now();
            if let Err(e) = self.inner.store.hold_poll(id, now + HOLD_MS, now).await {
                tracing::warn!(error = %chain(&e), "cannot push back a job whose artifacts are being fetched");
            }
        };
        hold().await;
        Self::beating(HEARTBEAT, work, hold).await
    }

    async fn note(&self, id: &JobId, msg: &str) {
        if let Err(e) = self
            .inner
            .store
            .record_event(id, self.now(), EventKind::Error, msg, None)
            .await
        {
            tracing::warn!(error = %chain(&e), "cannot record an artifact event");
        }
    }
}

fn over_job_limit(max: u64) -> String {
    format!("the job's artifacts would pass artifacts.max_job_bytes ({max} bytes)")
}
