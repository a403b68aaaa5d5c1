//! `/v1/admin/backup` and `/v1/admin/vacuum`: the database, while the daemon runs.
//!
//! A backup is made by the daemon (`VACUUM INTO` through the store: one consistent snapshot,
//! writers carry on) into a temporary file next to the database, then streamed to the caller,
//! who decides where it goes. So `respool db backup FILE` works from any machine that can
//! reach the API, with the daemon's own file permissions (systemd's `DynamicUser` included), and
//! no API caller can make the daemon write to a path of its choosing.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio_util::io::ReaderStream;

use super::error::ErrorBody;
use super::{ApiError, ApiState};

/// What a vacuum did.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VacuumReport {
    /// Always `vacuum`.
    pub object: String,
    /// The size of the database file and its write-ahead log before and after, in bytes.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// A consistent copy of the whole database (a SQLite file), streamed. The daemon keeps
/// working meanwhile.
#[utoipa::path(get, path = "/v1/admin/backup", tag = "admin",
    responses((status = 200, description = "the SQLite database file", content_type = "application/vnd.sqlite3"),
              (status = 409, description = "The database is not a file (in memory)", body = ErrorBody),
              (status = 500, body = ErrorBody)))]
pub async fn backup(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let orch = &state.orchestrator;
    let Some(db) = state.store.database_file().await? else {
        return Err(ApiError::state_conflict(
            "the database is not a file of this daemon (in memory, or a PostgreSQL server: \
             back that up with pg_dump); there is nothing to back up here",
            None,
        ));
    };
    let dir = db.parent().map_or_else(
        || std::path::PathBuf::from("."),
        std::path::Path::to_path_buf,
    );
    let tmp = dir.join(format!(".respool-backup-{}.db", ulid::Ulid::new()));
    if let Err(e) = orch.backup_to(&tmp).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e.into());
    }
    let opened = tokio::fs::File::open(&tmp).await;
    let len = match &opened {
        Ok(f) => f.metadata().await.map(|m| m.len()).ok(),
        Err(_) => None,
    };
    // Unlinked at once: the open handle still reads it, and nothing is left behind if the
    // client goes away mid-download.
    if let Err(e) = tokio::fs::remove_file(&tmp).await {
        tracing::warn!(error = %e, path = %tmp.display(), "cannot remove the temporary backup file");
    }
    let file = opened.map_err(|e| ApiError::internal(&e))?;
    let name = format!("respool-{}.db", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/vnd.sqlite3")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        );
    if let Some(len) = len {
        resp = resp.header(header::CONTENT_LENGTH, len);
    }
    resp.body(Body::from_stream(ReaderStream::new(file)))
        .map_err(|e| ApiError::internal(&e))
}

/// Rebuilds the database file to give back the space of deleted rows (after a retention
/// prune, say). Writes wait while it runs.
#[utoipa::path(post, path = "/v1/admin/vacuum", tag = "admin",
    responses((status = 200, body = VacuumReport), (status = 500, body = ErrorBody)))]
pub async fn vacuum(State(state): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let store = state.store;
    let file = store.database_file().await?;
    let size = |f: &Option<std::path::PathBuf>| {
        f.as_ref().map_or(0, |p| {
            let mut wal = p.clone().into_os_string();
            wal.push("-wal");
            [p.clone(), wal.into()]
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
    };
    let bytes_before = size(&file);
    store.vacuum().await?;
    tracing::info!(bytes_before, bytes_after = size(&file), "database vacuumed");
    Ok(axum::Json(VacuumReport {
        object: "vacuum".into(),
        bytes_before,
        bytes_after: size(&file),
    }))
}
