//! `respool db backup FILE` and `respool db vacuum` (over REST, while the daemon runs).
//!
//! The daemon makes the copy (`VACUUM INTO`: one consistent snapshot, writers carry on) and
//! streams it here; this side writes `FILE.partial`, checks it is a SQLite file and renames it
//! into place, so `FILE` is never a half-written backup. Going through the daemon means the
//! command works wherever the API is reachable and needs no access to the database file
//! (under systemd it belongs to the service). With the daemon stopped, copying the file is a
//! backup too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{ApiClient, ServerArgs};

/// Generous: a backup or a vacuum of a large database takes a while.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Write a consistent copy of the daemon's database to FILE, while it runs.
    Backup(BackupArgs),
    /// Rebuild the database file to give back the space of deleted rows (writes wait meanwhile).
    Vacuum(VacuumArgs),
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where to write the backup (a SQLite file).
    pub file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct VacuumArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn run(config: Option<&Path>, cmd: DbCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DbCommand::Backup(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let bytes = backup(&client, &a.file, a.force).await?;
            if a.server.json {
                let v = serde_json::json!({"file": a.file.display().to_string(), "bytes": bytes});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("backup written to {} ({bytes} bytes)", a.file.display());
            }
        }
        DbCommand::Vacuum(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let report: Value = client.post_slow("/v1/admin/vacuum", ADMIN_TIMEOUT).await?;
            if a.server.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "database vacuumed: {} → {} bytes",
                    report["bytes_before"], report["bytes_after"]
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Downloads a backup from the daemon into `file`; returns its size.
pub async fn backup(client: &ApiClient, file: &Path, force: bool) -> anyhow::Result<u64> {
    if file.exists() && !force {
        bail!(
            "{} exists; choose another file or pass --force",
            file.display()
        );
    }
    let mut partial = file.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result = async {
        let mut out = tokio::fs::File::create(&partial)
            .await
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let bytes = client
            .download("/v1/admin/backup", &mut out, ADMIN_TIMEOUT)
            .await?;
        out.sync_all().await?;
        drop(out);
        let mut head = [0u8; 16];
        let mut f = tokio::fs::File::open(&partial).await?;
        tokio::io::AsyncReadExt::read_exact(&mut f, &mut head)
            .await
            .context("the backup is too short to be a SQLite file")?;
        if &head != b"SQLite format 3\0" {
            bail!("the daemon's answer is not a SQLite file");
        }
        tokio::fs::rename(&partial, file)
            .await
            .with_context(|| format!("cannot write {}", file.display()))?;
        Ok(bytes)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result
}
