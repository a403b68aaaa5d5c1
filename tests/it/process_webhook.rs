//! `respool webhook register|list|test|rotate` through the real binary, against a daemon
//! process and a simulator process: the commands work, report what happened, and no signing
//! secret respool stored shows up in their output or in the daemon's (debug) log.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::db;
use crate::helpers::free_ports;
use crate::helpers::process::{Harness, Opts, command};

/// Runs a client command against the harness's daemon.
async fn cli(h: &Harness, args: &[&str]) -> std::process::Output {
    let mut cmd =
        tokio::process::Command::from(command(h.dir.path(), args, &[("RESPOOL_SERVER", &h.base)]));
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("`respool {}` did not finish within 60 s", args.join(" ")),
    }
}

/// The output of a command, asserting its exit status.
async fn run(h: &Harness, args: &[&str], success: bool) -> String {
    let out = cli(h, args).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.success(),
        success,
        "`respool {}` ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        args.join(" "),
        out.status
    );
    format!("{stdout}{stderr}")
}

/// The secrets the daemon stored, read from its database directly.
async fn stored_secrets(h: &Harness) -> Vec<String> {
    let mut conn = db::read_only(&h.dir.path().join("respool.db")).await;
    let secrets: Vec<String> = sqlx::query_scalar("SELECT secret FROM webhook_secrets")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    db::close(conn).await;
    secrets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_commands_register_test_and_rotate() {
    let mut h = Harness::start(Opts {
        daemon_env: vec![("RESPOOL_LOG".into(), "debug".into())],
        ..Opts::default()
    })
    .await;
    let url = format!("{}/webhooks/openai", h.base);
    let mut outputs = Vec::new();

    let out = run(
        &h,
        &[
            "webhook",
            "register",
            &url,
            "--name",
            "proc",
            "--events",
            "response.completed,response.failed",
        ],
        true,
    )
    .await;
    assert!(out.contains("registered webhook endpoint we_"), "{out}");
    assert!(out.contains("response.completed, response.failed"), "{out}");
    outputs.push(out);

    let out = run(&h, &["webhook", "list"], true).await;
    assert!(
        out.contains("we_") && out.contains("proc") && out.contains('…'),
        "{out}"
    );
    outputs.push(out);

    let out = run(&h, &["webhook", "test"], true).await;
    assert!(
        out.contains("the endpoint answered 200; arrived and verified"),
        "{out}"
    );
    outputs.push(out);

    let out = run(&h, &["webhook", "rotate"], true).await;
    assert!(out.contains("rotated the signing secret of we_"), "{out}");
    assert!(
        out.contains("until"),
        "the old secret's expiry is shown: {out}"
    );
    outputs.push(out);

    let out = run(
        &h,
        &[
            "webhook",
            "test",
            "--json",
            "--event-type",
            "response.failed",
        ],
        true,
    )
    .await;
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["upstream_status_code"], 200);
    outputs.push(out);

    // An endpoint pointing nowhere: the test says so and exits non-zero.
    let [port] = free_ports();
    let out = run(
        &h,
        &[
            "webhook",
            "register",
            &format!("http://127.0.0.1:{port}/webhooks/openai"),
            "--json",
        ],
        true,
    )
    .await;
    let nowhere: Value = serde_json::from_str(&out).expect("JSON");
    let nowhere = nowhere["endpoint"]["id"].as_str().expect("id").to_owned();
    outputs.push(out);
    let out = run(&h, &["webhook", "test"], false).await;
    assert!(out.contains("several endpoints"), "{out}");
    let out = run(
        &h,
        &["webhook", "test", "--endpoint", &nowhere, "--wait", "1s"],
        false,
    )
    .await;
    assert!(
        out.contains("NOT verified here") && out.contains("did not arrive"),
        "{out}"
    );
    outputs.push(out);

    // Jobs still run (deliveries now also come from the endpoints).
    let ids = h.submit_many("proc-hook", 2).await;
    h.wait_jobs(&ids, Duration::from_secs(30), "completed", |j| {
        j["status"] == "completed"
    })
    .await;

    let secrets = stored_secrets(&h).await;
    assert_eq!(secrets.len(), 3, "register, rotate, register");
    let log = h.daemon().output();
    assert!(log.contains("webhook endpoint registered"), "{log}");
    for secret in &secrets {
        let body = secret.trim_start_matches("whsec_");
        assert!(
            !log.contains(body),
            "a stored secret is in the daemon's log"
        );
        for out in &outputs {
            assert!(
                !out.contains(body),
                "a stored secret is in a command's output: {out}"
            );
        }
    }
}
