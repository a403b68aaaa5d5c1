//! `respool check`: the real binary validating config and jobs files, with every problem
//! reported as `file:line:col` and the key (or the job and field) at fault.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A scratch directory with files in it.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// `respool <args>` in `dir`, isolated from the caller's environment.
fn respool(dir: &Dir, args: &[&str]) -> (bool, String, String) {
    let out = Command::cargo_bin("respool")
        .unwrap()
        .current_dir(dir.0.path())
        .env_remove("RESPOOL_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_WEBHOOK_SECRET")
        .env_remove("STATE_DIRECTORY")
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The line of `text` that reports `file:line:COL:` for some column, if any.
/// `respool check` of a good config and a jobs file of `content`: the directory (kept alive),
/// the jobs file's path, whether it passed, stdout and stderr.
fn check_jobs(content: &str) -> (Dir, std::path::PathBuf, bool, String, String) {
    let dir = Dir::new();
    let cfg = dir.file("good.yaml", "polling:\n  min_interval: 1s\n");
    let jobs = dir.file("jobs.yaml", content);
    let (ok, stdout, stderr) = respool(
        &dir,
        &[
            "check",
            "--config",
            cfg.to_str().unwrap(),
            "--jobs",
            jobs.to_str().unwrap(),
        ],
    );
    (dir, jobs, ok, stdout, stderr)
}

fn located<'a>(text: &'a str, file: &Path, line: usize) -> Option<&'a str> {
    let prefix = format!("{}:{line}:", file.display());
    text.lines().find(|l| {
        l.find(&prefix).is_some_and(|at| {
            let rest = &l[at + prefix.len()..];
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            digits > 0 && rest[digits..].starts_with(':')
        })
    })
}

#[test]
fn unknown_config_key_is_located_and_named() {
    let dir = Dir::new();
    let cfg = dir.file(
        "bad.yaml",
        "listen: 127.0.0.1:8080\npolling:\n  min_intervl: 2s\n",
    );
    let (ok, stdout, stderr) = respool(&dir, &["check", "--config", cfg.to_str().unwrap()]);
    assert!(!ok, "stdout: {stdout}\nstderr: {stderr}");
    let line = located(&stderr, &cfg, 3).unwrap_or_else(|| panic!("no bad.yaml:3:COL in {stderr}"));
    assert!(line.contains("min_intervl"), "{line}");
    assert!(!stdout.contains("OK"), "{stdout}");
}

#[test]
fn bad_duration_is_located_and_named() {
    let dir = Dir::new();
    let cfg = dir.file("bad.yaml", "polling:\n  min_interval: soon\n");
    let (ok, stdout, stderr) = respool(&dir, &["check", "--config", cfg.to_str().unwrap()]);
    assert!(!ok, "stdout: {stdout}\nstderr: {stderr}");
    let line = located(&stderr, &cfg, 2).unwrap_or_else(|| panic!("no bad.yaml:2:COL in {stderr}"));
    assert!(line.contains("min_interval"), "{line}");
    assert!(line.contains("soon"), "{line}");
}

#[test]
fn every_semantic_problem_is_reported_with_its_place() {
    let dir = Dir::new();
    let cfg = dir.file(
        "bad.yaml",
        "polling:\n  min_interval: 10s\n  max_interval: 2s\nnotify:\n  default: [nope]\n",
    );
    let (ok, _, stderr) = respool(&dir, &["check", "--config", cfg.to_str().unwrap()]);
    assert!(!ok, "{stderr}");
    let line = located(&stderr, &cfg, 3).unwrap_or_else(|| panic!("no bad.yaml:3:COL in {stderr}"));
    assert!(line.contains("polling.max_interval"), "{line}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("notify.default") && l.contains("nope")),
        "{stderr}"
    );
}

#[test]
fn the_config_can_come_from_respool_config() {
    let dir = Dir::new();
    let cfg = dir.file("env.yaml", "polling:\n  max_intervl: 2s\n");
    let out = Command::cargo_bin("respool")
        .unwrap()
        .current_dir(dir.0.path())
        .env("RESPOOL_CONFIG", &cfg)
        .arg("check")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        located(&stderr, &cfg, 2).is_some_and(|l| l.contains("max_intervl")),
        "{stderr}"
    );
}

