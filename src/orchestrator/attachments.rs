//! Sending a job's attachments: before its create, every document (and every image too large
//! to go inline) must be in OpenAI's Files API.
//!
//! The create is sent only when each file is known uploaded and was seen upstream within the
//! last [`VERIFIED_FOR_MS`]. Otherwise the submit claim is given back first (the job waits
//! `ready`, not due until the uploads could be done, so no create is in flight and a crash
//! here leaves nothing uncertain), the files are checked and uploaded through the upload
//! cache's claims (`store::attachments`), and the job is made due again: the next claim finds
//! everything in place and sends the create. An upload that may have reached OpenAI without
//! its answer is looked for upstream (same name and size, created since) before it is sent
//! again; a file deleted upstream is uploaded again; a file OpenAI refuses fails the job,
//! naming it. The same bytes are uploaded once, whichever job needs them.

use serde_json::Value;

use super::Orchestrator;
use super::submit::{CreateFailure, classify_create_failure};
use crate::clock::ms;
use crate::job::attachment::{self, AttachmentMeta};
use crate::job::{JobError, JobStatus};
use crate::notify::routes_for;
use crate::store::{EventKind, StoreError, SubmitClaim, UploadClaim};
use crate::upstream::{UpstreamError, http_retry};

/// How recently an uploaded file must have been seen upstream for a create to name it.
pub const VERIFIED_FOR_MS: i64 = 60_000;
/// An upload claim's lease, renewed every [`HEARTBEAT`] while its upload runs: a daemon that
/// dies mid-upload holds its files back this long at most.
pub const UPLOAD_LEASE_MS: i64 = 30_000;
/// How often a running upload renews its claim.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the uploads stopped short.
enum Stop {
    /// Try again at this time; the reason goes into the timeline.
    Retry { at: i64, reason: String },
    /// OpenAI will not take a file: the job fails.
    Refused(JobError),
}

impl Orchestrator {
    /// The content parts that send a claimed job's attachments, if all of them can be named
    /// now. `None`: the claim was given back (to upload first, or because the job failed or
    /// moved meanwhile); nothing is to be sent.
    pub(super) async fn attachment_parts(
        &self,
        claim: &SubmitClaim,
    ) -> Result<Option<Vec<Value>>, StoreError> {
        let store = &self.inner.store;
        let metas = store.job_attachments(claim.id.as_str()).await?;
        let now = self.now();
        if metas.len() != claim.spec.attachments.len() {
            // The rows are written with the job; this is a damaged database.
            let error = JobError {
                code: "attachment_missing".into(),
                message: format!(
                    "the job names {} attachments but {} are stored",
                    claim.spec.attachments.len(),
                    metas.len()
                ),
            };
            self.fail_for_attachments(claim, &error, now).await?;
            return Ok(None);
        }
        let mut parts = Vec::with_capacity(metas.len());
        let mut ready = true;
        for meta in &metas {
            if attachment::inline(meta) {
                let Some(data) = store.attachment_data(&meta.id).await? else {
                    let error = JobError {
                        code: "attachment_missing".into(),
                        message: format!("the bytes of `{}` are no longer stored", meta.filename),
                    };
                    self.fail_for_attachments(claim, &error, now).await?;
                    return Ok(None);
                };
                parts.push(attachment::input_part(meta, None, Some(&data)));
                continue;
            }
            match store
                .cached_upload(&meta.sha256, meta.kind.purpose())
                .await?
            {
                Some((file_id, seen)) if now - seen < VERIFIED_FOR_MS => {
                    parts.push(attachment::input_part(meta, Some(&file_id), None));
                }
                _ => ready = false,
            }
        }
        if ready {
            for meta in metas.iter().filter(|m| !attachment::inline(m)) {
                store
                    .touch_upload(&meta.sha256, meta.kind.purpose(), now, false)
                    .await?;
            }
            return Ok(Some(parts));
        }
        // Give the claim back before any upload: no create is in flight while files go up.
        // Due again after one upload lease: if this daemon dies, the next claim goes on.
        let lease = UPLOAD_LEASE_MS;
        let pending = metas.iter().filter(|m| !attachment::inline(m)).count();
        let released = store
            .reschedule_submission(
                &claim.id,
                claim.attempt,
                now + lease,
                now,
                &format!(
                    "uploading {pending} attachment{} first (no create is sent until OpenAI has them)",
                    if pending == 1 { "" } else { "s" }
                ),
            )
            .await?;
        if !released {
            return Ok(None);
        }
        match self.upload_all(claim, &metas).await {
            Ok(()) => {
                let now = self.now();
                store
                    .wake_submission(&claim.id, claim.attempt, now, now)
                    .await?;
                self.wake();
            }
            Err(StopOr::Store(e)) => return Err(e),
            Err(StopOr::Stop(Stop::Retry { at, reason })) => {
                let now = self.now();
                tracing::warn!(job_id = %claim.id, %reason, "attachments not uploaded yet");
                if store
                    .wake_submission(&claim.id, claim.attempt, at, now)
                    .await?
                {
                    store
                        .record_event(&claim.id, now, EventKind::Attachment, &reason, None)
                        .await?;
                }
            }
            Err(StopOr::Stop(Stop::Refused(error))) => {
                let now = self.now();
                self.fail_for_attachments(claim, &error, now).await?;
            }
        }
        Ok(None)
    }

