//! Process-level tests: the real `respool` binary, a real simulator process (`respool sim`),
//! real signals. The simulator runs in its own process so its counters (how many creates it
//! accepted for each job) survive the daemon's death, which is what the crash tests check.
//!
//! Every child is owned by a [`Proc`] guard that kills it on drop (also on panic) and, when the
//! test is failing, prints the tail of its log. Waits poll a condition against a generous
//! deadline; no sleep is ever an assertion.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::process::*;

/// kill -9 once every job has been submitted upstream (none pending, none finished yet): after
/// a restart every job completes and none was created upstream twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_submission_loses_nothing_and_submits_nothing_twice() {
    let started = Instant::now();
    let mut h = Harness::start(Opts {
        run_time: "4s",
        ..Opts::default()
    })
    .await;
    let ids = h.submit_many("crash", 10).await;
    let at_kill = h
        .wait_jobs(&ids, Duration::from_secs(30), "submitted", |j| {
            status(j) != "pending"
        })
        .await;
    let mut daemon = h.take_daemon();
    kill9(&mut daemon);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for j in at_kill.values() {
        *counts.entry(status(j)).or_default() += 1;
    }
    eprintln!(
        "crash: killed the daemon at {:.1}s with jobs {counts:?}",
        started.elapsed().as_secs_f64()
    );

    h.start_daemon().await;
    let jobs = h.wait_terminal(&ids, Duration::from_secs(60)).await;
    let creates = h.creates_by_job().await;
    for id in &ids {
        let j = &jobs[id];
        assert_eq!(status(j), "completed", "{id}: {j}");
        assert!(has_output(j), "{id} has no output text: {j}");
        assert_eq!(creates.get(id), Some(&1), "{id}: creates upstream");
    }
    assert_eq!(h.sim_stats().await["creates"], 10);
    eprintln!("crash: done in {:.1}s", started.elapsed().as_secs_f64());
}

