//! Credentials in a job's remote tools (an MCP tool's `authorization`, `headers` and a token
//! in its `server_url`) are served nowhere: not in the API's job view or stored response, not
//! on the web job page or its `response.json` download, not in a notification's payload. The
//! stored spec keeps them, so the upstream still receives them.

use std::time::Duration;

use reqwest::Method;
use respool::config::sinks::{FileSink, SinkConfig, TemplateFiles};
use respool::job::JobStatus;
use serde_json::{Value, json};

use crate::helpers;

const DEADLINE: Duration = Duration::from_secs(30);
const SECRETS: [&str; 4] = [
    "SECRET123",
    "sk-auth-SECRET456",
    "hdr-SECRET789",
    "pw-SECRET000",
];

async fn text(app: &helpers::TestApp, path: &str) -> (u16, String) {
    let r = app.request(Method::GET, path).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn tool_credentials_are_redacted_wherever_a_job_is_served() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_path_buf();
    let sink_dir = dir.clone();
    let app = helpers::spawn_app_with(
        move |cfg| {
            let sink = SinkConfig::File(FileSink {
                max_concurrent: None,
                dir: sink_dir,
                templates: TemplateFiles::default(),
            });
            cfg.sinks.insert("files".into(), sink);
            cfg.notify.default = vec!["files".into()];
        },
        helpers::fast_sim(),
    )
    .await;
    let mut body = helpers::job_body("with-mcp");
    body["tools"] = json!([{
        "type": "mcp",
        "server_label": "docs",
        "server_url": "https://user:pw-SECRET000@mcp.example.com/sse?token=SECRET123",
        "authorization": "sk-auth-SECRET456",
        "headers": {"X-Api-Key": "hdr-SECRET789"},
        "require_approval": "never"
    }]);
    let (status, created) = app.post_job(&body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let done = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");

    let (status, job) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, 200, "{job}");
    // The tool is shown, its credentials are not.
    let tool = &job["spec"]["request"]["tools"][0];
    assert_eq!(tool["server_label"], "docs", "{job}");
    assert_eq!(tool["authorization"], "[redacted]", "{job}");
    assert_eq!(tool["headers"]["X-Api-Key"], "[redacted]", "{job}");
    let url = tool["server_url"].as_str().unwrap();
    assert!(url.starts_with("https://mcp.example.com/sse?"), "{url}");

    let (status, response) = app.get(&format!("/v1/jobs/{id}/response")).await;
    assert_eq!(status, 200, "{response}");
    // The simulator echoes the tools, so this checks redaction, not absence.
    assert_eq!(response["tools"][0]["server_label"], "docs", "{response}");
    assert_eq!(response["tools"][0]["authorization"], "[redacted]");

    let (status, page) = text(&app, &format!("/jobs/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Raw response JSON"), "{page}");
    let (status, download) = text(&app, &format!("/jobs/{id}/response.json")).await;
    assert_eq!(status, 200);
    assert!(download.contains("mcp.example.com"), "{download}");

    // The file sink writes the event JSON, response included.
    app.wait_until("the notification is delivered", DEADLINE, async || {
        app.count_events(&id, "notified").await > 0
    })
    .await;
    let json_file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("the sink wrote the event JSON");
    let event = std::fs::read_to_string(json_file).unwrap();
    let parsed: Value = serde_json::from_str(&event).unwrap();
    assert_eq!(
        parsed["data"]["response"]["tools"][0]["authorization"], "[redacted]",
        "{event}"
    );

    let served = [
        ("GET /v1/jobs/{id}", job.to_string()),
        ("GET /v1/jobs/{id}/response", response.to_string()),
        ("the job page", page),
        ("response.json", download),
        ("the notification", event),
    ];
    for (place, text) in &served {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{place} shows {secret}: {text}");
        }
    }

    // Only the copies served are redacted: the upstream got the real credentials (the
    // simulator's own record of the response echoes the request's tools).
    let upstream = app
        .sim
        .response(done.response_id.as_deref().unwrap())
        .expect("the simulator has the response");
    assert_eq!(
        upstream["tools"][0]["authorization"], "sk-auth-SECRET456",
        "{upstream}"
    );
    app.stop().await;
}
