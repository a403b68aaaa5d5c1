//! Job specs: a Responses API `create` body plus respool's own keys, parsed from a YAML jobs
//! file or a JSON REST body into one [`JobSpec`].
//!
//! Any key respool does not own passes through to OpenAI untouched, so new API parameters work
//! without a respool release. respool's keys are taken out before the body is sent:
//! `name`, `notify`, `idempotency_key`, `timeout`, `schedule`, `attachments`, `priority`,
//! `budget_exempt`, `progress`, `after`, `input_template`, `handlers`, `max_turns` (and
//! `conversation: new`, and
//! `metadata`, which is merged with respool's own tag).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::contract;
use crate::yaml::{self, Located};

use super::METADATA_JOB_KEY;
use super::handler::{HandlerSpec, MAX_TURNS};

/// Keys respool owns; they never reach OpenAI.
const OWN_KEYS: [&str; 12] = [
    "name",
    "progress",
    "after",
    "input_template",
    "notify",
    "idempotency_key",
    "timeout",
    "schedule",
    "attachments",
    "knowledge",
    "handlers",
    "max_turns",
];
/// respool's keys for scheduling a job among others: they never reach OpenAI either.
const QUEUE_KEYS: [&str; 2] = ["priority", "budget_exempt"];
/// The range of `priority`.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -1000..=1000;
/// The longest job `timeout` (and `jobs.default_timeout`): a deadline is kept in milliseconds
/// from now and a spec stores it as seconds in a float, so it must be whole seconds and well
/// within both. No response runs for a year; a longer timeout is a typo.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(366 * 24 * 3600);
/// What counts as blank in a name or a model: Unicode's `White_Space` (what `str::trim`
/// removes) and U+FEFF, which ECMAScript's `\s` (the regex dialect of JSON Schema) also
/// counts. As a regex character class, for the API's document; [`is_blank`] is the same set.
pub const BLANK_CLASS: &str = "\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff";

/// Whether `s` has nothing but [`BLANK_CLASS`] characters (or nothing at all).
pub fn is_blank(s: &str) -> bool {
    s.chars().all(|c| c.is_whitespace() || c == '\u{feff}')
}

/// The largest job body respool takes over HTTP (the REST API's body limit, and the New job
/// form's): room for a long input, well under what a daemon should buffer.
pub const MAX_JOB_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The longest job `name`, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// How many `metadata` pairs a job may carry (OpenAI allows 16; respool adds its own).
pub const MAX_METADATA_KEYS: usize = 15;
/// The longest `metadata` key, in characters (OpenAI's limit).
pub const MAX_METADATA_KEY_CHARS: usize = 64;
/// The longest `metadata` value, in characters (OpenAI's limit).
pub const MAX_METADATA_VALUE_CHARS: usize = 512;
/// The smallest `max_output_tokens` OpenAI takes.
pub const MIN_MAX_OUTPUT_TOKENS: u64 = 16;
/// What `conversation:` says to ask respool for a new Conversation (`chain.rs`).
pub const NEW_CONVERSATION: &str = "new";

/// A terminal outcome a notification route can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    Completed,
    Failed,
    Incomplete,
    Cancelled,
    /// The job waits for a person (`requires_action`): told each time it starts waiting.
    RequiresAction,
}

impl NotifyOn {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Incomplete => "incomplete",
            Self::Cancelled => "cancelled",
            Self::RequiresAction => "requires_action",
        }
    }

    pub const ALL: [NotifyOn; 5] = [
        Self::Completed,
        Self::Failed,
        Self::Incomplete,
        Self::Cancelled,
        Self::RequiresAction,
    ];
}

/// One entry of a job's `notify:` list: a sink and the outcomes it hears about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyRoute {
    pub sink: String,
    pub on: Vec<NotifyOn>,
}

/// A validated job spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// A human name; defaults to the model.
    pub name: String,
    /// The `create` body sent upstream, minus respool's keys (respool adds `background`,
    /// `store` and its metadata tag when it submits).
    pub request: Map<String, Value>,
    /// Where to send notifications; `None` means the config's `notify.default`.
    pub notify: Option<Vec<NotifyRoute>>,
    /// A client-chosen key: submitting the same key again returns the same job.
    pub idempotency_key: Option<String>,
    /// Past this the upstream response is cancelled and the job ends `cancelled` with error
    /// code `timeout`.
    #[serde(with = "opt_secs")]
    pub timeout: Option<Duration>,
    /// A jobs-file entry with a schedule is a template: each tick of the schedule makes a job
    /// from it (without the schedule). Skipped when absent, so stored specs and their hashes
    /// stay as they were before the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<super::schedule::ScheduleSpec>,
    /// Submission order: higher first, then oldest first. Skipped when 0 so that specs (and
    /// their hashes, which make a jobs file idempotent) stay as they were before the key.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i64,
    /// Submitted even when a budget is reached (its cost still counts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub budget_exempt: bool,
    /// Files sent with the input, by attachment id (`att_…`, see [`super::attachment`]): the
    /// store keeps their bytes. Skipped when empty, so specs and their hashes stay as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
    /// Document sets the model searches (`file_search` over a vector store per set). Skipped
    /// when empty, so specs and their hashes stay as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub knowledge: Vec<KnowledgeSet>,
    /// The job's own function handlers, by function name (over the config's `functions:`).
    /// Skipped when empty, so specs and their hashes stay as they were.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub handlers: BTreeMap<String, HandlerSpec>,
    /// How many responses the job may make in all (the first and one per round of function
    /// outputs or approvals); `None`: the config's `actions.max_turns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// How the job is followed while it runs (`progress: poll | stream`); `None` takes the
    /// config's `jobs.progress` when it is submitted. Skipped when absent, so specs and their
    /// hashes stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<super::progress::Progress>,
    /// The job this one runs after ([`super::chain`]): a job id, or in a jobs file the name of
    /// one of its jobs (made the id when the file's jobs are taken in). It waits until that
    /// job ends, then runs with `previous_response_id` set to its response (or its output in
    /// `input_template`), or ends `cancelled` if that job did not complete. Skipped when
    /// absent, so specs and their hashes stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The input, with `{{after.output_text}}` standing for the output of the job it runs
    /// after (instead of `previous_response_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_template: Option<String>,
    /// `conversation: new`: respool creates a Conversation for the job, which the jobs that
    /// run after it share.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_conversation: bool,
}

/// A named set of documents a job searches: a vector store respool keeps by the set's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnowledgeSet {
    /// The set's name (`handbook`): one vector store per name, updated when its files change.
    pub name: String,
    /// Its files, by attachment id. `None`: the config's set of this name, read when the job
    /// is taken in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
}

/// The most knowledge sets one job may search (OpenAI's `file_search` takes two vector
/// stores at most for deep research).
pub const MAX_KNOWLEDGE_SETS: usize = 2;
/// The most files one knowledge set may have.
pub const MAX_KNOWLEDGE_FILES: usize = 500;

/// Whether `name` is a knowledge set's name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn is_knowledge_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The names of the `function` tools of a create body.
fn function_tool_names(body: &Map<String, Value>) -> BTreeSet<&str> {
    body.get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .collect()
}

/// A JSON number that is a whole number (`16` or `16.0`: JSON Schema calls both integers),
/// within `i64`.
fn whole(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // Exactly representable and in range: below 2^63 in magnitude.
    (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One problem with a job spec, naming the job and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The job's name, or `#N` when it has none.
    pub job: String,
    /// The field at fault, as a dotted path (`metadata.owner`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "job {}: field `{}`: {}",
            self.job, self.field, self.message
        )
    }
}

/// Something about a valid job spec worth telling its author: a top-level field OpenAI's
/// create-request schema does not name (a typo, or a parameter newer than respool's copy of the
/// schema). The job is taken and the field sent to OpenAI as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecWarning {
    /// The field, as in the job (`temprature`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