/// kill -9 right after intake, while jobs are pending and perhaps mid-create: every job ends,
/// either completed (created exactly once) or, for one whose create outcome became uncertain,
/// failed with `submit_uncertain`; never created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_submit_never_submits_twice() {
    let started = Instant::now();
    let mut h = Harness::start(Opts {
        run_time: "3s",
        ..Opts::default()
    })
    .await;
    let ids = h.submit_many("midsubmit", 10).await;
    let mut daemon = h.take_daemon();
    kill9(&mut daemon);
    let creates_at_kill = h.sim_stats().await["creates"].as_u64().unwrap();

    h.start_daemon().await;
    let jobs = h.wait_terminal(&ids, Duration::from_secs(60)).await;
    let creates = h.creates_by_job().await;
    let (mut uncertain, mut uncertain_completed, mut uncertain_failed) = (0, 0, 0);
    for id in &ids {
        let j = &jobs[id];
        let n = creates.get(id).copied().unwrap_or(0);
        assert!(n <= 1, "{id} was created upstream {n} times");
        let was_uncertain = h
            .events(id)
            .await
            .iter()
            .any(|e| e["kind"] == "submit_uncertain");
        if was_uncertain {
            uncertain += 1;
        }
        match status(j) {
            "completed" => {
                assert!(has_output(j), "{id} has no output text: {j}");
                assert_eq!(n, 1, "{id} completed without exactly one create");
                if was_uncertain {
                    uncertain_completed += 1;
                }
            }
            "failed" if was_uncertain => {
                assert_eq!(j["error"]["code"], "submit_uncertain", "{id}: {j}");
                uncertain_failed += 1;
            }
            other => panic!("{id} ended {other} (uncertain: {was_uncertain}): {j}"),
        }
    }
    eprintln!(
        "crash mid-submit: {creates_at_kill} creates had reached the simulator at the kill; \
         {uncertain} of 10 jobs fell in the uncertain window ({uncertain_completed} revealed by a \
         webhook and completed, {uncertain_failed} failed as submit_uncertain); {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// A daemon killed while its creates hang: the next start finds its journal orphaned and turns
/// the creates it was making into uncertain ones at once. Their leases (a create with all its
/// retries: 165 s with this config) are not waited out, and a lease is not taken for dead
/// unless its owner is. Webhooks are dropped, so nothing reveals the responses: under
/// `uncertain_create: fail` each job fails as `submit_uncertain` after the 6 s wait, created
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_ends_the_leases_of_a_killed_daemon_at_once() {
    let mut h = Harness::start(Opts::default()).await;
    let set = h
        .http
        .post(format!("{}/_sim/faults", h.sim_base))
        .json(&json!({"create_accept_then_hang": 1.0, "hang_for": "120s", "webhook_drop": 1.0}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success(), "{}", set.text().await.unwrap());
    let ids = h.submit_many("hung", 3).await;
    // Every create is on the wire (claimed, its lease taken) before the kill; the client's
    // 5 s timeout has not run out.
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let mut all = true;
        for id in &ids {
            let submitting = h.events(id).await.iter().any(|e| e["kind"] == "submitting");
            all &= submitting;
        }
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "the creates did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the simulator has accepted each (it holds the answers back).
    loop {
        let creates = h.creates_by_job().await;
        if ids.iter().all(|id| creates.get(id) == Some(&1)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the creates did not arrive: {creates:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut daemon = h.take_daemon();
    kill9(&mut daemon);

    h.start_daemon().await;
    let jobs = h.wait_terminal(&ids, Duration::from_secs(40)).await;
    let creates = h.creates_by_job().await;
    for id in &ids {
        let j = &jobs[id];
        assert_eq!(creates.get(id).copied(), Some(1), "{id}: {creates:?}");
        assert_eq!(status(j), "failed", "{id}: {j}");
        assert_eq!(j["error"]["code"], "submit_uncertain", "{id}: {j}");
        let events = h.events(id).await;
        let uncertain: Vec<&Value> = events
            .iter()
            .filter(|e| e["kind"] == "submit_uncertain")
            .collect();
        assert_eq!(uncertain.len(), 1, "{id}: {events:?}");
        let message = uncertain[0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("the daemon making it is gone"),
            "{id} became uncertain some other way: {message}"
        );
    }
}

/// SIGTERM with jobs in flight: the daemon exits 0 promptly; after a restart the jobs finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly_and_jobs_finish_after_restart() {
    let started = Instant::now();
    let mut h = Harness::start(Opts {
        run_time: "4s",
        ..Opts::default()
    })
    .await;
    let ids = h.submit_many("sigterm", 5).await;
    h.wait_jobs(&ids, Duration::from_secs(30), "submitted", |j| {
        status(j) != "pending"
    })
    .await;
    let mut daemon = h.take_daemon();
    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success(), "kill -TERM failed");
    let exit = daemon.wait_exit(Duration::from_secs(10)).await;
    let Some(exit) = exit else {
        panic!(
            "the daemon did not exit within 10 s of SIGTERM; output:\n{}",
            daemon.output()
        );
    };
    assert_eq!(
        exit.code(),
        Some(0),
        "exit status {exit}; output:\n{}",
        daemon.output()
    );
    eprintln!(
        "sigterm: exited {exit} {:.2}s after the signal",
        signalled.elapsed().as_secs_f64()
    );
    drop(daemon);

    h.start_daemon().await;
    let jobs = h.wait_terminal(&ids, Duration::from_secs(60)).await;
    let creates = h.creates_by_job().await;
    for id in &ids {
        let j = &jobs[id];
        assert_eq!(status(j), "completed", "{id}: {j}");
        assert!(has_output(j), "{id}: {j}");
        assert_eq!(creates.get(id), Some(&1), "{id}: creates upstream");
    }
    eprintln!("sigterm: done in {:.1}s", started.elapsed().as_secs_f64());
}

/// Unauthorized requests, forged webhooks and `n` real jobs; returns every answer body.
async fn exercise_with_secrets(h: &mut Harness, prefix: &str, n: usize) -> Vec<String> {
    let token = h.token.clone().unwrap();
    let mut answers: Vec<String> = Vec::new();

    // Unauthorized: no token, a wrong token, the token in the wrong scheme, the token with a
    // suffix (a log of the presented token would contain the real one).
    let url = format!("{}/v1/jobs", h.base);
    for rb in [
        h.http.get(&url),
        h.http.get(&url).bearer_auth("not-the-token"),
        h.http.get(&url).basic_auth("user", Some(&token)),
        h.http
            .post(&url)
            .bearer_auth(format!("{token}x"))
            .json(&json!({"model": "gpt-5", "input": "x"})),
    ] {
        let r = rb.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "unauthorized request was served");
        answers.push(r.text().await.unwrap());
    }

    // Forged webhooks: a bad signature, a stale timestamp, no headers at all.
    let hook = format!("{}/webhooks/openai", h.base);
    let now = chrono::Utc::now().timestamp();
    let body = json!({"id": "evt_forged", "type": "response.completed", "created_at": now,
                      "data": {"id": "resp_forged"}})
    .to_string();
    for ts in [now, now - 3600] {
        let r = h
            .http
            .post(&hook)
            .header("webhook-id", "wh_forged")
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                "v1,Zm9yZ2VkLXNpZ25hdHVyZS1ub3QtcmVhbA==",
            )
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "forged webhook accepted");
        answers.push(r.text().await.unwrap());
    }
    let r = h.http.post(&hook).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "unsigned webhook accepted");
    answers.push(r.text().await.unwrap());

    // Real jobs, through the simulator's signed webhooks and polling.
    let ids = h.submit_many(prefix, n).await;
    let jobs = h.wait_terminal(&ids, Duration::from_secs(60)).await;
    for id in &ids {
        assert_eq!(status(&jobs[id]), "completed", "{id}: {}", jobs[id]);
    }
    answers.push(h.get("/v1/jobs").await.1);
    for id in &ids {
        for path in ["", "/events", "/response"] {
            answers.push(h.get(&format!("/v1/jobs/{id}{path}")).await.1);
        }
    }
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let r = h
            .http
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .unwrap();
        answers.push(r.text().await.unwrap());
    }
    answers
}

