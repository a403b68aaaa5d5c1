//! The daemons a benchmark measures and the ledger they share: a fresh SQLite file (the
//! default) or a fresh database on a PostgreSQL server (`--database postgres://…`), one
//! `respool serve` or several on it (`--daemons N`), and in front of several a round-robin TCP
//! balancer in the benchmark's process, so that intake, webhooks and API calls spread over the
//! daemons as behind a real load balancer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};

use super::{ChildProc, ProcUsage};

/// The flags both benchmarks take for what they measure.
#[derive(clap::Args)]
pub struct ClusterArgs {
    /// A PostgreSQL server's URL (a superuser's, `postgres://…`): the daemons run on a fresh
    /// database created on it for this run (dropped afterwards unless --keep). Default: a fresh
    /// SQLite file.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// `respool serve` processes on the one database, each with its own port and state
    /// directory, behind a round-robin TCP balancer in this process.
    #[arg(long, default_value_t = 1)]
    pub daemons: usize,
    /// Put the balancer in front of a single daemon too (what the balancer itself costs).
    #[arg(long)]
    pub balancer: bool,
}

impl ClusterArgs {
    /// The setup, for the report's header.
    pub fn describe(&self, ledger: &Ledger) -> String {
        let sqlite_note = if self.daemons > 1 && !ledger.is_postgres() {
            " (several daemons on one SQLite file: supported on one host, but the PostgreSQL setup is what these flags are for)"
        } else {
            ""
        };
        format!(
            "{} daemon{} on {}{}{sqlite_note}",
            self.daemons,
            if self.daemons == 1 { "" } else { "s" },
            ledger.describe(),
            if self.daemons > 1 || self.balancer {
                ", behind a round-robin TCP balancer in this process"
            } else {
                ""
            },
        )
    }
}

/// Where the daemons keep their ledger.
pub enum Ledger {
    /// A fresh SQLite file in the benchmark's temp dir.
    Sqlite(PathBuf),
    /// A fresh database on a PostgreSQL server: its URL, its name and the server's URL (to drop
    /// it afterwards).
    Postgres {
        url: String,
        name: String,
        server: String,
    },
}

impl Ledger {
    /// `database`: a `postgres://` server URL (a superuser's: the benchmark creates a database
    /// on it, as `tests/it/helpers/postgres.rs` does), or none for a SQLite file in `dir`.
    pub async fn create(database: Option<&str>, dir: &Path) -> Result<Self> {
        let Some(server) = database else {
            return Ok(Self::Sqlite(dir.join("respool.db")));
        };
        if !(server.starts_with("postgres://") || server.starts_with("postgresql://")) {
            bail!("--database takes a postgres:// server URL (without it: a fresh SQLite file)");
        }
        let name = format!("respool_bench_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(server).await.with_context(|| {
            format!(
                "cannot reach {}",
                respool::config::redacted_database_url(server)
            )
        })?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"
        )))
        .execute(&mut admin)
        .await
        .with_context(|| format!("cannot create the database {name} (a superuser's URL?)"))?;
        let _ = admin.close().await;
        let mut url = url::Url::parse(server)?;
        url.set_path(&format!("/{name}"));
        Ok(Self::Postgres {
            url: url.to_string(),
            name,
            server: server.to_string(),
        })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }

    /// The `database:` line of the daemons' config.
    pub fn config_line(&self) -> String {
        let value = match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres { url, .. } => url.clone(),
        };
        // A JSON string is a YAML double-quoted scalar.
        format!("database: {}\n", serde_json::Value::String(value))
    }

    /// What the figures are of, for the report (no password).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(_) => "a fresh SQLite file".into(),
            Self::Postgres { url, .. } => format!(
                "a fresh PostgreSQL database, {}",
                respool::config::redacted_database_url(url)
            ),
        }
    }

    /// A connection for the benchmark's own reads (read-only on SQLite, beside the running
    /// daemons: WAL lets a reader in while they write).
    pub async fn connect(&self) -> Result<sqlx::AnyConnection> {
        sqlx::any::install_default_drivers();
        let url = match self {
            Self::Sqlite(path) => format!("sqlite://{}?mode=ro", path.display()),
            Self::Postgres { url, .. } => url.clone(),
        };
        Ok(sqlx::AnyConnection::connect(&url).await?)
    }

    /// The database's size in bytes: file + WAL, or what PostgreSQL reports.
    pub async fn size_bytes(&self) -> Result<u64> {
        match self {
            Self::Sqlite(path) => {
                let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
                Ok(size(path) + size(&path.with_extension("db-wal")))
            }
            Self::Postgres { .. } => {
                let mut conn = self.connect().await?;
                let n: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(&mut conn)
                    .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }
    }

    /// Drops a PostgreSQL database (once the daemons have stopped); a SQLite file goes with the
    /// temp dir.
    pub async fn drop_database(&self) -> Result<()> {
        if let Self::Postgres { name, server, .. } = self {
            let mut admin = sqlx::PgConnection::connect(server).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await?;
            let _ = admin.close().await;
        }
        Ok(())
    }
}

