//! The daemon assembled: store, upstream client, orchestrator and HTTP server, built from a
//! config. [`Application::build`] binds its own port (port 0 in tests), so callers learn the
//! address before anything runs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::inbound::Verifier;
use crate::notify::Notifier;
use crate::orchestrator::{AcceptError, Orchestrator};
use crate::reload::{JobsFileError, Reloader};
use crate::store::{Store, StoreError};
use crate::upstream::{self, UpstreamError};

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
    reloader: Reloader,
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
        let store = Store::connect_with(
            &url,
            &crate::store::ConnectOptions {
                pool_size: config.database_pool,
            },
        )
        .await
        .map_err(|source| StartError::Store {
            url: crate::config::redacted_database_url(&url),
            source,
        })?;
        // `artifacts.dir`, else `artifacts/` beside the database (the store's default), else
        // (a PostgreSQL server's database has no folder here) in the state directory.
        let store = match (&config.artifacts.dir, store.artifact_dir()) {
            (Some(dir), _) => store.with_artifact_dir(dir.clone()),
            (None, Some(_)) => store,
            (None, None) if store.backend() == crate::store::Backend::Postgres => {
                let dir = config.state_dir(env).join("artifacts");
                store.with_artifact_dir(dir)
            }
            (None, None) => store,
        };
        // The create journal of a daemon on PostgreSQL: in the state directory (on SQLite it
        // is beside the database file). A dead daemon's journal is read by the next daemon
        // started on the same host.
        let store = if store.backend() == crate::store::Backend::Postgres {
            let dir = config.state_dir(env).join("respool.created");
            store.with_journal_dir(dir)
        } else {
            store
        };
        let client = upstream::Client::new(&config.upstream).map_err(StartError::Upstream)?;
        // Once per process (tests build many apps): the recorder behind `/metrics`.
        crate::telemetry::install();
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
        // Secrets of the endpoints respool registered itself (`respool webhook register`), from
        // the database: whichever daemon on it stored them.
        let verifier = Arc::new(
            Verifier::new(&config.webhook.secrets)
                .with_clock(clock.clone())
                .with_store(store.clone()),
        );
        let stored = verifier
            .reload_stored()
            .await
            .map_err(|source| StartError::Store {
                url: crate::config::redacted_database_url(&url),
                source,
            })?;
        let jobs_file = config.jobs_file.clone();
        let config = Arc::new(config);
        let notifier = Notifier::new(store.clone(), clock.clone(), config.clone())
            .map_err(|(sink, source)| StartError::Sink { sink, source })?;
        let live = crate::config::Live::new(config);
        let orchestrator =
            Orchestrator::new(store.clone(), client, live.clone(), clock.clone(), notifier);
        orchestrator.set_stored_webhook_secrets(!stored.is_empty());
        match jobs_file {
            Some(path) => {
                load_jobs_file(&orchestrator, &path, env).await?;
            }
            // No jobs file: no schedules (those of an earlier jobs file stop).
            None => {
                orchestrator
                    .sync_schedules(&[])
                    .await
                    .map_err(|e| StartError::Accept(e.into()))?;
            }
        }
        // Reloads read the process environment (the `env` given here may not outlive the build).
        let reloader = Reloader::new(
            orchestrator.clone(),
            verifier.clone(),
            Arc::new(crate::config::process_env),
        );
        let router = http::router(AppState {
            store,
            config: live,
            clock,
            orchestrator: orchestrator.clone(),
            verifier,
            reloader: reloader.clone(),
        });
        Ok(Self {
            listener,
            addr,
            orchestrator,
            router,
            reloader,
        })
    }

    /// The bound address (its port is the real one when the config said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn orchestrator(&self) -> &Orchestrator {
        &self.orchestrator
    }

    /// Reloads the config file and jobs file (for SIGHUP).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
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
        let served = http::serve(self.listener, self.router, shutdown.clone()).await;
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

/// Loads a jobs file into the ledger: its schedules replace the stored ones, and its plain jobs
/// are added. Each job gets an implicit idempotency key from its name and spec, so loading the
/// same file again (every start) adds nothing, and editing a job adds it once more. Returns the
/// number of jobs added.
pub async fn load_jobs_file(
    orch: &Orchestrator,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<usize, StartError> {
    let file = crate::reload::read_jobs_file(path, &orch.config(), env).map_err(|e| match e {
        JobsFileError::Read { path, source } => StartError::ReadJobsFile { path, source },
        invalid @ JobsFileError::Invalid(_) => StartError::JobsFile(invalid.to_string()),
    })?;
    let report = crate::reload::apply_jobs_file(orch, &file)
        .await
        .map_err(StartError::Accept)?;
    Ok(report.jobs_created)
}
