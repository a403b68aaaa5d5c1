//! Signing secrets of the webhook endpoints respool registered upstream itself: the current
//! secret of each endpoint (no expiry) and old ones kept through a rotation (until their
//! `expires_at`). The receiver's `Verifier` (`inbound`) is loaded from
//! [`Store::active_webhook_secrets`], by every daemon on the database, and each orchestrator
//! pass asks [`Store::has_active_webhook_secrets`].

use crate::store::sql;
use secrecy::SecretString;
use sqlx::FromRow;

use super::{Store, StoreError};

/// A stored secret. Its `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct StoredSecret {
    pub id: i64,
    pub endpoint_id: String,
    pub secret: SecretString,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

#[derive(FromRow)]
struct SecretRow {
    id: i64,
    endpoint_id: String,
    secret: String,
    created_at: i64,
    expires_at: Option<i64>,
}

impl From<SecretRow> for StoredSecret {
    fn from(r: SecretRow) -> Self {
        Self {
            id: r.id,
            endpoint_id: r.endpoint_id,
            secret: SecretString::from(r.secret),
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

impl Store {
    /// Stores the secret of a newly registered endpoint.
    pub async fn insert_webhook_secret(
        &self,
        endpoint_id: &str,
        secret: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        Ok(sql::query_scalar(
            "INSERT INTO webhook_secrets (endpoint_id, secret, created_at) VALUES (?, ?, ?) \
             RETURNING id",
        )
        .bind(endpoint_id)
        .bind(secret)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Records a rotation in one transaction: every active secret of the endpoint is accepted
    /// until `old_until` at the latest (an earlier expiry stays), and `secret` becomes current.
    pub async fn rotate_webhook_secret(
        &self,
        endpoint_id: &str,
        secret: &str,
        now: i64,
        old_until: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        sql::query(
            "UPDATE webhook_secrets SET expires_at = ? \
             WHERE endpoint_id = ? AND active = 1 AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(old_until)
        .bind(endpoint_id)
        .bind(old_until)
        .execute(&mut *tx)
        .await?;
        let id: i64 = sql::query_scalar(
            "INSERT INTO webhook_secrets (endpoint_id, secret, created_at) VALUES (?, ?, ?) \
             RETURNING id",
        )
        .bind(endpoint_id)
        .bind(secret)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Retires the secrets whose expiry has passed; returns how many.
    pub async fn retire_expired_webhook_secrets(&self, now: i64) -> Result<u64, StoreError> {
        // Looked for first with a read: most calls (every API look at the secrets, each
        // daemon's periodic refresh) find nothing to retire and need not wait for the lock.
        let due: Option<i64> = sql::query_scalar(
            "SELECT 1 FROM webhook_secrets \
             WHERE active = 1 AND expires_at IS NOT NULL AND expires_at <= ? LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.reads)
        .await?;
        if due.is_none() {
            return Ok(0);
        }
        // Under the write lock: many rows at once, which a rotation in another daemon may be
        // taking in another order (on PostgreSQL, a deadlock).
        self.execute_locked(
            sql::query(
                "UPDATE webhook_secrets SET active = 0 \
                 WHERE active = 1 AND expires_at IS NOT NULL AND expires_at <= ?",
            )
            .bind(now),
        )
        .await
    }

    /// Whether any stored secret is accepted at `now` (so webhooks can arrive at all).
    pub async fn has_active_webhook_secrets(&self, now: i64) -> Result<bool, StoreError> {
        let any: Option<i64> = sql::query_scalar(
            "SELECT 1 FROM webhook_secrets \
             WHERE active = 1 AND (expires_at IS NULL OR expires_at > ?) LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.reads)
        .await?;
        Ok(any.is_some())
    }

    /// The secrets accepted at `now`, newest first.
    pub async fn active_webhook_secrets(&self, now: i64) -> Result<Vec<StoredSecret>, StoreError> {
        let rows = sql::query_as::<SecretRow>(
            "SELECT id, endpoint_id, secret, created_at, expires_at FROM webhook_secrets \
             WHERE active = 1 AND (expires_at IS NULL OR expires_at > ?) ORDER BY id DESC",
        )
        .bind(now)
        .fetch_all(&self.reads)
        .await?;
        Ok(rows.into_iter().map(StoredSecret::from).collect())
    }
}