impl JobSpec {
    /// What to warn the job's author about (see [`SpecWarning`]); empty for most jobs. The
    /// CLI's `check` prints these, the daemon logs them and records them in the job's
    /// timeline when it takes the job in, and the REST API can return them.
    pub fn warnings(&self) -> Vec<SpecWarning> {
        let source = contract::source();
        let mut out: Vec<SpecWarning> = contract::unknown_fields(&self.request)
            .into_iter()
            .map(|field| SpecWarning {
                message: format!(
                    "is not a parameter of OpenAI's create request (as of its API document {}, \
                     {}); it is sent to OpenAI as it is",
                    source.info_version, source.date
                ),
                field,
            })
            .collect();
        let functions = function_tool_names(&self.request);
        for name in self
            .handlers
            .keys()
            .filter(|n| !functions.contains(n.as_str()))
        {
            out.push(SpecWarning {
                field: format!("handlers.{name}"),
                message: format!(
                    "no function tool named `{name}` in `tools`: the model cannot call it (add `{{type: function, name: {name}, parameters: …}}` to `tools`)"
                ),
            });
        }
        if let Some(crate::structured::Format::JsonSchema {
            schema,
            strict: true,
            ..
        }) = crate::structured::Format::of_body(&self.request)
        {
            out.extend(
                crate::structured::schema_problems(schema, true)
                    .into_iter()
                    .map(|problem| SpecWarning {
                        field: "text.format.schema".into(),
                        message: format!("OpenAI refuses this in strict mode: {problem}"),
                    }),
            );
        }
        out
    }

