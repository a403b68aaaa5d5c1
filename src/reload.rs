//! Loading the jobs file, and reloading the config and the jobs file while running (SIGHUP,
//! `POST /v1/admin/reload`, `respool reload`).
//!
//! A reload is all or nothing. Everything is read and checked first — the config file, a
//! client and the sinks built from it, the jobs file against the new sinks — and only when all
//! of it is good is the new config swapped in (the orchestrator's snapshot, upstream client and
//! sinks, the webhook secrets, the limits) and the jobs file applied (schedules synced, new
//! jobs added). A bad file changes nothing: the errors (with file:line) are logged and returned,
//! and the daemon carries on with the config it had. `listen`, `database` and the webhook
//! route (`webhook.path`, `webhook.max_body_bytes`) are bound at start: a change to them is
//! refused with a message saying to restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, ConfigError, Located, Source};
use crate::inbound::Verifier;
use crate::job::JobSpec;
use crate::job::spec::{Blob, parse_jobs_file_with_blobs};
use crate::notify::Notifier;
use crate::orchestrator::{AcceptError, Orchestrator, spec_hash};
use crate::store::{InsertOutcome, StoreError, SyncReport};
use crate::upstream;
use crate::yaml;

/// How variables are read (the process environment in the daemon).
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Why a jobs file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JobsFileError {
    #[error("cannot read the jobs file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Every problem found, each located (file:line:col).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Located>),
}

/// A jobs file read and checked: its plain jobs, and its schedule templates.
#[derive(Debug, Clone, Default)]
pub struct JobsFile {
    pub path: PathBuf,
    /// Entries without `schedule:`: loaded as jobs (once: each has an implicit key).
    pub jobs: Vec<JobSpec>,
    /// Entries with `schedule:`: templates, run at each tick.
    pub templates: Vec<JobSpec>,
    /// The files the entries attach, by attachment id: stored before any job names them.
    pub blobs: std::collections::BTreeMap<String, Blob>,
}

/// What applying a jobs file did.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct JobsFileReport {
    /// Jobs added (entries new or edited since the last load).
    pub jobs_created: usize,
    /// Schedules added, changed and removed.
    #[schema(value_type = Object)]
    pub schedules: SyncReport,
}

pub use crate::job::files::{Beside, beside, beside_within};

/// Reads a jobs file and checks it against `config`: syntax, every entry's fields and the
/// sinks each names. Blocking file I/O: call from a blocking context (or at start).
pub fn read_jobs_file(
    path: &Path,
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<JobsFile, JobsFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| JobsFileError::Read {
        path: name.clone(),
        source,
    })?;
    let files = beside_within(path, &config.jobs.attachment_dirs);
    let parsed =
        parse_jobs_file_with_blobs(&name, &text, env, &files).map_err(JobsFileError::Invalid)?;
    let specs = parsed.specs;
    // On success the specs are the file's `jobs` entries, in order.
    let unknown: Vec<Located> = specs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.sink_names()
                .filter(|n| !config.sinks.contains_key(*n))
                .map(move |n| (i, s.name.clone(), n.to_string()))
        })
        .map(|(i, job, sink)| Located {
            file: name.clone(),
            pos: yaml::locate(&text, &["jobs", &i.to_string(), "notify"]),
            message: format!("job `{job}`: field `notify`: no sink named `{sink}` is configured"),
        })
        .collect();
    // A knowledge set named alone must be one the config has (its files are read later).
    let unknown_sets: Vec<Located> = specs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.knowledge
                .iter()
                .enumerate()
                .filter(|(_, k)| k.files.is_none() && !config.knowledge.sets.contains_key(&k.name))
                .map(move |(j, k)| (i, j, s.name.clone(), k.name.clone()))
        })
        .map(|(i, j, job, set)| Located {
            file: name.clone(),
            pos: crate::job::spec::locate_field(&text, &i.to_string(), &format!("knowledge.{j}")),
            message: format!(
                "job `{job}`: field `knowledge.{j}`: no knowledge set named `{set}` is configured (`knowledge.sets`)"
            ),
        })
        .collect();
    let mut unknown = unknown;
    unknown.extend(unknown_sets);
    if !unknown.is_empty() {
        return Err(JobsFileError::Invalid(unknown));
    }
    let (templates, jobs) = specs.into_iter().partition(|s| s.schedule.is_some());
    Ok(JobsFile {
        path: path.to_path_buf(),
        jobs,
        templates,
        blobs: parsed.blobs,
    })
}

