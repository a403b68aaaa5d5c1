//! Runs the upstream simulator on its own, without the rest of the CLI:
//! `cargo run --example sim_server -- --listen 127.0.0.1:8090 --webhook-url http://…`.
//! It takes the same flags as `respool sim` and stops on Ctrl-C or SIGTERM.

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// The simulator's flags.
#[derive(Parser, Debug)]
#[command(name = "sim_server", about = "OpenAI Responses API simulator")]
struct Cli {
    #[command(flatten)]
    sim: respool::sim::SimArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        stop.cancel();
    });
    respool::sim::run(cli.sim, shutdown).await?;
    Ok(())
}