    /// Parses and validates one job from a JSON value (from REST or one entry of a jobs
    /// file). `label` names the job in errors when it has no name. Returns every problem found.
    pub fn from_value(value: Value, label: &str) -> Result<JobSpec, Vec<SpecError>> {
        let Value::Object(mut body) = value else {
            return Err(vec![SpecError {
                job: label.to_string(),
                field: "(job)".into(),
                message: "a job must be an object (a map of keys)".into(),
            }]);
        };
        let job_label = match body.get("name") {
            Some(Value::String(n)) if !n.trim().is_empty() => format!("`{n}`"),
            _ => label.to_string(),
        };
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| {
            errors.push(SpecError {
                job: job_label.clone(),
                field: field.to_string(),
                message,
            });
        };

        let chain = parse_chain_keys(&mut body);
        for (field, message) in chain.errors {
            err(field, message);
        }
        let (after, input_template, new_conversation) =
            (chain.after, chain.input_template, chain.new_conversation);

        let model = body
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string);
        match body.get("model") {
            None => err(
                "model",
                "is required (e.g. `model: o4-mini-deep-research`)".into(),
            ),
            Some(Value::String(m)) if !is_blank(m) => {}
            Some(_) => err("model", "must be a non-empty string".into()),
        }
        match body.get("input") {
            // The template is the input (checked with the chain's keys).
            None if input_template.is_some() => {}
            None => err(
                "input",
                "is required: a string or a list of input items".into(),
            ),
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::Array(a)) if !a.is_empty() => {}
            Some(_) => err(
                "input",
                "must be a non-empty string or a non-empty list of input items".into(),
            ),
        }

        let name = match body.remove("name") {
            None => model.clone().unwrap_or_else(|| "job".into()),
            Some(Value::String(n)) => {
                if is_blank(&n)
                    || n.chars().count() > MAX_NAME_CHARS
                    || n.chars().any(char::is_control)
                {
                    err(
                        "name",
                        format!("must be 1 to {MAX_NAME_CHARS} printable characters"),
                    );
                }
                n
            }
            Some(_) => {
                err("name", "must be a string".into());
                String::new()
            }
        };

        let progress = match super::progress::take_progress(body.remove("progress")) {
            Ok(p) => p,
            Err(m) => {
                err("progress", m);
                None
            }
        };
        for (key, wanted) in [("background", true), ("store", true), ("stream", false)] {
            match body.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Bool(b)) if *b == wanted => {}
                Some(_) if key == "stream" => err(
                    key,
                    "respool creates in background mode and follows the stream itself: for live progress write `progress: stream` instead".into(),
                ),
                Some(_) => err(
                    key,
                    format!(
                        "respool always sends `{key}: {wanted}`; leave it out or set it to {wanted}"
                    ),
                ),
            }
            body.remove(key);
        }

        match body.get("metadata") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                if m.len() > MAX_METADATA_KEYS {
                    err(
                        "metadata",
                        format!(
                            "has {} keys; at most {MAX_METADATA_KEYS} (OpenAI allows 16 and respool uses one)",
                            m.len()
                        ),
                    );
                }
                for (k, v) in m {
                    if k == METADATA_JOB_KEY {
                        err(&format!("metadata.{k}"), "is set by respool".into());
                    }
                    if k.chars().count() > MAX_METADATA_KEY_CHARS || k.is_empty() {
                        err(
                            &format!("metadata.{k}"),
                            format!("keys must be 1 to {MAX_METADATA_KEY_CHARS} characters"),
                        );
                    }
                    match v {
                        Value::String(s) if s.chars().count() <= MAX_METADATA_VALUE_CHARS => {}
                        Value::String(_) => err(
                            &format!("metadata.{k}"),
                            format!("values must be at most {MAX_METADATA_VALUE_CHARS} characters"),
                        ),
                        _ => err(&format!("metadata.{k}"), "values must be strings".into()),
                    }
                }
            }
            Some(_) => err("metadata", "must be a map of strings".into()),
        }

        match body.get("max_output_tokens") {
            None | Some(Value::Null) => {}
            // Any whole number from 16 up, however large: JSON Schema sets no maximum.
            Some(v) => match v.as_u64().map(|n| n as f64).or_else(|| v.as_f64()) {
                Some(n) if n.fract() == 0.0 && n >= MIN_MAX_OUTPUT_TOKENS as f64 => {}
                _ => err(
                    "max_output_tokens",
                    format!("must be an integer of at least {MIN_MAX_OUTPUT_TOKENS}"),
                ),
            },
        }
        if body
            .get("previous_response_id")
            .is_some_and(|v| !v.is_null())
            && (new_conversation || body.get("conversation").is_some_and(|v| !v.is_null()))
        {
            err(
                "conversation",
                "cannot be used together with `previous_response_id`".into(),
            );
        }

        let idempotency_key = match body.remove("idempotency_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => {
                if let Err(m) = check_idempotency_key(&k) {
                    err("idempotency_key", m);
                }
                Some(k)
            }
            Some(_) => {
                err("idempotency_key", "must be a string".into());
                None
            }
        };

        let timeout = match body.remove("timeout") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match crate::clock::parse_duration(&s) {
                Ok(d) => match check_timeout(d) {
                    Ok(d) => Some(d),
                    Err(m) => {
                        err("timeout", m);
                        None
                    }
                },
                Err(m) => {
                    err("timeout", m);
                    None
                }
            },
            Some(Value::Number(n)) => {
                match whole(&Value::Number(n))
                    .and_then(|n| u64::try_from(n).ok())
                    .map(Duration::from_secs)
                    .map(check_timeout)
                {
                    Some(Ok(d)) => Some(d),
                    _ => {
                        err(
                        "timeout",
                        "must be a positive number of seconds (at most a year) or a duration like `30m`".into(),
                    );
                        None
                    }
                }
            }
            Some(_) => {
                err(
                    "timeout",
                    "must be a duration like `30m` or a number of seconds".into(),
                );
                None
            }
        };

        let notify = match body.remove("notify") {
            None | Some(Value::Null) => None,
            Some(v) => match parse_notify(v) {
                Ok(routes) => Some(routes),
                Err((field, m)) => {
                    err(&field, m);
                    None
                }
            },
        };

        let priority = match body.remove("priority") {
            None | Some(Value::Null) => 0,
            Some(v) => match whole(&v) {
                Some(p) if PRIORITY_RANGE.contains(&p) => p,
                _ => {
                    err(
                        "priority",
                        format!(
                            "must be an integer from {} to {} (higher goes first; default 0)",
                            PRIORITY_RANGE.start(),
                            PRIORITY_RANGE.end()
                        ),
                    );
                    0
                }
            },
        };
        let budget_exempt = match body.remove("budget_exempt") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => {
                err("budget_exempt", "must be true or false".into());
                false
            }
        };

        let attachments = match body.remove("attachments") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut ids: Vec<String> = Vec::new();
                if items.len() > super::attachment::MAX_ATTACHMENTS {
                    err(
                        "attachments",
                        format!(
                            "has {} files; a job may attach at most {}",
                            items.len(),
                            super::attachment::MAX_ATTACHMENTS
                        ),
                    );
                }
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(id) if super::attachment::is_attachment_id(&id) => {
                            if !ids.contains(&id) {
                                ids.push(id);
                            }
                        }
                        _ => err(
                            &format!("attachments.{i}"),
                            "must be an attachment id (`att_` and 64 hex digits) from \
                             `POST /v1/attachments`; a path is read by `respool submit` or \
                             the daemon's `jobs_file`, not sent over REST"
                                .into(),
                        ),
                    }
                }
                ids
            }
            Some(_) => {
                err("attachments", "must be a list of attachment ids".into());
                Vec::new()
            }
        };

        let knowledge = match body.remove("knowledge") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut sets: Vec<KnowledgeSet> = Vec::new();
                if items.len() > MAX_KNOWLEDGE_SETS {
                    err(
                        "knowledge",
                        format!(
                            "names {} sets; a job may search at most {MAX_KNOWLEDGE_SETS}",
                            items.len()
                        ),
                    );
                }
                for (i, item) in items.into_iter().enumerate() {
                    let field = format!("knowledge.{i}");
                    let set = match item {
                        Value::String(name) => KnowledgeSet { name, files: None },
                        Value::Object(mut m) => {
                            let name = match m.remove("name") {
                                Some(Value::String(n)) => n,
                                _ => {
                                    err(
                                        &format!("{field}.name"),
                                        "is required: the set's name".into(),
                                    );
                                    continue;
                                }
                            };
                            let files = match m.remove("files") {
                                Some(Value::Array(f))
                                    if !f.is_empty() && f.len() <= MAX_KNOWLEDGE_FILES =>
                                {
                                    let ids: Vec<String> = f
                                        .into_iter()
                                        .filter_map(|v| v.as_str().map(str::to_string))
                                        .filter(|id| super::attachment::is_attachment_id(id))
                                        .collect();
                                    ids
                                }
                                _ => Vec::new(),
                            };
                            if files.is_empty() {
                                err(
                                    &format!("{field}.files"),
                                    format!(
                                        "must list 1 to {MAX_KNOWLEDGE_FILES} attachment ids (`att_…` from \
                                         `POST /v1/attachments`); in a jobs file, give `paths:`"
                                    ),
                                );
                                continue;
                            }
                            if let Some(k) = m.keys().next() {
                                err(
                                    &format!("{field}.{k}"),
                                    "is not a knowledge key (use `name` and `files`)".into(),
                                );
                                continue;
                            }
                            KnowledgeSet {
                                name,
                                files: Some(files),
                            }
                        }
                        _ => {
                            err(
                                &field,
                                "must be a set's name or a `{name, files}` map".into(),
                            );
                            continue;
                        }
                    };
                    if !is_knowledge_name(&set.name) {
                        err(
                            &field,
                            "a set's name is 1 to 64 of A-Z, a-z, 0-9, `.`, `_`, `-`".into(),
                        );
                    } else if let Some(earlier) = sets.iter_mut().find(|s| s.name == set.name) {
                        // A set named twice is one set: its files together (files given outright win
                        // over the config's set of that name).
                        match (&mut earlier.files, set.files) {
                            (Some(mine), Some(more)) => {
                                for f in more {
                                    if !mine.contains(&f) {
                                        mine.push(f);
                                    }
                                }
                            }
                            (mine @ None, Some(more)) => *mine = Some(more),
                            (_, None) => {}
                        }
                    } else {
                        sets.push(set);
                    }
                }
                sets
            }
            Some(_) => {
                err(
                    "knowledge",
                    "must be a list of set names or `{name, files}` maps".into(),
                );
                Vec::new()
            }
        };

        let schedule = match body.remove("schedule") {
            None | Some(Value::Null) => None,
            Some(v) => match super::schedule::ScheduleSpec::from_value(&v) {
                Ok(s) => Some(s),
                Err((field, m)) => {
                    err(&field, m);
                    None
                }
            },
        };
        if schedule.is_some() && after.is_some() {
            err(
                "after",
                "cannot be used with `schedule` (each run is a job of its own; chain jobs outside a schedule)"
                    .into(),
            );
        }
        if schedule.is_some() && idempotency_key.is_some() {
            err(
                "idempotency_key",
                "cannot be used with `schedule` (each run gets its own key,                  `schedule:<name>:<time>`)"
                    .into(),
            );
        }

        let handlers = match body.remove("handlers") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(m)) => {
                let mut out = BTreeMap::new();
                for (name, v) in m {
                    match HandlerSpec::parse(v, false) {
                        Ok(h) => {
                            out.insert(name, h);
                        }
                        Err(m) => err(&format!("handlers.{name}"), m),
                    }
                }
                out
            }
            Some(_) => {
                err(
                    "handlers",
                    "must be a map of function names to handlers (`{get_weather: {command: [python3, weather.py]}}`)".into(),
                );
                BTreeMap::new()
            }
        };

        let max_turns = match body.remove("max_turns") {
            None | Some(Value::Null) => None,
            Some(v) => match whole(&v).and_then(|n| u32::try_from(n).ok()) {
                Some(n) if (1..=MAX_TURNS).contains(&n) => Some(n),
                _ => {
                    err(
                        "max_turns",
                        format!("must be a whole number from 1 to {MAX_TURNS}"),
                    );
                    None
                }
            },
        };

        // A schema file is read by whoever reads the jobs file (the CLI, or the daemon for its
        // own `jobs_file`); a body that still names one came from elsewhere (REST).
        if let Some(f) = body
            .get_mut("text")
            .and_then(|t| t.get_mut("format"))
            .and_then(Value::as_object_mut)
            && f.remove("schema_file").is_some()
        {
            err(
                "text.format.schema_file",
                "is read from a jobs file (by `respool submit` or the daemon's `jobs_file`); \
                 in a REST body give the schema itself as `schema`"
                    .into(),
            );
        }
        if let Some(crate::structured::Format::JsonSchema { schema, .. }) =
            crate::structured::Format::of_format(
                body.get("text")
                    .and_then(|t| t.get("format"))
                    .unwrap_or(&Value::Null),
            )
            && !schema.is_null()
        {
            // Only a schema that does not compile is refused here; strict mode's rules are
            // warnings (`JobSpec::warnings`): OpenAI refuses them at submit.
            for problem in crate::structured::schema_problems(schema, false) {
                err("text.format.schema", problem);
            }
        }

        debug_assert!(OWN_KEYS.iter().all(|k| !body.contains_key(*k)));
        debug_assert!(QUEUE_KEYS.iter().all(|k| !body.contains_key(*k)));
        // What is left is sent to OpenAI: check it against OpenAI's own contract, so a wrong
        // type or value is refused now rather than by OpenAI's 400 when the job is submitted.
        // A field respool already found fault with above is not reported twice.
        let faulted: BTreeSet<String> = errors
            .iter()
            .map(|e| e.field.split('.').next().unwrap_or_default().to_string())
            .collect();
        for v in contract::check_create(&body) {
            let top = match v.path().first() {
                Some(contract::Segment::Key(k)) => k.as_str(),
                _ => "",
            };
            if !faulted.contains(top) {
                errors.push(SpecError {
                    job: job_label.clone(),
                    field: v.field(),
                    message: v.message().to_string(),
                });
            }
        }
        if errors.is_empty() {
            Ok(JobSpec {
                name,
                request: body,
                notify,
                idempotency_key,
                timeout,
                schedule,
                priority,
                budget_exempt,
                attachments,
                knowledge,
                handlers,
                max_turns,
                progress,
                after,
                input_template,
                new_conversation,
            })
        } else {
            Err(errors)
        }
    }

    /// The JSON body that submits this job through the REST API (`POST /v1/jobs`): the
    /// request with every respool key put back, so that [`JobSpec::from_value`] of it gives
    /// this spec again. `schedule` is left out (a template runs from the daemon's jobs file,
    /// not through the API). The destructuring makes a new key a compile error here until it
    /// is carried too.
    pub fn to_rest_body(&self) -> Map<String, Value> {
        let JobSpec {
            name,
            request,
            notify,
            idempotency_key,
            timeout,
            schedule: _,
            priority,
            budget_exempt,
            attachments,
            knowledge,
            handlers,
            max_turns,
            progress,
            after,
            input_template,
            new_conversation,
        } = self;
        let mut body = request.clone();
        body.insert("name".into(), Value::String(name.clone()));
        if let Some(routes) = notify {
            body.insert(
                "notify".into(),
                serde_json::to_value(routes).unwrap_or(Value::Null),
            );
        }
        if let Some(k) = idempotency_key {
            body.insert("idempotency_key".into(), Value::String(k.clone()));
        }
        if let Some(t) = timeout {
            // Seconds: a timeout is whole seconds (`check_timeout`), and a number is the one
            // form the API takes for every timeout (a string there is one number and a unit).
            body.insert("timeout".into(), Value::from(t.as_secs()));
        }
        if *priority != 0 {
            body.insert("priority".into(), Value::from(*priority));
        }
        if *budget_exempt {
            body.insert("budget_exempt".into(), Value::Bool(true));
        }
        if !attachments.is_empty() {
            body.insert(
                "attachments".into(),
                Value::Array(attachments.iter().cloned().map(Value::String).collect()),
            );
        }
        if !knowledge.is_empty() {
            // A config set by its name alone; a set with its files as `{name, files}`.
            let sets = knowledge
                .iter()
                .map(|k| match &k.files {
                    None => Value::String(k.name.clone()),
                    Some(_) => serde_json::to_value(k).unwrap_or(Value::Null),
                })
                .collect();
            body.insert("knowledge".into(), Value::Array(sets));
        }
        if !handlers.is_empty() {
            body.insert(
                "handlers".into(),
                serde_json::to_value(handlers).unwrap_or(Value::Null),
            );
        }
        if let Some(n) = max_turns {
            body.insert("max_turns".into(), Value::from(*n));
        }
        if let Some(p) = progress {
            body.insert("progress".into(), Value::String(p.as_str().into()));
        }
        if let Some(a) = after {
            body.insert("after".into(), Value::String(a.clone()));
        }
        if let Some(t) = input_template {
            body.insert("input_template".into(), Value::String(t.clone()));
        }
        if *new_conversation {
            body.insert("conversation".into(), Value::from(NEW_CONVERSATION));
        }
        body
    }

    /// The body to POST upstream for job `job_id`: the request with `background` and `store`
    /// forced on and the job id merged into `metadata`.
    pub fn create_body(&self, job_id: &super::JobId) -> Map<String, Value> {
        self.create_body_with(job_id, Vec::new(), &[])
    }

    /// [`Self::create_body`] with the content parts that send the job's attachments put in
    /// front of its input ([`super::attachment::with_parts`]).
    pub fn create_body_with(
        &self,
        job_id: &super::JobId,
        parts: Vec<Value>,
        vector_store_ids: &[String],
    ) -> Map<String, Value> {
        let mut body = self.request.clone();
        if !vector_store_ids.is_empty() {
            add_file_search(&mut body, vector_store_ids);
        }
        if !parts.is_empty() {
            let input = body.remove("input");
            body.insert("input".into(), super::attachment::with_parts(input, parts));
        }
        body.insert("background".into(), Value::Bool(true));
        body.insert("store".into(), Value::Bool(true));
        let mut metadata = match body.remove("metadata") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        metadata.insert(METADATA_JOB_KEY.into(), Value::String(job_id.to_string()));
        body.insert("metadata".into(), Value::Object(metadata));
        body
    }

    /// What this job's polls ask upstream to include (`include[]` of a retrieve): the output a
    /// retrieved Response leaves out unless asked, for each tool the job has (web search
    /// sources, file search results, code interpreter outputs, computer-use screenshots), and
    /// the job's own `include` list. Sorted, without repeats. (Migration
    /// `20261205000016_retrieve_include` backfills by the same rules.)
    pub fn retrieve_include(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        for tool in self
            .request
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let wanted = match tool.get("type").and_then(Value::as_str) {
                Some(
                    "web_search"
                    | "web_search_preview"
                    | "web_search_2025_08_26"
                    | "web_search_preview_2025_03_11",
                ) => "web_search_call.action.sources",
                Some("file_search") => "file_search_call.results",
                Some("code_interpreter") => "code_interpreter_call.outputs",
                Some("computer_use_preview") => "computer_call_output.output.image_url",
                _ => continue,
            };
            out.insert(wanted.to_string());
        }
        if !self.knowledge.is_empty() {
            out.insert("file_search_call.results".to_string());
        }
        for v in self
            .request
            .get("include")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            out.insert(v.to_string());
        }
        out.into_iter().collect()
    }

    /// The model named in the request.
    pub fn model(&self) -> &str {
        self.request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The sinks this job names (for validation against the config).
    pub fn sink_names(&self) -> impl Iterator<Item = &str> {
        self.notify.iter().flatten().map(|r| r.sink.as_str())
    }
}

