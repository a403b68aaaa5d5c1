//! Attachments and the upload cache (`attachments`, `job_attachments`, `uploads`; migration
//! `20261206000017_attachments`).
//!
//! An attachment's bytes are stored once by id before any job names it. An upload to
//! OpenAI's Files API is claimed here before it is sent (`uploading`, with an owner and a
//! lease) and recorded when it answers (`uploaded`, with the file id), so the same bytes are
//! uploaded at most once per purpose, two submissions never upload the same file at once, and
//! an upload whose answer was lost is found upstream instead of sent again.

use crate::store::sql;
use sqlx::FromRow;

use super::{Store, StoreError};
use crate::job::attachment::{AttachmentMeta, Kind};

#[derive(FromRow)]
struct MetaRow {
    id: String,
    filename: String,
    media_type: String,
    kind: String,
    bytes: i64,
    sha256: String,
}

impl MetaRow {
    fn meta(self) -> Result<AttachmentMeta, StoreError> {
        let kind = match self.kind.as_str() {
            "document" => Kind::Document,
            "image" => Kind::Image,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "attachment {} has kind {other:?}",
                    self.id
                )));
            }
        };
        Ok(AttachmentMeta {
            id: self.id,
            filename: self.filename,
            media_type: self.media_type,
            bytes: u64::try_from(self.bytes).unwrap_or(0),
            sha256: self.sha256,
            kind,
        })
    }
}

/// An upload cache row, as a claim reads it.
#[derive(FromRow)]
struct CacheRow {
    state: String,
    file_id: Option<String>,
    verified_at: Option<i64>,
    lease_until: Option<i64>,
    started_at: i64,
}

/// What the upload cache says of a content and purpose, after [`Store::claim_upload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadClaim {
    /// Uploaded before: its file id and when it was last seen upstream.
    Uploaded { file_id: String, verified_at: i64 },
    /// Another submission is uploading it; its lease runs until then.
    Busy { until: i64 },
    /// Ours to upload. `since`: when an earlier claim whose outcome is unknown began (its
    /// upload may have reached OpenAI: look for it first).
    Claimed { since: Option<i64> },
}

/// A file respool uploaded that nothing needs any more.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct StaleUpload {
    pub sha256: String,
    pub purpose: String,
    pub file_id: String,
}

const KIND_DOCUMENT: &str = "document";
const KIND_IMAGE: &str = "image";

impl Store {
    /// Keeps a checked attachment's bytes (once: the id is the hash of name and bytes).
    pub async fn put_attachment(
        &self,
        meta: &AttachmentMeta,
        data: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        let kind = match meta.kind {
            Kind::Document => KIND_DOCUMENT,
            Kind::Image => KIND_IMAGE,
        };
        sql::query(
            "INSERT INTO attachments (id, filename, media_type, kind, bytes, sha256, data, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET created_at = MAX(attachments.created_at, excluded.created_at)",
        )
        .bind(&meta.id)
        .bind(&meta.filename)
        .bind(&meta.media_type)
        .bind(kind)
        .bind(meta.bytes as i64)
        .bind(&meta.sha256)
        .bind(data)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What is known of these attachments, in the order asked; `None` for an unknown id.
    pub async fn attachments(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<AttachmentMeta>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<MetaRow> = sql::query_as(
                "SELECT id, filename, media_type, kind, bytes, sha256 FROM attachments WHERE id = ?",
            )
            .bind(id)
            .fetch_optional(&self.reads)
            .await?;
            out.push(row.map(MetaRow::meta).transpose()?);
        }
        Ok(out)
    }

    /// The attachments a job sends, in order.
    pub async fn job_attachments(&self, job_id: &str) -> Result<Vec<AttachmentMeta>, StoreError> {
        let rows: Vec<MetaRow> = sql::query_as(
            "SELECT a.id, a.filename, a.media_type, a.kind, a.bytes, a.sha256 \
             FROM job_attachments ja JOIN attachments a ON a.id = ja.attachment_id \
             WHERE ja.job_id = ? AND ja.knowledge IS NULL ORDER BY ja.position",
        )
        .bind(job_id)
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter().map(MetaRow::meta).collect()
    }

    /// An attachment's bytes.
    pub async fn attachment_data(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sql::query_scalar("SELECT data FROM attachments WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.reads)
                .await?,
        )
    }

    /// The upload cache's entry for this content and purpose, if uploaded: its file id and
    /// when it was last seen upstream. Reads only.
    pub async fn cached_upload(
        &self,
        sha256: &str,
        purpose: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let row: Option<(Option<String>, Option<i64>)> = sql::query_as(
            "SELECT file_id, verified_at FROM uploads WHERE sha256 = ? AND purpose = ? \
             AND state = 'uploaded'",
        )
        .bind(sha256)
        .bind(purpose)
        .fetch_optional(&self.reads)
        .await?;
        Ok(row.and_then(|(id, at)| Some((id?, at.unwrap_or(0)))))
    }

