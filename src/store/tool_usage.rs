//! Tool usage and service tier as columns, next to the token columns (`tokens.rs`): `jobs`,
//! `job_summaries` and `duplicate_responses` keep what a finished response's hosted tools
//! did (`web_search_calls`, `web_search_preview_calls`, `file_search_calls`,
//! `code_containers`, `images`, `image_fee_microusd`) and the tier it ran in
//! (`service_tier`), so budgets and stats price tool fees and tiers from integers instead of
//! reading each response's JSON. [`crate::pricing::ToolUsage::from_response`] is the one
//! reading of a response; migration `20261206000020_tool_usage` backfilled older rows by the
//! same rules, and a test below holds the two to the same answers.
//!
//! The six counts are NULL until the job's final response is recorded (a job that never
//! reached OpenAI keeps them NULL), then all set at once; `service_tier` is NULL when the
//! response names none (or something that is not a short word).

use super::lending::Conn;
use crate::store::sql;
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;

use super::StoreError;
use crate::job::JobId;
use crate::pricing::tools::service_tier;
use crate::pricing::{ImagePrices, ServiceTier, ToolUsage};

/// The columns, in the order [`BindToolUsage::bind_tool_usage`] binds them and
/// [`ToolColumns`] reads them.
pub(super) const TOOL_COLUMNS: &str = "web_search_calls, web_search_preview_calls, \
    file_search_calls, code_containers, images, image_fee_microusd, service_tier";

/// A row's tool columns as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow, Serialize, utoipa::ToSchema)]
pub struct ToolColumns {
    pub web_search_calls: Option<i64>,
    pub web_search_preview_calls: Option<i64>,
    pub file_search_calls: Option<i64>,
    pub code_containers: Option<i64>,
    pub images: Option<i64>,
    pub image_fee_microusd: Option<i64>,
    /// The `service_tier` the final response reported.
    pub service_tier: Option<String>,
}

impl ToolColumns {
    /// The tool usage, once recorded (a NULL count among recorded ones counts 0).
    pub fn usage(&self) -> Option<ToolUsage> {
        let counts = [
            self.web_search_calls,
            self.web_search_preview_calls,
            self.file_search_calls,
            self.code_containers,
            self.images,
            self.image_fee_microusd,
        ];
        counts.iter().any(Option::is_some).then(|| ToolUsage {
            web_search_calls: self.web_search_calls.unwrap_or(0),
            web_search_preview_calls: self.web_search_preview_calls.unwrap_or(0),
            file_search_calls: self.file_search_calls.unwrap_or(0),
            code_containers: self.code_containers.unwrap_or(0),
            images: self.images.unwrap_or(0),
            image_fee_microusd: self.image_fee_microusd.unwrap_or(0),
        })
    }

    /// The tier the tokens are billed at.
    pub fn tier(&self) -> ServiceTier {
        ServiceTier::of(self.service_tier.as_deref())
    }
}

/// Binds the seven tool columns ([`TOOL_COLUMNS`]) of a final response (its images priced at
/// `images`): all NULL when there is none.
pub(super) trait BindToolUsage {
    fn bind_tool_usage(self, response: Option<&Value>, images: &ImagePrices) -> Self;
}

impl BindToolUsage for crate::store::sql::Query {
    fn bind_tool_usage(self, response: Option<&Value>, images: &ImagePrices) -> Self {
        let u = response.map(|r| ToolUsage::from_response(r, images));
        self.bind(u.map(|u| u.web_search_calls))
            .bind(u.map(|u| u.web_search_preview_calls))
            .bind(u.map(|u| u.file_search_calls))
            .bind(u.map(|u| u.code_containers))
            .bind(u.map(|u| u.images))
            .bind(u.map(|u| u.image_fee_microusd))
            .bind(response.and_then(service_tier).map(str::to_owned))
    }
}

/// Records the tool usage and service tier of a job's final response (its images priced at
/// `images`), in the caller's transaction: called where the job's final observation writes
/// its token columns.
pub(super) async fn record_tool_usage(
    conn: &mut Conn,
    id: &JobId,
    response: &Value,
    images: &ImagePrices,
) -> Result<(), StoreError> {
    sql::query(
        "UPDATE jobs SET web_search_calls = ?, web_search_preview_calls = ?, \
         file_search_calls = ?, code_containers = ?, images = ?, image_fee_microusd = ?, \
         service_tier = ? WHERE id = ?",
    )
    .bind_tool_usage(Some(response), images)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
