//! `respool completions SHELL` and `respool man [--dir DIR]`: shell completion scripts and roff
//! man pages generated from the clap definition, so they never drift from the real flags.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use super::Cli;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write `respool.1` and one page per subcommand (`respool-serve.1`, …) into this
    /// directory instead of printing `respool.1`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "respool", &mut out);
    out.flush().context("cannot write the completion script")?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    match args.dir {
        None => {
            let mut page = Vec::new();
            render_main(&mut page).context("cannot render the man page")?;
            let mut out = std::io::stdout().lock();
            out.write_all(&page)
                .and_then(|()| out.flush())
                .context("cannot write the man page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // Subcommand pages first (clap_mangen names them `respool-serve.1`, …), then our
            // main page over the one it wrote, which lacks the sections below.
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            let path = dir.join("respool.1");
            let mut page = Vec::new();
            render_main(&mut page).context("cannot render the man page")?;
            std::fs::write(&path, page)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `respool.1`: clap_mangen's sections, plus the environment, files and signals, which clap
/// does not know about.
fn render_main(w: &mut dyn Write) -> std::io::Result<()> {
    let man = Man::new(Cli::command().disable_help_subcommand(true));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    extra_sections().to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    // Each piece rendered alone repeats roff's two-line quote preamble; once is enough.
    let page = String::from_utf8_lossy(&page);
    let mut seen = std::collections::HashSet::new();
    for line in page.lines() {
        let preamble = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if preamble && !seen.insert(line) {
            continue;
        }
        writeln!(w, "{line}")?;
    }
    Ok(())
}

fn extra_sections() -> Roff {
    let mut roff = Roff::default();
    let entry = |roff: &mut Roff, name: &str, text: &str| {
        roff.control("TP", []);
        roff.text([bold(name)]);
        roff.text([roman(text)]);
    };

    roff.control("SH", ["ENVIRONMENT"]);
    for (name, text) in [
        (
            "RESPOOL_CONFIG",
            "The config file, when --config is not given.",
        ),
        (
            "RESPOOL_LOG",
            "Log filter (e.g. debug, or respool=debug,info); RUST_LOG is read when it is unset.",
        ),
        (
            "OPENAI_API_KEY",
            "The upstream API key, when upstream.api_key is not set in the config and no \
             openai-api-key credential is given.",
        ),
        (
            "OPENAI_WEBHOOK_SECRET",
            "A webhook signing secret, when webhook.secrets is empty and no webhook-secret \
             credential is given.",
        ),
        (
            "CREDENTIALS_DIRECTORY",
            "Set by systemd (LoadCredential=): the files openai-api-key and webhook-secret in it \
             supply upstream.api_key and webhook.secrets when the config sets none.",
        ),
        (
            "STATE_DIRECTORY",
            "Set by systemd (StateDirectory=): where the database lives by default.",
        ),
        (
            "NOTIFY_SOCKET, WATCHDOG_USEC",
            "Set by systemd for Type=notify: respool reports READY, WATCHDOG, RELOADING and \
             STOPPING there.",
        ),
        (
            "JOURNAL_STREAM",
            "Set by systemd when stderr is the journal: --log-format auto then writes journald \
             lines.",
        ),
        (
            "RESPOOL_SERVER, RESPOOL_TOKEN",
            "The daemon's URL and API token, for the client commands.",
        ),
        ("NO_COLOR", "When set and not empty, no colours."),
    ] {
        entry(&mut roff, name, text);
    }

    roff.control("SH", ["FILES"]);
    for (name, text) in [
        (
            "/etc/respool/respool.yaml",
            "The config file, when neither --config, RESPOOL_CONFIG nor ./respool.yaml is found.",
        ),
        (
            "/var/lib/respool/respool.db",
            "The SQLite ledger under systemd (StateDirectory=respool).",
        ),
    ] {
        entry(&mut roff, name, text);
    }

    roff.control("SH", ["SIGNALS"]);
    for (name, text) in [
        (
            "SIGTERM, SIGINT",
            "Stop taking work, let work in flight record its results (up to shutdown_timeout), \
             exit 0. A second signal exits at once.",
        ),
        (
            "SIGHUP",
            "Reload the config and the jobs file (systemctl reload respool).",
        ),
    ] {
        entry(&mut roff, name, text);
    }

    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        italic("systemd.exec"),
        roman("(5), "),
        italic("systemd-creds"),
        roman("(1), "),
        italic("journalctl"),
        roman("(1), "),
        italic("sd_notify"),
        roman("(3)"),
    ]);
    roff
}

#[cfg(test)]
mod tests {
    /// clap's own checks of the whole command tree (unique argument names, valid groups and
    /// conflicts): a mistake there panics only when that subcommand is parsed.
    #[test]
    fn the_command_tree_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
