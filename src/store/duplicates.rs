//! Duplicate responses: runs created for a job that already holds another response (a create
//! sent again after its answer was lost, a run a webhook revealed later). Each is cancelled
//! while it runs and kept here with its status and usage, so what was paid for twice is
//! visible (`jobs show`, the job page, stats) instead of silently billed.

use crate::store::sql;
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;

use super::events::{EventKind, add_event};
use super::tokens::BindTokens;
use super::tool_usage::{BindToolUsage, TOOL_COLUMNS, ToolColumns};
use super::{Store, StoreError};
use crate::job::{JobId, ResponseId};

/// A duplicate response of a job.
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct DuplicateRow {
    #[schema(value_type = String)]
    pub response_id: ResponseId,
    #[schema(value_type = String)]
    pub job_id: JobId,
    /// Its last known upstream status, or `unknown`.
    pub status: String,
    /// The upstream usage object, once known.
    #[sqlx(try_from = "crate::store::sql::NullableJson")]
    pub usage: Option<Value>,
    /// How it was found: `create`, `webhook`, `journal`.
    pub found_by: String,
    pub found_at: i64,
    pub updated_at: i64,
    /// When respool looks at it again (to cancel it or learn its usage); `None` once final.
    pub next_check_at: Option<i64>,
    pub checks: i64,
    /// What its final response's hosted tools did, and its service tier.
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub tools: ToolColumns,
}

/// A duplicate to record, or what a later look found.
#[derive(Debug, Clone, Copy)]
pub struct NewDuplicate<'a> {
    pub job_id: &'a str,
    pub response_id: &'a str,
    pub status: &'a str,
    pub usage: Option<&'a Value>,
    pub raw: Option<&'a Value>,
    pub found_by: &'a str,
    pub now: i64,
    pub next_check_at: Option<i64>,
    /// The image prices in force, for the images of a final response.
    pub image_prices: crate::pricing::ImagePrices,
}

const COLUMNS: &str =
    "response_id, job_id, status, usage, found_by, found_at, updated_at, next_check_at, checks";

/// Whether an upstream status is a final one: a response seen in it has its tool usage
/// recorded.
fn is_final(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "incomplete" | "cancelled")
}

impl Store {
    /// Records a duplicate response, or updates what is known of it (status, usage, tool
    /// usage once final, the next look). The first time, a `duplicate` event joins the job's timeline in the same
    /// transaction. Returns whether it was new.
    pub async fn record_duplicate(&self, d: &NewDuplicate<'_>) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let known: Option<String> =
            sql::query_scalar("SELECT response_id FROM duplicate_responses WHERE response_id = ?")
                .bind(d.response_id)
                .fetch_optional(&mut *tx)
                .await?;
        sql::query(
            "INSERT INTO duplicate_responses (response_id, job_id, status, usage, input_tokens, \
             cached_tokens, output_tokens, reasoning_tokens, total_tokens, web_search_calls, \
             web_search_preview_calls, file_search_calls, code_containers, images, \
             image_fee_microusd, service_tier, response, found_by, found_at, updated_at, \
             next_check_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (response_id) DO UPDATE SET status = excluded.status, \
             usage = COALESCE(excluded.usage, duplicate_responses.usage), \
             input_tokens = COALESCE(excluded.input_tokens, duplicate_responses.input_tokens), \
             cached_tokens = COALESCE(excluded.cached_tokens, duplicate_responses.cached_tokens), \
             output_tokens = COALESCE(excluded.output_tokens, duplicate_responses.output_tokens), \
             reasoning_tokens = COALESCE(excluded.reasoning_tokens, duplicate_responses.reasoning_tokens), \
             total_tokens = COALESCE(excluded.total_tokens, duplicate_responses.total_tokens), \
             web_search_calls = COALESCE(excluded.web_search_calls, duplicate_responses.web_search_calls), \
             web_search_preview_calls = COALESCE(excluded.web_search_preview_calls, duplicate_responses.web_search_preview_calls), \
             file_search_calls = COALESCE(excluded.file_search_calls, duplicate_responses.file_search_calls), \
             code_containers = COALESCE(excluded.code_containers, duplicate_responses.code_containers), \
             images = COALESCE(excluded.images, duplicate_responses.images), \
             image_fee_microusd = COALESCE(excluded.image_fee_microusd, duplicate_responses.image_fee_microusd), \
             service_tier = CASE WHEN excluded.web_search_calls IS NULL \
               THEN duplicate_responses.service_tier ELSE excluded.service_tier END, \
             response = COALESCE(excluded.response, duplicate_responses.response), \
             updated_at = excluded.updated_at, next_check_at = excluded.next_check_at, \
             checks = duplicate_responses.checks + 1",
        )
        .bind(d.response_id)
        .bind(d.job_id)
        .bind(d.status)
        .bind(d.usage.map(ToString::to_string))
        .bind_tokens(d.usage)
        .bind_tool_usage(d.raw.filter(|_| is_final(d.status)), &d.image_prices)
        .bind(d.raw.map(ToString::to_string))
        .bind(d.found_by)
        .bind(d.now)
        .bind(d.now)
        .bind(d.next_check_at)
        .execute(&mut *tx)
        .await?;
        let new = known.is_none();
        if new {
            let data = serde_json::json!({"response_id": d.response_id, "status": d.status});
            add_event(
                &mut tx,
                d.job_id,
                d.now,
                EventKind::Duplicate,
                &format!(
                    "a second response {} ({}) exists for this job (found by {}); it is cancelled if it still runs and kept as a paid duplicate",
                    d.response_id, d.status, d.found_by
                ),
                Some(&data),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    /// The duplicate responses of a job, oldest first.
    pub async fn duplicates_of(&self, job_id: &JobId) -> Result<Vec<DuplicateRow>, StoreError> {
        Ok(sql::query_as::<DuplicateRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, {TOOL_COLUMNS} FROM duplicate_responses WHERE job_id = ? ORDER BY found_at, response_id"
        )))
        .bind(job_id)
        .fetch_all(&self.reads)
        .await?)
    }

    /// Duplicates due for another look (still running, or their usage not known yet).
    pub async fn due_duplicates(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<DuplicateRow>, StoreError> {
        Ok(sql::query_as::<DuplicateRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, {TOOL_COLUMNS} FROM duplicate_responses WHERE next_check_at <= ? \
             ORDER BY next_check_at LIMIT ?"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.reads)
        .await?)
    }
}
