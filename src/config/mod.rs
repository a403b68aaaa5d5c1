//! The daemon's configuration: a YAML file with `${VAR}` interpolation, layered as
//! built-in defaults → file → environment defaults → [`Config::validate`].
//!
//! Every field has a default, so an empty file (or none at all) is a working config that
//! talks to OpenAI with `$OPENAI_API_KEY`. Unknown keys are errors that name the file, line
//! and column, so a typo never silently falls back to a default.

pub mod budget;
pub mod credentials;
#[cfg(test)]
mod doc_test;
pub mod retention;
pub mod sinks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

pub use budget::BudgetConfig;
pub use retention::RetentionConfig;

use crate::clock::parse_duration;
use crate::pricing::ModelPrice;
use crate::yaml;
pub use crate::yaml::{Located, Pos};
pub use sinks::{NotifyConfig, SinkConfig};

/// Why a config could not be loaded. Each entry names the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Located>),
}

/// The whole configuration. See `respool.example.yaml` for a commented copy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server (REST API, webhook receiver) listens on.
    pub listen: SocketAddr,
    /// The database: a SQLite path or `sqlite://` URL, or a PostgreSQL `postgres://` URL.
    /// Default: the `database-url` credential, else `respool.db` in the state directory
    /// (`$STATE_DIRECTORY` under systemd, else the working directory).
    pub database: Option<String>,
    /// PostgreSQL: the most connections this daemon opens (default 10). SQLite: unused.
    pub database_pool: Option<u32>,
    /// The public base URL of this daemon (used in links in notifications).
    pub public_url: Option<String>,
    /// REST API settings.
    #[serde(deserialize_with = "null_as_default")]
    pub api: ApiConfig,
    /// The OpenAI (or compatible) upstream.
    #[serde(deserialize_with = "null_as_default")]
    pub upstream: UpstreamConfig,
    /// The webhook receiver.
    #[serde(deserialize_with = "null_as_default")]
    pub webhook: WebhookConfig,
    /// The polling safety net.
    #[serde(deserialize_with = "null_as_default")]
    pub polling: PollingConfig,
    /// Limits on concurrent work.
    #[serde(deserialize_with = "null_as_default")]
    pub limits: LimitsConfig,
    /// Defaults applied to every job.
    #[serde(deserialize_with = "null_as_default")]
    pub jobs: JobDefaults,
    /// Notification sinks by name.
    #[serde(deserialize_with = "null_as_default")]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Which sinks hear about which jobs.
    #[serde(deserialize_with = "null_as_default")]
    pub notify: NotifyConfig,
    /// Dollars per million tokens by model (longest prefix match), for costs and budgets.
    /// `notify.pricing` is the older place for the same table.
    #[serde(deserialize_with = "null_as_default")]
    pub pricing: BTreeMap<String, ModelPrice>,
    /// Fees of the hosted tools (web search, file search, code interpreter, image
    /// generation), over the built-in ones.
    #[serde(deserialize_with = "null_as_default")]
    pub tool_pricing: crate::pricing::ToolPricing,
    /// Spending limits: past them, jobs wait `held`.
    #[serde(deserialize_with = "null_as_default")]
    pub budget: BudgetConfig,
    /// How long finished jobs are kept.
    #[serde(deserialize_with = "null_as_default")]
    pub retention: RetentionConfig,
    /// Where the images and files finished responses made are kept, and how much of them.
    #[serde(deserialize_with = "null_as_default")]
    pub artifacts: ArtifactsConfig,
    /// Named document sets jobs search (`knowledge:` of a job), and their vector stores.
    #[serde(deserialize_with = "null_as_default")]
    pub knowledge: KnowledgeConfig,
    /// Function handlers for every job, by the function's name (a job's own `handlers:` win).
    #[serde(deserialize_with = "null_as_default")]
    pub functions: BTreeMap<String, crate::job::handler::HandlerSpec>,
    /// How jobs that act (function calls, MCP approvals) are run.
    #[serde(deserialize_with = "null_as_default")]
    pub actions: ActionsConfig,
    /// A YAML jobs file loaded at start.
    pub jobs_file: Option<PathBuf>,
    /// How long a graceful shutdown may take before in-flight work is abandoned (it resumes on
    /// the next start).
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_timeout: Duration,
    /// The file this config was read from (not a key of the file): a reload reads it again.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// REST API settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Bearer tokens accepted by the REST API. When none are set, the API answers only
    /// requests from loopback addresses.
    pub tokens: Vec<SecretString>,
}