#[test]
fn a_valid_config_is_ok() {
    let dir = Dir::new();
    let cfg = dir.file(
        "good.yaml",
        "listen: 127.0.0.1:8099\npolling:\n  min_interval: 1s\n  max_interval: 30s\nsinks:\n  log:\n    type: console\nnotify:\n  default: [log]\n",
    );
    let (ok, stdout, stderr) = respool(&dir, &["check", "--config", cfg.to_str().unwrap()]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(stdout.contains("good.yaml"), "{stdout}");
}

#[test]
fn a_bad_jobs_file_names_job_field_and_line() {
    let (_dir, jobs, ok, stdout, stderr) = check_jobs(
        "jobs:\n  - name: fine\n    model: o3\n    input: hi\n  - name: broken\n    model: o3\n    input: hi\n    timeout: soon\n  - name: nomodel\n    input: hi\n",
    );
    assert!(!ok, "stdout: {stdout}\nstderr: {stderr}");
    let line =
        located(&stderr, &jobs, 8).unwrap_or_else(|| panic!("no jobs.yaml:8:COL in {stderr}"));
    assert!(line.contains("`broken`"), "{line}");
    assert!(line.contains("`timeout`"), "{line}");
    let line = stderr
        .lines()
        .find(|l| l.contains("`nomodel`"))
        .unwrap_or_else(|| panic!("the job without a model is not reported: {stderr}"));
    assert!(line.contains("`model`"), "{line}");
    assert!(
        line.starts_with(&format!("{}:9:", jobs.display())),
        "{line}"
    );
    assert!(!stderr.contains("`fine`"), "{stderr}");
}

#[test]
fn a_jobs_file_breaking_openais_contract_names_file_line_and_field() {
    let (_dir, jobs, ok, stdout, stderr) = check_jobs(
        "jobs:\n  - name: fine\n    model: o3\n    input: hi\n  - name: hot\n    model: o3\n    input: hi\n    temperature: hot\n",
    );
    assert!(!ok, "stdout: {stdout}\nstderr: {stderr}");
    let line =
        located(&stderr, &jobs, 8).unwrap_or_else(|| panic!("no jobs.yaml:8:COL in {stderr}"));
    assert!(line.contains("`hot`"), "{line}");
    assert!(line.contains("`temperature`"), "{line}");
    assert!(!stdout.contains("jobs file OK"), "{stdout}");
}

#[test]
fn an_unknown_top_level_field_is_a_located_warning_not_a_failure() {
    let (_dir, jobs, ok, stdout, stderr) =
        check_jobs("jobs:\n  - name: typo\n    model: o3\n    input: hi\n    temprature: 0.5\n");
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let line =
        located(&stderr, &jobs, 5).unwrap_or_else(|| panic!("no jobs.yaml:5:COL in {stderr}"));
    assert!(line.contains("warning"), "{line}");
    assert!(line.contains("`temprature`"), "{line}");
    assert!(stdout.contains("jobs file OK"), "{stdout}");
}

#[test]
fn a_jobs_file_naming_an_unknown_sink_is_refused() {
    let dir = Dir::new();
    let cfg = dir.file("good.yaml", "");
    let jobs = dir.file(
        "jobs.yaml",
        "jobs:\n  - name: tells-someone\n    model: o3\n    input: hi\n    notify: [pager]\n",
    );
    let (ok, _, stderr) = respool(
        &dir,
        &[
            "check",
            "--config",
            cfg.to_str().unwrap(),
            "--jobs",
            jobs.to_str().unwrap(),
        ],
    );
    assert!(!ok, "{stderr}");
    let line =
        located(&stderr, &jobs, 5).unwrap_or_else(|| panic!("no jobs.yaml:5:COL in {stderr}"));
    assert!(
        line.contains("`tells-someone`") && line.contains("`notify`") && line.contains("pager"),
        "{line}"
    );
}

#[test]
fn a_valid_jobs_file_is_ok() {
    let dir = Dir::new();
    let cfg = dir.file("good.yaml", "");
    let jobs = dir.file(
        "jobs.yaml",
        "jobs:\n  - name: one\n    model: o3\n    input: hi\n  - name: two\n    model: o3\n    input: there\n    timeout: 30m\n",
    );
    let (ok, stdout, stderr) = respool(
        &dir,
        &[
            "check",
            "--config",
            cfg.to_str().unwrap(),
            "--jobs",
            jobs.to_str().unwrap(),
        ],
    );
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("jobs file OK"), "{stdout}");
    assert!(stdout.contains("2 jobs"), "{stdout}");
}
