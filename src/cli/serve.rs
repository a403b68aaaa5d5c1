//! `respool serve`, `respool check` and `respool sim`: logging, config loading and signals.

use std::path::Path;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::{CheckArgs, LogFormat};
use crate::app::Application;
use crate::clock::Clock;
use crate::config::{Config, ConfigError, Located, Source, process_env};
use crate::job::spec::{locate_field, parse_jobs_file};

pub use super::logging::init_logging;

/// Cancels the token on SIGTERM or SIGINT; a second signal exits at once.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_signal().await;
        tracing::info!("shutting down: stop taking work, let what is in flight finish");
        t.cancel();
        wait_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    token
}

async fn wait_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Loads the config the way `serve` does, printing located errors.
pub fn load_config(path: Option<&Path>) -> Result<Config, ConfigError> {
    let source = Config::discover(path, &process_env);
    if let Source::File(p) = &source {
        tracing::info!(path = %p.display(), "config file");
    }
    Config::load(&source, &process_env)
}

pub async fn serve(path: Option<&Path>, log: LogFormat) -> anyhow::Result<ExitCode> {
    init_logging(log);
    // Taken over first: from here a SIGHUP waits for the daemon and reloads it, where the
    // default action would have ended the process.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let config = match load_config(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if config.upstream.api_key.is_none() {
        tracing::warn!(
            "no upstream API key (set upstream.api_key, the openai-api-key credential or OPENAI_API_KEY)"
        );
    }
    if config.webhook.secrets.is_empty() {
        tracing::warn!("no webhook secret: completion is learned by polling only");
    }
    let shutdown = shutdown_on_signals();
    let app = Application::build(config, Clock::system()).await?;
    reload_on_hangup(hangups, app.reloader(), shutdown.clone());
    app.run_until_stopped(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Reloads the config file the daemon started with (remembered in its config) and the jobs
/// file on every SIGHUP, until shutdown. The reload logs its outcome; a refused one changes
/// nothing.
fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    reloader: crate::reload::Reloader,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                got = hangups.recv() => {
                    if got.is_none() {
                        break;
                    }
                    tracing::info!("SIGHUP: reloading the config and the jobs file");
                    let _ = reloader.reload().await;
                }
            }
        }
    });
}

pub fn check(path: Option<&Path>, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let source = Config::discover(path, &process_env);
    let name = match &source {
        Source::File(p) => p.display().to_string(),
        Source::Defaults => "built-in defaults".to_string(),
    };
    let config = match Config::load(&source, &process_env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("config OK ({name})");
    let Some(jobs) = args.jobs.or(config.jobs_file.clone()) else {
        return Ok(ExitCode::SUCCESS);
    };
    let text = match std::fs::read_to_string(&jobs) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", jobs.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    match parse_jobs_file(
        &jobs.display().to_string(),
        &text,
        &process_env,
        &crate::reload::beside(&jobs),
    ) {
        Ok(specs) => {
            // On success the specs are the file's `jobs` entries, in order.
            let unknown: Vec<String> = specs
                .iter()
                .enumerate()
                .flat_map(|(i, s)| {
                    s.sink_names()
                        .filter(|n| !config.sinks.contains_key(*n))
                        .map(move |n| (i, s.name.clone(), n))
                })
                .map(|(i, job, sink)| {
                    Located {
                        file: jobs.display().to_string(),
                        pos: crate::yaml::locate(&text, &["jobs", &i.to_string(), "notify"]),
                        message: format!(
                            "job `{job}`: field `notify`: no sink named `{sink}` is configured"
                        ),
                    }
                    .to_string()
                })
                .collect();
            if !unknown.is_empty() {
                eprintln!("{}", unknown.join("\n"));
                return Ok(ExitCode::FAILURE);
            }
            // Fields OpenAI's schema does not name pass through: worth a look, not a failure.
            for (i, spec) in specs.iter().enumerate() {
                for w in spec.warnings() {
                    let located = Located {
                        file: jobs.display().to_string(),
                        pos: locate_field(&text, &i.to_string(), &w.field),
                        message: format!("warning: job `{}`: {w}", spec.name),
                    };
                    eprintln!("{located}");
                }
            }
            let scheduled = specs.iter().filter(|s| s.schedule.is_some()).count();
            println!(
                "jobs file OK ({}: {} jobs, {scheduled} of them scheduled)",
                jobs.display(),
                specs.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            for e in errs {
                eprintln!("{e}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(feature = "sim")]
pub async fn sim(args: crate::sim::SimArgs, log: LogFormat) -> anyhow::Result<ExitCode> {
    init_logging(log);
    let shutdown = shutdown_on_signals();
    crate::sim::run(args, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
