//! `respool webhook register|rotate|test|list`: manage the webhook endpoints of the OpenAI
//! project through the daemon (`/v1/webhook`), which makes the upstream calls with its API key
//! and keeps the signing secrets. Secrets are never printed, only their last four characters.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use serde_json::json;

use super::{ApiClient, ServerArgs};
use crate::api::endpoint_test::TestReport;
use crate::api::endpoints::{EndpointChange, EndpointView, WebhookOverview};

#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Register this daemon's receiver URL as a webhook endpoint upstream and keep its secret.
    Register(RegisterArgs),
    /// Rotate an endpoint's signing secret; the old one stays accepted for 24 hours.
    Rotate(EndpointArgs),
    /// Have OpenAI send a test event; report whether it arrived here and verified.
    Test(TestArgs),
    /// The project's webhook endpoints and the secrets respool holds (hints only).
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// The public URL of the receiver, e.g. https://respool.example.com/webhooks/openai.
    pub url: String,
    /// The endpoint's name upstream.
    #[arg(long, default_value = "respool")]
    pub name: String,
    /// Event types, comma-separated (default: response.completed, response.failed,
    /// response.incomplete, response.cancelled).
    #[arg(long, value_delimiter = ',')]
    pub events: Vec<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct EndpointArgs {
    /// The endpoint (`we_…`; default: the only one respool holds a secret for).
    #[arg(long)]
    pub endpoint: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// The endpoint (`we_…`; default: the only one respool holds a secret for).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The event type of the test event.
    #[arg(long, default_value = "response.completed")]
    pub event_type: String,
    /// How long to wait for the test event to arrive (at most 30s).
    #[arg(long, default_value = "5s", value_parser = test_wait)]
    pub wait: Duration,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

fn time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or("-".into(), |d| {
        d.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    })
}

fn hints(e: &EndpointView) -> String {
    e.secrets
        .iter()
        .map(|s| match s.expires_at {
            Some(at) => format!("{} (until {})", s.hint, time(at)),
            None => s.hint.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn table(endpoints: &[EndpointView]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(["ID", "NAME", "URL", "EVENTS", "SECRETS HELD"]);
    for e in endpoints {
        t.add_row([
            e.id.clone(),
            e.name.clone().unwrap_or_default(),
            e.url.clone().unwrap_or_else(|| "?".into()),
            e.event_types.join(", "),
            if e.managed {
                hints(e)
            } else {
                "none (registered elsewhere)".into()
            },
        ]);
    }
    t.to_string()
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run(config: Option<&Path>, cmd: WebhookCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WebhookCommand::Register(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let mut body = json!({"url": a.url, "name": a.name});
            if !a.events.is_empty() {
                body["events"] = json!(a.events);
            }
            let done: EndpointChange = client
                .post("/v1/webhook/register", Some(&body), None)
                .await?;
            if a.server.json {
                print_json(&done)?;
            } else {
                let e = &done.endpoint;
                println!(
                    "registered webhook endpoint {} → {}\n  events: {}\n  secret {} stored in the daemon's database; deliveries signed with it verify now",
                    e.id,
                    e.url.as_deref().unwrap_or("?"),
                    e.event_types.join(", "),
                    hints(e),
                );
            }
        }
        WebhookCommand::Rotate(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let body = json!({"endpoint_id": a.endpoint});
            let done: EndpointChange = client.post("/v1/webhook/rotate", Some(&body), None).await?;
            if a.server.json {
                print_json(&done)?;
            } else {
                println!(
                    "rotated the signing secret of {}\n  accepted now: {}",
                    done.endpoint.id,
                    hints(&done.endpoint)
                );
            }
        }
        WebhookCommand::Test(a) => {
            // (`test_wait` has held `--wait` to the API's 30 s.)
            let client = ApiClient::from_args(config, &a.server)?;
            let body = json!({
                "endpoint_id": a.endpoint,
                "event_type": a.event_type,
                "wait_ms": u64::try_from(a.wait.as_millis()).unwrap_or(u64::MAX),
            });
            let report: TestReport = client.post("/v1/webhook/test", Some(&body), None).await?;
            if a.server.json {
                print_json(&report)?;
            } else {
                let upstream = match report.upstream_status_code {
                    Some(code) => format!("the endpoint answered {code}"),
                    None => "OpenAI could not deliver it".into(),
                };
                println!(
                    "{} test of {}: {upstream}; {}\n  {}",
                    report.event_type,
                    report.endpoint_id,
                    if report.verified {
                        "arrived and verified"
                    } else {
                        "NOT verified here"
                    },
                    report.message
                );
            }
            if !report.verified {
                return Ok(ExitCode::FAILURE);
            }
        }
        WebhookCommand::List(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let overview: WebhookOverview = client.get("/v1/webhook").await?;
            if a.server.json {
                print_json(&overview)?;
            } else {
                if overview.endpoints.is_empty() {
                    println!("no webhook endpoints");
                } else {
                    println!("{}", table(&overview.endpoints));
                }
                println!(
                    "receiver: {}; secrets from the config: {}",
                    overview.receiver_path, overview.config_secrets
                );
                if let Some(e) = &overview.upstream_error {
                    println!("cannot list the endpoints upstream: {e}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--wait`: a duration of at most 30 s, what `POST /v1/webhook/test` waits at the most.
fn test_wait(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > Duration::from_secs(30) {
        return Err(format!(
            "`{s}` is longer than the 30s the daemon waits at the most"
        ));
    }
    Ok(d)
}
