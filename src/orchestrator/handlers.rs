//! Running one function handler ([`HandlerSpec`]): a command (the call's arguments on stdin,
//! its stdout the output) or an HTTP endpoint (the arguments POSTed, the body the output). Every
//! way it can go wrong comes back as a sentence for the timeline and for the model: a hang
//! (killed at its timeout, with its whole process group), a failure (exit status and the last
//! lines it wrote to stderr), too much output, output that is not UTF-8 text, or not JSON when
//! the handler promises JSON.

use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::job::handler::{HandlerSpec, OutputKind};
use crate::notify::command::{PASSED_ENV, describe, quote, tail};

/// What a handler is called with.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub job_id: &'a str,
    pub call_id: &'a str,
    pub name: &'a str,
    /// The arguments as the model wrote them (a JSON string, normally).
    pub arguments: &'a str,
}

/// Runs `handler` for `call`: its output, or why there is none.
pub async fn run(
    handler: &HandlerSpec,
    call: &Call<'_>,
    http: &reqwest::Client,
) -> Result<String, String> {
    let bytes = match (&handler.command, &handler.http) {
        (Some(argv), _) => run_command(handler, argv, call).await?,
        (None, Some(url)) => run_http(handler, url, call, http).await?,
        (None, None) => return Err("the handler has neither `command` nor `http`".into()),
    };
    check_output(handler, bytes)
}

/// The output as text, checked against the handler's promises.
fn check_output(handler: &HandlerSpec, mut bytes: Vec<u8>) -> Result<String, String> {
    // One trailing line break is how programs end their output, not part of it.
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.truncate(bytes.len() - 1);
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "its output is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    if handler.output == OutputKind::Json
        && let Err(e) = serde_json::from_str::<serde_json::Value>(&text)
    {
        return Err(format!(
            "its output is not JSON ({e}), and the handler says `output: json`"
        ));
    }
    Ok(text)
}

/// Reads `r` to its end, up to `max` bytes: past that, an error (the rest is not read).
async fn read_bounded(mut r: impl AsyncRead + Unpin, max: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() as u64 > max {
                    return Err(format!(
                        "it wrote more than {max} bytes of output (`max_output_bytes`)"
                    ));
                }
            }
            Err(e) => return Err(format!("reading its output failed: {e}")),
        }
    }
}

async fn run_command(
    handler: &HandlerSpec,
    argv: &[String],
    call: &Call<'_>,
) -> Result<Vec<u8>, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("the handler's `command` is empty".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear();
    for key in PASSED_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(&handler.env)
        .env("RESPOOL_JOB_ID", call.job_id)
        .env("RESPOOL_CALL_ID", call.call_id)
        .env("RESPOOL_FUNCTION", call.name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a hang is killed whole, children included.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &handler.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let pid = child.id();
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the program's pipes were not set up".into());
    };
    let input = call.arguments.as_bytes().to_vec();
    let feed = async move {
        // A program that does not read its input closes the pipe: that is its business.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
    };
    let max = handler.max_output_bytes;
    let run = async {
        let (out, err, ()) = tokio::join!(read_bounded(stdout, max), tail(stderr), feed);
        // Too much output: no need to wait for the rest.
        let out = out?;
        let status = child
            .wait()
            .await
            .map_err(|e| format!("waiting for `{program}` failed: {e}"))?;
        Ok::<_, String>((status, out, err))
    };
    let result = tokio::time::timeout(handler.timeout, run).await;
    let outcome = match result {
        Ok(Ok((status, out, err))) => {
            if status.success() {
                return Ok(out);
            }
            Err(format!("`{program}` {}{}", describe(status), quote(&err)))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "`{program}` did not finish within {} and was killed",
            humantime::format_duration(handler.timeout)
        )),
    };
    kill_group(pid);
    let _ = child.kill().await;
    outcome
}

/// Kills the process group a handler leads (it and whatever it started).
fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

