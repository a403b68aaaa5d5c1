//! The daemon assembled: store, upstream client, orchestrator and HTTP server, built from a
//! config. [`Application::build`] binds its own port (port 0 in tests), so callers learn the
//! address before anything runs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::clock::Clock;
use crate::config::Config;
use crate::job::spec::parse_jobs_file;
use crate::notify::Notifier;
use crate::orchestrator::{AcceptError, Orchestrator};
use crate::store::{InsertOutcome, Store, StoreError};
use crate::upstream::{self, UpstreamError};
use crate::webhook::Verifier;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database {url}")]
    Store {
        url: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up sink `{sink}`")]
    Sink {
        sink: String,
        #[source]
        source: crate::notify::SinkError,
    },
    #[error("cannot build the upstream client")]
    Upstream(#[source] UpstreamError),
    #[error("the jobs file is invalid:\n{0}")]
    JobsFile(String),
    #[error("cannot read the jobs file {path}")]
    ReadJobsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the jobs file")]
    Accept(#[source] AcceptError),
}

/// A built, not yet running, daemon.
pub struct Application {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    orchestrator: Orchestrator,
    router: axum::Router,
}

impl Application {
    /// Opens the store (running migrations), binds the listener and wires everything.
    pub async fn build(config: Config, clock: Clock) -> Result<Self, StartError> {
        Self::build_with_env(config, clock, &crate::config::process_env).await
    }

    /// As [`Application::build`], reading variables (for the default database location and
    /// the jobs file) through `env`.
    pub async fn build_with_env(
        config: Config,
        clock: Clock,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, StartError> {
        let url = config.database_url(env);
        let store = Store::connect(&url)
            .await
            .map_err(|source| StartError::Store {
                url: url.clone(),
                source,
            })?;
        let client = upstream::Client::new(&config.upstream).map_err(StartError::Upstream)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let verifier = Arc::new(Verifier::new(&config.webhook.secrets));
        let jobs_file = config.jobs_file.clone();
        let config = Arc::new(config);
        let notifier = Notifier::new(store.clone(), clock.clone(), config.clone())
            .map_err(|(sink, source)| StartError::Sink { sink, source })?;
        let orchestrator = Orchestrator::new(store, client, config, clock, notifier);
        if let Some(path) = jobs_file {
            load_jobs_file(&orchestrator, &path, env).await?;
        }
        let router = api::router(AppState {
            orchestrator: orchestrator.clone(),
            verifier,
        });
        Ok(Self {
            listener,
            addr,
            orchestrator,
            router,
        })
    }

    /// The bound address (its port is the real one when the config said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn orchestrator(&self) -> &Orchestrator {
        &self.orchestrator
    }

    /// Serves and runs the workers until `shutdown`; then stops taking requests, lets the
    /// work in flight write its results, and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(addr = %self.addr, "respool listening");
        let orch = self.orchestrator.clone();
        let workers = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { orch.run(shutdown).await }
        });
        crate::systemd::ready();
        let stopping = shutdown.clone();
        let served = api::serve(self.listener, self.router, shutdown.clone()).await;
        crate::systemd::stopping();
        stopping.cancel();
        if let Err(e) = workers.await {
            tracing::error!(error = %e, "the orchestrator task failed");
        }
        self.orchestrator.store().close().await;
        tracing::info!("respool stopped");
        served
    }
}

/// Loads a jobs file into the ledger. Each job gets an implicit idempotency key from its name
/// and spec, so loading the same file again (every start) adds nothing, and editing a job adds
/// it once more.
pub async fn load_jobs_file(
    orch: &Orchestrator,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<usize, StartError> {
    let text = std::fs::read_to_string(path).map_err(|source| StartError::ReadJobsFile {
        path: path.display().to_string(),
        source,
    })?;
    let specs = parse_jobs_file(&path.display().to_string(), &text, env).map_err(|errs| {
        StartError::JobsFile(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let mut created = 0;
    for mut spec in specs {
        if spec.idempotency_key.is_none() {
            let hash = crate::orchestrator::spec_hash(&spec);
            spec.idempotency_key = Some(format!("jobs-file:{}:{}", spec.name, &hash[..16]));
        }
        if let InsertOutcome::Created(_) = orch
            .accept(spec, "jobs file")
            .await
            .map_err(StartError::Accept)?
        {
            created += 1;
        }
    }
    tracing::info!(path = %path.display(), created, "jobs file loaded");
    Ok(created)
}