    /// Looks up this content in the upload cache and, unless it is uploaded or another claim's
    /// lease is running, claims its upload for `owner` until `now + lease_ms`.
    pub async fn claim_upload(
        &self,
        meta: &AttachmentMeta,
        purpose: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<UploadClaim, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: Option<CacheRow> = sql::query_as(
            "SELECT state, file_id, verified_at, lease_until, started_at FROM uploads \
             WHERE sha256 = ? AND purpose = ?",
        )
        .bind(&meta.sha256)
        .bind(purpose)
        .fetch_optional(&mut *tx)
        .await?;
        let claim = match row {
            Some(CacheRow {
                state,
                file_id: Some(file_id),
                verified_at,
                ..
            }) if state == "uploaded" => UploadClaim::Uploaded {
                file_id,
                verified_at: verified_at.unwrap_or(0),
            },
            Some(CacheRow {
                lease_until: Some(until),
                ..
            }) if until > now => UploadClaim::Busy { until },
            Some(CacheRow { started_at, .. }) => {
                // An earlier claim ran out: its upload may or may not have reached OpenAI.
                sql::query(
                    "UPDATE uploads SET owner = ?, lease_until = ? WHERE sha256 = ? AND purpose = ?",
                )
                .bind(owner)
                .bind(now + lease_ms)
                .bind(&meta.sha256)
                .bind(purpose)
                .execute(&mut *tx)
                .await?;
                UploadClaim::Claimed {
                    since: Some(started_at),
                }
            }
            None => {
                sql::query(
                    "INSERT INTO uploads (sha256, purpose, state, filename, bytes, owner, \
                     lease_until, started_at, last_used_at) VALUES (?, ?, 'uploading', ?, ?, ?, ?, ?, ?)",
                )
                .bind(&meta.sha256)
                .bind(purpose)
                .bind(&meta.filename)
                .bind(meta.bytes as i64)
                .bind(owner)
                .bind(now + lease_ms)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                UploadClaim::Claimed { since: None }
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    /// Records the file an upload claimed by `owner` made (or found upstream). Returns
    /// whether the claim still held; if it did not, the file is not recorded.
    pub async fn record_upload(
        &self,
        sha256: &str,
        purpose: &str,
        owner: &str,
        file_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(sql::query(
            "UPDATE uploads SET state = 'uploaded', file_id = ?, owner = NULL, lease_until = NULL, \
             uploaded_at = ?, verified_at = ?, last_used_at = ? \
             WHERE sha256 = ? AND purpose = ? AND state = 'uploading' AND owner = ?",
        )
        .bind(file_id)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(sha256)
        .bind(purpose)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Extends a running upload claim of `owner` to `until` (a heartbeat while the upload is
    /// sent). Returns whether the claim still held.
    pub async fn renew_upload(
        &self,
        sha256: &str,
        purpose: &str,
        owner: &str,
        until: i64,
    ) -> Result<bool, StoreError> {
        Ok(sql::query(
            "UPDATE uploads SET lease_until = ? \
             WHERE sha256 = ? AND purpose = ? AND state = 'uploading' AND owner = ?",
        )
        .bind(until)
        .bind(sha256)
        .bind(purpose)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Gives up an upload claim whose upload surely made nothing (refused, or never sent):
    /// the next claim uploads without looking for it. A claim whose upload *may* have reached
    /// OpenAI is left to run out instead ([`Self::upload_uncertain`]).
    pub async fn release_upload(
        &self,
        sha256: &str,
        purpose: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        sql::query(
            "DELETE FROM uploads WHERE sha256 = ? AND purpose = ? AND state = 'uploading' \
             AND owner = ?",
        )
        .bind(sha256)
        .bind(purpose)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends an upload claim whose upload may have reached OpenAI (no answer): its lease ends
    /// now, so the next claim looks for the file upstream before uploading.
    pub async fn upload_uncertain(
        &self,
        sha256: &str,
        purpose: &str,
        owner: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sql::query(
            "UPDATE uploads SET lease_until = ?, owner = NULL \
             WHERE sha256 = ? AND purpose = ? AND state = 'uploading' AND owner = ?",
        )
        .bind(now)
        .bind(sha256)
        .bind(purpose)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Notes that an uploaded file was seen upstream (`verified`) and/or used by a create.
    pub async fn touch_upload(
        &self,
        sha256: &str,
        purpose: &str,
        now: i64,
        verified: bool,
    ) -> Result<(), StoreError> {
        sql::query(
            "UPDATE uploads SET last_used_at = ?, \
             verified_at = CASE WHEN ? THEN ? ELSE verified_at END \
             WHERE sha256 = ? AND purpose = ? AND state = 'uploaded'",
        )
        .bind(now)
        .bind(verified)
        .bind(now)
        .bind(sha256)
        .bind(purpose)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets an uploaded file that is gone upstream (deleted by someone, or expired), so
    /// that the next job that needs it uploads it again.
    pub async fn forget_upload(
        &self,
        sha256: &str,
        purpose: &str,
        file_id: &str,
    ) -> Result<(), StoreError> {
        sql::query(
            "DELETE FROM uploads WHERE sha256 = ? AND purpose = ? AND state = 'uploaded' AND file_id = ?",
        )
        .bind(sha256)
        .bind(purpose)
        .bind(file_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Uploaded files last used before `before` that no unfinished job sends: retention
    /// deletes them upstream.
    pub async fn stale_uploads(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<StaleUpload>, StoreError> {
        Ok(sql::query_as(
            "SELECT u.sha256, u.purpose, u.file_id FROM uploads u \
             WHERE u.state = 'uploaded' AND u.last_used_at < ? AND NOT EXISTS ( \
               SELECT 1 FROM attachments a \
               JOIN job_attachments ja ON ja.attachment_id = a.id \
               JOIN jobs j ON j.id = ja.job_id \
               WHERE a.sha256 = u.sha256 AND j.status IN ('pending', 'held', 'queued', 'in_progress')) \
             ORDER BY u.last_used_at LIMIT ?",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.reads)
        .await?)
    }

    /// Forgets a stale upload before it is deleted upstream, checking again in the same
    /// statement that it is still stale (no job used it since, none unfinished sends it), so a
    /// job that needs it meanwhile uploads it again instead of naming a deleted file. Returns
    /// whether it was taken.
    pub async fn take_stale_upload(
        &self,
        u: &StaleUpload,
        before: i64,
    ) -> Result<bool, StoreError> {
        // Under the write lock: the jobs are only read here, so on PostgreSQL one that another
        // daemon gives the file meanwhile would be missed, and the file deleted under it.
        let statement = sql::query(
            "DELETE FROM uploads WHERE sha256 = ? AND purpose = ? AND file_id = ? \
             AND state = 'uploaded' AND last_used_at < ? AND NOT EXISTS ( \
               SELECT 1 FROM attachments a \
               JOIN job_attachments ja ON ja.attachment_id = a.id \
               JOIN jobs j ON j.id = ja.job_id \
               WHERE a.sha256 = uploads.sha256 AND j.status IN ('pending', 'held', 'queued', 'in_progress'))",
        )
        .bind(&u.sha256)
        .bind(&u.purpose)
        .bind(&u.file_id)
        .bind(before);
        Ok(self.execute_locked(statement).await? == 1)
    }

    /// Attachments no job and no schedule names, last stored before `before` (uploaded over
    /// REST and never used, or left by pruned jobs): deleted. Returns how many.
    pub async fn prune_attachments(&self, before: i64) -> Result<u64, StoreError> {
        // Under the write lock: on PostgreSQL a job or schedule another daemon gives one of
        // these attachments meanwhile would not be seen.
        self.execute_locked(
            sql::query(
                "DELETE FROM attachments WHERE created_at < ? AND NOT EXISTS \
             (SELECT 1 FROM job_attachments ja WHERE ja.attachment_id = attachments.id) \
             AND NOT EXISTS (SELECT 1 FROM schedules s WHERE instr(s.spec, attachments.id) > 0)",
            )
            .bind(before),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::attachment;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn an_upload_is_claimed_once_and_a_lost_one_is_looked_for() {
        let (_dir, store) = store().await;
        let meta = attachment::check("a.txt", b"hello").unwrap();
        store.put_attachment(&meta, b"hello", 1).await.unwrap();
        store.put_attachment(&meta, b"hello", 2).await.unwrap();
        assert_eq!(
            store.attachment_data(&meta.id).await.unwrap().unwrap(),
            b"hello"
        );
        let p = "user_data";
        let c = store.claim_upload(&meta, p, "w1", 100, 1000).await.unwrap();
        assert_eq!(c, UploadClaim::Claimed { since: None });
        // A second claimant waits for the lease.
        let c = store.claim_upload(&meta, p, "w2", 200, 1000).await.unwrap();
        assert_eq!(c, UploadClaim::Busy { until: 1100 });
        // The first one's answer is lost: the next claim must look upstream first.
        store
            .upload_uncertain(&meta.sha256, p, "w1", 300)
            .await
            .unwrap();
        let c = store.claim_upload(&meta, p, "w2", 300, 1000).await.unwrap();
        assert_eq!(c, UploadClaim::Claimed { since: Some(100) });
        // Only the claim's owner renews it.
        assert!(
            !store
                .renew_upload(&meta.sha256, p, "w1", 5_000)
                .await
                .unwrap()
        );
        assert!(
            store
                .renew_upload(&meta.sha256, p, "w2", 5_000)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .claim_upload(&meta, p, "w9", 4_000, 1000)
                .await
                .unwrap(),
            UploadClaim::Busy { until: 5_000 }
        );
        // The stale owner cannot record over the new claim.
        assert!(
            !store
                .record_upload(&meta.sha256, p, "w1", "file-x", 400)
                .await
                .unwrap()
        );
        assert!(
            store
                .record_upload(&meta.sha256, p, "w2", "file-y", 400)
                .await
                .unwrap()
        );
        let c = store.claim_upload(&meta, p, "w3", 500, 1000).await.unwrap();
        assert_eq!(
            c,
            UploadClaim::Uploaded {
                file_id: "file-y".into(),
                verified_at: 400
            }
        );
        // Another purpose is another upload.
        let c = store
            .claim_upload(&meta, "vision", "w3", 500, 1000)
            .await
            .unwrap();
        assert_eq!(c, UploadClaim::Claimed { since: None });
        store
            .release_upload(&meta.sha256, "vision", "w3")
            .await
            .unwrap();
        let c = store
            .claim_upload(&meta, "vision", "w4", 600, 1000)
            .await
            .unwrap();
        assert_eq!(c, UploadClaim::Claimed { since: None });
        // Gone upstream: forgotten, and uploaded again.
        store
            .forget_upload(&meta.sha256, p, "file-y")
            .await
            .unwrap();
        let c = store.claim_upload(&meta, p, "w5", 700, 1000).await.unwrap();
        assert_eq!(c, UploadClaim::Claimed { since: None });
        // Nothing is stale while its claim is open; an old upload no job needs is.
        assert!(store.stale_uploads(i64::MAX, 10).await.unwrap().is_empty());
        assert!(
            store
                .record_upload(&meta.sha256, p, "w5", "file-z", 800)
                .await
                .unwrap()
        );
        let stale = store.stale_uploads(900, 10).await.unwrap();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].file_id, "file-z");
        assert!(store.stale_uploads(800, 10).await.unwrap().is_empty());
        // An attachment no job names goes once it is old enough.
        // (Stored at 1 and again at 2: its age counts from 2.)
        assert_eq!(store.prune_attachments(2).await.unwrap(), 0);
        assert_eq!(store.prune_attachments(3).await.unwrap(), 1);
        assert!(store.attachment_data(&meta.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn what_an_unfinished_job_sends_is_kept_and_a_refreshed_upload_is_young() {
        use crate::job::{JobId, JobSpec};
        use crate::store::NewJob;
        let (_dir, store) = store().await;
        let meta = attachment::check("kept.md", b"# kept").unwrap();
        store.put_attachment(&meta, b"# kept", 10).await.unwrap();
        let mut claim = store
            .claim_upload(&meta, "user_data", "w", 10, 1000)
            .await
            .unwrap();
        assert_eq!(claim, UploadClaim::Claimed { since: None });
        assert!(
            store
                .record_upload(&meta.sha256, "user_data", "w", "file-k", 20)
                .await
                .unwrap()
        );
        let spec = JobSpec::from_value(
            serde_json::json!({"model": "m", "input": "i", "attachments": [meta.id]}),
            "#1",
        )
        .unwrap();
        store
            .insert_job(NewJob {
                id: JobId::generate(),
                spec,
                spec_hash: "h".into(),
                now: 30,
                deadline_at: None,
                origin: "test".into(),
            })
            .await
            .unwrap();
        // The job is pending: its upload is not stale however old, nor its bytes prunable.
        assert!(store.stale_uploads(i64::MAX, 10).await.unwrap().is_empty());
        let u = StaleUpload {
            sha256: meta.sha256.clone(),
            purpose: "user_data".into(),
            file_id: "file-k".into(),
        };
        assert!(!store.take_stale_upload(&u, i64::MAX).await.unwrap());
        assert_eq!(store.prune_attachments(i64::MAX).await.unwrap(), 0);
        claim = store
            .claim_upload(&meta, "user_data", "x", 40, 1000)
            .await
            .unwrap();
        assert!(matches!(claim, UploadClaim::Uploaded { .. }));
        // Stored again later: it counts as new for retention.
        let other = attachment::check("fresh.md", b"# fresh").unwrap();
        store.put_attachment(&other, b"# fresh", 10).await.unwrap();
        store.put_attachment(&other, b"# fresh", 500).await.unwrap();
        assert_eq!(store.prune_attachments(400).await.unwrap(), 0);
        assert_eq!(store.prune_attachments(501).await.unwrap(), 1);
    }
}
