//! The `respool` command: clap definitions and one file per subcommand group. The daemon
//! commands (`serve`, `demo`, `sim`, `check`) run in process; the client commands (`submit`,
//! `jobs …`, `webhook …`) talk to a daemon over its REST API; `completions` and `man` print
//! what clap generates from these definitions.

mod budget;
mod client;
mod db;
#[cfg(feature = "sim")]
mod demo;
mod endpoints;
mod jobs;
mod logging;
mod manual;
mod notifications;
mod output;
mod pager;
mod reload;
pub mod runtime;
mod schedules;
mod serve;
mod stats;
mod submit;
mod watch;

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
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// `journald` when stderr is the journal (`$JOURNAL_STREAM`), else `pretty`.
    Auto,
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
    /// For systemd's journal: `<6>message key=value`, no timestamp, the level as a priority.
    Journald,
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
    /// Webhook endpoints upstream: register this daemon, rotate the secret, send a test event.
    #[command(subcommand)]
    Webhook(endpoints::WebhookCommand),
    /// List the jobs file's schedules: cron, time zone, next and last run, policies.
    Schedules(schedules::SchedulesArgs),
    /// Spend today and this month against the budget, and the jobs it holds.
    Budget(budget::BudgetArgs),
    /// Jobs, statuses, tokens and cost since a time, by model, day or name.
    Stats(stats::StatsArgs),
    /// The daemon's database: an online backup, or a vacuum.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Make the daemon re-read its config file and jobs file (as SIGHUP does).
    Reload(reload::ReloadArgs),
    /// Validate the config (and a jobs file) and print every problem found.
    Check(CheckArgs),
    /// Run the OpenAI simulator.
    #[cfg(feature = "sim")]
    Sim(crate::sim::SimArgs),
    /// Run the daemon against the built-in simulator with the example jobs, then exit.
    #[cfg(feature = "sim")]
    Demo(demo::DemoArgs),
    /// Print a shell completion script.
    ///
    /// For example: `respool completions bash > /etc/bash_completion.d/respool`.
    Completions(manual::CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory.
    Man(manual::ManArgs),
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
        #[cfg(feature = "sim")]
        Command::Sim(args) => serve::sim(args, cli.log_format).await,
        #[cfg(feature = "sim")]
        Command::Demo(args) => demo::demo(args, cli.log_format).await,
        Command::Submit(args) => submit::submit(cli.config.as_deref(), args).await,
        Command::Jobs(cmd) => jobs::run(cli.config.as_deref(), cmd).await,
        Command::Notifications(cmd) => notifications::run(cli.config.as_deref(), cmd).await,
        Command::Schedules(args) => schedules::run(cli.config.as_deref(), args).await,
        Command::Reload(args) => reload::run(cli.config.as_deref(), args).await,
        Command::Budget(args) => budget::run(cli.config.as_deref(), args).await,
        Command::Stats(args) => stats::run(cli.config.as_deref(), args).await,
        Command::Db(cmd) => db::run(cli.config.as_deref(), cmd).await,
        Command::Webhook(cmd) => endpoints::run(cli.config.as_deref(), cmd).await,
        Command::Completions(args) => manual::completions(args),
        Command::Man(args) => manual::man(args),
        Command::Notify(notifications::NotifyCommand::Test(a)) => {
            serve::init_logging(cli.log_format);
            notifications::test(cli.config.as_deref(), a).await
        }
    }
}
