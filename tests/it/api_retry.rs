//! `POST /v1/jobs/{id}/retry` against the real daemon and the simulator: a finished job is run
//! again from its spec as a new, linked job (`retry_of` / `retried_by`, events on both); a job
//! still running is a conflict; unknown ids are 404; the token guards it; and the retry flows
//! like any new job (a reached budget holds it).

use std::time::Duration;

use reqwest::Method;
use respool::job::JobStatus;
use respool::sim::{Faults, SimConfig};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers;

const DEADLINE: Duration = Duration::from_secs(30);

fn fast_sim(faults: Faults) -> SimConfig {
    SimConfig {
        queue_time: Duration::from_millis(100),
        run_time: Duration::from_millis(300),
        faults,
        ..SimConfig::default()
    }
}

/// `POST /v1/jobs/{id}/retry`: the status, the `Location` header and the JSON body.
async fn retry(app: &helpers::TestApp, id: &str) -> (u16, Option<String>, Value) {
    let r = app
        .request(Method::POST, &format!("/v1/jobs/{id}/retry"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (status, location, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_failed_job_is_retried_as_a_new_linked_job_that_completes() {
    // Every response fails until the fault is lifted.
    let app = helpers::spawn_app_with(
        |_| {},
        fast_sim(Faults {
            fail: 1.0,
            ..Faults::default()
        }),
    )
    .await;
    let mut body = helpers::job_body("flaky");
    body["priority"] = json!(7);
    body["timeout"] = json!("10m");
    body["idempotency_key"] = json!("flaky-once");
    body["metadata"] = json!({"owner": "ops"});
    let original = app.submit(&body).await;
    let failed = app.wait_terminal(&original, DEADLINE).await;
    assert_eq!(failed.status, JobStatus::Failed, "{failed:?}");
    app.sim.set_faults(Faults::default());

    let (status, location, created) = retry(&app, &original).await;
    assert_eq!(status, 201, "{created}");
    let new_id = created["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, original);
    assert_eq!(
        location.as_deref(),
        Some(format!("/v1/jobs/{new_id}").as_str())
    );
    assert_eq!(created["retry_of"], original.as_str());
    // The same spec, but a new job: no idempotency key, and the list-style view has no spec.
    assert_eq!(created["name"], "flaky");
    assert_eq!(created["priority"], 7);
    assert_eq!(created["metadata"], json!({"owner": "ops"}));
    assert_eq!(created["idempotency_key"], Value::Null);
    assert!(created.get("spec").is_none(), "{created}");

    let done = app.wait_terminal(&new_id, DEADLINE).await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    assert_eq!(done.retry_of.as_deref(), Some(original.as_str()));
    assert!(done.retried_by.is_empty());
    // The retry was sent upstream with the original's request.
    let stats = app.sim.stats();
    assert_eq!(stats.creates_by_job_id.get(&new_id), Some(&1), "{stats:?}");
    let spec = done.spec.expect("the single-job view has the spec");
    assert_eq!(spec["request"]["input"], "Write about flaky.");
    assert_eq!(spec["request"]["model"], "gpt-5");
    assert_eq!(spec["priority"], 7);
    assert_eq!(spec["timeout"].as_f64(), Some(600.0), "{spec}");
    assert!(
        spec.get("idempotency_key").is_none_or(Value::is_null),
        "{spec}"
    );

    // The original links forward and keeps its own spec and key.
    let orig = app.job(&original).await;
    assert_eq!(orig.retried_by, vec![new_id.clone()]);
    assert_eq!(orig.status, JobStatus::Failed);
    assert_eq!(orig.idempotency_key.as_deref(), Some("flaky-once"));
    assert_eq!(orig.spec.unwrap()["idempotency_key"], "flaky-once");

    // Both timelines say what happened.
    let events = app.events(&original).await;
    let retried = events.iter().find(|e| e["kind"] == "retried").unwrap();
    assert!(
        retried["message"].as_str().unwrap().contains(&new_id),
        "{retried}"
    );
    assert_eq!(retried["data"]["retried_by"], new_id.as_str());
    let events = app.events(&new_id).await;
    assert_eq!(events[0]["kind"], "accepted", "{events:?}");
    assert!(
        events[0]["message"].as_str().unwrap().contains(&original),
        "{:?}",
        events[0]
    );
    assert_eq!(events[0]["data"]["retry_of"], original.as_str());

    // Retrying again (a completed job can be retried too) adds to the list, oldest first.
    let (status, _, second) = retry(&app, &original).await;
    assert_eq!(status, 201, "{second}");
    let (status, _, of_retry) = retry(&app, &new_id).await;
    assert_eq!(status, 201, "{of_retry}");
    assert_eq!(of_retry["retry_of"], new_id.as_str());
    let orig = app.job(&original).await;
    assert_eq!(
        orig.retried_by,
        vec![new_id.clone(), second["id"].as_str().unwrap().to_string()]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retry_keeps_the_spec_including_its_per_request_faults() {
    let app = helpers::spawn_app_with(|_| {}, fast_sim(Faults::default())).await;
    let mut body = helpers::job_body("doomed");
    body["metadata"] = json!({"sim": "outcome=failed:vector_store_timeout"});
    let original = app.submit(&body).await;
    let job = app.wait_terminal(&original, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().code, "vector_store_timeout");

    let (status, _, created) = retry(&app, &original).await;
    assert_eq!(status, 201, "{created}");
    let new_id = created["id"].as_str().unwrap();
    assert_eq!(
        created["metadata"]["sim"],
        "outcome=failed:vector_store_timeout"
    );
    let again = app.wait_terminal(new_id, DEADLINE).await;
    assert_eq!(again.status, JobStatus::Failed);
    assert_eq!(again.error.unwrap().code, "vector_store_timeout");
    app.stop().await;
}

#[tokio::test]
async fn a_running_job_cannot_be_retried_until_it_ends() {
    let app = helpers::spawn_app_with(|_| {}, fast_sim(Faults::default())).await;
    let mut body = helpers::job_body("stuck");
    body["metadata"] = json!({"sim": "stuck"});
    let id = app.submit(&body).await;
    let running = app
        .wait_for(&id, DEADLINE, |j| j.response_id.is_some())
        .await;
    assert!(!running.status.is_terminal(), "{running:?}");

    let (status, location, answer) = retry(&app, &id).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(location, None);
    assert_eq!(answer["error"]["type"], "not_terminal", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    // The status it names is the job's at the retry: it may have moved on (pending → queued →
    // in_progress) since the look above, but not to an end.
    assert!(
        ["pending", "held", "queued", "in_progress"]
            .iter()
            .any(|s| message.contains(&format!("is {s};"))),
        "{message}"
    );
    assert!(message.contains(&id), "{message}");
    assert_eq!(app.count_rows("jobs").await, 1);
    assert_eq!(app.count_events(&id, "retried").await, 0);

    // Cancelled is finished: now it can be retried.
    let (status, cancelled) = app.post(&format!("/v1/jobs/{id}/cancel")).await;
    assert_eq!(status, 200, "{cancelled}");
    app.wait_for(&id, DEADLINE, |j| j.status == JobStatus::Cancelled)
        .await;
    let (status, _, created) = retry(&app, &id).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["retry_of"], id.as_str());
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_job_is_404_and_the_endpoint_is_documented() {
    let app = helpers::spawn_app_with(|_| {}, fast_sim(Faults::default())).await;
    let (status, location, answer) = retry(&app, "job_does_not_exist").await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(location, None);
    assert_eq!(answer["error"]["type"], "not_found_error");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("job_does_not_exist")
    );
    assert_eq!(app.count_rows("jobs").await, 0);

    // The endpoint is in the OpenAPI document, with its answers.
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    let responses = &doc["paths"]["/v1/jobs/{id}/retry"]["post"]["responses"];
    for code in ["201", "404", "409"] {
        assert!(responses.get(code).is_some(), "{code}: {responses}");
    }
    app.stop().await;
}

#[tokio::test]
async fn retry_needs_the_api_token() {
    let app = helpers::spawn_app_with(
        |cfg| cfg.api.tokens = vec![SecretString::from("tok-right")],
        fast_sim(Faults::default()),
    )
    .await;
    let r = app
        .request(Method::POST, "/v1/jobs")
        .bearer_auth("tok-right")
        .json(&helpers::job_body("guarded"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let get = async |id: &str| {
        let r = app
            .request(Method::GET, &format!("/v1/jobs/{id}"))
            .bearer_auth("tok-right")
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()
    };
    app.wait_until("the job finishes", DEADLINE, async || {
        get(&id).await["status"] == "completed"
    })
    .await;

    let path = format!("/v1/jobs/{id}/retry");
    let r = app.request(Method::POST, &path).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = app
        .request(Method::POST, &path)
        .bearer_auth("tok-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(app.count_rows("jobs").await, 1);
    let r = app
        .request(Method::POST, &path)
        .bearer_auth("tok-right")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(app.count_rows("jobs").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_retry_is_held_like_any_new_job_when_the_budget_is_reached() {
    let app = helpers::spawn_app_with(
        |cfg| {
            // A dollar per token: one simulated job spends more than the limit.
            cfg.pricing = helpers::gpt5_priced(1_000_000.0, 1_000_000.0);
            cfg.budget.daily_usd = Some(1.0);
            cfg.budget.monthly_usd = Some(1_000_000.0);
        },
        fast_sim(Faults::default()),
    )
    .await;
    let id = app.submit(&helpers::job_body("spender")).await;
    let done = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(done.status, JobStatus::Completed);

    let (status, _, created) = retry(&app, &id).await;
    assert_eq!(status, 201, "{created}");
    let new_id = created["id"].as_str().unwrap();
    app.wait_for(new_id, DEADLINE, |j| j.status == JobStatus::Held)
        .await;
    assert_eq!(app.count_events(new_id, "held").await, 1);
    app.stop().await;
}

/// `POST /v1/jobs/{id}/retry` under an `Idempotency-Key`: status, the replay header, the body.
async fn retry_with_key(app: &helpers::TestApp, id: &str, key: &str) -> (u16, bool, Value) {
    let r = app
        .request(Method::POST, &format!("/v1/jobs/{id}/retry"))
        .header("Idempotency-Key", key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_repeated_retry_under_one_key_makes_one_job() {
    let app = helpers::spawn_app_with(|_| {}, fast_sim(Faults::default())).await;
    let mut body = helpers::job_body("once");
    // A key on the original too: the retry's own key must not meet it.
    body["idempotency_key"] = json!("k1");
    let original = app.submit(&body).await;
    app.wait_terminal(&original, DEADLINE).await;

    let (status, replayed, first) = retry_with_key(&app, &original, "k1").await;
    assert_eq!(status, 201, "{first}");
    assert!(!replayed);
    let new_id = first["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, original);
    assert_eq!(first["retry_of"], original.as_str());

    // The same key again: the same job, marked as a replay, nothing new written.
    let (status, replayed, again) = retry_with_key(&app, &original, "k1").await;
    assert_eq!(status, 201, "{again}");
    assert!(replayed, "the repeat is marked Idempotent-Replayed");
    assert_eq!(again["id"], new_id.as_str());
    assert_eq!(app.count_rows("jobs").await, 2);
    assert_eq!(app.count_events(&original, "retried").await, 1);
    assert_eq!(app.count_events(&new_id, "accepted").await, 1);
    assert_eq!(app.job(&original).await.retried_by, vec![new_id.clone()]);

    // Another key is another retry.
    let (status, replayed, other) = retry_with_key(&app, &original, "k2").await;
    assert_eq!(status, 201, "{other}");
    assert!(!replayed);
    let other_id = other["id"].as_str().unwrap().to_string();
    assert_ne!(other_id, new_id);
    assert_eq!(app.count_rows("jobs").await, 3);
    assert_eq!(
        app.job(&original).await.retried_by,
        vec![new_id.clone(), other_id]
    );

    // The same key on a different original (the first retry) is a new retry of that one, and a
    // retry of a retry does not inherit its key.
    let done = app.wait_terminal(&new_id, DEADLINE).await;
    assert!(done.status.is_terminal());
    let (status, replayed, nested) = retry_with_key(&app, &new_id, "k1").await;
    assert_eq!(status, 201, "{nested}");
    assert!(!replayed);
    assert_eq!(nested["retry_of"], new_id.as_str());
    assert_eq!(app.count_rows("jobs").await, 4);

    // `POST /v1/jobs` keys live apart: the original's own key still replays the original.
    let (status, replay) = app.post_job(&body).await;
    assert_eq!(status, 201, "{replay}");
    assert_eq!(replay["id"], original.as_str());
    assert_eq!(app.count_rows("jobs").await, 4);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_retry_key_is_400_naming_the_header() {
    let app = helpers::spawn_app_with(|_| {}, fast_sim(Faults::default())).await;
    let original = app.submit(&helpers::job_body("picky")).await;
    app.wait_terminal(&original, DEADLINE).await;
    let too_long = "k".repeat(256);
    for bad in ["has space", too_long.as_str()] {
        let (status, _, answer) = retry_with_key(&app, &original, bad).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["param"], "Idempotency-Key", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{answer}"
        );
    }
    assert_eq!(app.count_rows("jobs").await, 1);
    assert_eq!(app.count_events(&original, "retried").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_retries_under_one_key_make_one_job() {
    let app = helpers::spawn_app_with(|_| {}, fast_sim(Faults::default())).await;
    let original = app.submit(&helpers::job_body("racy")).await;
    app.wait_terminal(&original, DEADLINE).await;

    let (a, b) = tokio::join!(
        retry_with_key(&app, &original, "same-key"),
        retry_with_key(&app, &original, "same-key"),
    );
    assert_eq!(a.0, 201, "{}", a.2);
    assert_eq!(b.0, 201, "{}", b.2);
    assert_eq!(a.2["id"], b.2["id"]);
    // Exactly one of them made the job; the other replayed it.
    assert!(a.1 ^ b.1, "one replay: {} {}", a.1, b.1);
    assert_eq!(app.count_rows("jobs").await, 2);
    assert_eq!(app.count_events(&original, "retried").await, 1);
    assert_eq!(app.job(&original).await.retried_by.len(), 1);
    app.stop().await;
}

/// A proxy in front of the daemon that forwards the first request but drops the connection as
/// soon as the daemon starts answering (an answer lost on the way back), then passes every
/// later connection through. Returns its base URL.
async fn answer_losing_proxy(app: &helpers::TestApp) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = app.base.strip_prefix("http://").unwrap().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut first = true;
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let mut upstream = tokio::net::TcpStream::connect(&target).await.unwrap();
            if std::mem::take(&mut first) {
                // The retry has no body: the request ends with its headers.
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = client.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the client hung up mid-request");
                    request.extend_from_slice(&buf[..n]);
                }
                upstream.write_all(&request).await.unwrap();
                // The daemon answering means it has acted; the client never hears it.
                let n = upstream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the daemon did not answer");
                drop(client);
            } else {
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        }
    });
    (base, task)
}

#[tokio::test]
async fn the_cli_resends_a_lost_retry_under_the_same_key_and_makes_one_job() {
    let app = helpers::spawn_app_with(|_| {}, fast_sim(Faults::default())).await;
    let original = app.submit(&helpers::job_body("lost-answer")).await;
    app.wait_terminal(&original, DEADLINE).await;
    let (proxy, task) = answer_losing_proxy(&app).await;

    let args = [
        "jobs",
        "retry",
        original.as_str(),
        "--server",
        proxy.as_str(),
    ];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::cargo_bin("respool")
            .unwrap()
            .args(&args)
            .env_remove("RESPOOL_CONFIG")
            .env_remove("RESPOOL_TOKEN")
            .env_remove("RESPOOL_PAGER")
            .env("NO_COLOR", "1")
            .env("PAGER", "false")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    task.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    // The first try made the job; the second, under the same key, answered it.
    assert_eq!(app.count_rows("jobs").await, 2);
    assert_eq!(app.count_events(&original, "retried").await, 1);
    let retried_by = app.job(&original).await.retried_by;
    assert_eq!(retried_by.len(), 1);
    let new_id = &retried_by[0];
    assert!(
        stdout.starts_with(&format!("retried {original} as {new_id}\n")),
        "{stdout}"
    );
    let key = app.job(new_id).await.idempotency_key.unwrap();
    assert!(key.starts_with(&format!("retry:{original}:")), "{key}");
    app.stop().await;
}