/// What to do with a create call whose outcome is unknown (the request may have reached
/// OpenAI, but no response id came back: a timeout, a 5xx, or a crash mid-call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UncertainCreatePolicy {
    /// Fail the job with error code `submit_uncertain` (never risks paying twice).
    Fail,
    /// Submit again (risks a second, billed run if the first one did start).
    Resubmit,
}

/// The OpenAI (or compatible) upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URL of the API, including `/v1`.
    pub base_url: String,
    /// API key. Default: `$OPENAI_API_KEY`.
    pub api_key: Option<SecretString>,
    /// `OpenAI-Organization` header.
    pub organization: Option<String>,
    /// `OpenAI-Project` header.
    pub project: Option<String>,
    /// TCP+TLS connect timeout.
    #[serde(deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// Timeout of a whole request (create returns at once in background mode).
    #[serde(deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// Retries of a request that failed with a retryable error (408, 409, 429, 5xx,
    /// connection errors).
    pub max_retries: u32,
    /// The longest server-requested delay (`Retry-After`) we wait inline; longer ones
    /// reschedule the work instead.
    #[serde(deserialize_with = "de_duration")]
    pub max_retry_delay: Duration,
    /// Policy for a create whose outcome is unknown.
    pub uncertain_create: UncertainCreatePolicy,
    /// How long an uncertain create waits for a webhook to reveal the response it started,
    /// before the policy applies. Unset (the default): until the job's `timeout`, or 2 hours
    /// for a job without one, which covers how long a response can really run. Only waits
    /// when webhooks are configured. A response revealed after the wait is still adopted.
    #[serde(deserialize_with = "de_opt_duration")]
    pub uncertain_create_wait: Option<Duration>,
}

/// The webhook receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Path the receiver listens on.
    pub path: String,
    /// Signing secrets (`whsec_…`); a delivery verified by any of them is accepted, so a
    /// rotation can keep the old and the new one. Default: `$OPENAI_WEBHOOK_SECRET`.
    pub secrets: Vec<SecretString>,
    /// Largest accepted body, in bytes.
    pub max_body_bytes: usize,
    /// Look-ups (a `GET` each) of responses that deliveries name and no job knows, a second
    /// at most, after a burst of 8. They are how an uncertain create's response is found,
    /// but a flood of deliveries for other applications' responses (one project, one webhook
    /// endpoint) must not spend the request limits that creates and polls need; those over
    /// the pace wait in the database for the time booked for them.
    pub lookups_per_second: u32,
}

/// The polling safety net: every non-terminal job is polled between these intervals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollingConfig {
    /// First (and shortest) interval between polls of a job.
    #[serde(deserialize_with = "de_duration")]
    pub min_interval: Duration,
    /// Longest interval between polls of a job: a lost webhook delays a result by at most
    /// this much.
    #[serde(deserialize_with = "de_duration")]
    pub max_interval: Duration,
    /// Polls per second on average at most, over all jobs: with many jobs in flight each job's
    /// interval is stretched to at least `in flight / max_per_second` (upstream counts every
    /// retrieve against the organisation's request limits).
    pub max_per_second: u32,
    /// While webhooks are healthy, the safety-net polls a second on average at most (and
    /// never more than `max_per_second`): a daemon with many jobs waiting upstream then
    /// costs next to nothing while it waits, and a lost webhook costs at most
    /// `in flight / safety_net_per_second`.
    pub safety_net_per_second: u32,
}

/// The largest `webhook.lookups_per_second` accepted (the pacer counts in microseconds).
pub const MAX_LOOKUPS_PER_SECOND: u32 = 10_000;

/// The largest concurrency limit accepted (`limits.max_concurrent_*`, `notify.max_concurrent`,
/// a sink's `max_concurrent`).
pub const MAX_CONCURRENCY: usize = 10_000;

