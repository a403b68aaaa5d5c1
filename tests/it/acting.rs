//! Issue 14, "Jobs that act": function handlers and approvals through the real daemon and the
//! simulator. A function handled by a local command reaches a final answer unattended; handlers
//! that hang, fail or print garbage give the model an error output (or fail the job); a function
//! without a handler and an MCP approval request wait for a person (`requires_action`), who
//! answers over the API, the CLI or the job page; policies approve; turns are bounded; a wait
//! past its deadline ends cancelled.

use std::time::Duration;

use respool::job::JobStatus;
use serde_json::{Value, json};

use crate::helpers::{self, TestApp};

const WITHIN: Duration = Duration::from_secs(60);

async fn app(tweak: impl FnOnce(&mut respool::config::Config)) -> TestApp {
    helpers::spawn_app_with(
        |c| {
            c.actions.job_handlers = true;
            tweak(c);
        },
        helpers::fast_sim(),
    )
    .await
}

fn weather_tool() -> Value {
    json!({"type": "function", "name": "get_weather", "description": "Current weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false},
           "strict": true})
}

fn tool(name: &str) -> Value {
    json!({"type": "function", "name": name,
           "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"], "additionalProperties": false}})
}

/// A handler that echoes a fixed JSON answer after reading its arguments.
fn python(code: &str) -> Value {
    json!(["python3", "-c", code])
}