/// The chain's keys of a job (`after`, `input_template`, `conversation: new`), taken out of
/// its body, and what is wrong with them.
struct ChainKeys {
    after: Option<String>,
    input_template: Option<String>,
    new_conversation: bool,
    errors: Vec<(&'static str, String)>,
}

fn parse_chain_keys(body: &mut Map<String, Value>) -> ChainKeys {
    let mut errors = Vec::new();
    let after = match body.remove("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(a)) if !is_blank(&a) && a.chars().count() <= MAX_NAME_CHARS => Some(a),
        Some(_) => {
            errors.push((
                "after",
                "must be the name of a job in this jobs file, or a job id (`job_…`)".into(),
            ));
            None
        }
    };
    let input_template = match body.remove("input_template") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if super::chain::has_placeholder(&t) => Some(t),
        Some(_) => {
            errors.push((
                "input_template",
                format!(
                    "must be a string naming the earlier job's output as `{}`",
                    super::chain::OUTPUT_PLACEHOLDER
                ),
            ));
            None
        }
    };
    if input_template.is_some() {
        if after.is_none() {
            errors.push((
                "input_template",
                "needs `after`: the job whose output it takes".into(),
            ));
        }
        if body.contains_key("input") {
            errors.push((
                "input_template",
                "replaces `input`: give one of them".into(),
            ));
        }
    }
    if after.is_some()
        && body
            .get("previous_response_id")
            .is_some_and(|v| !v.is_null())
    {
        errors.push((
            "after",
            "sets `previous_response_id` itself (to the earlier job's response): leave `previous_response_id` out".into(),
        ));
    }
    let new_conversation =
        body.get("conversation").and_then(Value::as_str) == Some(NEW_CONVERSATION);
    if new_conversation {
        body.remove("conversation");
    }
    ChainKeys {
        after,
        input_template,
        new_conversation,
        errors,
    }
}

/// Gives a create body's `file_search` tool these vector stores (added to the ones it
/// names), or adds a `file_search` tool with them.
fn add_file_search(body: &mut Map<String, Value>, ids: &[String]) {
    let tools = body
        .entry("tools")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !tools.is_array() {
        *tools = Value::Array(Vec::new());
    }
    let Some(list) = tools.as_array_mut() else {
        return;
    };
    let existing = list
        .iter_mut()
        .find(|t| t.get("type").and_then(Value::as_str) == Some("file_search"));
    match existing {
        Some(tool) => {
            let stores = tool.as_object_mut().map(|t| {
                t.entry("vector_store_ids")
                    .or_insert_with(|| Value::Array(Vec::new()))
            });
            if let Some(Value::Array(stores)) = stores {
                for id in ids {
                    if !stores.iter().any(|s| s == id) {
                        stores.push(Value::String(id.clone()));
                    }
                }
            }
        }
        None => list.push(serde_json::json!({"type": "file_search", "vector_store_ids": ids})),
    }
}

/// Checks a job timeout: whole seconds, from 1 second to [`MAX_TIMEOUT`].
pub fn check_timeout(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    if d.subsec_nanos() != 0 {
        return Err("must be whole seconds".into());
    }
    if d > MAX_TIMEOUT {
        return Err("must be at most a year (366d)".into());
    }
    Ok(d)
}

/// Checks a client idempotency key: 1 to 255 visible ASCII characters.
pub fn check_idempotency_key(k: &str) -> Result<(), String> {
    if k.is_empty() || k.len() > 255 || !k.chars().all(|c| c.is_ascii_graphic()) {
        return Err("must be 1 to 255 visible ASCII characters".into());
    }
    Ok(())
}