/// Limits on concurrent work.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Create calls in flight at once.
    pub max_concurrent_submissions: usize,
    /// Jobs submitted upstream and not yet finished; further jobs wait as `pending`.
    pub max_in_flight: usize,
    /// Polls (GETs) in flight at once. The ledger's pass, at most every 50 ms, claims as many
    /// polls as there are free places: 64 let it record up to about 1,300 ends a second (16
    /// held a burst of 10,000 ends to about 300 a second, seconds behind upstream).
    pub max_concurrent_polls: usize,
    /// Jobs in flight per model (a model matches its own name or the longest configured
    /// prefix; all models matching one entry share its limit). 0 holds a model's jobs back.
    pub per_model: BTreeMap<String, usize>,
    /// When a create's `x-ratelimit-remaining-requests` is at or below this, further creates
    /// of that model wait for `x-ratelimit-reset-requests`.
    pub low_water_requests: u64,
    /// As `low_water_requests`, for `x-ratelimit-remaining-tokens`.
    pub low_water_tokens: u64,
}

impl LimitsConfig {
    /// The per-model limit that applies to `model`: (the configured key, the limit).
    pub fn model_limit(&self, model: &str) -> Option<(&str, usize)> {
        crate::pricing::longest_prefix(&self.per_model, model).map(|(k, n)| (k, *n))
    }
}

/// Artifacts: the images and container files finished responses made, kept on disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactsConfig {
    /// Where they are kept, one folder per job. Default: `artifacts/` beside the database file
    /// (`/var/lib/respool/artifacts` under systemd). Relative to the working directory.
    pub dir: Option<PathBuf>,
    /// A container file larger than this is listed but not downloaded.
    pub max_file_bytes: u64,
    /// At most this much is kept per job; files past it are listed but not downloaded.
    pub max_job_bytes: u64,
    /// Emails attach a job's artifacts up to this many bytes in all (the first that fit, in
    /// order); the others are linked. `0` attaches none.
    pub email_max_bytes: u64,
}

impl Default for ArtifactsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_file_bytes: 512 << 20,
            max_job_bytes: 2 << 30,
            email_max_bytes: 10 << 20,
        }
    }
}

/// Knowledge sets: named sets of documents a job searches with `file_search`, one vector
/// store per set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgeConfig {
    /// A set's vector store expires this long after it was last used (whole days, 1 to 365);
    /// respool makes a new one when a job needs it again.
    #[serde(deserialize_with = "de_duration")]
    pub expires_after: Duration,
    /// Sets jobs name (`knowledge: [handbook]`), by name.
    pub sets: BTreeMap<String, KnowledgeSetConfig>,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        Self {
            expires_after: Duration::from_secs(30 * 24 * 3600),
            sets: BTreeMap::new(),
        }
    }
}

impl KnowledgeConfig {
    /// `expires_after` in whole days, as OpenAI takes it.
    pub fn expiry_days(&self) -> u32 {
        (self.expires_after.as_secs() / 86_400).clamp(1, 365) as u32
    }
}

/// One knowledge set of the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgeSetConfig {
    /// Its files: paths or globs, relative to the config file. Read when a job naming the set
    /// is taken in, so a job searches the set as it is then.
    pub paths: Vec<String>,
}

/// Defaults applied to every job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobDefaults {
    /// Default `timeout` of a job that sets none.
    #[serde(deserialize_with = "de_opt_duration")]
    pub default_timeout: Option<Duration>,
    /// The folders the daemon's `jobs_file` may attach files from (`attachments:`); empty
    /// means the jobs file's own folder. A path outside them (after following links) is
    /// refused. Relative to the config file.
    pub attachment_dirs: Vec<PathBuf>,
    /// How jobs that set no `progress` are followed while they run: `poll` (default) or
    /// `stream` (live milestones from the response's event stream).
    pub progress: crate::job::progress::Progress,
}

