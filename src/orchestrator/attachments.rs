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
use crate::store::{EventKind, KnowledgeFile, StoreClaim, StoreError, SubmitClaim, UploadClaim};
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

/// What a create needs from a job's files: the content parts that send its attachments, and
/// the vector stores of its knowledge sets.
pub(super) struct Prepared {
    pub parts: Vec<Value>,
    pub vector_store_ids: Vec<String>,
}

/// The Files API purpose of a file put in a vector store (as the SDKs' upload helpers do).
const KNOWLEDGE_PURPOSE: &str = "assistants";

impl Orchestrator {
    /// The content parts that send a claimed job's attachments and the vector stores of its
    /// knowledge, if all of them can be named now. `None`: the claim was given back (to upload
    /// first, or because the job failed or moved meanwhile); nothing is to be sent.
    pub(super) async fn attachment_parts(
        &self,
        claim: &SubmitClaim,
    ) -> Result<Option<Prepared>, StoreError> {
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
        // Each knowledge set: its store made and seen lately, every file in it processed.
        let mut vector_store_ids = Vec::new();
        let mut sets: Vec<(String, Vec<AttachmentMeta>)> = Vec::new();
        for set in &claim.spec.knowledge {
            let ids = set.files.clone().unwrap_or_default();
            let found = store.attachments(&ids).await?;
            if ids.is_empty() || found.iter().any(Option::is_none) {
                let error = JobError {
                    code: "knowledge_missing".into(),
                    message: format!("the files of knowledge `{}` are not stored", set.name),
                };
                self.fail_for_attachments(claim, &error, now).await?;
                return Ok(None);
            }
            let set_metas: Vec<AttachmentMeta> = found.into_iter().flatten().collect();
            match store.knowledge_state(&set.name).await? {
                Some((vs, seen, files))
                    if now - seen < VERIFIED_FOR_MS
                        && set_metas.iter().all(|m| {
                            files
                                .iter()
                                .any(|f| f.sha256 == m.sha256 && f.status == "completed")
                        }) =>
                {
                    vector_store_ids.push(vs);
                }
                _ => ready = false,
            }
            sets.push((set.name.clone(), set_metas));
        }
        if ready {
            for meta in metas.iter().filter(|m| !attachment::inline(m)) {
                store
                    .touch_upload(&meta.sha256, meta.kind.purpose(), now, false)
                    .await?;
            }
            for (name, _) in &sets {
                store.touch_knowledge_store(name, now, false).await?;
            }
            return Ok(Some(Prepared {
                parts,
                vector_store_ids,
            }));
        }
        // Give the claim back before any upload: no create is in flight while files go up.
        // Due again after one upload lease: if this daemon dies, the next claim goes on.
        let lease = UPLOAD_LEASE_MS;
        let pending = metas.iter().filter(|m| !attachment::inline(m)).count();
        let mut what = Vec::new();
        if pending > 0 {
            what.push(format!(
                "uploading {pending} attachment{}",
                if pending == 1 { "" } else { "s" }
            ));
        }
        for (name, _) in &sets {
            what.push(format!("preparing knowledge `{name}`"));
        }
        let released = store
            .reschedule_submission(
                &claim.id,
                claim.attempt,
                now + lease,
                now,
                &format!(
                    "{} first (no create is sent until OpenAI has them)",
                    what.join(", ")
                ),
            )
            .await?;
        if !released {
            return Ok(None);
        }
        let work = self.prepare_all(claim, &metas, &sets);
        match self.keep_job_waiting(claim, work).await {
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

    /// Adds an `attachment` event (an upload, a reuse, a store made or found) to a job's
    /// timeline.
    async fn attachment_event(
        &self,
        claim: &SubmitClaim,
        message: &str,
        data: Value,
    ) -> Result<(), StopOr> {
        self.inner
            .store
            .record_event(
                &claim.id,
                self.now(),
                EventKind::Attachment,
                message,
                Some(&data),
            )
            .await
            .map_err(StopOr::Store)
    }

    /// Runs `work` (a job's uploads and stores) while pushing the job's next claim back every
    /// [`HEARTBEAT`]: it is not claimed (and given back) again while its files go up, and is
    /// due soon after this daemon stops.
    async fn keep_job_waiting<T>(
        &self,
        claim: &SubmitClaim,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        Self::beating(HEARTBEAT, work, move || async move {
            let now = self.now();
            if let Err(e) = self
                .inner
                .store
                .wake_submission(&claim.id, claim.attempt, now + UPLOAD_LEASE_MS, now)
                .await
            {
                tracing::warn!(error = %crate::telemetry::chain(&e), "cannot push back a job waiting for its files");
            }
        })
        .await
    }

    /// Runs `work` (an upload, or the search for a lost one) while renewing the upload claim
    /// of `owner` every [`HEARTBEAT`], so a long upload keeps its claim and a dead daemon's
    /// runs out soon.
    async fn with_heartbeat<T>(
        &self,
        claim: &SubmitClaim,
        meta: &AttachmentMeta,
        owner: &str,
        purpose: &str,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let store = &self.inner.store;
        Self::beating(HEARTBEAT, work, move || async move {
            let now = self.now();
            let until = now + UPLOAD_LEASE_MS;
            if let Err(e) = store.renew_upload(&meta.sha256, purpose, owner, until).await {
                tracing::warn!(error = %crate::telemetry::chain(&e), "cannot renew an upload claim");
            }
            // The job is not due while its files go up (no claim and release every lease), but
            // is soon after this daemon stops renewing.
            if let Err(e) = store.wake_submission(&claim.id, claim.attempt, until, now).await {
                tracing::warn!(error = %crate::telemetry::chain(&e), "cannot push back a job waiting for its uploads");
            }
        })
        .await
    }

    async fn prepare_all(
        &self,
        claim: &SubmitClaim,
        metas: &[AttachmentMeta],
        sets: &[(String, Vec<AttachmentMeta>)],
    ) -> Result<(), StopOr> {
        // One token for this round: the upload cache's and the stores' claims are fenced by it.
        let owner = crate::job::spec::random_idempotency_key();
        for meta in metas.iter().filter(|m| !attachment::inline(m)) {
            self.ensure_uploaded(claim, meta, &owner, meta.kind.purpose())
                .await?;
        }
        for (name, set_metas) in sets {
            self.ensure_knowledge(claim, name, set_metas, &owner)
                .await?;
        }
        Ok(())
    }

    /// Makes sure a knowledge set's vector store exists upstream and holds every file of the
    /// set, processed: else a retry when it will have (with a wait that grows with the time the
    /// files have been processing), or the job's failure naming a file OpenAI could not read.
    async fn ensure_knowledge(
        &self,
        claim: &SubmitClaim,
        name: &str,
        metas: &[AttachmentMeta],
        owner: &str,
    ) -> Result<(), StopOr> {
        let store = &self.inner.store;
        let client = self.client();
        let upstream_name = format!("respool:{name}");
        let event =
            async |message: String, data: Value| self.attachment_event(claim, &message, data).await;
        let mut vs = None;
        for _ in 0..3 {
            let now = self.now();
            match store
                .claim_knowledge_store(name, owner, now, UPLOAD_LEASE_MS)
                .await?
            {
                StoreClaim::Ready {
                    vector_store_id,
                    verified_at,
                } => {
                    if now - verified_at < VERIFIED_FOR_MS {
                        vs = Some(vector_store_id);
                        break;
                    }
                    match client.retrieve_vector_store(&vector_store_id).await {
                        Ok(Some(v)) if v.status.as_deref() != Some("expired") => {
                            store.touch_knowledge_store(name, self.now(), true).await?;
                            vs = Some(vector_store_id);
                            break;
                        }
                        Ok(_) => {
                            store.forget_knowledge_store(name, &vector_store_id).await?;
                            event(
                                format!("the vector store {vector_store_id} of knowledge `{name}` is gone or expired upstream; making a new one"),
                                serde_json::json!({"knowledge": name, "vector_store_id": vector_store_id, "gone": true}),
                            )
                            .await?;
                        }
                        Err(e) => {
                            return Err(self.retry_after(&e, claim, name, "checking the store of"));
                        }
                    }
                }
                StoreClaim::Busy { until } => {
                    return Err(StopOr::Stop(Stop::Retry {
                        at: until.max(now + 1_000),
                        reason: format!(
                            "the vector store of knowledge `{name}` is being made for another job; waiting for it"
                        ),
                    }));
                }
                StoreClaim::Claimed { since } => {
                    if let Some(since) = since {
                        match client
                            .find_vector_store(&upstream_name, since / 1000 - 60)
                            .await
                        {
                            Ok(Some(v)) => {
                                if store
                                    .record_knowledge_store(name, owner, &v.id, self.now())
                                    .await?
                                {
                                    event(
                                        format!("found the vector store {} of knowledge `{name}`, made by a create whose answer was lost; not making another", v.id),
                                        serde_json::json!({"knowledge": name, "vector_store_id": v.id, "adopted": true}),
                                    )
                                    .await?;
                                    vs = Some(v.id);
                                    break;
                                }
                                continue;
                            }
                            Ok(None) => {
                                event(
                                    format!("an earlier attempt to make the store of knowledge `{name}` may have been lost; no such store is upstream, so it is made now"),
                                    serde_json::json!({"knowledge": name, "searched": true}),
                                )
                                .await?;
                            }
                            Err(e) => {
                                store
                                    .end_knowledge_claim(name, owner, true, self.now())
                                    .await?;
                                return Err(self.retry_after(
                                    &e,
                                    claim,
                                    name,
                                    "looking for the store of",
                                ));
                            }
                        }
                    }
                    let mut metadata = serde_json::Map::new();
                    metadata.insert("respool_knowledge".into(), Value::String(name.to_string()));
                    let days = self.config().knowledge.expiry_days();
                    match client
                        .create_vector_store(&upstream_name, days, &metadata)
                        .await
                    {
                        Ok(v) => {
                            if store
                                .record_knowledge_store(name, owner, &v.id, self.now())
                                .await?
                            {
                                event(
                                    format!("made the vector store {} for knowledge `{name}` (expires {days} days after its last use)", v.id),
                                    serde_json::json!({"knowledge": name, "vector_store_id": v.id}),
                                )
                                .await?;
                                vs = Some(v.id);
                                break;
                            }
                            return Err(StopOr::Stop(Stop::Retry {
                                at: self.now() + 1_000,
                                reason: format!(
                                    "the store of knowledge `{name}` took longer to make than its claim; trying again"
                                ),
                            }));
                        }
                        Err(e) if e.create_may_have_happened() => {
                            store
                                .end_knowledge_claim(name, owner, true, self.now())
                                .await?;
                            return Err(self.retry_after(&e, claim, name, "making the store of"));
                        }
                        Err(e) => {
                            store
                                .end_knowledge_claim(name, owner, false, self.now())
                                .await?;
                            if matches!(classify_create_failure(&e), CreateFailure::Refused) {
                                return Err(StopOr::Stop(Stop::Refused(JobError {
                                    code: "knowledge_refused".into(),
                                    message: format!(
                                        "OpenAI refused to make the vector store of knowledge `{name}`: {}",
                                        e.describe()
                                    ),
                                })));
                            }
                            return Err(self.retry_after(&e, claim, name, "making the store of"));
                        }
                    }
                }
            }
        }
        let Some(vs) = vs else {
            return Err(StopOr::Stop(Stop::Retry {
                at: self.now() + 5_000,
                reason: format!("the store of knowledge `{name}` keeps changing; trying again"),
            }));
        };
        // Its files: each uploaded, attached, and processed.
        let rows = store
            .knowledge_state(name)
            .await?
            .map(|(_, _, files)| files)
            .unwrap_or_default();
        let mut waiting = 0;
        let mut oldest = self.now();
        for meta in metas {
            let file_id = self
                .ensure_uploaded(claim, meta, owner, KNOWLEDGE_PURPOSE)
                .await?;
            let known = rows
                .iter()
                .find(|r| r.sha256 == meta.sha256 && r.file_id == file_id);
            let answer = match known {
                Some(r) if r.status != "in_progress" => None,
                Some(_) => match client.retrieve_vector_store_file(&vs, &file_id).await {
                    Ok(Some(f)) => Some(f),
                    Ok(None) => match client.attach_vector_store_file(&vs, &file_id).await {
                        Ok(f) => Some(f),
                        Err(e) => {
                            return Err(self.retry_after(&e, claim, name, "adding a file to"));
                        }
                    },
                    Err(e) => return Err(self.retry_after(&e, claim, name, "checking a file of")),
                },
                None => {
                    // The store changes: no job may take it as ready until it is again.
                    store.unverify_knowledge_store(name).await?;
                    match client.attach_vector_store_file(&vs, &file_id).await {
                        Ok(f) => Some(f),
                        Err(e) => {
                            return Err(self.retry_after(&e, claim, name, "adding a file to"));
                        }
                    }
                }
            };
            let row = match (answer, known) {
                (Some(f), _) => {
                    let row = KnowledgeFile {
                        sha256: meta.sha256.clone(),
                        file_id: file_id.clone(),
                        filename: meta.filename.clone(),
                        status: f.status.clone(),
                        last_error: f.last_error.map(|e| format!("{}: {}", e.code, e.message)),
                        attached_at: known.map_or(self.now(), |k| k.attached_at),
                    };
                    store.put_knowledge_file(name, &row).await?;
                    row
                }
                (None, Some(k)) => k.clone(),
                (None, None) => continue,
            };
            match row.status.as_str() {
                "completed" => {}
                "in_progress" => {
                    waiting += 1;
                    oldest = oldest.min(row.attached_at);
                }
                _ => {
                    // A failure that may pass (`server_error`, a cancel) is forgotten, so the
                    // next job that needs the file adds it again; this one fails now.
                    let lasting = row.last_error.as_deref().is_some_and(|e| {
                        e.starts_with("unsupported_file") || e.starts_with("invalid_file")
                    });
                    if !lasting {
                        store
                            .forget_knowledge_file(name, &row.sha256, &row.file_id)
                            .await?;
                    }
                    return Err(StopOr::Stop(Stop::Refused(JobError {
                        code: "knowledge_file_failed".into(),
                        message: format!(
                            "OpenAI could not process `{}` of knowledge `{name}` ({}): {}",
                            meta.filename,
                            row.status,
                            row.last_error.as_deref().unwrap_or("no reason given")
                        ),
                    })));
                }
            }
        }
        let now = self.now();
        if waiting > 0 {
            // Back off with the time the files have taken so far: 1 s, growing to 30 s.
            let wait = ((now - oldest) / 4).clamp(1_000, 30_000);
            return Err(StopOr::Stop(Stop::Retry {
                at: now + wait,
                reason: format!(
                    "waiting for {waiting} of {} files of knowledge `{name}` to be processed",
                    metas.len()
                ),
            }));
        }
        // Every file of this set is in; the store as a whole must be done too (another job may
        // be adding files to it): a search of a store still ingesting fails.
        match client.retrieve_vector_store(&vs).await {
            Ok(Some(v)) if v.status.as_deref().is_none_or(|s| s == "completed") => {}
            Ok(Some(v)) if v.status.as_deref() == Some("in_progress") => {
                return Err(StopOr::Stop(Stop::Retry {
                    at: now + 2_000,
                    reason: format!(
                        "the store of knowledge `{name}` is still taking in files (for another job); waiting for it"
                    ),
                }));
            }
            Ok(_) => {
                store.forget_knowledge_store(name, &vs).await?;
                return Err(StopOr::Stop(Stop::Retry {
                    at: now + 1_000,
                    reason: format!(
                        "the store of knowledge `{name}` expired meanwhile; making a new one"
                    ),
                }));
            }
            Err(e) => return Err(self.retry_after(&e, claim, name, "checking the store of")),
        }
        store.touch_knowledge_store(name, self.now(), true).await?;
        Ok(())
    }

    /// Makes sure one file is in OpenAI's Files API and was seen there just now.
    async fn ensure_uploaded(
        &self,
        claim: &SubmitClaim,
        meta: &AttachmentMeta,
        owner: &str,
        purpose: &str,
    ) -> Result<String, StopOr> {
        let store = &self.inner.store;
        let client = self.client();
        let name = &meta.filename;
        let event =
            async |message: String, data: Value| self.attachment_event(claim, &message, data).await;
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
                                claim,
                                meta,
                                owner,
                                purpose,
                                client.find_uploaded(
                                    purpose,
                                    name,
                                    meta.bytes,
                                    &meta.sha256,
                                    since / 1000 - 60,
                                ),
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
                            Ok(None) => {
                                event(
                                    format!("an earlier upload of `{name}` may have been lost; it is not in OpenAI's files, so it is uploaded now"),
                                    serde_json::json!({"attachment": meta.id, "searched": true}),
                                )
                                .await?;
                            }
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
                    match self
                        .with_heartbeat(claim, meta, owner, purpose, upload)
                        .await
                    {
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
                            // Ours is not needed (unless the other claim adopted this very
                            // file); removing it keeps the account tidy.
                            let adopted = store
                                .cached_upload(&meta.sha256, purpose)
                                .await?
                                .is_some_and(|(id, _)| id == f.id);
                            if !adopted {
                                let _ = client.delete_file(&f.id).await;
                            }
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
