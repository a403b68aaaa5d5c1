//! Knowledge sets' vector stores (`knowledge_stores`, `knowledge_files`; migration
//! `20261206000018_knowledge`): one store per set name, claimed before it is created upstream
//! (like an upload, see `attachments.rs`), and the files attached to it with their processing
//! status.

use crate::store::sql;
use sqlx::FromRow;

use super::{Store, StoreError};

/// What the database says of a set's vector store, after [`Store::claim_knowledge_store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreClaim {
    /// Created: its id and when it was last seen upstream.
    Ready {
        vector_store_id: String,
        verified_at: i64,
    },
    /// Another submission is creating it until then.
    Busy { until: i64 },
    /// Ours to create; `since`: when an earlier claim whose outcome is unknown began.
    Claimed { since: Option<i64> },
}

/// A file of a set's store.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct KnowledgeFile {
    pub sha256: String,
    pub file_id: String,
    pub filename: String,
    pub status: String,
    pub last_error: Option<String>,
    pub attached_at: i64,
}

#[derive(FromRow)]
struct StoreRow {
    state: String,
    vector_store_id: Option<String>,
    lease_until: Option<i64>,
    started_at: i64,
    verified_at: Option<i64>,
}

impl Store {
    /// Looks up a set's store and, unless it exists or another claim's lease is running,
    /// claims its creation for `owner` until `now + lease_ms`.
    pub async fn claim_knowledge_store(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<StoreClaim, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: Option<StoreRow> = sql::query_as(
            "SELECT state, vector_store_id, lease_until, started_at, verified_at \
             FROM knowledge_stores WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let claim = match row {
            Some(StoreRow {
                state,
                vector_store_id: Some(id),
                verified_at,
                ..
            }) if state == "ready" => StoreClaim::Ready {
                vector_store_id: id,
                verified_at: verified_at.unwrap_or(0),
            },
            Some(StoreRow {
                lease_until: Some(until),
                ..
            }) if until > now => StoreClaim::Busy { until },
            Some(StoreRow { started_at, .. }) => {
                sql::query("UPDATE knowledge_stores SET owner = ?, lease_until = ? WHERE name = ?")
                    .bind(owner)
                    .bind(now + lease_ms)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                StoreClaim::Claimed {
                    since: Some(started_at),
                }
            }
            None => {
                sql::query(
                    "INSERT INTO knowledge_stores (name, state, owner, lease_until, started_at, \
                     last_used_at) VALUES (?, 'creating', ?, ?, ?, ?)",
                )
                .bind(name)
                .bind(owner)
                .bind(now + lease_ms)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                StoreClaim::Claimed { since: None }
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    /// Records the store a claim of `owner` created (or found). Whether the claim held.
    pub async fn record_knowledge_store(
        &self,
        name: &str,
        owner: &str,
        vector_store_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(sql::query(
            "UPDATE knowledge_stores SET state = 'ready', vector_store_id = ?, owner = NULL, \
             lease_until = NULL, verified_at = ?, last_used_at = ? \
             WHERE name = ? AND state = 'creating' AND owner = ?",
        )
        .bind(vector_store_id)
        .bind(now)
        .bind(now)
        .bind(name)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Ends a creation claim: `uncertain` (the create may have reached OpenAI) lets its lease
    /// end now so the next claim looks upstream first; otherwise the claim is dropped.
    pub async fn end_knowledge_claim(
        &self,
        name: &str,
        owner: &str,
        uncertain: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let sql = if uncertain {
            "UPDATE knowledge_stores SET lease_until = ?, owner = NULL \
             WHERE name = ? AND state = 'creating' AND owner = ?"
        } else {
            "DELETE FROM knowledge_stores WHERE ? IS NOT NULL AND name = ? \
             AND state = 'creating' AND owner = ?"
        };
        sql::query(sql)
            .bind(now)
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Notes that a set's store was seen upstream (`verified`) and/or used by a create.
    pub async fn touch_knowledge_store(
        &self,
        name: &str,
        now: i64,
        verified: bool,
    ) -> Result<(), StoreError> {
        sql::query(
            "UPDATE knowledge_stores SET last_used_at = ?, \
             verified_at = CASE WHEN ? THEN ? ELSE verified_at END \
             WHERE name = ? AND state = 'ready'",
        )
        .bind(now)
        .bind(verified)
        .bind(now)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a set's store as not seen lately: it is changing (a file is being added), so no
    /// create may name it until a job has seen it done again.
    pub async fn unverify_knowledge_store(&self, name: &str) -> Result<(), StoreError> {
        sql::query("UPDATE knowledge_stores SET verified_at = 0 WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets one file of a set's store (its processing failed in a way that may pass), so
    /// the next job that needs it adds it again.
    pub async fn forget_knowledge_file(
        &self,
        name: &str,
        sha256: &str,
        file_id: &str,
    ) -> Result<(), StoreError> {
        sql::query("DELETE FROM knowledge_files WHERE name = ? AND sha256 = ? AND file_id = ?")
            .bind(name)
            .bind(sha256)
            .bind(file_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets a set's store that is gone upstream (deleted or expired), with its files.
    pub async fn forget_knowledge_store(
        &self,
        name: &str,
        vector_store_id: &str,
    ) -> Result<(), StoreError> {
        sql::query("DELETE FROM knowledge_stores WHERE name = ? AND vector_store_id = ?")
            .bind(name)
            .bind(vector_store_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A ready set's store id, when last seen upstream, and its files.
    pub async fn knowledge_state(
        &self,
        name: &str,
    ) -> Result<Option<(String, i64, Vec<KnowledgeFile>)>, StoreError> {
        let row: Option<(Option<String>, Option<i64>)> = sql::query_as(
            "SELECT vector_store_id, verified_at FROM knowledge_stores \
             WHERE name = ? AND state = 'ready'",
        )
        .bind(name)
        .fetch_optional(&self.reads)
        .await?;
        let Some((Some(id), verified_at)) = row else {
            return Ok(None);
        };
        let files = sql::query_as(
            "SELECT sha256, file_id, filename, status, last_error, attached_at \
             FROM knowledge_files WHERE name = ?",
        )
        .bind(name)
        .fetch_all(&self.reads)
        .await?;
        Ok(Some((id, verified_at.unwrap_or(0), files)))
    }

    /// Records a file of a set's store and its status as upstream reported it.
    pub async fn put_knowledge_file(
        &self,
        name: &str,
        file: &KnowledgeFile,
    ) -> Result<(), StoreError> {
        sql::query(
            "INSERT INTO knowledge_files (name, sha256, file_id, filename, status, last_error, \
             attached_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, sha256) DO UPDATE SET \
             file_id = excluded.file_id, filename = excluded.filename, status = excluded.status, \
             last_error = excluded.last_error, \
             attached_at = CASE WHEN knowledge_files.file_id = excluded.file_id \
               THEN knowledge_files.attached_at ELSE excluded.attached_at END",
        )
        .bind(name)
        .bind(&file.sha256)
        .bind(&file.file_id)
        .bind(&file.filename)
        .bind(&file.status)
        .bind(&file.last_error)
        .bind(file.attached_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sets_store_is_created_once_and_its_files_tracked() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        let c = store
            .claim_knowledge_store("kb", "a", 100, 1000)
            .await
            .unwrap();
        assert_eq!(c, StoreClaim::Claimed { since: None });
        assert_eq!(
            store
                .claim_knowledge_store("kb", "b", 200, 1000)
                .await
                .unwrap(),
            StoreClaim::Busy { until: 1100 }
        );
        store
            .end_knowledge_claim("kb", "a", true, 300)
            .await
            .unwrap();
        assert_eq!(
            store
                .claim_knowledge_store("kb", "b", 300, 1000)
                .await
                .unwrap(),
            StoreClaim::Claimed { since: Some(100) }
        );
        assert!(
            !store
                .record_knowledge_store("kb", "a", "vs_x", 400)
                .await
                .unwrap()
        );
        assert!(
            store
                .record_knowledge_store("kb", "b", "vs_1", 400)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .claim_knowledge_store("kb", "c", 500, 1000)
                .await
                .unwrap(),
            StoreClaim::Ready {
                vector_store_id: "vs_1".into(),
                verified_at: 400
            }
        );
        let mut f = KnowledgeFile {
            sha256: "s1".into(),
            file_id: "file-1".into(),
            filename: "a.pdf".into(),
            status: "in_progress".into(),
            last_error: None,
            attached_at: 450,
        };
        store.put_knowledge_file("kb", &f).await.unwrap();
        f.status = "completed".into();
        f.attached_at = 999;
        store.put_knowledge_file("kb", &f).await.unwrap();
        let (id, _, files) = store.knowledge_state("kb").await.unwrap().unwrap();
        assert_eq!(id, "vs_1");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].status, "completed");
        assert_eq!(
            files[0].attached_at, 450,
            "the same file keeps its attach time"
        );
        // Gone upstream: forgotten with its files.
        store.forget_knowledge_store("kb", "vs_1").await.unwrap();
        assert!(store.knowledge_state("kb").await.unwrap().is_none());
        assert_eq!(
            store
                .claim_knowledge_store("kb", "d", 600, 1000)
                .await
                .unwrap(),
            StoreClaim::Claimed { since: None }
        );
        // A claim that surely made nothing is dropped.
        store
            .end_knowledge_claim("kb", "d", false, 700)
            .await
            .unwrap();
        assert_eq!(
            store
                .claim_knowledge_store("kb", "e", 700, 1000)
                .await
                .unwrap(),
            StoreClaim::Claimed { since: None }
        );
    }
}