/// How jobs that act are run: function handlers, approvals, turns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    /// Whether a job may bring its own `handlers:` (commands run on this host, URLs called from
    /// it). Off by default: whoever may submit jobs could then run any command as the daemon.
    /// The config's `functions:` are always allowed.
    pub job_handlers: bool,
    /// How many responses a job may make in all, unless it sets `max_turns`.
    pub max_turns: u32,
    /// How long a job waits for a person (`requires_action`) when it has no `timeout`; then it
    /// ends `cancelled`.
    #[serde(deserialize_with = "de_duration")]
    pub wait_timeout: Duration,
    /// Handlers running at once, all jobs together.
    pub max_concurrent: std::num::NonZeroUsize,
    /// MCP approval requests answered without a person: the first policy covering the server
    /// (and tool) approves or denies.
    pub approvals: Vec<crate::job::handler::ApprovalPolicy>,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        Self {
            job_handlers: false,
            max_turns: 10,
            wait_timeout: Duration::from_secs(7 * 24 * 3600),
            max_concurrent: std::num::NonZeroUsize::new(8).unwrap_or(std::num::NonZeroUsize::MIN),
            approvals: Vec::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: None,
            database_pool: None,
            public_url: None,
            api: ApiConfig::default(),
            upstream: UpstreamConfig::default(),
            webhook: WebhookConfig::default(),
            polling: PollingConfig::default(),
            limits: LimitsConfig::default(),
            jobs: JobDefaults::default(),
            sinks: BTreeMap::new(),
            notify: NotifyConfig::default(),
            pricing: BTreeMap::new(),
            tool_pricing: crate::pricing::ToolPricing::default(),
            budget: BudgetConfig::default(),
            retention: RetentionConfig::default(),
            artifacts: ArtifactsConfig::default(),
            knowledge: KnowledgeConfig::default(),
            functions: BTreeMap::new(),
            actions: ActionsConfig::default(),
            jobs_file: None,
            shutdown_timeout: Duration::from_secs(8),
            file: None,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            organization: None,
            project: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_retries: 4,
            max_retry_delay: Duration::from_secs(60),
            uncertain_create: UncertainCreatePolicy::Fail,
            uncertain_create_wait: None,
        }
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            path: "/webhooks/openai".into(),
            secrets: Vec::new(),
            max_body_bytes: 1024 * 1024,
            lookups_per_second: 20,
        }
    }
}

impl Default for PollingConfig {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(2),
            max_interval: Duration::from_secs(60),
            max_per_second: 20,
            safety_net_per_second: 2,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrent_submissions: 4,
            max_in_flight: 64,
            max_concurrent_polls: 64,
            per_model: BTreeMap::new(),
            low_water_requests: 1,
            low_water_tokens: 0,
        }
    }
}

/// Where the config came from, for messages.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Defaults,
}

impl Config {
    /// Finds the config file: `explicit`, else `$RESPOOL_CONFIG`, else `./respool.yaml`, else
    /// `/etc/respool/respool.yaml`, else none (built-in defaults).
    pub fn discover(explicit: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Source {
        if let Some(p) = explicit {
            return Source::File(p.to_path_buf());
        }
        if let Some(p) = env("RESPOOL_CONFIG").filter(|p| !p.is_empty()) {
            return Source::File(PathBuf::from(p));
        }
        for candidate in ["respool.yaml", "/etc/respool/respool.yaml"] {
            if Path::new(candidate).is_file() {
                return Source::File(PathBuf::from(candidate));
            }
        }
        Source::Defaults
    }

    /// Loads and validates the config from `source`, reading variables through `env`.
    pub fn load(
        source: &Source,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        match source {
            Source::Defaults => Self::from_yaml("<defaults>", "", env),
            Source::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let mut cfg = Self::from_yaml(&path.display().to_string(), &text, env)?;
                // Remembered for reloads, absolute: the working directory may change meanwhile.
                cfg.file = Some(std::path::absolute(path).unwrap_or_else(|_| path.clone()));
                // A relative jobs file is relative to the config file.
                if let (Some(jobs), Some(dir)) = (cfg.jobs_file.as_mut(), path.parent())
                    && jobs.is_relative()
                {
                    *jobs = dir.join(&*jobs);
                }
                if let Some(dir) = path.parent() {
                    for d in &mut cfg.jobs.attachment_dirs {
                        if d.is_relative() {
                            *d = dir.join(&*d);
                        }
                    }
                }
                Ok(cfg)
            }
        }
    }

    /// Parses YAML text (already read) named `file` in messages.
    pub fn from_yaml(
        file: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = yaml::interpolate(file, text, env).map_err(|e| ConfigError::Invalid(vec![e]))?;
        let mut cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(&text)
                .map_err(|e| ConfigError::Invalid(vec![yaml::parse_error(file, &text, &e)]))?
        };
        // systemd credentials first: they were given to this service by name.
        credentials::apply(&mut cfg, env)?;
        cfg.apply_env_defaults(env);
        let errors = cfg.validate(file, &text);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    fn apply_env_defaults(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        if self.upstream.api_key.is_none() {
            self.upstream.api_key = env("OPENAI_API_KEY")
                .filter(|k| !k.is_empty())
                .map(SecretString::from);
        }
        if self.webhook.secrets.is_empty()
            && let Some(s) = env("OPENAI_WEBHOOK_SECRET").filter(|s| !s.is_empty())
        {
            self.webhook.secrets.push(SecretString::from(s));
        }
    }

