//! A fresh PostgreSQL database per test, on the server `RESPOOL_TEST_POSTGRES` names (a
//! superuser's URL; `.ci/postgres start` prints one). Tests that need PostgreSQL take
//! [`fresh_database`]; without the variable they have nothing to run against, and say so.

use sqlx::Connection;

/// The server's URL, when the run has one.
pub fn server() -> Option<String> {
    std::env::var("RESPOOL_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The server to run the whole suite's daemons on, when the run is on PostgreSQL
/// (`RESPOOL_TEST_BACKEND=postgres`): each test app gets a fresh database on it.
pub fn suite_server() -> Option<String> {
    if std::env::var("RESPOOL_TEST_BACKEND").as_deref() != Ok("postgres") {
        return None;
    }
    Some(server().expect("RESPOOL_TEST_BACKEND=postgres needs RESPOOL_TEST_POSTGRES"))
}

/// A new, empty database on the test server, and its URL.
pub async fn fresh_database(server: &str) -> String {
    let name = format!("respool_test_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    let mut url = url::Url::parse(server).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}
