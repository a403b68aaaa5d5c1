//! Schedules and reloads with the real binary and a simulator process: a schedule every 10 s
//! runs exactly once per tick across a `kill -9` and a restart; SIGHUP and `respool reload`
//! re-read the jobs file, and a broken one is logged and refused while the daemon carries on.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::process::{Harness, Opts, command, kill9, status};

/// The ticks the schedule handled, oldest first.
async fn runs(h: &Harness, name: &str) -> Vec<Value> {
    let (v, _) = h.get(&format!("/v1/schedules/{name}/runs?limit=500")).await;
    let mut runs = v["data"].as_array().cloned().unwrap_or_default();
    runs.reverse();
    runs
}

async fn jobs_named(h: &Harness, name: &str) -> Vec<Value> {
    let (v, _) = h.get(&format!("/v1/jobs?name={name}&limit=100")).await;
    v["data"].as_array().cloned().unwrap_or_default()
}

/// Polls `cond` until it holds; panics naming `what` (with the daemon's log) at the deadline.
async fn wait_until(
    h: &mut Harness,
    what: &str,
    within: Duration,
    mut cond: impl AsyncFnMut(&Harness) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        h.daemon().assert_running();
        if cond(h).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_jobs(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn a_schedule_runs_exactly_once_per_tick_across_kill_9_and_restart() {
    let files = tempfile::tempdir().unwrap();
    let jobs = files.path().join("jobs.yaml");
    write_jobs(
        &jobs,
        "jobs:\n  - name: tick\n    model: gpt-5\n    input: What happened in the last ten seconds?\n    \
         schedule: \"*/10 * * * * *\"\n",
    );
    let mut h = Harness::start(Opts {
        run_time: "2s",
        extra_yaml: format!("jobs_file: {}\n", jobs.display()),
        ..Opts::default()
    })
    .await;
    let created = async |h: &Harness| -> Vec<Value> {
        runs(h, "tick")
            .await
            .into_iter()
            .filter(|r| r["outcome"] == "created")
            .collect()
    };
    wait_until(
        &mut h,
        "the second tick",
        Duration::from_secs(25),
        async |h| created(h).await.len() >= 2,
    )
    .await;
    // Killed right after a tick was recorded (its job maybe mid-submit, the schedule maybe not
    // yet moved on), and back a moment later.
    let mut daemon = h.take_daemon();
    kill9(&mut daemon);
    drop(daemon);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    h.start_daemon().await;
    wait_until(
        &mut h,
        "a tick after the restart",
        Duration::from_secs(25),
        async |h| created(h).await.len() >= 4,
    )
    .await;

    let all = runs(&h, "tick").await;
    assert!(all.iter().all(|r| r["outcome"] == "created"), "{all:#?}");
    let ticks: Vec<i64> = all
        .iter()
        .map(|r| r["scheduled_for"].as_i64().unwrap())
        .collect();
    // Every tick from the first to the last, once: none missed, none twice.
    assert!(ticks.windows(2).all(|w| w[1] - w[0] == 10), "{ticks:?}");
    let job_ids: BTreeSet<String> = all
        .iter()
        .map(|r| r["job_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(job_ids.len(), ticks.len(), "one job per tick: {all:#?}");
    let jobs = jobs_named(&h, "tick").await;
    assert_eq!(
        jobs.len(),
        ticks.len(),
        "no job outside the ticks: {jobs:#?}"
    );
    let keys: BTreeSet<&str> = jobs
        .iter()
        .map(|j| j["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), jobs.len());

    // Upstream saw at most one create per job (one for every job that completed).
    let ids: Vec<String> = job_ids.into_iter().collect();
    let done = h.wait_terminal(&ids, Duration::from_secs(40)).await;
    let creates = h.creates_by_job().await;
    for id in &ids {
        let n = creates.get(id).copied().unwrap_or(0);
        assert!(n <= 1, "job {id} created {n} times upstream");
        if status(&done[id]) == "completed" {
            assert_eq!(n, 1, "job {id}");
        }
    }
}

#[tokio::test]
async fn sighup_and_respool_reload_reread_the_jobs_file() {
    let files = tempfile::tempdir().unwrap();
    let jobs = files.path().join("jobs.yaml");
    let one = "jobs:\n  - name: alpha\n    model: gpt-5\n    input: first\n";
    write_jobs(&jobs, one);
    let mut h = Harness::start(Opts {
        extra_yaml: format!("jobs_file: {}\n", jobs.display()),
        ..Opts::default()
    })
    .await;
    assert_eq!(jobs_named(&h, "alpha").await.len(), 1);

    // A job added to the file appears on SIGHUP.
    write_jobs(
        &jobs,
        &format!("{one}  - name: beta\n    model: gpt-5\n    input: second\n"),
    );
    let pid = h.daemon().pid().to_string();
    let hup = |pid: &str| {
        let s = std::process::Command::new("kill")
            .args(["-HUP", pid])
            .status()
            .unwrap();
        assert!(s.success());
    };
    hup(&pid);
    wait_until(
        &mut h,
        "beta loaded by SIGHUP",
        Duration::from_secs(15),
        async |h| jobs_named(h, "beta").await.len() == 1,
    )
    .await;
    assert_eq!(
        jobs_named(&h, "alpha").await.len(),
        1,
        "alpha is not loaded twice"
    );

    // A broken file: logged with its line, refused, and the daemon carries on.
    write_jobs(
        &jobs,
        &format!("{one}  - name: gamma\n    model: gpt-5\n    input: x\n    timeout: soon\n"),
    );
    hup(&pid);
    wait_until(
        &mut h,
        "the refusal in the log",
        Duration::from_secs(15),
        async |h| {
            let log = h.daemon.as_ref().unwrap().output();
            log.contains("reload refused") && log.contains("jobs.yaml:8:")
        },
    )
    .await;
    h.daemon().assert_running();
    assert!(jobs_named(&h, "gamma").await.is_empty());
    let id = h.submit("still-serving", "hello").await;
    h.wait_terminal(&[id], Duration::from_secs(20)).await;

    // `respool reload` says the same and exits non-zero; fixed, it succeeds.
    let reload = |h: &Harness| {
        command(h.dir.path(), &["reload", "--server", &h.base], &[])
            .output()
            .unwrap()
    };
    let out = reload(&h);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("jobs.yaml:8:") && stderr.contains("timeout"),
        "{stderr}"
    );
    write_jobs(
        &jobs,
        &format!("{one}  - name: gamma\n    model: gpt-5\n    input: x\n    timeout: 5m\n"),
    );
    let out = reload(&h);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded"));
    assert_eq!(jobs_named(&h, "gamma").await.len(), 1);
    h.daemon().assert_running();
}