    /// Checks what types alone cannot; returns every problem found, each located.
    pub fn validate(&self, file: &str, text: &str) -> Vec<Located> {
        let mut errors = Vec::new();
        let mut err = |path: &[&str], message: String| {
            errors.push(Located {
                file: file.to_string(),
                // The key itself, else the nearest parent written in the file.
                pos: (1..=path.len())
                    .rev()
                    .find_map(|n| yaml::locate(text, &path[..n])),
                message: format!("`{}`: {message}", path.join(".")),
            });
        };
        match url::Url::parse(&self.upstream.base_url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => err(&["upstream", "base_url"], "must be an http(s) URL".into()),
        }
        if let Some(u) = &self.public_url
            && url::Url::parse(u).is_err()
        {
            err(&["public_url"], "must be a URL".into());
        }
        if !self.webhook.path.starts_with('/') {
            err(&["webhook", "path"], "must start with `/`".into());
        }
        if let Some(Err(m)) = self
            .jobs
            .default_timeout
            .map(crate::job::spec::check_timeout)
        {
            err(&["jobs", "default_timeout"], m);
        }
        if matches!(
            self.webhook.path.as_str(),
            "/" | "/v1" | "/healthz" | "/readyz" | "/metrics"
        ) || self.webhook.path.starts_with("/v1/")
        {
            err(
                &["webhook", "path"],
                "collides with a path of the REST API".into(),
            );
        }
        for (i, s) in self.webhook.secrets.iter().enumerate() {
            if standardwebhooks::Webhook::new(s.expose_secret()).is_err() {
                let idx = i.to_string();
                err(
                    &["webhook", "secrets", &idx],
                    format!(
                        "secret #{} is not a valid signing secret (expected `whsec_` followed by base64)",
                        i + 1
                    ),
                );
            }
        }
        if self.webhook.max_body_bytes < 1024 {
            err(
                &["webhook", "max_body_bytes"],
                "must be at least 1024".into(),
            );
        }
        if !(1..=MAX_LOOKUPS_PER_SECOND).contains(&self.webhook.lookups_per_second) {
            err(
                &["webhook", "lookups_per_second"],
                format!("must be 1 to {}", MAX_LOOKUPS_PER_SECOND),
            );
        }
        if self.polling.min_interval.is_zero() {
            err(
                &["polling", "min_interval"],
                "must be greater than zero".into(),
            );
        }
        if self.polling.max_per_second == 0 {
            err(&["polling", "max_per_second"], "must be at least 1".into());
        }
        if self.polling.safety_net_per_second == 0 {
            err(
                &["polling", "safety_net_per_second"],
                "must be at least 1".into(),
            );
        }
        if self.polling.max_interval < self.polling.min_interval {
            err(
                &["polling", "max_interval"],
                "must not be shorter than `polling.min_interval`".into(),
            );
        }
        for (key, v) in [
            (
                "max_concurrent_submissions",
                self.limits.max_concurrent_submissions,
            ),
            ("max_in_flight", self.limits.max_in_flight),
            ("max_concurrent_polls", self.limits.max_concurrent_polls),
        ] {
            if v == 0 {
                err(&["limits", key], "must be at least 1".into());
            }
        }
        // Concurrency limits become semaphores, which take at most `usize::MAX >> 3` permits;
        // anything near that is a typo, not a plan.
        let too_many = |v: usize| v > MAX_CONCURRENCY;
        let msg = || format!("must be at most {MAX_CONCURRENCY}");
        if too_many(self.limits.max_concurrent_submissions) {
            err(&["limits", "max_concurrent_submissions"], msg());
        }
        if too_many(self.limits.max_concurrent_polls) {
            err(&["limits", "max_concurrent_polls"], msg());
        }
        if too_many(self.notify.max_concurrent.get()) {
            err(&["notify", "max_concurrent"], msg());
        }
        for (name, sink) in &self.sinks {
            if too_many(sink.max_concurrent()) {
                err(&["sinks", name, "max_concurrent"], msg());
            }
        }
        if self
            .api
            .tokens
            .iter()
            .any(|t| t.expose_secret().trim().is_empty())
        {
            err(&["api", "tokens"], "a token must not be empty".into());
        }
        for (name, sink) in &self.sinks {
            for (key, message) in sinks::validate_sink(sink) {
                let mut path: Vec<&str> = vec!["sinks", name];
                path.extend(key.split('.'));
                err(&path, message);
            }
        }
        if self.notify.max_attempts == 0 {
            err(&["notify", "max_attempts"], "must be at least 1".into());
        }
        if self.notify.max_backoff < self.notify.initial_backoff {
            err(
                &["notify", "max_backoff"],
                "must not be shorter than `notify.initial_backoff`".into(),
            );
        }
        if !self.pricing.is_empty() && !self.notify.pricing.is_empty() {
            err(
                &["notify", "pricing"],
                "prices are set twice: keep the top-level `pricing` and remove `notify.pricing`"
                    .into(),
            );
        }
        let prices_at = if self.pricing.is_empty() {
            ["notify", "pricing"].as_slice()
        } else {
            ["pricing"].as_slice()
        };
        let days = self.knowledge.expires_after.as_secs();
        if !days.is_multiple_of(86_400) || !(1..=365).contains(&(days / 86_400)) {
            err(
                &["knowledge", "expires_after"],
                "must be whole days from `1d` to `365d` (OpenAI's vector store expiry)".into(),
            );
        }
        for (name, set) in &self.knowledge.sets {
            if !crate::job::spec::is_knowledge_name(name) {
                err(
                    &["knowledge", "sets", name],
                    "a set's name is 1 to 64 of A-Z, a-z, 0-9, `.`, `_`, `-`".into(),
                );
            }
            if set.paths.is_empty() {
                err(
                    &["knowledge", "sets", name, "paths"],
                    "must name at least one path or glob".into(),
                );
            }
        }
        for (name, handler) in &self.functions {
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            {
                err(
                    &["functions", name],
                    "a function's name is 1 to 64 of A-Z, a-z, 0-9, `_`, `-` (OpenAI's rule)"
                        .into(),
                );
            }
            if let Err(m) = handler.check(true) {
                err(&["functions", name], m);
            }
        }
        if !(1..=crate::job::handler::MAX_TURNS).contains(&self.actions.max_turns) {
            err(
                &["actions", "max_turns"],
                format!("must be 1 to {}", crate::job::handler::MAX_TURNS),
            );
        }
        if self.actions.wait_timeout.is_zero() {
            err(&["actions", "wait_timeout"], "must be more than 0".into());
        }
        for (path, message) in self.tool_pricing.problems() {
            let mut full = vec!["tool_pricing"];
            full.extend(path.iter().map(String::as_str));
            err(&full, message);
        }
        for (path, message) in budget::validate(self.prices(), &self.budget)
            .into_iter()
            .chain(retention::validate(&self.retention))
        {
            let mut full: Vec<&str> = Vec::new();
            if path
                .first()
                .is_none_or(|p| p != "budget" && p != "retention")
            {
                full.extend(prices_at);
            }
            full.extend(path.iter().map(String::as_str));
            err(&full, message);
        }
        for (i, name) in self.notify.default.iter().enumerate() {
            if !self.sinks.contains_key(name) {
                let idx = i.to_string();
                err(
                    &["notify", "default", &idx],
                    format!("no sink named `{name}` under `sinks`"),
                );
            }
        }
        errors
    }

