//! Long human output through a pager, the way git does it: only when stdout is a terminal, with
//! `$RESPOOL_PAGER`, else `$PAGER`, else `less`; `LESS=FRX` when `LESS` is unset, so output
//! that fits on one screen is printed and left there (`F`, `X`) and colours pass through (`R`).
//! An empty pager or `cat` means no pager, and so does `--no-pager`.
//!
//! Why no crate: `pager` forks and rewires the process's own stdout (unsafe, and a fork does not
//! mix with tokio's threads), `minus` is a whole pager drawn in process. Spawning the user's
//! pager with a pipe on its stdin is a few lines of `tokio::process`.
//!
//! A pager that cannot be started is skipped (the text is printed directly), and a reader that
//! goes away early (the user quits `less`, or `| head`) is not an error.

use std::io::{ErrorKind, IsTerminal, Write};
use std::process::Stdio;

use clap::Args;
use tokio::io::AsyncWriteExt;

/// `--no-pager`, for the commands whose output can be long.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct PagerArgs {
    /// Print directly instead of through a pager (`$RESPOOL_PAGER`, `$PAGER`, else `less`).
    #[arg(long)]
    pub no_pager: bool,
}

/// A pager to run: a command line (run by the shell, so `less -S` works) and what it adds to
/// the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagerCommand {
    pub command: String,
    pub env: Vec<(String, String)>,
}

/// The pager the environment asks for; `None` when output should be printed directly.
pub fn choose(env: &dyn Fn(&str) -> Option<String>) -> Option<PagerCommand> {
    // Set but empty means "no pager": an empty `RESPOOL_PAGER` does not fall back to `PAGER`.
    let command = env("RESPOOL_PAGER")
        .or_else(|| env("PAGER"))
        .unwrap_or_else(|| "less".into());
    let command = command.trim();
    if command.is_empty() || command == "cat" {
        return None;
    }
    let mut extra = Vec::new();
    if env("LESS").is_none() {
        extra.push(("LESS".to_string(), "FRX".to_string()));
    }
    Some(PagerCommand {
        command: command.to_string(),
        env: extra,
    })
}

/// Prints `text` for a person: through the pager when `paging` and stdout is a terminal, else
/// straight to stdout.
pub async fn show(text: &str, pager: PagerArgs) -> std::io::Result<()> {
    if !pager.no_pager
        && std::io::stdout().is_terminal()
        && let Some(cmd) = choose(&crate::config::process_env)
        && through(&cmd, text).await
    {
        return Ok(());
    }
    print_direct(text)
}

/// Writes `text` to stdout; a closed pipe (`| head`) ends the output quietly.
pub fn print_direct(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Runs the pager with `text` on its stdin and waits for it; `false` when it could not start.
async fn through(cmd: &PagerCommand, text: &str) -> bool {
    let mut command = program(&cmd.command);
    command
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped());
    let Ok(mut child) = command.spawn() else {
        return false;
    };
    // While the pager runs, Ctrl-C is for it (less uses it to stop a search): if it killed
    // respool, the shell would take the terminal back from under a pager still reading it.
    #[cfg(unix)]
    let _sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    if let Some(mut stdin) = child.stdin.take() {
        // An error here means the pager went away (the user quit it): nothing left to do.
        let _ = stdin.write_all(text.as_bytes()).await;
        let _ = stdin.shutdown().await;
    }
    // 127: the shell did not find the program; the text has not been shown yet.
    !matches!(child.wait().await, Ok(status) if status.code() == Some(127))
}

/// The pager's process: run directly when the line is plain words (so a missing program is a
/// spawn error, and the text is printed instead), through `sh -c` when it needs a shell (the
/// characters git checks for).
fn program(line: &str) -> tokio::process::Command {
    const SHELL_CHARS: &[char] = &[
        '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', '#', '~', '=',
        '%',
    ];
    if cfg!(unix) && line.contains(SHELL_CHARS) {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(line);
        return c;
    }
    let mut words = line.split_whitespace();
    let mut c = tokio::process::Command::new(words.next().unwrap_or("less"));
    c.args(words);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn command(vars: &[(&str, &str)]) -> Option<String> {
        choose(&env_of(vars)).map(|c| c.command)
    }

    #[test]
    fn respool_pager_wins_then_pager_then_less() {
        assert_eq!(
            command(&[("RESPOOL_PAGER", "most"), ("PAGER", "more")]).as_deref(),
            Some("most")
        );
        assert_eq!(command(&[("PAGER", "less -S")]).as_deref(), Some("less -S"));
        assert_eq!(command(&[]).as_deref(), Some("less"));
    }

    #[test]
    fn empty_or_cat_means_no_pager() {
        assert_eq!(command(&[("RESPOOL_PAGER", ""), ("PAGER", "more")]), None);
        assert_eq!(command(&[("PAGER", "  ")]), None);
        assert_eq!(command(&[("PAGER", "cat")]), None);
        assert_eq!(
            command(&[("RESPOOL_PAGER", "cat"), ("PAGER", "less")]),
            None
        );
    }

    #[test]
    fn less_gets_frx_only_when_less_is_unset() {
        let c = choose(&env_of(&[])).unwrap();
        assert_eq!(c.env, vec![("LESS".to_string(), "FRX".to_string())]);
        let c = choose(&env_of(&[("LESS", "-i")])).unwrap();
        assert!(c.env.is_empty(), "{:?}", c.env);
        // An empty LESS is the user's choice too.
        let c = choose(&env_of(&[("LESS", "")])).unwrap();
        assert!(c.env.is_empty(), "{:?}", c.env);
    }

    #[test]
    fn plain_words_run_directly_shell_lines_through_sh() {
        let direct = program("less -S");
        assert_eq!(direct.as_std().get_program(), "less");
        let args: Vec<_> = direct.as_std().get_args().collect();
        assert_eq!(args, ["-S"]);
        if cfg!(unix) {
            let sh = program("less | tee /tmp/x");
            assert_eq!(sh.as_std().get_program(), "sh");
            let args: Vec<_> = sh.as_std().get_args().collect();
            assert_eq!(args, ["-c", "less | tee /tmp/x"]);
        }
    }
}