/// A fresh idempotency key: 16 random bytes as 32 hex characters (what the CLI sends with a
/// retry, and what each rendering of the web page's Retry form carries).
pub fn random_idempotency_key() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_notify(v: Value) -> Result<Vec<NotifyRoute>, (String, String)> {
    let Value::Array(items) = v else {
        return Err((
            "notify".into(),
            "must be a list of sink names or `{sink, on}` maps".into(),
        ));
    };
    let mut routes = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::String(sink) if !sink.is_empty() => routes.push(NotifyRoute {
                sink,
                on: NotifyOn::ALL.to_vec(),
            }),
            Value::Object(mut m) => {
                let sink = match m.remove("sink") {
                    Some(Value::String(s)) if !s.is_empty() => s,
                    _ => {
                        return Err((
                            format!("notify.{i}.sink"),
                            "is required: a sink name".into(),
                        ));
                    }
                };
                let on = match m.remove("on") {
                    None => NotifyOn::ALL.to_vec(),
                    Some(v) => serde_json::from_value::<BTreeSet<NotifyOn>>(v)
                        .map_err(|_| {
                            (
                                format!("notify.{i}.on"),
                                "must be a list of: completed, failed, incomplete, cancelled"
                                    .into(),
                            )
                        })?
                        .into_iter()
                        .collect(),
                };
                if let Some(k) = m.keys().next() {
                    return Err((
                        format!("notify.{i}.{k}"),
                        "is not a notify key (use `sink` and `on`)".into(),
                    ));
                }
                routes.push(NotifyRoute { sink, on });
            }
            _ => {
                return Err((
                    format!("notify.{i}"),
                    "must be a sink name or a `{sink, on}` map".into(),
                ));
            }
        }
    }
    Ok(routes)
}

/// The files a jobs file names (`text.format.schema_file`, `attachments`), given their paths
/// as written there; an error is a sentence (`cannot read schemas/x.json: No such file or
/// directory`). The CLI and the daemon read relative to the jobs file (`reload::Beside`);
/// tests pass what they like.
pub trait JobFiles {
    /// Reads a file, at most `max + 1` bytes (so that a caller can tell it is too big).
    fn read(&self, path: &str, max: usize) -> Result<Vec<u8>, String>;
    /// Reads a file to attach or put in a knowledge set: like `read`, but a reader may keep
    /// these to some folders (the daemon's `jobs.attachment_dirs`).
    fn read_attachment(&self, path: &str, max: usize) -> Result<Vec<u8>, String> {
        self.read(path, max)
    }
    /// The files a glob pattern (`docs/*.pdf`) matches, sorted, as paths `read` takes.
    fn glob(&self, pattern: &str) -> Result<Vec<String>, String>;
    /// The folder relative paths are read from (the jobs file's), when there is one: a
    /// handler's command runs there unless it names its own `cwd` (relative to it).
    fn base_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// A function of a path is a reader that lists no globs (tests, and the fuzzer).
impl<F: Fn(&str) -> Result<Vec<u8>, String>> JobFiles for F {
    fn read(&self, path: &str, _max: usize) -> Result<Vec<u8>, String> {
        self(path)
    }
    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        Err(format!("cannot list `{pattern}`: globs are not read here"))
    }
}

/// No files at all (the embedded example, the fuzzer, tests of plain jobs).
pub struct NoFiles;

impl JobFiles for NoFiles {
    fn read(&self, path: &str, _max: usize) -> Result<Vec<u8>, String> {
        Err(format!(
            "cannot read `{path}`: this jobs file reads no files"
        ))
    }
    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        Err(format!(
            "cannot list `{pattern}`: this jobs file reads no files"
        ))
    }
}

/// An attachment read from a jobs file: what it is, and its bytes.
#[derive(Debug, Clone)]
pub struct Blob {
    pub meta: super::attachment::AttachmentMeta,
    pub data: std::sync::Arc<Vec<u8>>,
}

/// The specs of a jobs file and the attachments they name, by attachment id.
#[derive(Debug, Default)]
pub struct ParsedJobs {
    pub specs: Vec<JobSpec>,
    pub blobs: std::collections::BTreeMap<String, Blob>,
}