/// Stops the daemon with SIGTERM (so its log is complete) and returns its output.
async fn stop_daemon(h: &mut Harness) -> String {
    let mut daemon = h.take_daemon();
    let kill = Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success(), "kill -TERM failed");
    assert!(
        daemon.wait_exit(Duration::from_secs(15)).await.is_some(),
        "the daemon did not stop on SIGTERM"
    );
    daemon.output()
}

/// With debug logging, in both log formats, neither the upstream key, the webhook secret (nor
/// its base64 body) nor the API token shows up in the daemon's output or in any API answer,
/// including answers to unauthorized requests and forged webhooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_or_api_answers() {
    let started = Instant::now();
    let api_key = format!("sk-SECRETKEY-{}", ulid::Ulid::new());
    let token = format!("tok-SECRETTOKEN-{}", ulid::Ulid::new());
    let mut h = Harness::start(Opts {
        run_time: "1s",
        // Read through `${VAR}` interpolation; the simulator only accepts this exact key, so a
        // job completing proves the daemon really sent it.
        api_key_yaml: "${RESPOOL_TEST_UPSTREAM_KEY}".into(),
        sim_api_key: Some(api_key.clone()),
        token: Some(token.clone()),
        daemon_env: vec![
            ("RESPOOL_LOG".into(), "debug".into()),
            ("RESPOOL_TEST_UPSTREAM_KEY".into(), api_key.clone()),
        ],
        ..Opts::default()
    })
    .await;
    let secret = h.secret.clone();
    let secret_body = secret.trim_start_matches("whsec_").to_string();

    let mut answers = exercise_with_secrets(&mut h, "pretty", 3).await;
    let pretty = stop_daemon(&mut h).await;
    h.daemon_args = vec!["--log-format".into(), "json".into()];
    h.start_daemon().await;
    answers.extend(exercise_with_secrets(&mut h, "json", 2).await);
    let json_log = stop_daemon(&mut h).await;

    assert!(
        pretty.contains("DEBUG"),
        "RESPOOL_LOG=debug had no effect:\n{pretty}"
    );
    assert!(
        json_log.contains(r#""level":"DEBUG""#),
        "no JSON debug lines:\n{json_log}"
    );
    // On PostgreSQL, the database URL's password too (the test server's is random).
    let db_password = url::Url::parse(&h.db_url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
        .filter(|p| p.len() >= 8);
    let mut needles = vec![
        ("upstream API key", api_key.as_str()),
        ("API token", token.as_str()),
        ("webhook secret", secret.as_str()),
        ("webhook secret body", secret_body.as_str()),
    ];
    if let Some(p) = &db_password {
        needles.push(("database password", p.as_str()));
    }
    for (format, log) in [("pretty", &pretty), ("json", &json_log)] {
        for &(what, s) in &needles {
            if let Some(line) = log.lines().find(|l| l.contains(s)) {
                panic!("the {what} appears in the daemon's {format} log: {line}");
            }
            for a in &answers {
                assert!(!a.contains(s), "the {what} appears in an API answer: {a}");
            }
        }
    }
    eprintln!(
        "secrets: {} + {} log bytes, {} answers checked; {:.1}s",
        pretty.len(),
        json_log.len(),
        answers.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Runs a client command against the harness's daemon.
async fn cli(h: &Harness, args: &[&str], token: &str) -> std::process::Output {
    let mut cmd = tokio::process::Command::from(command(
        h.dir.path(),
        args,
        &[("RESPOOL_SERVER", &h.base), ("RESPOOL_TOKEN", token)],
    ));
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("`respool {}` did not finish within 60 s", args.join(" ")),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts a clean exit 0, returning stdout.
fn ok(args: &[&str], out: &std::process::Output) -> String {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "`respool {}` failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        args.join(" "),
        out.status
    );
    stdout
}

/// The client commands against a daemon that requires a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_client_commands_work_against_the_daemon() {
    let started = Instant::now();
    let token = "t-process-test";
    let mut h = Harness::start(Opts {
        run_time: "1s",
        token: Some(token.into()),
        ..Opts::default()
    })
    .await;

    // submit --wait: exit 0, prints the job's output text.
    let args = ["submit", "--model", "gpt-5", "--input", "hi", "--wait"];
    let out = ok(&args, &cli(&h, &args, token).await);
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("job_"))
        .unwrap_or_else(|| panic!("no job id in:\n{out}"))
        .to_string();
    let (job, _) = h.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status(&job), "completed", "{job}");
    let output_text = job["output_text"].as_str().unwrap().to_string();
    assert!(!output_text.is_empty());
    assert!(
        out.contains(&output_text),
        "output text not printed:\n{out}"
    );
    assert!(out.contains("completed"), "{out}");

    // jobs list: a table with the id; --json parses.
    let args = ["jobs", "list"];
    let out = ok(&args, &cli(&h, &args, token).await);
    assert!(out.contains(&id), "{out}");
    let args = ["jobs", "list", "--json"];
    let out = ok(&args, &cli(&h, &args, token).await);
    let list: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id.as_str()),
        "{out}"
    );

    // show, events, output, cancel of a finished job.
    let args = ["jobs", "show", &id];
    let out = ok(&args, &cli(&h, &args, token).await);
    assert!(out.contains(&id) && out.contains("completed"), "{out}");
    let args = ["jobs", "events", &id];
    let out = ok(&args, &cli(&h, &args, token).await);
    let kinds: Vec<String> = h
        .events(&id)
        .await
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect();
    assert!(!kinds.is_empty());
    for kind in &kinds {
        assert!(out.contains(kind.as_str()), "event {kind} missing:\n{out}");
    }
    let args = ["jobs", "output", &id];
    let out = ok(&args, &cli(&h, &args, token).await);
    assert_eq!(
        out.trim_end_matches('\n'),
        output_text.trim_end_matches('\n')
    );
    let args = ["jobs", "cancel", &id];
    let res = cli(&h, &args, token).await;
    let stderr = text(&res.stderr);
    assert!(
        res.status.code().is_some() && !stderr.contains("panicked"),
        "`jobs cancel` on a finished job crashed ({}): {stderr}",
        res.status
    );
    let (job, _) = h.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status(&job), "completed", "cancel changed a finished job");
    assert_eq!(job["cancel_requested"], false, "{job}");

    // A wrong token: a clear error, no crash.
    let args = ["jobs", "list"];
    let res = cli(&h, &args, "wrong-token").await;
    assert_eq!(res.status.code(), Some(1));
    assert!(text(&res.stderr).contains("401"), "{}", text(&res.stderr));

    // submit a jobs file: the example file, waited for.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs.example.yaml");
    let example = example.display().to_string();
    let args = ["submit", &example, "--wait"];
    let out = ok(&args, &cli(&h, &args, token).await);
    for name in ["market-scan", "proof-check", "release-notes"] {
        assert!(out.contains(name), "{name} missing:\n{out}");
    }
    let (list, _) = h.get("/v1/jobs?limit=100").await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 4, "{list}");
    assert!(data.iter().all(|j| status(j) == "completed"), "{list}");
    h.daemon().assert_running();
    eprintln!("cli: done in {:.1}s", started.elapsed().as_secs_f64());
}

