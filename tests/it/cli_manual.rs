//! `respool completions SHELL` and `respool man`: generated from the CLI definition by the real
//! binary.

use std::process::Command;

fn respool(args: &[&str]) -> String {
    let out = Command::new(assert_cmd::cargo::cargo_bin("respool"))
        .args(args)
        .env_remove("RESPOOL_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "respool {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completion_scripts_know_the_subcommands() {
    let bash = respool(&["completions", "bash"]);
    assert!(bash.contains("complete -F _respool"), "{bash}");
    for word in ["serve", "submit", "jobs", "--log-format", "journald"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = respool(&["completions", shell]);
        assert!(
            script.contains("serve") && script.contains("submit"),
            "{shell}: {script}"
        );
    }
}

#[test]
fn man_page_covers_the_commands() {
    let page = respool(&["man"]);
    assert!(page.contains(".TH respool 1"), "{page}");
    for word in [
        "serve",
        "submit",
        ".SH ENVIRONMENT",
        "CREDENTIALS_DIRECTORY",
        ".SH FILES",
    ] {
        assert!(page.contains(word), "the man page lacks {word}");
    }
    assert_eq!(
        page.matches(".el .ds Aq").count(),
        1,
        "the quote preamble is repeated"
    );
}

#[test]
fn man_dir_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    respool(&["man", "--dir", &dir.path().display().to_string()]);
    for name in [
        "respool.1",
        "respool-serve.1",
        "respool-submit.1",
        "respool-jobs-list.1",
    ] {
        let page = std::fs::read_to_string(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(page.contains(".TH respool"), "{name}: {page}");
    }
    let main = std::fs::read_to_string(dir.path().join("respool.1")).unwrap();
    assert!(
        main.contains(".SH ENVIRONMENT"),
        "respool.1 is ours: {main}"
    );
}