async fn respond(app: &TestApp, id: &str, body: &Value) -> (u16, Value) {
    let r = app
        .request(reqwest::Method::POST, &format!("/v1/jobs/{id}/respond"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn actions(app: &TestApp, id: &str) -> Vec<Value> {
    let (_, job) = app.get(&format!("/v1/jobs/{id}")).await;
    job["actions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_function_handled_by_a_local_command_reaches_a_final_answer() {
    let app = app(|_| {}).await;
    let handler = python(
        "import json,sys; a=json.load(sys.stdin); print(json.dumps({'city': a['city'], 'temp_c': 3, 'sky': 'bewölkt'}, ensure_ascii=False))",
    );
    let id = app
        .submit(&json!({
            "name": "weather", "model": "gpt-4.1",
            "input": "What should I wear in Zürich today?",
            "tools": [weather_tool()],
            "handlers": {"get_weather": {"command": handler, "timeout": 20}},
        }))
        .await;
    let job = app.wait_terminal(&id, WITHIN).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    // Two responses upstream: the call, then the answer built on its output.
    let responses = app.sim.responses(Some(&id));
    assert_eq!(responses.len(), 2, "{responses:?}");
    let text = job.output_text.clone().unwrap_or_default();
    assert!(
        text.contains("bewölkt"),
        "the handler's output reached the model: {text}"
    );
    let acts = actions(&app, &id).await;
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0]["state"], "done");
    assert_eq!(acts[0]["answered_by"], "handler");
    assert_eq!(acts[0]["runs"], 1);
    // The job's usage is both turns'.
    let summed: i64 = responses
        .iter()
        .map(|r| {
            app.sim.response(&r.id).unwrap()["usage"]["total_tokens"]
                .as_i64()
                .unwrap()
        })
        .sum();
    assert_eq!(job.usage.as_ref().unwrap()["total_tokens"], summed);
    let kinds = app.event_kinds(&id).await;
    for k in ["actions", "action", "turn"] {
        assert!(kinds.iter().any(|x| x == k), "no {k}: {kinds:?}");
    }
    // Notified once, for the end only.
    let notes = app.notification_rows(&id).await;
    assert!(
        notes.iter().all(|n| n["event"] == "job.completed"),
        "{notes:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn handlers_that_hang_fail_or_print_garbage_tell_the_model_or_fail_the_job() {
    let app = app(|_| {}).await;
    let id = app
        .submit(&json!({
            "name": "broken handlers", "model": "gpt-4.1",
            "input": "Look these up.",
            "tools": [tool("hangs"), tool("fails"), tool("garbage"), tool("not_json")],
            "handlers": {
                "hangs": {"command": ["sleep", "30"], "timeout": 1},
                "fails": {"command": ["sh", "-c", "echo 'quota exceeded for key' >&2; exit 3"]},
                "garbage": {"command": ["printf", "\\377\\376\\375"]},
                "not_json": {"command": ["echo", "plain words"], "output": "json"},
            },
        }))
        .await;
    let job = app.wait_terminal(&id, WITHIN).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let acts = actions(&app, &id).await;
    assert_eq!(acts.len(), 4, "{acts:?}");
    let by_name = |n: &str| acts.iter().find(|a| a["name"] == n).unwrap().clone();
    let hangs = by_name("hangs");
    assert!(
        hangs["error"]
            .as_str()
            .unwrap()
            .contains("did not finish within 1s"),
        "{hangs}"
    );
    let fails = by_name("fails");
    assert!(
        fails["error"]
            .as_str()
            .unwrap()
            .contains("exited with status 3"),
        "{fails}"
    );
    assert!(
        fails["error"].as_str().unwrap().contains("quota exceeded"),
        "{fails}"
    );
    assert!(
        by_name("garbage")["error"]
            .as_str()
            .unwrap()
            .contains("not UTF-8")
    );
    assert!(
        by_name("not_json")["error"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );
    for a in &acts {
        assert_eq!(a["answered_by"], "respool");
        // The model got a clear error output.
        let out: Value = serde_json::from_str(a["output"].as_str().unwrap()).unwrap();
        assert!(out["error"].as_str().unwrap().contains("failed"), "{out}");
    }

    // `on_error: fail` ends the job instead.
    let id = app
        .submit(&json!({
            "name": "strict", "model": "gpt-4.1", "input": "Look it up.",
            "tools": [tool("fails")],
            "handlers": {"fails": {"command": ["false"], "on_error": "fail"}},
        }))
        .await;
    let job = app.wait_terminal(&id, WITHIN).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let e = job.error.unwrap();
    assert_eq!(e.code, "handler_failed");
    assert!(e.message.contains("exited with status 1"), "{}", e.message);
    assert_eq!(app.sim.responses(Some(&id)).len(), 1, "no second turn");
    app.stop().await;
}

#[tokio::test]
async fn a_function_without_a_handler_waits_for_a_person_who_answers_over_the_api() {
    let app = app(|c| {
        let path = helpers::test_dir(c).join("notes").display().to_string();
        c.sinks.insert(
            "file".into(),
            serde_json::from_value(json!({"type": "file", "dir": path})).unwrap(),
        );
        c.notify.default = vec!["file".into()];
    })
    .await;
    let id = app
        .submit(&json!({
            "name": "needs a person", "model": "gpt-4.1", "input": "Ask me for the code.",
            "tools": [tool("ask_user")],
        }))
        .await;
    let job = app
        .wait_for(&id, WITHIN, |j| j.status == JobStatus::RequiresAction)
        .await;
    let waiting: Vec<_> = job
        .actions
        .iter()
        .filter(|a| a.state == "waiting")
        .collect();
    assert_eq!(waiting.len(), 1);
    let call_id = waiting[0].item_id.clone();
    assert!(call_id.starts_with("call_"), "{call_id}");
    // Its sinks were told what is asked.
    app.wait_until("the requires_action notification", WITHIN, async || {
        app.notification_rows(&id)
            .await
            .iter()
            .any(|n| n["event"] == "job.requires_action" && n["state"] == "delivered")
    })
    .await;
    // A wrong answer names its field, and changes nothing.
    let (s, e) = respond(&app, &id, &json!({"call_id": "call_nope", "output": "x"})).await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["error"]["param"], "call_id");
    assert_eq!(e["error"]["code"], "unknown_action");
    let (s, e) = respond(&app, &id, &json!({"call_id": call_id})).await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["error"]["param"], "output");
    assert_eq!(app.job(&id).await.status, JobStatus::RequiresAction);
    // The right one: the job goes on to the end, the answer reaching the model.
    let answer = "The code is 4711 — «geheim»";
    let (s, v) = respond(&app, &id, &json!([{"call_id": call_id, "output": answer}])).await;
    assert_eq!(s, 200, "{v}");
    let job = app.wait_terminal(&id, WITHIN).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert!(job.output_text.unwrap_or_default().contains("4711"));
    // Too late now.
    let (s, e) = respond(&app, &id, &json!({"call_id": call_id, "output": "again"})).await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["error"]["code"], "not_waiting");
    app.stop().await;
}

#[tokio::test]
async fn turns_are_bounded_and_waits_end_at_their_deadline() {
    let app = app(|c| c.actions.max_turns = 2).await;
    // The model keeps calling: the third turn is never sent.
    let id = app
        .submit(&json!({
            "name": "loops", "model": "gpt-4.1", "input": "Keep looking. SIM_FUNCTION_TURNS=5",
            "tools": [tool("look")],
            "handlers": {"look": {"command": ["echo", "nothing yet"]}},
        }))
        .await;
    let job = app.wait_terminal(&id, WITHIN).await;
    assert_eq!(job.status, JobStatus::Incomplete, "{job:?}");
    assert_eq!(job.error.as_ref().unwrap().code, "max_turns");
    assert_eq!(app.sim.responses(Some(&id)).len(), 2);

    // Nobody answers: cancelled at the job's deadline.
    let id = app
        .submit(&json!({
            "name": "unanswered", "model": "gpt-4.1", "input": "Ask me.", "timeout": 4,
            "tools": [tool("ask_user")],
        }))
        .await;
    let job = app.wait_terminal(&id, WITHIN).await;
    assert_eq!(job.status, JobStatus::Cancelled, "{job:?}");
    let e = job.error.unwrap();
    assert_eq!(e.code, "timeout");
    assert!(
        e.message.contains("requires_action") || e.message.contains("timeout"),
        "{}",
        e.message
    );

    // Cancelled while it waits: at once, no further turn.
    let id = app
        .submit(&json!({"name": "cancel me", "model": "gpt-4.1", "input": "Ask me.", "tools": [tool("ask_user")]}))
        .await;
    app.wait_for(&id, WITHIN, |j| j.status == JobStatus::RequiresAction)
        .await;
    let (s, v) = app.post(&format!("/v1/jobs/{id}/cancel")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "cancelled", "{v}");
    assert_eq!(app.sim.responses(Some(&id)).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_jobs_own_handlers_need_the_configs_leave() {
    let app = helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await;
    let (s, e) = app
        .post_job(&json!({
            "name": "sneaky", "model": "gpt-4.1", "input": "x", "tools": [tool("f")],
            "handlers": {"f": {"command": ["rm", "-rf", "/tmp/nothing"]}},
        }))
        .await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(e["error"]["param"], "handlers.f");
    assert_eq!(e["error"]["code"], "job_handlers_not_allowed");
    // A config handler is always allowed, and a job's spec never shows its environment.
    let (s, e) = app
        .post_job(
            &json!({"name": "bad", "model": "gpt-4.1", "input": "x", "tools": [tool("f")],
                          "handlers": {"f": {"command": ["a"], "timeout": 7200}}}),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["param"]
            .as_str()
            .unwrap()
            .starts_with("handlers"),
        "{e}"
    );
    app.stop().await;
}

fn mcp(label: &str) -> Value {
    json!({"type": "mcp", "server_label": label, "server_url": format!("https://{label}.example.net/sse/"),
           "require_approval": "always"})
}

/// Runs the CLI against the daemon.
async fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(["--server".to_string(), app.base.clone()]);
    tokio::task::spawn_blocking(move || {
        assert_cmd::Command::cargo_bin("respool")
            .unwrap()
            .args(&all)
            .env_remove("RESPOOL_CONFIG")
            .env_remove("RESPOOL_TOKEN")
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

async fn waiting_approval(app: &TestApp, id: &str) -> String {
    let job = app
        .wait_for(id, WITHIN, |j| j.status == JobStatus::RequiresAction)
        .await;
    let w: Vec<_> = job
        .actions
        .iter()
        .filter(|a| a.state == "waiting")
        .collect();
    assert_eq!(w.len(), 1, "{:?}", job.actions);
    assert_eq!(w[0].kind, "approval");
    assert!(w[0].item_id.starts_with("mcpr_"), "{}", w[0].item_id);
    w[0].item_id.clone()
}

#[tokio::test]
async fn an_mcp_approval_waits_and_goes_on_after_the_cli_the_web_form_or_a_policy() {
    use crate::web::FormBody;
    let app = app(|c| {
        c.actions.approvals = vec![respool::job::handler::ApprovalPolicy {
            server: "trusted".into(),
            tools: None,
            approve: true,
        }];
    })
    .await;
    let body = |name: &str, label: &str| {
        json!({"name": name, "model": "gpt-4.1", "input": "Search the docs for the release notes.",
               "tools": [mcp(label)]})
    };

    // The CLI lists what waits, then denies with a reason.
    let id = app.submit(&body("denied", "docs")).await;
    let mcpr = waiting_approval(&app, &id).await;
    let listed = cli(&app, &["jobs", "respond", &id]).await;
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(listed.status.success(), "{listed:?}");
    assert!(text.contains(&mcpr) && text.contains("--approve"), "{text}");
    let out = cli(
        &app,
        &[
            "jobs",
            "respond",
            &id,
            "--deny",
            &mcpr,
            "--reason",
            "nicht heute",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let job = app.wait_terminal(&id, WITHIN).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert!(
        job.output_text.clone().unwrap().contains("not approved"),
        "{job:?}"
    );
    let answered = &job.actions[0];
    assert_eq!(answered.answered_by.as_deref(), Some("person"));
    let calls = app.sim.responses(Some(&id));
    assert_eq!(calls.len(), 2);

    // The job page's form approves.
    let id = app.submit(&body("approved", "docs")).await;
    let mcpr = waiting_approval(&app, &id).await;
    let page = app.page(&format!("/jobs/{id}")).await;
    assert!(
        page.contains("Waiting for your answer") && page.contains(&mcpr),
        "{page}"
    );
    let csrf = crate::web::csrf_of(&page);
    let http = crate::web::no_redirects();
    let url = format!("{}/jobs/{id}/respond", app.base);
    // A forged token changes nothing.
    let r = http
        .post(&url)
        .form_body(&[
            ("csrf", "forged"),
            ("item_id", &mcpr),
            ("kind", "approval"),
            ("approve", "true"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(app.job(&id).await.status, JobStatus::RequiresAction);
    let r = http
        .post(&url)
        .header("origin", &app.base)
        .form_body(&[
            ("csrf", csrf.as_str()),
            ("item_id", &mcpr),
            ("kind", "approval"),
            ("approve", "true"),
            ("reason", "ok"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let job = app.wait_terminal(&id, WITHIN).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let last = app
        .sim
        .response(&app.sim.responses(Some(&id))[1].id)
        .unwrap();
    let kinds: Vec<&str> = last["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"mcp_call"),
        "approved: the call was made: {kinds:?}"
    );

    // A policy answers without a person: no wait, no requires_action.
    let id = app.submit(&body("trusted", "trusted")).await;
    let job = app.wait_terminal(&id, WITHIN).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(job.actions[0].answered_by.as_deref(), Some("policy"));
    assert!(!app.event_kinds(&id).await.is_empty());
    let (_, events) = app.get(&format!("/v1/jobs/{id}/events")).await;
    assert!(
        !events.to_string().contains("requires_action"),
        "a policy's approval never waits: {events}"
    );
    app.stop().await;
}

/// The interactive example, as its comments say to run it: `respool submit` against a daemon,
/// the job waits for a person, who approves it over the API; it goes on to the answer.
#[tokio::test]
async fn the_interactive_mcp_example_waits_and_goes_on_after_an_api_answer() {
    let app = app(|_| {}).await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/interactive/mcp-approval.yaml")
        .display()
        .to_string();
    let out = cli(&app, &["submit", &file, "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let submitted: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = submitted
        .as_array()
        .and_then(|a| a.first())
        .unwrap_or(&submitted)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mcpr = waiting_approval(&app, &id).await;
    // The timeline and the waiting notification say what is asked.
    let (_, events) = app.get(&format!("/v1/jobs/{id}/events")).await;
    assert!(events.to_string().contains("release_notes"), "{events}");
    let (s, v) = respond(
        &app,
        &id,
        &json!({"approval_request_id": mcpr, "approve": true, "reason": "go ahead"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let job = app.wait_terminal(&id, WITHIN).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(job.actions[0].answered_by.as_deref(), Some("person"));
    app.stop().await;
}

/// Jobs between turns hold their place in flight: with every place taken by jobs whose
/// response asked for a function, their next turns are still sent (no deadlock), and the
/// jobs waiting behind them go when places free up.
#[tokio::test]
async fn jobs_between_turns_never_block_each_other_at_the_in_flight_limit() {
    let app = app(|c| c.limits.max_in_flight = 2).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.submit(&json!({
                "name": format!("turns-{i}"), "model": "gpt-4.1", "input": format!("Look up item {i}."),
                "tools": [tool("look")],
                "handlers": {"look": {"command": ["echo", "found it"]}},
            }))
            .await,
        );
    }
    for id in &ids {
        let job = app.wait_terminal(id, WITHIN).await;
        assert_eq!(job.status, JobStatus::Completed, "{job:?}");
        assert_eq!(app.sim.responses(Some(id)).len(), 2);
    }
    app.stop().await;
}

/// A `progress: stream` job that acts streams each turn: every turn's response is its own
/// stream (its sequence numbers from 0 again), and the later turn's milestones are recorded
/// too; the text joined from them is the answer, once.
#[tokio::test]
async fn a_streamed_job_that_acts_shows_every_turns_progress() {
    let app = app(|_| {}).await;
    let id = app
        .submit(&json!({
            "name": "streamed turns", "model": "gpt-4.1", "input": "Look it up, then answer.",
            "tools": [tool("look")], "progress": "stream",
            "handlers": {"look": {"command": ["echo", "the answer is 42"]}},
            "metadata": {"sim": "run=2s"},
        }))
        .await;
    let job = app.wait_terminal(&id, WITHIN).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let events = app.events(&id).await;
    let turn_at = events
        .iter()
        .position(|e| e["kind"] == "turn")
        .expect("a turn event");
    let later: Vec<&Value> = events[turn_at..]
        .iter()
        .filter(|e| e["kind"] == "progress")
        .collect();
    assert!(
        !later.is_empty(),
        "the second turn's stream recorded nothing: {events:#?}"
    );
    let text: String = events
        .iter()
        .filter_map(|e| e["data"]["text_delta"].as_str())
        .collect();
    assert_eq!(
        Some(text),
        job.output_text,
        "the streamed text is the answer, once"
    );
    app.stop().await;
}
