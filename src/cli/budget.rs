//! `respool budget` (over REST): spend today and this month against the limits, and the jobs
//! held by a budget.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use super::{ApiClient, ServerArgs};
use crate::orchestrator::{BudgetStatus, PeriodSpend};

#[derive(Args, Debug)]
pub struct BudgetArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn run(config: Option<&Path>, a: BudgetArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(config, &a.server)?;
    let b: BudgetStatus = client.get("/v1/budget").await?;
    if a.server.json {
        println!("{}", serde_json::to_string_pretty(&b)?);
    } else {
        print!("{}", render(&b));
    }
    Ok(ExitCode::SUCCESS)
}

/// The budget for people.
pub fn render(b: &BudgetStatus) -> String {
    let line = |label: &str, p: &PeriodSpend| {
        let limit = p
            .limit_usd
            .map_or_else(|| "no limit".to_string(), |l| format!("of ${l:.2}"));
        let start = chrono::DateTime::from_timestamp(p.start, 0)
            .map_or_else(String::new, |d| d.format("%Y-%m-%d %H:%M UTC").to_string());
        format!("{label:<11} ${:.2} {limit}  (since {start})\n", p.spent_usd)
    };
    let mut out = format!("budget ({})\n", b.timezone);
    out.push_str(&line("today", &b.day));
    out.push_str(&line("this month", &b.month));
    match &b.reached {
        Some(which) => out.push_str(&format!(
            "{:<11} {which} budget reached: {} jobs held until it allows\n",
            "status", b.held
        )),
        None => out.push_str(&format!(
            "{:<11} within budget; {} jobs held\n",
            "status", b.held
        )),
    }
    if !b.unpriced_models.is_empty() {
        out.push_str(&format!(
            "{:<11} {} (no price, built in or under `pricing`: not counted, never held)\n",
            "unpriced",
            b.unpriced_models.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_spend_limits_and_held() {
        let b = BudgetStatus {
            object: "budget".into(),
            timezone: "UTC".into(),
            day: PeriodSpend {
                start: 1_764_028_800,
                spent_usd: 21.5,
                limit_usd: Some(20.0),
            },
            month: PeriodSpend {
                start: 1_761_955_200,
                spent_usd: 40.0,
                limit_usd: None,
            },
            reached: Some("daily".into()),
            held: 3,
            unpriced_models: vec!["gpt-x".into()],
        };
        let text = render(&b);
        assert!(text.contains("today       $21.50 of $20.00"), "{text}");
        assert!(text.contains("this month  $40.00 no limit"), "{text}");
        assert!(text.contains("daily budget reached: 3 jobs held"), "{text}");
        assert!(text.contains("unpriced    gpt-x"), "{text}");
    }
}
