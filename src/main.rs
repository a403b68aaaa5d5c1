//! The `respool` binary: parse the command line, run it, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = respool::cli::Cli::parse();
    let runtime = match respool::cli::runtime::build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("respool: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(respool::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("respool: {e:#}");
            ExitCode::FAILURE
        }
    }
}
