//! The `respool` binary: parse the command line, run it, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = respool::cli::Cli::parse();
    match respool::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("respool: {e:#}");
            ExitCode::FAILURE
        }
    }
}
