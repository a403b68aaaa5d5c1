//! `/stats`: jobs by status and totals (tokens, cost) over the last 7 and 30 days, by model.
//! Computed from pages of `list_jobs`, bounded to [`MAX_JOBS`] jobs; the page says when the
//! bound was reached.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use super::pages::SessionView;
use super::session::Session;
use super::view;
use super::{PageError, render};
use crate::api::AppState;
use crate::job::JobStatus;
use crate::store::{JobFilter, JobRow};

/// The most jobs read for one stats page.
const MAX_JOBS: usize = 5_000;
const DAY_MS: i64 = 86_400_000;

#[derive(Default)]
struct Acc {
    jobs: i64,
    by_status: BTreeMap<String, i64>,
    tokens: i64,
    cost: f64,
    priced: bool,
    by_model: BTreeMap<String, (i64, i64, f64)>,
}

#[derive(Serialize)]
struct WindowView {
    label: &'static str,
    jobs: String,
    tokens: String,
    cost: String,
    statuses: Vec<(String, i64)>,
    models: Vec<ModelView>,
}

#[derive(Serialize)]
struct ModelView {
    model: String,
    /// The job list filtered to this model.
    href: String,
    jobs: String,
    tokens: String,
    cost: String,
}

impl Acc {
    fn add(&mut self, row: &JobRow, config: &crate::config::Config) {
        self.jobs += 1;
        *self.by_status.entry(row.status.to_string()).or_default() += 1;
        let t = view::tokens(row.usage.as_ref());
        let tokens = t.as_ref().map_or(0, |t| t.total);
        let cost = t
            .as_ref()
            .and_then(|t| view::cost_usd(config, &row.model, t));
        self.tokens += tokens;
        self.cost += cost.unwrap_or(0.0);
        self.priced |= cost.is_some();
        let m = self.by_model.entry(row.model.clone()).or_default();
        m.0 += 1;
        m.1 += tokens;
        m.2 += cost.unwrap_or(0.0);
    }

    fn view(self, label: &'static str) -> WindowView {
        let money = |c: f64, priced: bool| if priced { view::money(c) } else { "—".into() };
        let statuses = JobStatus::ALL
            .iter()
            .map(|s| {
                let n = self.by_status.get(s.as_str()).copied().unwrap_or(0);
                (s.as_str().to_string(), n)
            })
            .collect();
        let mut models: Vec<_> = self.by_model.into_iter().collect();
        models.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
        WindowView {
            label,
            jobs: view::thousands(self.jobs),
            tokens: view::thousands(self.tokens),
            cost: money(self.cost, self.priced),
            statuses,
            models: models
                .into_iter()
                .map(|(model, (jobs, tokens, cost))| ModelView {
                    href: format!(
                        "/?{}",
                        url::form_urlencoded::Serializer::new(String::new())
                            .append_pair("model", &model)
                            .finish()
                    ),
                    model,
                    jobs: view::thousands(jobs),
                    tokens: view::thousands(tokens),
                    cost: money(cost, self.priced),
                })
                .collect(),
        }
    }
}

pub async fn stats(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, PageError> {
    let store = state.orchestrator.store();
    let config = state.orchestrator.config();
    let now = state.orchestrator.clock().now_ms();
    let (mut week, mut month) = (Acc::default(), Acc::default());
    let mut filter = JobFilter {
        since: Some(now - 30 * DAY_MS),
        limit: 200,
        ..JobFilter::default()
    };
    let mut seen = 0usize;
    let mut truncated = false;
    loop {
        let rows = store.list_jobs(&filter).await?;
        for row in &rows {
            month.add(row, &config);
            if row.created_at >= now - 7 * DAY_MS {
                week.add(row, &config);
            }
        }
        seen += rows.len();
        match rows.last() {
            Some(last) if rows.len() as i64 == filter.limit => {
                if seen >= MAX_JOBS {
                    truncated = true;
                    break;
                }
                filter.before = Some((last.created_at, last.id.clone()));
            }
            _ => break,
        }
    }
    let counts = store.count_by_status().await?;
    // In the status machine's order, like the windows above.
    let all_time: Vec<(String, i64)> = JobStatus::ALL
        .iter()
        .filter_map(|s| counts.iter().find(|(k, _)| k == s.as_str()).cloned())
        .collect();
    render(
        "stats.html",
        context! {
            page => "stats",
            session => super::ser(SessionView::from(&session)),
            windows => super::ser(vec![week.view("Last 7 days"), month.view("Last 30 days")]),
            all_time => super::ser(all_time),
            truncated,
            max_jobs => view::thousands(MAX_JOBS as i64),
        },
    )
}
