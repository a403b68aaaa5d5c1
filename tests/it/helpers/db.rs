//! The daemon's SQLite file seen behind its back: connections of the test's own (never the
//! daemon's pool), to read what the API does not show or to plant rows the API cannot make.

use std::path::Path;

use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteConnectOptions;

/// A read-only connection to `db`.
pub async fn read_only(db: &Path) -> SqliteConnection {
    let opts = SqliteConnectOptions::new().filename(db).read_only(true);
    <SqliteConnection as sqlx::Connection>::connect_with(&opts)
        .await
        .unwrap()
}

/// A connection that may write to `db` (waiting up to 10 s for the daemon's lock).
pub async fn writer(db: &Path) -> SqliteConnection {
    let opts = SqliteConnectOptions::new()
        .filename(db)
        .busy_timeout(std::time::Duration::from_secs(10));
    <SqliteConnection as sqlx::Connection>::connect_with(&opts)
        .await
        .unwrap()
}

/// Closes `conn`, so the file's lock and WAL are released before the daemon's next step.
pub async fn close(conn: SqliteConnection) {
    let _ = sqlx::Connection::close(conn).await;
}

/// A connection of the test's own to `url`, the daemon's database on either backend
/// (`TestApp::db_url`): statements on it number their placeholders (`$1`), which SQLite and
/// PostgreSQL both take.
pub async fn open(url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot open the test database: {e}"))
}

/// Closes a connection [`open`] gave.
pub async fn close_any(conn: sqlx::AnyConnection) {
    let _ = sqlx::Connection::close(conn).await;
}

/// Runs `f` on a connection [`open`] gives, then closes it.
pub async fn read_any<T>(url: &str, f: impl AsyncFnOnce(&mut sqlx::AnyConnection) -> T) -> T {
    let mut conn = open(url).await;
    let out = f(&mut conn).await;
    close_any(conn).await;
    out
}