    /// The state directory: `$STATE_DIRECTORY` under systemd (its first entry), else the
    /// working directory.
    pub fn state_dir(&self, env: &dyn Fn(&str) -> Option<String>) -> std::path::PathBuf {
        env("STATE_DIRECTORY")
            .and_then(|d| d.split(':').next().map(str::to_string))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| ".".into())
            .into()
    }

    /// The database URL to open, resolving the default location.
    pub fn database_url(&self, env: &dyn Fn(&str) -> Option<String>) -> String {
        match &self.database {
            Some(d)
                if d.starts_with("sqlite:")
                    || d.starts_with("postgres://")
                    || d.starts_with("postgresql://") =>
            {
                d.clone()
            }
            Some(d) => format!("sqlite://{d}"),
            None => format!(
                "sqlite://{}",
                self.state_dir(env).join("respool.db").display()
            ),
        }
    }

    /// Every price in force, model and tool ones: what [`crate::pricing::cost`] takes.
    pub fn pricing(&self) -> crate::pricing::Prices<'_> {
        crate::pricing::Prices::new(self.prices(), self.tool_pricing.prices())
    }

    /// The price table: `pricing`, or the older `notify.pricing` when only that is set.
    pub fn prices(&self) -> &BTreeMap<String, ModelPrice> {
        if self.pricing.is_empty() {
            &self.notify.pricing
        } else {
            &self.pricing
        }
    }

    /// Every secret in this config, so logs and errors can be checked for leaks in tests.
    pub fn secrets(&self) -> Vec<&SecretString> {
        let mut out: Vec<&SecretString> = self.api.tokens.iter().collect();
        out.extend(self.webhook.secrets.iter());
        out.extend(self.upstream.api_key.iter());
        out
    }
}

