//! The `respool` command: clap definitions and one file per subcommand group. The daemon
//! commands (`serve`, `demo`, `sim`, `check`) run in process; the client commands (`submit`,
//! `jobs …`) talk to a daemon over its REST API.

mod client;
mod demo;
mod jobs;
mod notifications;
mod output;
mod serve;
mod submit;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use client::ApiClient;

/// Runs long OpenAI Responses API jobs in background mode and sees them through.
#[derive(Parser, Debug)]
#[command(name = "respool", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file (default: $RESPOOL_CONFIG, ./respool.yaml, /etc/respool/respool.yaml).
    #[arg(long, short, global = true, env = "RESPOOL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon.
    Serve,
    /// Submit jobs (a jobs file, or one job from flags) to a running daemon.
    Submit(submit::SubmitArgs),
    /// Inspect and manage jobs on a running daemon.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Inspect the notification outbox: list, dead letters, retry.
    #[command(subcommand)]
    Notifications(notifications::NotificationsCommand),
    /// Notification sinks: send a test message.
    #[command(subcommand)]
    Notify(notifications::NotifyCommand),
    /// Validate the config (and a jobs file) and print every problem found.
    Check(CheckArgs),
    /// Run the OpenAI simulator.
    Sim(crate::sim::SimArgs),
    /// Run the daemon against the built-in simulator with the example jobs, then exit.
    Demo(demo::DemoArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// A jobs file to validate too (default: the config's `jobs_file`).
    #[arg(long)]
    pub jobs: Option<PathBuf>,
}

/// Where client commands find the daemon.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// The daemon's base URL (default: from the config's `listen`).
    #[arg(long, env = "RESPOOL_SERVER")]
    pub server: Option<String>,
    /// API token (when the daemon has `api.tokens`).
    #[arg(long, env = "RESPOOL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs the parsed command; the exit code says how it went.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve => serve::serve(cli.config.as_deref(), cli.log_format).await,
        Command::Check(args) => serve::check(cli.config.as_deref(), args),
        Command::Sim(args) => serve::sim(args, cli.log_format).await,
        Command::Demo(args) => demo::demo(args, cli.log_format).await,
        Command::Submit(args) => submit::submit(cli.config.as_deref(), args).await,
        Command::Jobs(cmd) => jobs::run(cli.config.as_deref(), cmd).await,
        Command::Notifications(cmd) => notifications::run(cli.config.as_deref(), cmd).await,
        Command::Notify(notifications::NotifyCommand::Test(a)) => {
            serve::init_logging(cli.log_format);
            notifications::test(cli.config.as_deref(), a).await
        }
    }
}
