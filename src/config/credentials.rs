//! Secrets from systemd credentials (`LoadCredential=`, `LoadCredentialEncrypted=`): files in
//! `$CREDENTIALS_DIRECTORY`, readable only by the service, never in its environment (which
//! `systemctl show` and `/proc/PID/environ` reveal) nor in the config file.
//!
//! | credential       | fills                                        |
//! | ---------------- | -------------------------------------------- |
//! | `openai-api-key` | `upstream.api_key`, when the config sets none |
//! | `webhook-secret` | `webhook.secrets` (one per line), when empty |
//! | `database-url`   | `database`, when the config sets none (a PostgreSQL URL holds a password) |
//!
//! A credential wins over `$OPENAI_API_KEY` / `$OPENAI_WEBHOOK_SECRET`: it was given to this
//! service by name, while an environment variable may merely be inherited. Sinks read their
//! secrets from files (`password_file: ${CREDENTIALS_DIRECTORY}/smtp-password`), so they need
//! nothing here.

use std::path::PathBuf;

use secrecy::SecretString;

use super::{Config, ConfigError};

/// The API key credential's file name.
pub const OPENAI_API_KEY: &str = "openai-api-key";
/// The webhook secret credential's file name.
pub const WEBHOOK_SECRET: &str = "webhook-secret";
/// The database URL credential's file name.
pub const DATABASE_URL: &str = "database-url";

/// Fills unset secrets from `$CREDENTIALS_DIRECTORY`. A credential that is absent (or empty) is
/// no error; one that exists but cannot be read is.
pub(super) fn apply(
    cfg: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let dir = PathBuf::from(dir);
    if cfg.upstream.api_key.is_none()
        && let Some(text) = read(&dir, OPENAI_API_KEY)?
    {
        let key = text.trim();
        if !key.is_empty() {
            cfg.upstream.api_key = Some(SecretString::from(key));
        }
    }
    if cfg.database.is_none()
        && let Some(text) = read(&dir, DATABASE_URL)?
    {
        let url = text.trim();
        if !url.is_empty() {
            cfg.database = Some(url.to_string());
        }
    }
    if cfg.webhook.secrets.is_empty()
        && let Some(text) = read(&dir, WEBHOOK_SECRET)?
    {
        cfg.webhook.secrets = text
            .lines()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(SecretString::from)
            .collect();
    }
    Ok(())
}

/// The credential's text, or `None` when there is no such file.
fn read(dir: &std::path::Path, name: &str) -> Result<Option<String>, ConfigError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use secrecy::ExposeSecret;

    use super::*;

    const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SECRET_B: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn load(text: &str, dir: &std::path::Path, extra: &[(&str, &str)]) -> Config {
        let dir = dir.display().to_string();
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| {
            if k == "CREDENTIALS_DIRECTORY" {
                return Some(dir.clone());
            }
            extra.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        Config::from_yaml("c.yaml", text, &env).unwrap()
    }

    fn api_key(cfg: &Config) -> Option<String> {
        cfg.upstream
            .api_key
            .as_ref()
            .map(|k| k.expose_secret().to_string())
    }

    fn secrets(cfg: &Config) -> Vec<String> {
        cfg.webhook
            .secrets
            .iter()
            .map(|s| s.expose_secret().to_string())
            .collect()
    }

    #[test]
    fn credentials_fill_unset_secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OPENAI_API_KEY), "sk-from-cred\n").unwrap();
        std::fs::write(
            dir.path().join(WEBHOOK_SECRET),
            format!("{SECRET_A}\n\n{SECRET_B}\n"),
        )
        .unwrap();
        let cfg = load("", dir.path(), &[("OPENAI_API_KEY", "sk-from-env")]);
        assert_eq!(api_key(&cfg).as_deref(), Some("sk-from-cred"));
        assert_eq!(secrets(&cfg), [SECRET_A, SECRET_B]);
    }

    #[test]
    fn the_config_file_wins_over_credentials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OPENAI_API_KEY), "sk-from-cred").unwrap();
        std::fs::write(dir.path().join(WEBHOOK_SECRET), SECRET_B).unwrap();
        let text =
            format!("upstream:\n  api_key: sk-from-file\nwebhook:\n  secrets: [\"{SECRET_A}\"]\n");
        let cfg = load(&text, dir.path(), &[]);
        assert_eq!(api_key(&cfg).as_deref(), Some("sk-from-file"));
        assert_eq!(secrets(&cfg), [SECRET_A]);
    }

    #[test]
    fn missing_or_empty_credentials_fall_back_to_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OPENAI_API_KEY), "\n").unwrap();
        let cfg = load(
            "",
            dir.path(),
            &[
                ("OPENAI_API_KEY", "sk-env"),
                ("OPENAI_WEBHOOK_SECRET", SECRET_A),
            ],
        );
        assert_eq!(api_key(&cfg).as_deref(), Some("sk-env"));
        assert_eq!(secrets(&cfg), [SECRET_A]);
    }

    #[test]
    fn a_credential_that_is_not_a_valid_secret_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(WEBHOOK_SECRET), "not-a-secret\n").unwrap();
        let env =
            |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| dir.path().display().to_string());
        let err = Config::from_yaml("c.yaml", "", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid signing secret"), "{err}");
        assert!(
            !err.contains("not-a-secret"),
            "secret leaked into the error: {err}"
        );
    }

    #[test]
    fn an_unreadable_credential_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: exists, cannot be read as text.
        std::fs::create_dir(dir.path().join(OPENAI_API_KEY)).unwrap();
        let env =
            |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| dir.path().display().to_string());
        let err = Config::from_yaml("c.yaml", "", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("openai-api-key"), "{err}");
    }
}