/// Where the daemons will listen, chosen before they start (the simulator must know where to
/// send its webhooks, and the daemons where upstream is, before either runs).
pub struct Plan {
    front: Front,
    ports: Vec<u16>,
    respool: PathBuf,
    dir: PathBuf,
}

enum Front {
    /// One daemon, reached directly.
    Direct(u16),
    /// The balancer's socket, bound already.
    Balancer(TcpListener),
}

impl Plan {
    /// `--daemons` daemons of the binary `respool`, in `dir`; in front of them a balancer when
    /// there are several or `--balancer` asks for one anyway (to measure what it costs).
    pub async fn new(args: &ClusterArgs, respool: &Path, dir: &Path) -> Result<Self> {
        let (daemons, balancer) = (args.daemons, args.balancer);
        if daemons == 0 {
            bail!("--daemons must be at least 1");
        }
        let ports = (0..daemons)
            .map(|_| super::free_port())
            .collect::<Result<Vec<_>>>()?;
        let front = if daemons > 1 || balancer {
            Front::Balancer(TcpListener::bind("127.0.0.1:0").await?)
        } else {
            Front::Direct(ports[0])
        };
        Ok(Self {
            front,
            ports,
            respool: respool.to_path_buf(),
            dir: dir.to_path_buf(),
        })
    }

    /// The URL clients use: the balancer's, or the one daemon's.
    pub fn base_url(&self) -> String {
        let port = match &self.front {
            Front::Direct(port) => *port,
            Front::Balancer(l) => l.local_addr().map_or(0, |a| a.port()),
        };
        format!("http://127.0.0.1:{port}")
    }

    /// Starts `respool serve` once per port, one after the other (the first migrates the
    /// database), each in `dir/respool-I/` (its working and state directory: its create
    /// journal on PostgreSQL, its log), then the balancer. Each one's config: its `listen`,
    /// the `ledger`, `upstream` at that URL, and `rest` (YAML of the other sections).
    pub async fn start(
        self,
        http: &reqwest::Client,
        ledger: &Ledger,
        upstream: &str,
        rest: &str,
    ) -> Result<Cluster> {
        let mut daemons = Vec::new();
        for (i, &port) in self.ports.iter().enumerate() {
            let label = format!("respool-{}", i + 1);
            let state = self.dir.join(&label);
            std::fs::create_dir_all(&state)?;
            let path = state.join("respool.yaml");
            let config = format!(
                "listen: 127.0.0.1:{port}\n{}upstream:\n  base_url: {upstream}\n  api_key: sk-bench\n{rest}",
                ledger.config_line()
            );
            std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
            let config_arg = path.display().to_string();
            let state_arg = state.display().to_string();
            let mut daemon = ChildProc::spawn(
                &label,
                &self.respool,
                &["serve", "--config", &config_arg],
                &state,
                &[("STATE_DIRECTORY", &state_arg)],
            )?;
            daemon
                .wait_healthy(
                    http,
                    &format!("http://127.0.0.1:{port}/healthz"),
                    Duration::from_secs(60),
                )
                .await?;
            daemons.push(daemon);
        }
        let base = self.base_url();
        let balancer = match self.front {
            Front::Direct(_) => None,
            Front::Balancer(listener) => {
                let backends: Vec<SocketAddr> = self
                    .ports
                    .iter()
                    .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                    .collect();
                Some(Balancer::spawn(listener, backends))
            }
        };
        Ok(Cluster {
            daemons,
            base,
            balancer,
        })
    }
}

/// At the end of a run: keeps the temp dir and the database (`keep`) and says where they are,
/// or drops the PostgreSQL database (the temp dir goes when dropped).
pub async fn finish(dir: tempfile::TempDir, ledger: &Ledger, keep: bool) {
    if keep {
        let kept = dir.keep();
        println!(
            "kept {} (respool-*/: each daemon's config and log; the SQLite file) and the ledger: {}",
            kept.display(),
            ledger.describe()
        );
    } else if let Err(e) = ledger.drop_database().await {
        println!("cannot drop the benchmark's database: {e:#}");
    }
}

/// The daemons running, and the balancer in front of them if any.
pub struct Cluster {
    pub daemons: Vec<ChildProc>,
    /// The URL clients use.
    pub base: String,
    pub balancer: Option<Balancer>,
}