/// Puts a checked jobs file into effect: its schedules replace the stored ones, and its plain
/// jobs are added. Each job gets an implicit idempotency key from its name and spec, so loading
/// the same file again (every start, every reload) adds nothing, and editing a job adds it once
/// more.
pub async fn apply_jobs_file(
    orch: &Orchestrator,
    file: &JobsFile,
) -> Result<JobsFileReport, AcceptError> {
    for blob in file.blobs.values() {
        orch.store()
            .put_attachment(&blob.meta, &blob.data, orch.now())
            .await?;
    }
    // A template naming a config knowledge set gets the set's files now: its runs do not
    // pass through intake.
    let mut templates = file.templates.clone();
    for t in &mut templates {
        orch.resolve_knowledge(t).await?;
    }
    let schedules = orch.sync_schedules(&templates).await?;
    let mut jobs_created = 0;
    // Each job after the one it runs after, whose id its `after` then names. The implicit key
    // hashes the spec with that id: a job runs again when the job it runs after did.
    let order = match crate::job::chain::after_refs(&file.jobs, &[]) {
        Ok(refs) => crate::job::chain::intake_order(&refs),
        // Checked when the file was read; taken in file order if not.
        Err(_) => (0..file.jobs.len()).collect(),
    };
    let mut ids = std::collections::BTreeMap::new();
    for i in order {
        let mut spec = file.jobs[i].clone();
        crate::job::chain::resolve_after(&mut spec, &ids);
        if spec.idempotency_key.is_none() {
            let hash = spec_hash(&spec);
            spec.idempotency_key = Some(format!("jobs-file:{}:{}", spec.name, &hash[..16]));
        }
        let name = spec.name.clone();
        let row = match orch.accept(spec, "jobs file").await? {
            InsertOutcome::Created(row) => {
                jobs_created += 1;
                row
            }
            InsertOutcome::Existing(row) | InsertOutcome::KeyConflict(row) => row,
        };
        ids.insert(name, row.id.to_string());
    }
    tracing::info!(
        path = %file.path.display(), jobs_created, schedules = file.templates.len(),
        "jobs file loaded"
    );
    Ok(JobsFileReport {
        jobs_created,
        schedules,
    })
}

/// Why a reload did not happen (or did not finish).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Nothing was changed: the new files have these problems (each line names the file and,
    /// where known, the line).
    #[error("{}", .0.join("\n"))]
    Refused(Vec<String>),
    /// The new config is in force, but applying the jobs file failed.
    #[error("the new config is in force, but loading the jobs file failed")]
    Failed(#[source] StoreError),
}

impl ReloadError {
    /// The problems, one per line.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Refused(lines) => lines.clone(),
            Self::Failed(e) => vec![crate::telemetry::chain(e)],
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    /// Always `reload`.
    pub object: String,
    /// The config file read again (none: built-in defaults).
    pub config_file: Option<String>,
    /// The jobs file read again, if the config names one.
    pub jobs_file: Option<String>,
    #[serde(flatten)]
    pub applied: JobsFileReport,
}

/// Reloads the daemon's config and jobs file. Cheap to clone; one reload runs at a time.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    orch: Orchestrator,
    verifier: Arc<Verifier>,
    env: Env,
    running: tokio::sync::Mutex<()>,
}

/// Everything a reload needs, read and checked before anything is swapped.
struct Prepared {
    config: Arc<Config>,
    client: upstream::Client,
    notifier: Notifier,
    jobs: Option<JobsFile>,
}

