//! `GET /v1/budget`: spend today and this month, the limits, and the jobs held.

use axum::Json;
use axum::extract::State;

use super::error::ErrorBody;
use super::{ApiError, ApiState};
use crate::orchestrator::BudgetStatus;

/// Where the budgets stand: spend of the current day and month (in `budget.timezone`), the
/// limits, which one is reached, how many jobs are held, and models that cannot be costed.
#[utoipa::path(get, path = "/v1/budget", tag = "budget",
    responses((status = 200, body = BudgetStatus), (status = 500, body = ErrorBody)))]
pub async fn get_budget(State(state): State<ApiState>) -> Result<Json<BudgetStatus>, ApiError> {
    Ok(Json(state.orchestrator.budget_status().await?))
}