    async fn fail_for_attachments(
        &self,
        claim: &SubmitClaim,
        error: &JobError,
        now: i64,
    ) -> Result<(), StoreError> {
        tracing::warn!(job_id = %claim.id, code = %error.code, message = %error.message, "job failed before its create");
        let outbox = routes_for(&claim.spec, &self.config());
        self.inner
            .store
            .finish_unsubmitted(
                &claim.id,
                claim.attempt,
                JobStatus::Failed,
                error,
                now,
                &outbox,
            )
            .await?;
        Ok(())
    }

    /// Runs `work` (an upload, or the search for a lost one) while renewing the upload claim
    /// of `owner` every [`HEARTBEAT`], so a long upload keeps its claim and a dead daemon's
    /// runs out soon.
    async fn with_heartbeat<T>(
        &self,
        meta: &AttachmentMeta,
        owner: &str,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let store = &self.inner.store;
        let purpose = meta.kind.purpose();
        tokio::pin!(work);
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = beat.tick() => {
                    let until = self.now() + UPLOAD_LEASE_MS;
                    if let Err(e) = store.renew_upload(&meta.sha256, purpose, owner, until).await {
                        tracing::warn!(error = %crate::telemetry::chain(&e), "cannot renew an upload claim");
                    }
                }
            }
        }
    }

    async fn upload_all(
        &self,
        claim: &SubmitClaim,
        metas: &[AttachmentMeta],
    ) -> Result<(), StopOr> {
        // One token for this round of uploads: the upload cache's claims are fenced by it.
        let owner = crate::job::spec::random_idempotency_key();
        for meta in metas.iter().filter(|m| !attachment::inline(m)) {
            self.ensure_uploaded(claim, meta, &owner).await?;
        }
        Ok(())
    }

    /// Makes sure one file is in OpenAI's Files API and was seen there just now.
    async fn ensure_uploaded(
        &self,
        claim: &SubmitClaim,
        meta: &AttachmentMeta,
        owner: &str,
    ) -> Result<String, StopOr> {
        let store = &self.inner.store;
        let client = self.client();
        let purpose = meta.kind.purpose();
        let name = &meta.filename;
        let event = async |message: String, data: Value| -> Result<(), StopOr> {
            store
                .record_event(
                    &claim.id,
                    self.now(),
                    EventKind::Attachment,
                    &message,
                    Some(&data),
                )
                .await
                .map_err(StopOr::Store)
        };
        // At most: a cached file found gone, then an upload.
        for _ in 0..3 {
            let now = self.now();
            let lease = UPLOAD_LEASE_MS;
            match store.claim_upload(meta, purpose, owner, now, lease).await? {
                UploadClaim::Uploaded {
                    file_id,
                    verified_at,
                } => {
                    if now - verified_at < VERIFIED_FOR_MS {
                        return Ok(file_id);
                    }
                    match client.retrieve_file(&file_id).await {
                        Ok(Some(_)) => {
                            store
                                .touch_upload(&meta.sha256, purpose, self.now(), true)
                                .await?;
                            event(
                                format!("`{name}` is already uploaded as {file_id}"),
                                serde_json::json!({"attachment": meta.id, "file_id": file_id, "reused": true}),
                            )
                            .await?;
                            return Ok(file_id);
                        }
                        Ok(None) => {
                            store.forget_upload(&meta.sha256, purpose, &file_id).await?;
                            event(
                                format!("`{name}` was uploaded as {file_id}, which is gone upstream; uploading it again"),
                                serde_json::json!({"attachment": meta.id, "file_id": file_id, "gone": true}),
                            )
                            .await?;
                        }
                        Err(e) => return Err(self.retry_after(&e, claim, name, "checking")),
                    }
                }
                UploadClaim::Busy { until } => {
                    return Err(StopOr::Stop(Stop::Retry {
                        at: until.max(now + 1_000),
                        reason: format!(
                            "`{name}` is being uploaded for another job; waiting for it"
                        ),
                    }));
                }
                UploadClaim::Claimed { since } => {
                    if let Some(since) = since {
                        // An earlier upload's answer was lost: it may have made the file.
                        match self
                            .with_heartbeat(
                                meta,
                                owner,
                                client.find_uploaded(purpose, name, meta.bytes, since / 1000 - 60),
                            )
                            .await
                        {
                            Ok(Some(f)) => {
                                if store
                                    .record_upload(&meta.sha256, purpose, owner, &f.id, self.now())
                                    .await?
                                {
                                    event(
                                        format!("found `{name}` uploaded as {} by an upload whose answer was lost; not uploading it again", f.id),
                                        serde_json::json!({"attachment": meta.id, "file_id": f.id, "adopted": true}),
                                    )
                                    .await?;
                                    return Ok(f.id);
                                }
                                continue;
                            }
                            Ok(None) => {}
                            Err(e) => {
                                store
                                    .upload_uncertain(&meta.sha256, purpose, owner, self.now())
                                    .await?;
                                return Err(self.retry_after(&e, claim, name, "looking for"));
                            }
                        }
                    }
                    let Some(data) = store.attachment_data(&meta.id).await? else {
                        store.release_upload(&meta.sha256, purpose, owner).await?;
                        return Err(StopOr::Stop(Stop::Refused(JobError {
                            code: "attachment_missing".into(),
                            message: format!("the bytes of `{name}` are no longer stored"),
                        })));
                    };
                    let upload = client.upload_file(
                        name,
                        &meta.media_type,
                        bytes::Bytes::from(data),
                        purpose,
                    );
                    match self.with_heartbeat(meta, owner, upload).await {
                        Ok(f) => {
                            if store
                                .record_upload(&meta.sha256, purpose, owner, &f.id, self.now())
                                .await?
                            {
                                event(
                                    format!("uploaded `{name}` ({} bytes) as {}", meta.bytes, f.id),
                                    serde_json::json!({"attachment": meta.id, "file_id": f.id, "bytes": meta.bytes}),
                                )
                                .await?;
                                return Ok(f.id);
                            }
                            // Our claim ran out meanwhile and another took it: theirs counts.
                            // Ours is not needed; removing it keeps the account tidy.
                            let _ = client.delete_file(&f.id).await;
                            return Err(StopOr::Stop(Stop::Retry {
                                at: self.now() + 1_000,
                                reason: format!(
                                    "`{name}` took longer to upload than its claim; trying again"
                                ),
                            }));
                        }
                        Err(e) if e.create_may_have_happened() => {
                            store
                                .upload_uncertain(&meta.sha256, purpose, owner, self.now())
                                .await?;
                            event(
                                format!("the upload of `{name}` may or may not have reached OpenAI ({}); it is looked for before it is sent again", e.describe()),
                                serde_json::json!({"attachment": meta.id, "uncertain": true}),
                            )
                            .await?;
                            return Err(self.retry_after(&e, claim, name, "uploading"));
                        }
                        Err(e) => {
                            store.release_upload(&meta.sha256, purpose, owner).await?;
                            if matches!(classify_create_failure(&e), CreateFailure::Refused) {
                                return Err(StopOr::Stop(Stop::Refused(JobError {
                                    code: "attachment_refused".into(),
                                    message: format!(
                                        "OpenAI refused the upload of `{name}`: {}",
                                        e.describe()
                                    ),
                                })));
                            }
                            return Err(self.retry_after(&e, claim, name, "uploading"));
                        }
                    }
                }
            }
        }
        Err(StopOr::Stop(Stop::Retry {
            at: self.now() + 5_000,
            reason: format!("`{name}` keeps changing upstream; trying again"),
        }))
    }

    /// A retry of the uploads after a failure that made nothing (or may have).
    fn retry_after(
        &self,
        e: &UpstreamError,
        claim: &SubmitClaim,
        name: &str,
        doing: &str,
    ) -> StopOr {
        let delay = match classify_create_failure(e) {
            CreateFailure::Hold => std::time::Duration::from_secs(60),
            _ => e.retry_after().unwrap_or_else(|| {
                http_retry::backoff(claim.submissions.clamp(0, 10) as u32, rand::random())
            }),
        };
        StopOr::Stop(Stop::Retry {
            at: self.now() + ms(delay),
            reason: format!(
                "{doing} `{name}` failed ({}); trying again in {}",
                e.describe(),
                humantime::format_duration(std::time::Duration::from_millis(ms(delay) as u64))
            ),
        })
    }
}

/// A stop, or the store failing under it.
enum StopOr {
    Stop(Stop),
    Store(StoreError),
}

impl From<StoreError> for StopOr {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}