impl Cluster {
    /// Fails, with the end of its log, if a daemon has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.daemons
            .iter_mut()
            .try_for_each(ChildProc::check_running)
    }

    pub fn usage(&self) -> GroupUsage {
        GroupUsage::read(&self.daemons)
    }

    /// What the clients reached: "direct" or the connections each daemon was given.
    pub fn front(&self) -> String {
        match &self.balancer {
            None => "clients reach the daemon directly".into(),
            Some(b) => format!(
                "a round-robin TCP balancer in this process (one daemon per accepted connection); connections so far: {}",
                b.connections()
                    .iter()
                    .zip(&self.daemons)
                    .map(|(n, d)| format!("{} {n}", d.label))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Stops every daemon (and then the balancer).
    pub async fn stop(&mut self, grace: Duration) {
        for daemon in &mut self.daemons {
            daemon.stop(grace).await;
        }
        if let Some(b) = self.balancer.take() {
            b.task.abort();
        }
    }

    /// Log lines of every daemon at WARN or ERROR: their count, and the first `n` of each
    /// daemon.
    pub fn log_problems(&self, n: usize) -> Vec<(String, usize, Vec<String>)> {
        self.daemons
            .iter()
            .map(|d| {
                let text = std::fs::read_to_string(&d.log).unwrap_or_default();
                let bad: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                    .collect();
                let first = bad.iter().take(n).map(|l| l.to_string()).collect();
                (d.label.clone(), bad.len(), first)
            })
            .collect()
    }

    /// Prints [`Self::log_problems`].
    pub fn print_log_problems(&self, n: usize) {
        for (label, count, first) in self.log_problems(n) {
            if count == 0 {
                println!("{label} log: no WARN or ERROR lines");
                continue;
            }
            println!(
                "{label} log: {count} WARN/ERROR lines; the first {}:",
                first.len()
            );
            for line in first {
                println!("    {line}");
            }
        }
    }
}

/// A round-robin TCP balancer: each accepted connection goes to the next backend, bytes copied
/// both ways until either side closes.
pub struct Balancer {
    task: tokio::task::JoinHandle<()>,
    counts: Arc<Vec<AtomicUsize>>,
}

impl Balancer {
    pub fn spawn(listener: TcpListener, backends: Vec<SocketAddr>) -> Self {
        let counts: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let task = tokio::spawn({
            let counts = counts.clone();
            async move {
                let mut next = 0;
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    let i = next % backends.len();
                    next += 1;
                    counts[i].fetch_add(1, Ordering::Relaxed);
                    let to = backends[i];
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(to).await else {
                            return;
                        };
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                }
            }
        });
        Self { task, counts }
    }

    /// Connections handed to each backend so far.
    pub fn connections(&self) -> Vec<usize> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// CPU time and memory of a group of processes (the daemons, or the one ceiling) at one moment.
#[derive(Clone)]
pub struct GroupUsage {
    /// Label, pid and usage of each (none without `/proc`).
    pub each: Vec<(String, u32, Option<ProcUsage>)>,
}

impl GroupUsage {
    pub fn read(procs: &[ChildProc]) -> Self {
        Self {
            each: procs
                .iter()
                .map(|p| (p.label.clone(), p.pid(), p.usage()))
                .collect(),
        }
    }

    /// The sum over the group (peak RSS: the sum of each one's peak), if every one is known.
    pub fn total(&self) -> Option<ProcUsage> {
        let mut sum = ProcUsage {
            cpu_seconds: 0.0,
            peak_rss_kib: 0,
            rss_kib: 0,
        };
        for (_, _, u) in &self.each {
            let u = (*u)?;
            sum.cpu_seconds += u.cpu_seconds;
            sum.peak_rss_kib += u.peak_rss_kib;
            sum.rss_kib += u.rss_kib;
        }
        Some(sum)
    }

    /// CPU seconds of the group since `before`.
    pub fn cpu_since(&self, before: &Self) -> Option<f64> {
        Some(self.total()?.cpu_seconds - before.total()?.cpu_seconds)
    }

    /// One line per process: its CPU since `before` and its peak RSS.
    pub fn per_process(&self, before: &Self) -> Vec<String> {
        self.each
            .iter()
            .zip(&before.each)
            .map(
                |((label, pid, after), (_, _, before))| match (after, before) {
                    (Some(a), Some(b)) => format!(
                        "{label} (pid {pid}): {:.2} s CPU, peak RSS {:.1} MiB",
                        a.cpu_seconds - b.cpu_seconds,
                        a.peak_rss_mib()
                    ),
                    _ => format!("{label} (pid {pid}): unknown (no /proc)"),
                },
            )
            .collect()
    }
}
