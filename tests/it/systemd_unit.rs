//! `systemd/respool.service` as systemd itself judges it: `systemd-analyze verify` accepts it,
//! and `systemd-analyze security` rates its exposure 1.5 or lower. `systemd-analyze` is
//! required (`.ci/run` installs Debian's `systemd` package); without it these tests fail with
//! a message saying so, rather than pass having checked nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The highest overall exposure we accept (systemd's scale: 0 safe … 10 exposed).
const MAX_EXPOSURE: f64 = 1.5;

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/respool.service")
}

fn systemd_analyze(args: &[&str]) -> Output {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run systemd-analyze ({e}): install it (Debian: apt-get install systemd); \
             .ci/run does"
        ),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn security_exposure_is_at_most_1_5() {
    let unit = unit_path().display().to_string();
    let out = systemd_analyze(&["security", "--offline=true", "--no-pager", &unit]);
    let report = text(&out);
    let overall = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for respool.service:"))
        .map(|(_, rest)| rest.trim().to_string())
        .unwrap_or_else(|| panic!("no overall exposure line in:\n{report}"));
    let score: f64 = overall
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure from {overall:?}"));
    eprintln!("systemd-analyze security: overall exposure {overall}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{report}"
    );
    // --threshold is the same bound in systemd's own units (tenths): it exits non-zero above it.
    let threshold = format!("--threshold={}", (MAX_EXPOSURE * 10.0).round());
    let out = systemd_analyze(&["security", "--offline=true", &threshold, &unit]);
    assert!(out.status.success(), "{threshold} failed:\n{}", text(&out));
}

#[test]
fn verify_accepts_the_unit() {
    // verify checks that ExecStart= exists and is executable; the unit names the installed
    // path, so verify a copy that points at the binary cargo built. `--man=no`: the man page
    // named in Documentation= is installed by the user, not here.
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    let binary = assert_cmd::cargo::cargo_bin("respool");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/respool serve"),
        "the unit's ExecStart changed; update this test"
    );
    let copy = unit.replace(
        "ExecStart=/usr/local/bin/respool",
        &format!("ExecStart={}", binary.display()),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("respool.service");
    std::fs::write(&path, copy).unwrap();
    let out = systemd_analyze(&["verify", "--man=no", &path.display().to_string()]);
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "systemd-analyze verify:\n{}",
        text(&out)
    );
}

#[test]
fn the_unit_runs_what_respool_supports() {
    // The unit's flags must parse: `respool serve --help` with the unit's global flags.
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/respool "))
        .unwrap();
    let mut args: Vec<&str> = exec.split_whitespace().collect();
    args.push("--help");
    let out = Command::new(assert_cmd::cargo::cargo_bin("respool"))
        .args(&args)
        .output()
        .unwrap();
    assert!(out.status.success(), "respool {args:?}:\n{}", text(&out));
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "StateDirectory=respool",
        "ConfigurationDirectory=respool",
        "LoadCredential=openai-api-key\n",
        "LoadCredential=webhook-secret\n",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(line), "the unit lacks {line}");
    }
}

/// The unit shows how a PostgreSQL URL comes in (a credential, not the config file): each of
/// its commented `database-url` lines is valid once uncommented, and the manual makes the very
/// file it names.
#[test]
fn the_unit_shows_the_database_url_credential() {
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    let built = unit.replace(
        "ExecStart=/usr/local/bin/respool",
        &format!(
            "ExecStart={}",
            assert_cmd::cargo::cargo_bin("respool").display()
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    for directive in ["LoadCredential", "LoadCredentialEncrypted"] {
        let prefix = format!("#{directive}=database-url:");
        let line = unit
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("the unit has no {prefix}… example"));
        let file = &line[prefix.len()..];
        assert!(
            docs.contains(&format!(" {file}")),
            "docs/operations.md does not show how to make {file}"
        );
        let path = dir.path().join("respool.service");
        std::fs::write(&path, built.replace(line, &line[1..])).unwrap();
        let out = systemd_analyze(&["verify", "--man=no", &path.display().to_string()]);
        assert!(
            out.status.success() && text(&out).trim().is_empty(),
            "systemd-analyze verify, {} uncommented:\n{}",
            &line[1..],
            text(&out)
        );
    }
}
