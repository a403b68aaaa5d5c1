//! Wake-ups between daemons that share one PostgreSQL database (`LISTEN`/`NOTIFY`).
//!
//! A daemon finds due work by reading the tables, at least once a second. When it writes work
//! another daemon could take (a new job, a cancel, a job's end that frees a slot of a shared
//! limit), it also sends a `NOTIFY` on [`CHANNEL`], whose payload is its own instance id; the
//! others `LISTEN` on a connection of their own and look at once. A notification is only a
//! hint: one lost while a listener reconnects costs at most the second the workers sleep.
//! SQLite has one daemon per host and nothing to send.

use std::sync::Arc;

use super::{Backend, Store, StoreError, sql};

/// The channel every daemon of a database listens on.
pub const CHANNEL: &str = "respool_wake";

/// A PostgreSQL URL kept to open the listening connection; never printed (it may hold a
/// password).
#[derive(Clone)]
pub(super) struct ListenUrl(pub(super) Arc<str>);

impl std::fmt::Debug for ListenUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenUrl(..)")
    }
}

/// A connection listening for other daemons' wake-ups.
pub struct PeerListener {
    listener: sqlx::postgres::PgListener,
    me: String,
}

impl Store {
    /// Tells the other daemons on this database to look for work now (nothing on SQLite).
    /// `me` is the sender's instance id: its own listener skips it.
    pub async fn notify_peers(&self, me: &str) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        sql::query("SELECT pg_notify(?, ?)")
            .bind(CHANNEL)
            .bind(me)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A connection of its own listening for other daemons' wake-ups; `None` on SQLite.
    pub async fn listen_to_peers(&self, me: &str) -> Result<Option<PeerListener>, StoreError> {
        let Some(url) = &self.listen_url else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect(&url.0).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(PeerListener {
            listener,
            me: me.to_string(),
        }))
    }
}

impl PeerListener {
    /// Waits for the next wake-up another daemon sent. A lost connection is opened again on
    /// the next call (what was sent meanwhile is lost: the workers' own look finds it).
    pub async fn next(&mut self) -> Result<(), StoreError> {
        loop {
            let n = self.listener.recv().await?;
            if n.payload() != self.me {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_has_no_peers_to_tell_or_hear() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.notify_peers("me").await.unwrap();
        assert!(store.listen_to_peers("me").await.unwrap().is_none());
        // The URL is never printed with the store (a PostgreSQL one may hold a password).
        let url = ListenUrl("postgres://u:hunter2@db/respool".into());
        assert!(!format!("{url:?}").contains("hunter2"));
    }
}