impl Reloader {
    pub fn new(orch: Orchestrator, verifier: Arc<Verifier>, env: Env) -> Self {
        Self {
            inner: Arc::new(Inner {
                orch,
                verifier,
                env,
                running: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Re-reads the config file the daemon started with and its jobs file; applies both, or
    /// neither. Tells systemd (RELOADING, then READY) and logs the outcome.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.inner.running.lock().await;
        crate::systemd::reloading();
        let old = self.inner.orch.config();
        let file = old
            .file
            .as_ref()
            .map_or_else(|| "(built-in defaults)".into(), |p| p.display().to_string());
        tracing::info!(config = %file, "reloading the config");
        let result = self.reload_from(old).await;
        match &result {
            Ok(r) => tracing::info!(
                jobs_created = r.applied.jobs_created,
                schedules_added = ?r.applied.schedules.added,
                schedules_changed = ?r.applied.schedules.changed,
                schedules_removed = ?r.applied.schedules.removed,
                "config reloaded"
            ),
            Err(ReloadError::Refused(lines)) => {
                for line in lines {
                    tracing::error!("reload refused: {line}");
                }
                tracing::error!("reload refused; the previous config stays in force");
            }
            Err(e @ ReloadError::Failed(_)) => {
                tracing::error!(error = %crate::telemetry::chain(e), "reload failed")
            }
        }
        crate::systemd::ready();
        result
    }

    async fn reload_from(&self, old: Arc<Config>) -> Result<ReloadReport, ReloadError> {
        let env = self.inner.env.clone();
        let notifier = self.inner.orch.notifier();
        let prepared = tokio::task::spawn_blocking(move || prepare(&old, &notifier, &env))
            .await
            .map_err(|e| ReloadError::Refused(vec![format!("the reload task failed: {e}")]))??;
        let Prepared {
            config,
            client,
            notifier,
            jobs,
        } = prepared;
        self.inner.verifier.set_configured(&config.webhook.secrets);
        self.inner
            .orch
            .reconfigure(config.clone(), client, notifier);
        let applied = match &jobs {
            Some(file) => apply_jobs_file(&self.inner.orch, file)
                .await
                .map_err(|e| match e {
                    AcceptError::Store(e) => ReloadError::Failed(e),
                    // Sinks were checked against this very config before the swap.
                    other => ReloadError::Refused(vec![other.to_string()]),
                })?,
            None => JobsFileReport {
                jobs_created: 0,
                schedules: self
                    .inner
                    .orch
                    .sync_schedules(&[])
                    .await
                    .map_err(ReloadError::Failed)?,
            },
        };
        Ok(ReloadReport {
            object: "reload".into(),
            config_file: config.file.as_ref().map(|p| p.display().to_string()),
            jobs_file: jobs.map(|j| j.path.display().to_string()),
            applied,
        })
    }
}

/// Reads and checks the new config and jobs file, and builds what the new config needs.
fn prepare(old: &Config, notifier: &Notifier, env: &Env) -> Result<Prepared, ReloadError> {
    let source = match &old.file {
        Some(p) => Source::File(p.clone()),
        None => Source::Defaults,
    };
    let config = Config::load(&source, &|k| env(k)).map_err(|e| match e {
        ConfigError::Invalid(errs) => {
            ReloadError::Refused(errs.iter().map(ToString::to_string).collect())
        }
        read @ ConfigError::Read { .. } => ReloadError::Refused(vec![read.to_string()]),
    })?;
    let mut refused = restart_needed(old, &config, &|k| env(k));
    let client = upstream::Client::new(&config.upstream)
        .map_err(|e| refused.push(format!("cannot build the upstream client: {e}")))
        .ok();
    let config = Arc::new(config);
    let notifier = notifier
        .reconfigured(config.clone())
        .map_err(|(sink, e)| refused.push(format!("cannot set up sink `{sink}`: {e}")))
        .ok();
    let jobs = match &config.jobs_file {
        Some(path) => match read_jobs_file(path, &config, &|k| env(k)) {
            Ok(f) => Some(f),
            Err(JobsFileError::Invalid(errs)) => {
                refused.extend(errs.iter().map(ToString::to_string));
                None
            }
            Err(e @ JobsFileError::Read { .. }) => {
                refused.push(crate::telemetry::chain(&e));
                None
            }
        },
        None => None,
    };
    match (client, notifier) {
        (Some(client), Some(notifier)) if refused.is_empty() => Ok(Prepared {
            config,
            client,
            notifier,
            jobs,
        }),
        _ => Err(ReloadError::Refused(refused)),
    }
}

/// Settings bound at start: a change to them needs a restart, so the reload is refused.
fn restart_needed(old: &Config, new: &Config, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let file = new
        .file
        .as_ref()
        .map_or("<defaults>".to_string(), |p| p.display().to_string());
    let text = new
        .file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut check = |path: &[&str], changed: bool, was: String, now: String| {
        if changed {
            out.push(
                Located {
                    file: file.clone(),
                    pos: yaml::locate(&text, path),
                    message: format!(
                        "`{}` changed ({was} → {now}): restart respool to apply it; nothing was reloaded",
                        path.join(".")
                    ),
                }
                .to_string(),
            );
        }
    };
    check(
        &["listen"],
        old.listen != new.listen,
        old.listen.to_string(),
        new.listen.to_string(),
    );
    let (db_old, db_new) = (old.database_url(env), new.database_url(env));
    check(
        &["database"],
        db_old != db_new,
        crate::config::redacted_database_url(&db_old),
        crate::config::redacted_database_url(&db_new),
    );
    check(
        &["webhook", "path"],
        old.webhook.path != new.webhook.path,
        old.webhook.path.clone(),
        new.webhook.path.clone(),
    );
    check(
        &["webhook", "max_body_bytes"],
        old.webhook.max_body_bytes != new.webhook.max_body_bytes,
        old.webhook.max_body_bytes.to_string(),
        new.webhook.max_body_bytes.to_string(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_file_naming_a_set_the_config_lacks_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs.yaml");
        std::fs::write(
            &jobs,
            "jobs:\n  - name: a\n    model: gpt-5\n    input: hi\n    knowledge: [handbook]\n",
        )
        .unwrap();
        let err = read_jobs_file(&jobs, &Config::default(), &|_| None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("jobs.yaml:5"), "{msg}");
        assert!(msg.contains("no knowledge set named `handbook`"), "{msg}");
        let mut config = Config::default();
        config.knowledge.sets.insert(
            "handbook".into(),
            crate::config::KnowledgeSetConfig {
                paths: vec!["docs/*".into()],
            },
        );
        let file = read_jobs_file(&jobs, &config, &|_| None).unwrap();
        assert_eq!(file.jobs[0].knowledge[0].name, "handbook");
    }

    #[test]
    fn restart_needed_names_the_key_and_line() {
        let old = Config::default();
        let mut new = Config {
            listen: "127.0.0.1:9999".parse().unwrap_or(old.listen),
            ..Config::default()
        };
        new.webhook.path = "/hooks".into();
        let lines = restart_needed(&old, &new, &|_| None);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("`listen` changed (127.0.0.1:8080 → 127.0.0.1:9999)"));
        assert!(lines[0].contains("restart"));
        assert!(lines[1].contains("`webhook.path`"));
        assert!(restart_needed(&old, &Config::default(), &|_| None).is_empty());
    }
}