/// The stdout of `respool demo ARGS` run in a fresh directory, which must succeed within two
/// minutes.
async fn demo(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let argv: Vec<&str> = std::iter::once("demo")
        .chain(args.iter().copied())
        .collect();
    let mut cmd = tokio::process::Command::from(command(dir.path(), &argv, &[]));
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(Duration::from_secs(120), cmd.output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("`respool {}` did not finish within 120 s", argv.join(" ")),
    };
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "`respool {}` failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        argv.join(" "),
        out.status
    );
    stdout
}

/// `respool demo`: the embedded example jobs against the in-process simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_the_example_jobs_to_completion() {
    let started = Instant::now();
    let stdout = demo(&[]).await;
    for name in ["market-scan", "proof-check", "release-notes"] {
        let result_line = stdout
            .lines()
            .find(|l| l.starts_with("== ") && l.contains(name))
            .unwrap_or_else(|| panic!("no result for {name}:\n{stdout}"));
        assert!(result_line.contains("completed"), "{result_line}");
    }
    assert!(stdout.contains("(0 submitted twice)"), "{stdout}");
    eprintln!("demo: done in {:.1}s", started.elapsed().as_secs_f64());
}

/// Every jobs file in `examples/` (one per section of the seed tour) runs unattended in
/// `respool demo`: each job completes, nothing is submitted twice, and a job that asks for
/// JSON shows its answer as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_jobs_file_runs_in_the_demo() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no jobs files in {}", examples.display());
    for file in files {
        let started = Instant::now();
        let path = file.display().to_string();
        let stdout = demo(&["--jobs", &path]).await;
        let specs = respool::job::spec::parse_jobs_file(
            &path,
            &std::fs::read_to_string(&file).unwrap(),
            &|_| None,
            &respool::reload::beside(&file),
        )
        .unwrap();
        for spec in specs.iter().filter(|s| s.schedule.is_none()) {
            let result_line = stdout
                .lines()
                .find(|l| l.starts_with(&format!("== {} — ", spec.name)))
                .unwrap_or_else(|| panic!("{path}: no result for {}:\n{stdout}", spec.name));
            assert!(result_line.contains("completed"), "{path}: {result_line}");
            // A job whose tools make images or files lists them, each kept.
            let tools = spec.request.get("tools").and_then(|t| t.as_array());
            let makes_files = tools.is_some_and(|tools| {
                tools
                    .iter()
                    .any(|t| t["type"] == "image_generation" || t["type"] == "code_interpreter")
            });
            if makes_files {
                let after = stdout.split(result_line).nth(1).unwrap();
                let section = after.split("\n== ").next().unwrap();
                assert!(
                    section.contains("  artifacts:\n") && !section.contains("not kept"),
                    "{path}: {} lists no artifacts:\n{section}",
                    spec.name
                );
            }
            if respool::structured::Format::of_body(&spec.request).is_some() {
                let after = stdout.split(result_line).nth(1).unwrap();
                assert!(
                    after.trim_start().starts_with('{'),
                    "{path}: {} shows no JSON:\n{after}",
                    spec.name
                );
            }
        }
        assert!(stdout.contains("(0 submitted twice)"), "{stdout}");
        eprintln!(
            "demo {path}: done in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
}