/// The config in force, shared by the orchestrator, the HTTP handlers and the reloader: a
/// reload swaps it whole, and each reader takes a snapshot for one piece of work.
#[derive(Clone)]
pub struct Live(std::sync::Arc<arc_swap::ArcSwap<Config>>);

impl Live {
    pub fn new(config: std::sync::Arc<Config>) -> Self {
        Self(std::sync::Arc::new(arc_swap::ArcSwap::new(config)))
    }

    /// The config in force now: hold it for one piece of work and ask again for the next.
    pub fn get(&self) -> std::sync::Arc<Config> {
        self.0.load_full()
    }

    /// Puts `config` in force; returns the one it replaces.
    pub fn swap(&self, config: std::sync::Arc<Config>) -> std::sync::Arc<Config> {
        self.0.swap(config)
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live(Config)")
    }
}

/// Reads the process environment; the one place that does.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// An empty section (`jobs:` with only comments under it) means its defaults.
fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

pub(crate) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// A database URL fit for logs and errors: a PostgreSQL URL's password is replaced by `***`.
pub fn redacted_database_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.scheme().starts_with("postgres") => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            // A password may also be a query parameter.
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") {
                        "***".to_string()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            if !pairs.is_empty() {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        // A PostgreSQL URL that does not parse (a raw `/` or `#` in its password): everything
        // between the scheme and the last `@` is hidden.
        _ if url.starts_with("postgres") => match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
            _ => "postgres://***".into(),
        },
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn empty_config_has_defaults() {
        let cfg = Config::from_yaml("c.yaml", "", &no_env).unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.webhook.path, "/webhooks/openai");
        assert_eq!(cfg.polling.max_interval, Duration::from_secs(60));
    }

    #[test]
    fn a_postgres_database_url_is_taken_as_it_is() {
        let url = "postgres://app:secret@db.example/respool?sslmode=require";
        let text = format!("database: {url}\n");
        let cfg = Config::from_yaml("c.yaml", &text, &no_env).unwrap();
        assert_eq!(cfg.database_url(&no_env), url);
        let sqlite =
            Config::from_yaml("c.yaml", "database: /var/lib/respool/r.db\n", &no_env).unwrap();
        assert_eq!(
            sqlite.database_url(&no_env),
            "sqlite:///var/lib/respool/r.db"
        );
    }

    #[test]
    fn database_passwords_never_reach_messages() {
        assert_eq!(
            redacted_database_url("postgres://app:s3cret@db.example:5432/respool?sslmode=require"),
            "postgres://app:***@db.example:5432/respool?sslmode=require"
        );
        assert_eq!(
            redacted_database_url("postgresql://db.example/respool?password=s3cret&user=app"),
            "postgresql://db.example/respool?password=***&user=app"
        );
        assert_eq!(
            redacted_database_url("postgres://app:pa/ss#w@db.example/respool"),
            "postgres://***@db.example/respool"
        );
        assert_eq!(
            redacted_database_url("sqlite:///var/lib/respool/respool.db"),
            "sqlite:///var/lib/respool/respool.db"
        );
    }

    #[test]
    fn unknown_key_names_line() {
        let err = Config::from_yaml(
            "c.yaml",
            "listen: 127.0.0.1:1\npolling:\n  min_intervl: 2s\n",
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("c.yaml:3:"), "{err}");
        assert!(err.contains("min_intervl"), "{err}");
    }

    #[test]
    fn semantic_errors_are_located() {
        let text =
            "polling:\n  min_interval: 10s\n  max_interval: 2s\nnotify:\n  default: [nope]\n";
        let err = Config::from_yaml("c.yaml", text, &no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.yaml:3:3: `polling.max_interval`"), "{err}");
        assert!(err.contains("no sink named `nope`"), "{err}");
    }

    #[test]
    fn env_interpolation_and_defaults() {
        let env = |k: &str| match k {
            "PORT" => Some("9999".to_string()),
            "OPENAI_API_KEY" => Some("sk-abc".to_string()),
            _ => None,
        };
        let cfg = Config::from_yaml("c.yaml", "listen: 127.0.0.1:${PORT}\n", &env).unwrap();
        assert_eq!(cfg.listen.port(), 9999);
        assert_eq!(
            cfg.upstream
                .api_key
                .as_ref()
                .map(|k| k.expose_secret().to_string()),
            Some("sk-abc".into())
        );
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("sk-abc"), "secret leaked into Debug: {dbg}");
    }

    #[test]
    fn the_example_config_is_valid_and_all_defaults() {
        let text = include_str!("../../respool.example.yaml");
        let cfg = Config::from_yaml("respool.example.yaml", text, &no_env).unwrap();
        let defaults = Config::default();
        assert_eq!(
            cfg.limits.low_water_requests,
            defaults.limits.low_water_requests
        );
        assert_eq!(
            cfg.limits.low_water_tokens,
            defaults.limits.low_water_tokens
        );
        assert!(cfg.prices().is_empty() && !cfg.budget.is_set());
        assert_eq!(cfg.retention.jobs, None);
    }

    #[test]
    fn limits_budget_retention_and_pricing() {
        let text = "limits:\n  per_model: {o3-deep-research: 2, o3: 4}\npricing:\n  o3: {input: 2, output: 8}\nbudget:\n  daily_usd: 20\n  timezone: Europe/Paris\nretention:\n  jobs: 90d\n";
        let cfg = Config::from_yaml("c.yaml", text, &no_env).unwrap();
        assert_eq!(
            cfg.limits.model_limit("o3-deep-research-2025"),
            Some(("o3-deep-research", 2))
        );
        assert_eq!(cfg.limits.model_limit("o3-pro"), Some(("o3", 4)));
        assert_eq!(cfg.limits.model_limit("gpt-5"), None);
        assert_eq!(cfg.budget.tz(), chrono_tz::Europe::Paris);
        assert_eq!(cfg.retention.jobs, Some(Duration::from_secs(90 * 86_400)));
        assert!(cfg.retention.keep_summary);
        assert!(cfg.prices().contains_key("o3"));

        // The older place still works.
        let old = "notify:\n  pricing:\n    o3: {input: 2, output: 8}\n";
        let cfg = Config::from_yaml("c.yaml", old, &no_env).unwrap();
        assert!(cfg.prices().contains_key("o3"));

        let both = "pricing:\n  o3: {input: 2, output: 8}\nnotify:\n  pricing:\n    o3: {input: 2, output: 8}\n";
        let err = Config::from_yaml("c.yaml", both, &no_env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.yaml:4:3: `notify.pricing`: prices are set twice"),
            "{err}"
        );

        let bad = "budget:\n  daily_usd: 5\n  timezone: Nowhere/Land\n";
        let err = Config::from_yaml("c.yaml", bad, &no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.yaml:3:3: `budget.timezone`"), "{err}");
        assert!(
            !err.contains("needs prices"),
            "built-in prices count: {err}"
        );
        let bad = "pricing:\n  o3: {input: -2, output: 8}\n";
        let err = Config::from_yaml("c.yaml", bad, &no_env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`pricing.o3.input`: must be a non-negative"),
            "{err}"
        );
    }

    #[test]
    fn bad_duration_is_an_error() {
        let err = Config::from_yaml("c.yaml", "polling:\n  min_interval: soon\n", &no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.yaml:2:"), "{err}");
        assert!(err.contains("not a duration"), "{err}");
    }
}