/// Reads the files `patterns` (paths and globs, as `files` takes them) name, each checked as
/// an attachment, in order and without repeats. The error is `(index of the pattern, message)`.
pub fn read_paths(patterns: &[Value], files: &dyn JobFiles) -> Result<Vec<Blob>, (usize, String)> {
    use super::attachment;
    let mut out: Vec<Blob> = Vec::new();
    for (i, item) in patterns.iter().enumerate() {
        let Value::String(pattern) = item else {
            return Err((i, "must be a path or a glob (a string)".into()));
        };
        let paths = if pattern.contains(['*', '?', '[']) {
            let found = files.glob(pattern).map_err(|m| (i, m))?;
            if found.is_empty() {
                return Err((i, format!("`{pattern}` matches no file")));
            }
            found
        } else {
            vec![pattern.clone()]
        };
        for path in paths {
            let data = files
                .read_attachment(&path, attachment::MAX_ATTACHMENT_BYTES)
                .map_err(|m| (i, m))?;
            let filename = std::path::Path::new(&path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let meta = attachment::check(&filename, &data).map_err(|m| (i, m))?;
            if out.iter().any(|b| b.meta.id == meta.id) {
                continue;
            }
            out.push(Blob {
                meta,
                data: std::sync::Arc::new(data),
            });
        }
    }
    Ok(out)
}

/// Replaces a jobs-file entry's `attachments` (paths and globs, relative to the file) with the
/// ids of the files they name, read and checked, keeping each file in `blobs`. The error is
/// `(field, message)`.
fn read_attachments(
    value: &mut Value,
    files: &dyn JobFiles,
    blobs: &mut std::collections::BTreeMap<String, Blob>,
) -> Result<(), (String, String)> {
    use super::attachment;
    let Some(list) = value.get_mut("attachments") else {
        return Ok(());
    };
    let Value::Array(items) = list else {
        return Err((
            "attachments".into(),
            "must be a list of paths or globs (relative to the jobs file)".into(),
        ));
    };
    let read = read_paths(items, files).map_err(|(i, m)| (format!("attachments.{i}"), m))?;
    let total: u64 = read.iter().map(|b| b.meta.bytes).sum();
    if total > attachment::MAX_JOB_ATTACHMENT_BYTES {
        return Err((
            "attachments".into(),
            format!(
                "the job's attachments come to {total} bytes; one job may send at most {}",
                attachment::MAX_JOB_ATTACHMENT_BYTES
            ),
        ));
    }
    *list = Value::Array(
        read.iter()
            .map(|b| Value::String(b.meta.id.clone()))
            .collect(),
    );
    for b in read {
        blobs.entry(b.meta.id.clone()).or_insert(b);
    }
    Ok(())
}

/// Replaces the `paths` of each `{name, paths}` set of a jobs-file entry's `knowledge` with
/// the ids of the files they name (read and checked like attachments, kept in `blobs`); a
/// set's name alone (a config set) is left as it is. The error is `(field, message)`.
fn read_knowledge(
    value: &mut Value,
    files: &dyn JobFiles,
    blobs: &mut std::collections::BTreeMap<String, Blob>,
) -> Result<(), (String, String)> {
    let Some(Value::Array(sets)) = value.get_mut("knowledge") else {
        return Ok(());
    };
    for (i, set) in sets.iter_mut().enumerate() {
        let Some(map) = set.as_object_mut() else {
            continue;
        };
        let Some(paths) = map.remove("paths") else {
            continue;
        };
        let field = format!("knowledge.{i}.paths");
        let Value::Array(patterns) = paths else {
            return Err((field, "must be a list of paths or globs".into()));
        };
        let read = read_paths(&patterns, files).map_err(|(j, m)| (format!("{field}.{j}"), m))?;
        if read.is_empty() {
            return Err((field, "must name at least one file".into()));
        }
        if read.len() > MAX_KNOWLEDGE_FILES {
            return Err((field, format!("names over {MAX_KNOWLEDGE_FILES} files")));
        }
        let ids: Value = read
            .iter()
            .map(|b| Value::String(b.meta.id.clone()))
            .collect();
        for b in read {
            blobs.entry(b.meta.id.clone()).or_insert(b);
        }
        map.insert("files".into(), ids);
    }
    Ok(())
}

/// The largest schema file a job may name.
pub const MAX_SCHEMA_FILE_BYTES: usize = 1 << 20;

/// Replaces `text.format.schema_file` with the schema it names (JSON, or YAML for `.yaml` and
/// `.yml`), read with `read`. The error is `(field, message)`.
/// Whether there was a file to read.
fn inline_schema_file(value: &mut Value, files: &dyn JobFiles) -> Result<bool, (String, String)> {
    const FIELD: &str = "text.format.schema_file";
    let Some(format) = value
        .pointer_mut("/text/format")
        .and_then(Value::as_object_mut)
    else {
        return Ok(false);
    };
    let Some(path) = format.remove("schema_file") else {
        return Ok(false);
    };
    let Value::String(path) = path else {
        return Err((FIELD.into(), "must be a path (a string)".into()));
    };
    if format.contains_key("schema") {
        return Err((
            FIELD.into(),
            "cannot be used together with `schema`: give one or the other".into(),
        ));
    }
    let bytes = files
        .read(&path, MAX_SCHEMA_FILE_BYTES)
        .map_err(|m| (FIELD.to_string(), m))?;
    if bytes.len() > MAX_SCHEMA_FILE_BYTES {
        return Err((
            FIELD.into(),
            format!(
                "`{path}` is {} bytes; a schema file may have at most {MAX_SCHEMA_FILE_BYTES}",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| (FIELD.to_string(), format!("`{path}` is not UTF-8 text")))?;
    let yaml = path.ends_with(".yaml") || path.ends_with(".yml");
    let schema: Value = if yaml {
        serde_saphyr::from_str(text).map_err(|e| {
            (
                FIELD.to_string(),
                format!("`{path}` is not valid YAML: {e}"),
            )
        })?
    } else {
        serde_json::from_str(text).map_err(|e| {
            (
                FIELD.to_string(),
                format!("`{path}` is not valid JSON: {e} (name it `.yaml` for a YAML schema)"),
            )
        })?
    };
    format.insert("schema".into(), schema);
    Ok(true)
}

/// A jobs file: `jobs:` and a list of job specs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsFile {
    jobs: Vec<Value>,
}

/// Parses a YAML jobs file. Errors name the file, the line and column, the job and the field.
/// Names must be unique within a file.
pub fn parse_jobs_file(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    files: &dyn JobFiles,
) -> Result<Vec<JobSpec>, Vec<Located>> {
    parse_jobs_file_with_blobs(file, text, env, files).map(|p| p.specs)
}

/// [`parse_jobs_file`], keeping the attachments the jobs name (read and checked), for the
/// caller to store or upload.
pub fn parse_jobs_file_with_blobs(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    files: &dyn JobFiles,
) -> Result<ParsedJobs, Vec<Located>> {
    let mut blobs = std::collections::BTreeMap::new();
    let text = yaml::interpolate(file, text, env).map_err(|e| vec![e])?;
    let parsed: JobsFile =
        serde_saphyr::from_str(&text).map_err(|e| vec![yaml::parse_error(file, &text, &e)])?;
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    for (i, mut value) in parsed.jobs.into_iter().enumerate() {
        let idx = i.to_string();
        let has_name = value.get("name").and_then(Value::as_str).is_some();
        let schema_from_file = match inline_schema_file(&mut value, files)
            .and_then(|f| read_attachments(&mut value, files, &mut blobs).map(|()| f))
            .and_then(|f| read_knowledge(&mut value, files, &mut blobs).map(|()| f))
        {
            Ok(from_file) => from_file,
            Err((field, message)) => {
                let job = match value.get("name").and_then(Value::as_str) {
                    Some(n) => format!("`{n}`"),
                    None => format!("#{}", i + 1),
                };
                errors.push(Located {
                    file: file.to_string(),
                    pos: locate_field(&text, &idx, &field),
                    message: format!("job {job}: field `{field}`: {message}"),
                });
                continue;
            }
        };
        match JobSpec::from_value(value, &format!("#{}", i + 1)) {
            Ok(mut spec) => {
                // `command: [python3, weather.py]` beside the jobs file runs there.
                if let Some(base) = files.base_dir() {
                    for h in spec.handlers.values_mut().filter(|h| h.command.is_some()) {
                        h.cwd = Some(match h.cwd.take() {
                            Some(c) if c.is_absolute() => c,
                            Some(c) => base.join(c),
                            None => base.clone(),
                        });
                    }
                }
                if !has_name {
                    errors.push(Located {
                        file: file.to_string(),
                        pos: yaml::locate(&text, &["jobs", &idx]),
                        message: format!(
                            "job #{}: field `name`: is required in a jobs file",
                            i + 1
                        ),
                    });
                } else if !names.insert(spec.name.clone()) {
                    errors.push(Located {
                        file: file.to_string(),
                        pos: yaml::locate(&text, &["jobs", &idx, "name"]),
                        message: format!(
                            "job `{}`: field `name`: is used by an earlier job in this file",
                            spec.name
                        ),
                    });
                }
                specs.push(spec);
            }
            Err(errs) => {
                for e in errs {
                    // A fault of a schema read from a file is shown at the line naming it.
                    let field = if schema_from_file && e.field.starts_with("text.format.schema") {
                        "text.format.schema_file"
                    } else {
                        e.field.as_str()
                    };
                    let pos = locate_field(&text, &idx, field);
                    errors.push(Located {
                        file: file.to_string(),
                        pos,
                        message: e.to_string(),
                    });
                }
            }
        }
    }
    if errors.is_empty() {
        // `after:` names a job of this file (or an id): each must be one, and no loop.
        type Entries<'a> = Vec<(usize, &'a JobSpec)>;
        let (jobs, schedules): (Entries<'_>, Entries<'_>) = specs
            .iter()
            .enumerate()
            .partition(|(_, s)| s.schedule.is_none());
        let plain: Vec<JobSpec> = jobs.iter().map(|(_, s)| (*s).clone()).collect();
        let templates: Vec<&str> = schedules.iter().map(|(_, s)| s.name.as_str()).collect();
        if let Err(errs) = super::chain::after_refs(&plain, &templates) {
            for (k, message) in errs {
                let i = jobs[k].0;
                errors.push(Located {
                    file: file.to_string(),
                    pos: locate_field(&text, &i.to_string(), "after"),
                    message: format!("job `{}`: field `after`: {message}", specs[i].name),
                });
            }
        }
    }
    if errors.is_empty() {
        // Keep only the files a spec names (an entry in error may have read some).
        blobs.retain(|id, _| {
            specs.iter().any(|s| {
                s.attachments.contains(id)
                    || s.knowledge
                        .iter()
                        .any(|k| k.files.iter().flatten().any(|f| f == id))
            })
        });
        Ok(ParsedJobs { specs, blobs })
    } else {
        Err(errors)
    }
}

/// Where field `field` (a dotted path, `input.0.content.0.text`) of job number `idx` is
/// written in a jobs file: the field's own line, or that of its deepest ancestor written out
/// (a field inside a flow-style `{...}`, or one that is missing), or the job's.
pub fn locate_field(text: &str, idx: &str, field: &str) -> Option<yaml::Pos> {
    let mut path: Vec<&str> = vec!["jobs", idx];
    path.extend(field.split('.'));
    (2..=path.len())
        .rev()
        .find_map(|len| yaml::locate(text, &path[..len]))
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.and_then(|s| Duration::try_from_secs_f64(s).ok()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn no_files(name: &str) -> Result<Vec<u8>, String> {
        Err(format!("cannot read `{name}`: no files in this test"))
    }

    #[test]
    fn the_rest_body_gives_the_same_spec_back() {
        let spec = JobSpec::from_value(
            json!({"name": "full", "model": "o3", "input": "hi", "metadata": {"k": "v"},
                   "notify": [{"sink": "console", "on": ["failed"]}], "idempotency_key": "key-1",
                   "timeout": "1m 30s", "priority": 7, "budget_exempt": true,
                   "future_param": {"x": 1}}),
            "#1",
        )
        .unwrap();
        let body = Value::Object(spec.to_rest_body());
        assert_eq!(body["timeout"], 90, "seconds: the form the API takes");
        assert_eq!(body["priority"], 7);
        assert_eq!(body["budget_exempt"], true);
        assert_eq!(JobSpec::from_value(body, "#1").unwrap(), spec);
        let plain = JobSpec::from_value(json!({"model": "o3", "input": "hi"}), "#1").unwrap();
        let body = plain.to_rest_body();
        assert!(!body.contains_key("priority") && !body.contains_key("budget_exempt"));
        assert_eq!(
            JobSpec::from_value(Value::Object(body), "#1").unwrap(),
            plain
        );
    }

    #[test]
    fn passes_unknown_keys_through_and_takes_own_keys_out() {
        let spec = JobSpec::from_value(
            json!({"name": "r", "model": "o3", "input": "hi", "tools": [{"type": "web_search_preview"}],
                   "future_param": {"x": 1}, "timeout": "30m", "notify": ["console"],
                   "metadata": {"team": "a"}}),
            "#1",
        )
        .unwrap();
        assert_eq!(spec.name, "r");
        assert_eq!(spec.timeout, Some(Duration::from_secs(1800)));
        assert!(spec.request.contains_key("future_param"));
        assert!(!spec.request.contains_key("timeout"));
        let id = super::super::JobId::generate();
        let body = spec.create_body(&id);
        assert_eq!(body["background"], json!(true));
        assert_eq!(body["store"], json!(true));
        assert_eq!(body["metadata"]["team"], json!("a"));
        assert_eq!(body["metadata"][METADATA_JOB_KEY], json!(id.to_string()));
    }

    #[test]
    fn errors_name_job_and_field() {
        let errs = JobSpec::from_value(
            json!({"name": "bad", "input": "x", "background": false, "max_output_tokens": 3,
                   "metadata": {"k": 5}}),
            "#1",
        )
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(
                &"job `bad`: field `model`: is required (e.g. `model: o4-mini-deep-research`)"
                    .to_string()
            ),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("field `background`")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("field `max_output_tokens`")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("field `metadata.k`")),
            "{text:?}"
        );
    }

    #[test]
    fn jobs_file_errors_have_lines() {
        let text = "jobs:\n  - name: ok\n    model: o3\n    input: hi\n  - name: broken\n    model: o3\n    input: hi\n    timeout: soon\n";
        let errs = parse_jobs_file("jobs.yaml", text, &no_env, &no_files).unwrap_err();
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(
            msg.starts_with("jobs.yaml:8:5: job `broken`: field `timeout`"),
            "{msg}"
        );
    }

    #[test]
    fn openai_contract_errors_name_the_field_and_its_line() {
        let text = "jobs:\n  - name: ok\n    model: o3\n    input: hi\n  - name: hot\n    model: o3\n    input: hi\n    temperature: hot\n";
        let errs = parse_jobs_file("jobs.yaml", text, &no_env, &no_files).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0].to_string(),
            "jobs.yaml:8:5: job `hot`: field `temperature`: must be a number or null, not the string `hot`"
        );
        // A nested field is located on its own line, or on its deepest ancestor written out.
        let text = "jobs:\n  - name: parts\n    model: o3\n    input:\n      - role: user\n        content:\n          - type: input_text\n            text: null\n      - role: user\n        content: [{type: input_text, text: 5}]\n";
        let errs = parse_jobs_file("jobs.yaml", text, &no_env, &no_files).unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].starts_with("jobs.yaml:8:13: job `parts`: field `input.0.content.0.text`: "),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("jobs.yaml:10:9: job `parts`: field `input.1.content.0.text`: "),
            "{text:?}"
        );
    }

    #[test]
    fn the_rest_body_error_names_the_openai_field() {
        let errs = JobSpec::from_value(
            json!({"model": "o3", "input": "hi", "temperature": "hot", "max_output_tokens": 3}),
            "(request)",
        )
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        // respool's own message for `max_output_tokens`, not a second one from the schema.
        assert_eq!(fields, ["max_output_tokens", "temperature"], "{errs:?}");
    }

    #[test]
    fn unknown_top_level_fields_are_warnings() {
        let spec = JobSpec::from_value(
            json!({"model": "o3", "input": "hi", "future_param": 1, "temperature": 0.5}),
            "#1",
        )
        .unwrap();
        let warnings = spec.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].field, "future_param");
        assert!(
            warnings[0]
                .to_string()
                .starts_with("field `future_param`: is not a parameter of OpenAI's create request"),
            "{}",
            warnings[0]
        );
        let plain = JobSpec::from_value(json!({"model": "o3", "input": "hi"}), "#1").unwrap();
        assert!(plain.warnings().is_empty());
    }

    #[test]
    fn the_example_jobs_file_is_valid_and_warns_of_nothing() {
        let text = include_str!("../../jobs.example.yaml");
        let specs = parse_jobs_file("jobs.example.yaml", text, &no_env, &no_files).unwrap();
        assert!(!specs.is_empty());
        for spec in specs {
            assert!(
                spec.warnings().is_empty(),
                "{}: {:?}",
                spec.name,
                spec.warnings()
            );
        }
        // The commented-out scheduled entry too.
        let start = text.find("  # - name:").unwrap();
        let uncommented: String = text[..start].to_string()
            + &text[start..]
                .lines()
                .map(|l| {
                    l.strip_prefix("  # ")
                        .map_or(l.to_string(), |r| format!("  {r}\n"))
                })
                .collect::<String>();
        let specs = parse_jobs_file("jobs.example.yaml", &uncommented, &no_env, &no_files).unwrap();
        assert!(specs.iter().any(|s| s.schedule.is_some()));
    }

    #[test]
    fn a_schema_file_is_read_beside_the_jobs_file_and_checked() {
        let files = |name: &str| -> Result<Vec<u8>, String> {
            match name {
                "schemas/book.json" => Ok(br#"{"type": "object", "properties": {"t": {"type": "string"}},
                    "required": ["t"], "additionalProperties": false}"#
                    .to_vec()),
                "book.yaml" => Ok(b"type: object\nproperties:\n  t: {type: string}\nrequired: [t]\nadditionalProperties: false\n".to_vec()),
                "open.json" => Ok(br#"{"type": "object", "properties": {"t": {"type": "string"}}}"#.to_vec()),
                "array.json" => Ok(br#"{"type": "array", "items": {"type": "string"}}"#.to_vec()),
                "broken.json" => Ok(b"{\"type\": ".to_vec()),
                other => Err(format!("cannot read `{other}`: No such file or directory")),
            }
        };
        let job = |name: &str, file: &str| {
            format!(
                "  - name: {name}\n    model: gpt-5\n    input: hi\n    text:\n      format:\n        type: json_schema\n        name: book\n        strict: true\n        schema_file: {file}\n"
            )
        };
        let text = format!(
            "jobs:\n{}{}",
            job("a", "schemas/book.json"),
            job("b", "book.yaml")
        );
        let specs = parse_jobs_file("jobs.yaml", &text, &no_env, &files).unwrap();
        for spec in &specs {
            let format = &spec.request["text"]["format"];
            assert!(format.get("schema_file").is_none(), "{format}");
            assert_eq!(format["schema"]["required"], serde_json::json!(["t"]));
        }
        assert_eq!(
            specs[0].request, specs[1].request,
            "JSON and YAML give the same schema"
        );

        // Each problem names the file, the line of `schema_file`, the job and what is wrong.
        let text = format!(
            "jobs:\n{}{}{}",
            job("missing", "nope.json"),
            job("array", "array.json"),
            job("broken", "broken.json")
        );
        let errs = parse_jobs_file("jobs.yaml", &text, &no_env, &files).unwrap_err();
        let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(all.len(), 3, "{all:#?}");
        assert!(all[0].starts_with("jobs.yaml:10:"), "{all:#?}");
        assert!(
            all[0].contains(
                "job `missing`: field `text.format.schema_file`: cannot read `nope.json`"
            ),
            "{all:#?}"
        );
        // A fault in the schema read is shown at the line of `schema_file`.
        assert!(all[1].starts_with("jobs.yaml:19:"), "{all:#?}");
        assert!(
            all[1].contains("job `array`: field `text.format.schema.type`"),
            "{all:#?}"
        );
        assert!(all[2].starts_with("jobs.yaml:28:"), "{all:#?}");
        assert!(
            all[2].contains("`broken.json` is not valid JSON"),
            "{all:#?}"
        );

        // Strict mode's rules are warnings: OpenAI refuses such a schema at submit.
        let open = format!("jobs:\n{}", job("open", "open.json"));
        let specs = parse_jobs_file("jobs.yaml", &open, &no_env, &files).unwrap();
        let warnings: Vec<String> = specs[0]
            .warnings()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(warnings[0].starts_with("field `text.format.schema`: OpenAI refuses this in strict mode: the root: an object must set `additionalProperties: false`"), "{warnings:#?}");

        // Not both.
        let both = job("both", "book.yaml").replace(
            "        schema_file:",
            "        schema: {type: object}\n        schema_file:",
        );
        let errs =
            parse_jobs_file("jobs.yaml", &format!("jobs:\n{both}"), &no_env, &files).unwrap_err();
        assert!(
            errs[0]
                .to_string()
                .contains("cannot be used together with `schema`"),
            "{errs:?}"
        );
    }

    /// Files in memory, with globs over their names.
    struct MemFiles(Vec<(&'static str, Vec<u8>)>);

    impl JobFiles for MemFiles {
        fn read(&self, path: &str, max: usize) -> Result<Vec<u8>, String> {
            let data = self
                .0
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, d)| d.clone())
                .ok_or_else(|| format!("cannot read `{path}`: No such file or directory"))?;
            Ok(data.into_iter().take(max + 1).collect())
        }
        fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
            let pat = glob::Pattern::new(pattern).map_err(|e| e.to_string())?;
            Ok(self
                .0
                .iter()
                .filter(|(p, _)| pat.matches(p))
                .map(|(p, _)| p.to_string())
                .collect())
        }
    }

    #[test]
    fn attachments_are_read_checked_and_named_by_id() {
        let files = MemFiles(vec![
            (
                "report.pdf",
                b"%PDF-1.7\n%\xe2\xe3\n1 0 obj<<>>endobj\n%%EOF".to_vec(),
            ),
            ("papers/a.md", "# Ä\nnon-ASCII notes\n".as_bytes().to_vec()),
            ("papers/b.txt", b"plain ASCII\n".to_vec()),
            ("papers/skip.bin", b"\0\0".to_vec()),
            ("fake.pdf", b"not a pdf".to_vec()),
            ("empty.txt", Vec::new()),
        ]);
        let text = "jobs:\n  - name: read\n    model: gpt-5\n    input: Summarise\n    attachments: [report.pdf, \"papers/*.md\", \"papers/*.txt\", report.pdf]\n";
        let parsed = parse_jobs_file_with_blobs("jobs.yaml", text, &no_env, &files).unwrap();
        let spec = &parsed.specs[0];
        assert_eq!(spec.attachments.len(), 3, "the repeated file is sent once");
        assert!(spec.request.get("attachments").is_none());
        let names: Vec<&str> = spec
            .attachments
            .iter()
            .map(|id| parsed.blobs[id].meta.filename.as_str())
            .collect();
        assert_eq!(names, ["report.pdf", "a.md", "b.txt"]);
        // The REST body carries the ids, and gives the same spec back.
        let body = spec.to_rest_body();
        assert_eq!(body["attachments"].as_array().unwrap().len(), 3);
        let again = JobSpec::from_value(Value::Object(body), "#1").unwrap();
        assert_eq!(&again, spec);

        // Each fault names the file, the field and its line.
        for (list, want) in [
            ("[fake.pdf]", "`fake.pdf` is not a PDF file"),
            ("[empty.txt]", "`empty.txt` is empty"),
            ("[missing.pdf]", "cannot read `missing.pdf`"),
            ("[\"nothing/*.pdf\"]", "`nothing/*.pdf` matches no file"),
            ("[\"papers/*.bin\"]", "type is not supported"),
            ("report.pdf", "must be a list of paths"),
        ] {
            let text = format!(
                "jobs:\n  - name: bad\n    model: gpt-5\n    input: hi\n    attachments: {list}\n"
            );
            let errs = parse_jobs_file("jobs.yaml", &text, &no_env, &files).unwrap_err();
            let msg = errs[0].to_string();
            assert!(msg.contains(want), "{list}: {msg}");
            assert!(msg.contains("jobs.yaml:5"), "{list}: {msg}");
            assert!(msg.contains("attachments"), "{list}: {msg}");
        }
        // A knowledge set in a jobs file: its paths become the files' ids; a name alone is
        // the config's set, left for the daemon.
        let text = "jobs:\n  - name: kb\n    model: gpt-5\n    input: hi\n    knowledge:\n      - {name: papers, paths: [\"papers/*.md\", report.pdf]}\n      - handbook\n";
        let parsed = parse_jobs_file_with_blobs("jobs.yaml", text, &no_env, &files).unwrap();
        let k = &parsed.specs[0].knowledge;
        assert_eq!(k[0].name, "papers");
        assert_eq!(k[0].files.as_ref().unwrap().len(), 2);
        assert_eq!(k[1].files, None);
        assert_eq!(parsed.blobs.len(), 2);
        let body = parsed.specs[0].to_rest_body();
        let again = JobSpec::from_value(Value::Object(body), "#1").unwrap();
        assert_eq!(&again, &parsed.specs[0]);
        let text = "jobs:\n  - name: kb\n    model: gpt-5\n    input: hi\n    knowledge:\n      - {name: papers, paths: [fake.pdf]}\n";
        let errs = parse_jobs_file("jobs.yaml", text, &no_env, &files).unwrap_err();
        let msg = errs[0].to_string();
        assert!(
            msg.contains("knowledge.0.paths.0") && msg.contains("not a PDF"),
            "{msg}"
        );
        // Over REST a path is not an attachment.
        let errs = JobSpec::from_value(
            json!({"model": "m", "input": "i", "attachments": ["report.pdf"]}),
            "#1",
        )
        .unwrap_err();
        assert_eq!(errs[0].field, "attachments.0");
        assert!(errs[0].message.contains("POST /v1/attachments"));
    }

    #[test]
    fn jobs_file_needs_unique_names() {
        let text = "jobs:\n  - name: a\n    model: o3\n    input: hi\n  - name: a\n    model: o3\n    input: hi\n";
        let errs = parse_jobs_file("jobs.yaml", text, &no_env, &no_files).unwrap_err();
        assert!(errs[0].to_string().contains("jobs.yaml:5:"), "{}", errs[0]);
    }

    #[test]
    fn priority_and_budget_exempt_are_respools_keys() {
        let spec = JobSpec::from_value(
            json!({"model": "m", "input": "i", "priority": 5, "budget_exempt": true}),
            "#1",
        )
        .unwrap();
        assert_eq!(spec.priority, 5);
        assert!(spec.budget_exempt);
        let body = spec.create_body(&super::super::JobId::generate());
        assert!(!body.contains_key("priority") && !body.contains_key("budget_exempt"));

        let plain = JobSpec::from_value(json!({"model": "m", "input": "i"}), "#1").unwrap();
        assert_eq!(plain.priority, 0);
        // Defaults are not serialized: stored specs and their hashes stay as before.
        let stored = serde_json::to_value(&plain).unwrap();
        assert!(stored.get("priority").is_none() && stored.get("budget_exempt").is_none());

        for bad in [json!(1.5), json!("high"), json!(5000), json!(-1001)] {
            let errs = JobSpec::from_value(
                json!({"name": "p", "model": "m", "input": "i", "priority": bad}),
                "#1",
            )
            .unwrap_err();
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(
                errs[0].to_string().starts_with(
                    "job `p`: field `priority`: must be an integer from -1000 to 1000"
                ),
                "{}",
                errs[0]
            );
        }
        let errs = JobSpec::from_value(
            json!({"name": "p", "model": "m", "input": "i", "budget_exempt": "yes"}),
            "#1",
        )
        .unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "job `p`: field `budget_exempt`: must be true or false"
        );
    }

    #[test]
    fn timeouts_are_whole_seconds_up_to_a_year() {
        let timeout = |t: Value| {
            JobSpec::from_value(json!({"model": "m", "input": "i", "timeout": t}), "#1")
                .map(|s| s.timeout)
                .map_err(|e| e[0].message.clone())
        };
        assert_eq!(timeout(json!("366d")), Ok(Some(MAX_TIMEOUT)));
        assert_eq!(timeout(json!(90)), Ok(Some(Duration::from_secs(90))));
        // Found by fuzzing: a huge timeout was stored as a float that decoded to none, and
        // overflowed the deadline (`now + ms`); a sub-second one did not read back exactly.
        for bad in [
            json!("367d"),
            json!(u64::MAX),
            json!("100000000y 1ns"),
            json!("1500ms"),
            json!("0s"),
        ] {
            assert!(timeout(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn notify_routes() {
        let spec = JobSpec::from_value(
            json!({"model": "m", "input": "i", "notify": ["a", {"sink": "b", "on": ["failed"]}]}),
            "#1",
        )
        .unwrap();
        let routes = spec.notify.unwrap();
        assert_eq!(
            routes[0].on.len(),
            5,
            "every end, and each wait for a person"
        );
        assert_eq!(
            routes[1],
            NotifyRoute {
                sink: "b".into(),
                on: vec![NotifyOn::Failed]
            }
        );
    }
}
