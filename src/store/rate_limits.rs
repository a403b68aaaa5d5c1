//! The upstream rate-limit windows, one row per model (`rate_limit_windows`): written when a
//! create's answer carries `x-ratelimit-*` headers, read before each round of claims. Kept
//! here rather than in a daemon's memory so that several daemons on one database hold back
//! creates on the same, newest observation (the decision itself is
//! [`ratelimit::waits`](crate::upstream::ratelimit::waits), a pure function).

use super::lending::Conn;
use crate::store::sql;
use sqlx::FromRow;

use super::{Store, StoreError};
use crate::upstream::RateWindow;

#[derive(FromRow)]
struct WindowRow {
    model: String,
    remaining_requests: Option<i64>,
    remaining_tokens: Option<i64>,
    requests_reset_at: i64,
    tokens_reset_at: i64,
    observed_at: i64,
}

impl From<WindowRow> for RateWindow {
    fn from(r: WindowRow) -> Self {
        // Counts are stored from u64s; a negative one (written by hand) counts as none left.
        let count = |n: Option<i64>| n.map(|n| u64::try_from(n).unwrap_or(0));
        Self {
            model: r.model,
            remaining_requests: count(r.remaining_requests),
            remaining_tokens: count(r.remaining_tokens),
            requests_reset_at: r.requests_reset_at,
            tokens_reset_at: r.tokens_reset_at,
            observed_at: r.observed_at,
        }
    }
}

impl Store {
    /// Records a model's rate-limit window, unless a newer observation is already stored.
    pub async fn record_rate_window(&self, w: &RateWindow) -> Result<(), StoreError> {
        self.record_rate_windows(std::slice::from_ref(w)).await
    }

    /// Records rate-limit windows in one transaction (one commit for a burst of creates),
    /// each unless a newer observation of its model is stored or comes earlier in `windows`.
    pub async fn record_rate_windows(&self, windows: &[RateWindow]) -> Result<(), StoreError> {
        if windows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for w in windows {
            upsert_window(&mut tx, w).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The windows not yet over at `now` (one of their limits still resetting), by model.
    pub async fn live_rate_windows(&self, now: i64) -> Result<Vec<RateWindow>, StoreError> {
        let rows = sql::query_as::<WindowRow>(
            "SELECT model, remaining_requests, remaining_tokens, requests_reset_at, \
             tokens_reset_at, observed_at FROM rate_limit_windows \
             WHERE requests_reset_at > ? OR tokens_reset_at > ? ORDER BY model",
        )
        .bind(now)
        .bind(now)
        .fetch_all(self.reads.quick())
        .await?;
        Ok(rows.into_iter().map(RateWindow::from).collect())
    }
}

async fn upsert_window(conn: &mut Conn, w: &RateWindow) -> Result<(), StoreError> {
    let count = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    sql::query(
            "INSERT INTO rate_limit_windows \
             (model, remaining_requests, remaining_tokens, requests_reset_at, tokens_reset_at, observed_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (model) DO UPDATE SET \
             remaining_requests = excluded.remaining_requests, \
             remaining_tokens = excluded.remaining_tokens, \
             requests_reset_at = excluded.requests_reset_at, \
             tokens_reset_at = excluded.tokens_reset_at, \
             observed_at = excluded.observed_at \
             WHERE excluded.observed_at >= rate_limit_windows.observed_at",
    )
    .bind(&w.model)
    .bind(count(w.remaining_requests))
    .bind(count(w.remaining_tokens))
    .bind(w.requests_reset_at)
    .bind(w.tokens_reset_at)
    .bind(w.observed_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