async fn run_http(
    handler: &HandlerSpec,
    url: &str,
    call: &Call<'_>,
    http: &reqwest::Client,
) -> Result<Vec<u8>, String> {
    // The arguments go as they are when they are JSON; otherwise as a JSON string.
    let body = match serde_json::from_str::<serde_json::Value>(call.arguments) {
        Ok(_) => call.arguments.to_string(),
        Err(_) => serde_json::Value::String(call.arguments.to_string()).to_string(),
    };
    let mut req = http
        .post(url)
        .timeout(handler.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-respool-job-id", call.job_id)
        .header("x-respool-call-id", call.call_id)
        .header("x-respool-function", call.name)
        .body(body);
    for (k, v) in &handler.headers {
        req = req.header(k, v);
    }
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            format!(
                "POST to {host} did not answer within {}",
                humantime::format_duration(handler.timeout)
            )
        } else if e.is_connect() {
            format!("POST to {host}: cannot connect")
        } else {
            // Without its URL: a query may hold a credential.
            format!(
                "POST to {host} failed: {}",
                crate::telemetry::chain(&e.without_url())
            )
        }
    })?;
    let status = resp.status();
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    let max = handler.max_output_bytes;
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| format!("reading the answer of {host} failed: {}", e.without_url()))?;
            out.extend_from_slice(&chunk);
            if out.len() as u64 > max {
                return Err(format!(
                    "{host} answered more than {max} bytes (`max_output_bytes`)"
                ));
            }
        }
        Ok::<(), String>(())
    };
    tokio::time::timeout(handler.timeout.max(Duration::from_millis(1)), read)
        .await
        .map_err(|_| format!("{host} did not finish its answer in time"))??;
    if !status.is_success() {
        return Err(format!(
            "POST to {host} answered HTTP {}{}",
            status.as_u16(),
            quote(&out)
        ));
    }
    Ok(out)
}

/// The output the model is given for a call whose handler failed.
pub fn error_output(name: &str, message: &str) -> String {
    serde_json::json!({
        "error": format!("the handler of {name} failed: {message}"),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn handler(v: serde_json::Value) -> HandlerSpec {
        HandlerSpec::parse(v, true).unwrap()
    }

    fn call(args: &str) -> Call<'_> {
        Call {
            job_id: "job_x",
            call_id: "call_1",
            name: "f",
            arguments: args,
        }
    }

    async fn go(h: serde_json::Value, args: &str) -> Result<String, String> {
        run(&handler(h), &call(args), &reqwest::Client::new()).await
    }

    #[tokio::test]
    async fn a_command_reads_the_arguments_and_prints_the_output() {
        // ASCII, non-ASCII, empty, and a long single line all come back as written.
        for args in [
            "{\"city\":\"Paris\"}",
            "{\"city\":\"Zürich 東京\"}",
            "",
            &"x".repeat(200_000),
        ] {
            let out = go(json!({"command": ["cat"]}), args).await.unwrap();
            assert_eq!(out, args);
        }
        let env = go(
            json!({"command": ["sh", "-c", "echo $RESPOOL_FUNCTION $RESPOOL_CALL_ID $MINE; test -z \"$OPENAI_API_KEY\""], "env": {"MINE": "m"}}),
            "{}",
        )
        .await
        .unwrap();
        assert_eq!(env, "f call_1 m");
    }

    #[tokio::test]
    async fn failures_say_what_went_wrong() {
        let e = go(
            json!({"command": ["sh", "-c", "echo bad input >&2; exit 3"]}),
            "{}",
        )
        .await
        .unwrap_err();
        assert!(
            e.contains("exited with status 3") && e.contains("bad input"),
            "{e}"
        );
        let e = go(json!({"command": ["/nonexistent/prog"]}), "{}")
            .await
            .unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
        let e = go(json!({"command": ["printf", "\\377\\376"]}), "{}")
            .await
            .unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
        let e = go(
            json!({"command": ["echo", "not json"], "output": "json"}),
            "{}",
        )
        .await
        .unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
        let e = go(json!({"command": ["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a"], "max_output_bytes": 1000}), "{}")
            .await
            .unwrap_err();
        assert!(e.contains("more than 1000 bytes"), "{e}");
    }

    #[tokio::test]
    async fn a_hang_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-alive");
        // The child outlives its parent's kill unless the whole group is killed.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let e = go(
            json!({"command": ["sh", "-c", script], "timeout": "300ms"}),
            "{}",
        )
        .await
        .unwrap_err();
        assert!(e.contains("did not finish within 300ms"), "{e}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "a child of the killed handler ran on");
    }
}
