//! Fault injection: the [`Faults`] knobs (global, changeable at runtime), the per-request
//! overrides parsed from `metadata.sim` ([`Overrides`]) and the `x-sim-fault` header
//! ([`HeaderFault`]). This file only *describes* faults and decides them with the simulator's
//! seeded RNG; `server.rs`, `state.rs` and `webhooks.rs` act on the decisions.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Every fault the simulator can inject. `Default` means "behave like a healthy OpenAI".
///
/// Probabilities are in `0.0..=1.0`; durations (de)serialize as humantime strings (`"250ms"`,
/// `"2s"`) and also accept an integer number of milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability that a webhook delivery is never sent (counted as dropped).
    pub webhook_drop: f64,
    /// Probability that a delivered webhook is sent a second time with the same `webhook-id`.
    pub webhook_duplicate: f64,
    /// Fixed extra delay before the first delivery attempt of every webhook.
    #[serde(with = "duration_serde")]
    pub webhook_delay: Duration,
    /// Upper bound of a random extra delay per webhook, so events of different responses
    /// arrive out of order. Zero disables it.
    #[serde(with = "duration_serde")]
    pub webhook_reorder: Duration,
    /// Probability that a response webhook is accompanied by an unexpected event type
    /// (`batch.completed`, `eval.run.succeeded`, ...) that a receiver must ignore.
    pub webhook_extra_events: f64,
    /// Probability that an API request gets 429 `rate_limit_exceeded` with `Retry-After`.
    pub rate_limit: f64,
    /// The next N API requests get 429 `rate_limit_exceeded` (deterministic; counts down).
    pub rate_limit_next: u32,
    /// The delay advertised by a rate-limit 429 (`Retry-After` in whole seconds, min 1, and
    /// `retry-after-ms`). Zero means 1 s.
    #[serde(with = "duration_serde")]
    pub retry_after: Duration,
    /// Probability that an API request gets 429 `insufficient_quota` (no `Retry-After`).
    pub quota_exceeded: f64,
    /// Probability that an API request gets a 500/502/503 answered *by the API*: OpenAI's error
    /// envelope (`{"error": {…, "type": "server_error"}}`), `x-request-id` and the other standard
    /// headers, and nothing created (the gate answers before any handler runs). Half of them
    /// carry `x-should-retry: false` unless `server_error_noretry` says otherwise.
    pub server_error: f64,
    /// The share of `server_error` answers that carry `x-should-retry: false`; unset: 0.5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_error_noretry: Option<f64>,
    /// The next N API requests get a retryable 500 (deterministic; counts down).
    pub server_error_next: u32,
    /// The next N retrieves (`GET /v1/responses/{id}`, JSON) of a response that exists answer
    /// OpenAI's 404 `Response with id … not found`, as a read that lags its create or a
    /// misrouted request would (deterministic; counts down). The response itself is untouched.
    pub not_found_next: u32,
    /// Delay before a create is processed and answered.
    #[serde(with = "duration_serde")]
    pub slow_create: Duration,
    /// Probability that a create is accepted (the response exists and runs) but the HTTP reply
    /// is held back for `hang_for`, long enough for a client to time out.
    pub create_accept_then_hang: f64,
    /// Probability that a create is accepted (the response exists and runs) and then the
    /// connection is closed with no HTTP answer at all: the client sees a transport error
    /// (connection closed before a message completed), and the answer is lost.
    pub create_then_drop: f64,
    /// Probability that a create is accepted and then answered by a "proxy" with a 502 or 504
    /// carrying an HTML page (a CDN's error page): no OpenAI envelope, no `x-request-id`, no
    /// `openai-*` or `x-ratelimit-*` headers. The response exists and runs.
    pub create_then_gateway_error: f64,
    /// Probability that a create's connection is closed with no HTTP answer *before* anything
    /// is created. A client cannot tell this from `create_then_drop`; that is the point.
    pub drop_before_create: f64,
    /// Probability that a create is answered by a "proxy" 502/504 (HTML, no envelope, no
    /// `x-request-id`) *before* anything is created. Indistinguishable from
    /// `create_then_gateway_error` for a client.
    pub gateway_error_before_create: f64,
    /// Probability that a valid `POST /v1/files` upload is stored and then its connection
    /// closed with no HTTP answer: the file exists (and is listed) but the client never learns
    /// its id.
    pub upload_then_drop: f64,
    /// Probability that a valid `POST /v1/files` upload's connection is closed with no HTTP
    /// answer and nothing stored. A client cannot tell this from `upload_then_drop`.
    pub upload_drop_before: f64,
    /// Delay before a valid `POST /v1/files` upload (its body read and checked) is stored and
    /// answered: an upload a client can be killed in the middle of. A client that disconnects
    /// meanwhile leaves nothing stored (the handler is dropped with its connection).
    #[serde(with = "duration_serde")]
    pub upload_delay: Duration,
    /// When set, `webhook_drop` never drops the webhook of a response whose create answer was
    /// lost (hung past the client's timeout, dropped, or a gateway error after creating). The
    /// real service retries a webhook for 72 hours, so such a response is revealed eventually;
    /// dropping its webhook too models a loss no client can recover from (no list endpoint),
    /// which a test of a client's promises must leave out. Per-response `webhook=drop` still
    /// drops.
    pub webhook_drop_spares_lost_answers: bool,
    /// How long a hung create reply is held back. Zero means 30 s.
    #[serde(with = "duration_serde")]
    pub hang_for: Duration,
    /// Probability that a background response stays `queued` forever.
    pub stuck_queued: f64,
    /// Probability that a response ends `failed` with `error.code = server_error`.
    pub fail: f64,
    /// Probability that a response ends `incomplete` (`max_output_tokens`).
    pub incomplete: f64,
    /// Probability that a live SSE stream is cut after a few events (the work goes on).
    pub stream_drop: f64,
    /// Probability that a stream carries an event type no SDK knows (forward compatibility).
    pub stream_unknown_events: f64,
    /// Probability that a background stream whose client disconnects while the response is
    /// still `queued` leaves it `queued` forever (the known OpenAI bug,
    /// `docs/upstream-api.md` §2.6).
    pub stream_abort_sticks: f64,
    /// The request limit the `x-ratelimit-*` headers count down from, per window; a small
    /// one shows low `remaining` counts (the limit is only reported, never enforced). Zero
    /// means 10 000.
    pub ratelimit_requests: u64,
    /// The window of those headers. Zero means one minute.
    #[serde(with = "duration_serde")]
    pub ratelimit_window: Duration,
    /// Probability that the container of a response's code interpreter call is already
    /// expired when the response completes (as if it sat idle past its 20 minutes): the
    /// response and its citations are intact, but the container answers `status: expired`
    /// and its files and their content 404.
    pub container_expired: f64,
    /// Probability that a file the code interpreter makes answers its first
    /// `GET /v1/containers/{id}/files/{file_id}/content` with a 500 (`server_error`
    /// envelope); later downloads succeed.
    pub container_file_drop: f64,
}

impl Faults {
    /// Checks that every probability is within `0.0..=1.0`.
    pub fn validate(&self) -> Result<(), String> {
        let probabilities = [
            ("webhook_drop", self.webhook_drop),
            ("webhook_duplicate", self.webhook_duplicate),
            ("webhook_extra_events", self.webhook_extra_events),
            ("rate_limit", self.rate_limit),
            ("quota_exceeded", self.quota_exceeded),
            ("server_error", self.server_error),
            (
                "server_error_noretry",
                self.server_error_noretry.unwrap_or(0.5),
            ),
            ("create_then_drop", self.create_then_drop),
            ("create_then_gateway_error", self.create_then_gateway_error),
            ("drop_before_create", self.drop_before_create),
            (
                "gateway_error_before_create",
                self.gateway_error_before_create,
            ),
            ("create_accept_then_hang", self.create_accept_then_hang),
            ("upload_then_drop", self.upload_then_drop),
            ("upload_drop_before", self.upload_drop_before),
            ("stuck_queued", self.stuck_queued),
            ("fail", self.fail),
            ("incomplete", self.incomplete),
            ("stream_drop", self.stream_drop),
            ("stream_unknown_events", self.stream_unknown_events),
            ("stream_abort_sticks", self.stream_abort_sticks),
            ("container_expired", self.container_expired),
            ("container_file_drop", self.container_file_drop),
        ];
        for (name, p) in probabilities {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!(
                    "fault {name} must be a probability in 0..=1, got {p}"
                ));
            }
        }
        Ok(())
    }

    /// The advertised rate-limit delay, never zero.
    pub(crate) fn retry_after_or_default(&self) -> Duration {
        if self.retry_after.is_zero() {
            Duration::from_secs(1)
        } else {
            self.retry_after
        }
    }

    /// The reported request limit and its window, never zero.
    pub(crate) fn ratelimit_or_default(&self) -> (u64, Duration) {
        (
            if self.ratelimit_requests == 0 {
                10_000
            } else {
                self.ratelimit_requests
            },
            if self.ratelimit_window.is_zero() {
                Duration::from_secs(60)
            } else {
                self.ratelimit_window
            },
        )
    }

    /// How long a hung create is held, never zero.
    pub(crate) fn hang_for_or_default(&self) -> Duration {
        if self.hang_for.is_zero() {
            Duration::from_secs(30)
        } else {
            self.hang_for
        }
    }
}

/// Rolls a probability with the simulator's RNG; out-of-range values are clamped.
pub(crate) fn roll(rng: &mut impl Rng, p: f64) -> bool {
    if p.is_nan() || p <= 0.0 {
        return false;
    }
    rng.random_bool(p.min(1.0))
}

/// A fault forced on a single API request with the `x-sim-fault` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderFault {
    /// 429 `rate_limit_exceeded` with `Retry-After`.
    RateLimit,
    /// 429 `insufficient_quota`.
    Quota,
    /// 500/502/503 with the given status; `retry` false adds `x-should-retry: false`.
    Server { status: u16, retry: bool },
    /// Accept the create but hold the reply for `hang_for`.
    Hang,
    /// A create fault decided in the handler: close the connection or answer like a proxy,
    /// before or after creating.
    Create(CreateFault),
}

/// What happens to a create's answer, beyond the API's own error answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateFault {
    /// Close the connection without answering, nothing created.
    DropBefore,
    /// Answer a proxy 502/504 (HTML, no `x-request-id`), nothing created.
    GatewayBefore,
    /// Create the response, then close the connection without answering.
    DropAfter,
    /// Create the response, then answer a proxy 502/504.
    GatewayAfter,
}

impl CreateFault {
    /// Whether the response is created before the answer goes wrong.
    pub(crate) fn creates(self) -> bool {
        matches!(self, Self::DropAfter | Self::GatewayAfter)
    }

    /// The name used in `x-sim-fault` and in `/_sim/responses`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::DropBefore => "drop_before_create",
            Self::GatewayBefore => "gateway_error_before_create",
            Self::DropAfter => "create_then_drop",
            Self::GatewayAfter => "create_then_gateway_error",
        }
    }

    /// Rolls the four create faults (in a fixed order, so a seed replays them).
    pub(crate) fn roll(rng: &mut impl Rng, faults: &Faults) -> Option<Self> {
        [
            (faults.drop_before_create, Self::DropBefore),
            (faults.gateway_error_before_create, Self::GatewayBefore),
            (faults.create_then_drop, Self::DropAfter),
            (faults.create_then_gateway_error, Self::GatewayAfter),
        ]
        .into_iter()
        .find_map(|(p, fault)| roll(rng, p).then_some(fault))
    }
}

impl HeaderFault {
    /// Parses `429`, `quota`, `500`, `502`, `503`, `500-noretry`, `hang`, and the create
    /// faults by name (`drop_before_create`, `gateway_error_before_create`,
    /// `create_then_drop`, `create_then_gateway_error`).
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let value = value.trim().to_ascii_lowercase();
        let (code, retry) = match value.strip_suffix("-noretry") {
            Some(code) => (code.to_owned(), false),
            None => (value.clone(), true),
        };
        match code.as_str() {
            "429" | "rate_limit" => Some(Self::RateLimit),
            "quota" | "insufficient_quota" => Some(Self::Quota),
            "500" => Some(Self::Server { status: 500, retry }),
            "502" => Some(Self::Server { status: 502, retry }),
            "503" => Some(Self::Server { status: 503, retry }),
            "hang" => Some(Self::Hang),
            "drop_before_create" => Some(Self::Create(CreateFault::DropBefore)),
            "gateway_error_before_create" => Some(Self::Create(CreateFault::GatewayBefore)),
            "create_then_drop" => Some(Self::Create(CreateFault::DropAfter)),
            "create_then_gateway_error" => Some(Self::Create(CreateFault::GatewayAfter)),
            _ => None,
        }
    }
}

/// How a response ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `completed` with full output and usage.
    Completed,
    /// `failed` with `error {code, message}`.
    Failed { code: String },
    /// `incomplete` with `incomplete_details.reason`.
    Incomplete { reason: String },
}

/// What happens to the webhook(s) of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum WebhookMode {
    /// Roll the global faults.
    #[default]
    Normal,
    /// Never send it.
    Drop,
    /// Send it twice with the same `webhook-id`.
    Duplicate,
}

/// The most characters `output=line:N` and `output=lines:N` may ask for: the simulator keeps
/// every response in memory.
pub(crate) const MAX_SHAPED_OUTPUT_CHARS: usize = 4_000_000;

/// The text of a response's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum OutputShape {
    /// The generated report that quotes the input, with its citations (the default).
    #[default]
    Report,
    /// Exactly this text, no citations (`output=empty` is the empty text).
    Text(String),
    /// This many short ASCII lines, each ended by `\n`.
    Lines(usize),
    /// One ASCII line of this many characters, without a line end.
    Line(usize),
    /// A refusal with this text instead of an answer (`output=refusal` or `refusal:TEXT`).
    Refusal(String),
}

/// What a model says when it refuses (`output=refusal` without a text).
pub(crate) const REFUSAL_TEXT: &str = "I'm sorry, but I can't help with that request.";

/// Per-request overrides parsed from `metadata.sim` (grammar in the module docs of `sim`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Overrides {
    pub queue: Option<Duration>,
    pub run: Option<Duration>,
    pub outcome: Option<Outcome>,
    pub webhook: WebhookMode,
    pub webhook_delay: Option<Duration>,
    pub stuck: bool,
    pub hang: Option<Duration>,
    pub output: OutputShape,
    /// How many images an `image_generation` tool makes (`images=N`, or the input marker
    /// `SIM_IMAGE_COUNT=N`; default 1).
    pub images: Option<usize>,
    /// How many files a `code_interpreter` call leaves in its container
    /// (`container_files=N`, or the input marker `SIM_CONTAINER_FILES=N`; default 2).
    pub container_files: Option<usize>,
    /// `Faults::container_expired` for this response only.
    pub container_expired: bool,
    /// `Faults::container_file_drop` for this response's files only.
    pub container_file_drop: bool,
    /// The first call to each MCP server fails with an HTTP 502 (`mcp_error`).
    pub mcp_error: bool,
    /// Listing each MCP server's tools fails (`mcp_list_error`), so none is called.
    pub mcp_list_error: bool,
    /// How many function-call turns the model makes before it answers (`function_turns=N`,
    /// or the input marker `SIM_FUNCTION_TURNS=N`; default 1).
    pub function_turns: Option<usize>,
    /// Every live or resumed stream of this response is cut after this many events
    /// (`stream_drop=N`); the work goes on.
    pub stream_drop: Option<usize>,
    /// A client that leaves this response's background stream while it is still `queued`
    /// leaves it `queued` forever (`stream_abort_sticks`; `Faults::stream_abort_sticks`).
    pub stream_abort_sticks: bool,
}

impl Overrides {
    /// Parses `queue=1s;run=5s;outcome=failed:vector_store_timeout;webhook=drop;stuck`.
    pub(crate) fn parse(spec: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for directive in spec.split(';').map(str::trim).filter(|d| !d.is_empty()) {
            let (key, value) = match directive.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (directive, None),
            };
            let need = || value.ok_or_else(|| format!("'{key}' needs a value"));
            let dur = || {
                let v = need()?;
                humantime::parse_duration(v)
                    .map_err(|e| format!("bad duration '{v}' for '{key}': {e}"))
            };
            match key {
                "queue" => out.queue = Some(dur()?),
                "run" => out.run = Some(dur()?),
                "outcome" => out.outcome = Some(parse_outcome(need()?)?),
                "webhook" => {
                    out.webhook = match need()? {
                        "drop" => WebhookMode::Drop,
                        "duplicate" | "dup" => WebhookMode::Duplicate,
                        "normal" => WebhookMode::Normal,
                        other => return Err(format!("unknown webhook mode '{other}'")),
                    }
                }
                "webhook_delay" => out.webhook_delay = Some(dur()?),
                "stuck" => out.stuck = true,
                "hang" => {
                    out.hang = Some(if value.is_some() {
                        dur()?
                    } else {
                        Duration::ZERO
                    })
                }
                "output" => out.output = parse_output(need()?)?,
                "images" => out.images = Some(count_in(key, need()?, MAX_IMAGES)?),
                "container_files" => {
                    out.container_files = Some(count_in(key, need()?, MAX_CONTAINER_FILES)?);
                }
                "container_expired" => out.container_expired = true,
                "container_file_drop" => out.container_file_drop = true,
                "mcp_error" => out.mcp_error = true,
                "mcp_list_error" => out.mcp_list_error = true,
                "function_turns" => {
                    out.function_turns = Some(count_in(key, need()?, MAX_FUNCTION_TURNS)?);
                }
                "stream_drop" => {
                    let n = need()?;
                    out.stream_drop = Some(
                        n.parse::<usize>()
                            .ok()
                            .filter(|n| (1..=MAX_STREAM_DROP).contains(n))
                            .ok_or_else(|| {
                                format!(
                                    "stream_drop must be an integer from 1 to {MAX_STREAM_DROP}, got '{n}'"
                                )
                            })?,
                    );
                }
                "stream_abort_sticks" => out.stream_abort_sticks = true,
                other => return Err(format!("unknown sim directive '{other}'")),
            }
        }
        Ok(out)
    }
}

/// The most images a response's `image_generation` tool may make (`images=N`).
pub(crate) const MAX_IMAGES: usize = 4;
/// The most files one code interpreter run may leave (`container_files=N`).
pub(crate) const MAX_CONTAINER_FILES: usize = 5;
/// The most function-call turns before an answer (`function_turns=N`).
pub(crate) const MAX_FUNCTION_TURNS: usize = 10;
/// The largest `stream_drop=N`.
pub(crate) const MAX_STREAM_DROP: usize = 1_000_000;

/// A count in `0..=max` for the directive (or input marker) `name`.
pub(crate) fn count_in(name: &str, value: &str, max: usize) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("{name} must be an integer from 0 to {max}, got '{value}'"))
}

/// Parses `report`, `empty`, `text:LITERAL` (`\n` in it is a line break), `lines:N`, `line:N`,
/// `refusal`, `refusal:LITERAL`.
fn parse_output(value: &str) -> Result<OutputShape, String> {
    let count = |n: &str| {
        n.parse::<usize>()
            .ok()
            .filter(|n| *n <= MAX_SHAPED_OUTPUT_CHARS)
            .ok_or_else(|| format!("bad output size '{n}' (0..={MAX_SHAPED_OUTPUT_CHARS})"))
    };
    match value.split_once(':') {
        None if value == "report" => Ok(OutputShape::Report),
        None if value == "empty" => Ok(OutputShape::Text(String::new())),
        None if value == "refusal" => Ok(OutputShape::Refusal(REFUSAL_TEXT.to_owned())),
        Some(("refusal", text)) => Ok(OutputShape::Refusal(text.replace("\\n", "\n"))),
        Some(("text", text)) => Ok(OutputShape::Text(text.replace("\\n", "\n"))),
        Some(("lines", n)) => count(n).map(OutputShape::Lines),
        Some(("line", n)) => count(n).map(OutputShape::Line),
        _ => Err(format!("unknown output shape '{value}'")),
    }
}

fn parse_outcome(value: &str) -> Result<Outcome, String> {
    let (kind, detail) = match value.split_once(':') {
        Some((k, d)) => (k, Some(d.to_owned())),
        None => (value, None),
    };
    match kind {
        "completed" => Ok(Outcome::Completed),
        "failed" => Ok(Outcome::Failed {
            code: detail.unwrap_or_else(|| "server_error".to_owned()),
        }),
        "incomplete" => {
            let reason = detail.unwrap_or_else(|| "max_output_tokens".to_owned());
            if reason != "max_output_tokens" && reason != "content_filter" {
                return Err(format!("unknown incomplete reason '{reason}'"));
            }
            Ok(Outcome::Incomplete { reason })
        }
        other => Err(format!("unknown outcome '{other}'")),
    }
}

/// Serde for `Duration`: humantime strings out, humantime strings or integer milliseconds in.
pub(crate) mod duration_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Millis(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(text) => humantime::parse_duration(&text).map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_full_grammar() {
        let o = Overrides::parse(
            "queue=1s; run=5s;outcome=failed:vector_store_timeout;webhook=drop;stuck",
        )
        .expect("valid spec");
        assert_eq!(o.queue, Some(Duration::from_secs(1)));
        assert_eq!(o.run, Some(Duration::from_secs(5)));
        assert_eq!(
            o.outcome,
            Some(Outcome::Failed {
                code: "vector_store_timeout".into()
            })
        );
        assert_eq!(o.webhook, WebhookMode::Drop);
        assert!(o.stuck);
        let mcp = Overrides::parse("mcp_error; mcp_list_error").expect("valid spec");
        assert!(mcp.mcp_error && mcp.mcp_list_error);
        let acts = Overrides::parse("function_turns=3;stream_drop=5;stream_abort_sticks")
            .expect("valid spec");
        assert_eq!(acts.function_turns, Some(3));
        assert_eq!(acts.stream_drop, Some(5));
        assert!(acts.stream_abort_sticks);
        assert!(Overrides::parse("function_turns=11").is_err());
        assert!(Overrides::parse("stream_drop=0").is_err());
        assert!(Overrides::parse("stream_drop").is_err());
    }

    #[test]
    fn parses_output_shapes() {
        let shape = |spec: &str| Overrides::parse(spec).map(|o| o.output);
        assert_eq!(shape("run=1s"), Ok(OutputShape::Report));
        assert_eq!(shape("output=report"), Ok(OutputShape::Report));
        assert_eq!(shape("output=empty"), Ok(OutputShape::Text(String::new())));
        assert_eq!(
            shape("output=text:The answer is 42.\\nThat is all."),
            Ok(OutputShape::Text("The answer is 42.\nThat is all.".into()))
        );
        assert_eq!(shape("output=lines:3"), Ok(OutputShape::Lines(3)));
        assert_eq!(
            shape("output=refusal"),
            Ok(OutputShape::Refusal(REFUSAL_TEXT.into()))
        );
        assert_eq!(
            shape("output=refusal:Non.\\nJamais."),
            Ok(OutputShape::Refusal("Non.\nJamais.".into()))
        );
        assert_eq!(shape("output=line:1500"), Ok(OutputShape::Line(1500)));
        assert!(shape("output=line:-1").is_err());
        assert!(shape("output=line:99999999").is_err());
        assert!(shape("output=poem").is_err());
        assert!(shape("output").is_err());
    }

    #[test]
    fn rejects_unknown_directives() {
        assert!(Overrides::parse("queue=fast").is_err());
        assert!(Overrides::parse("explode").is_err());
        assert!(Overrides::parse("outcome=incomplete:weird").is_err());
    }

    #[test]
    fn faults_roundtrip_through_json() {
        let json =
            r#"{"rate_limit":0.5,"retry_after":"250ms","slow_create":100,"upload_delay":"60s"}"#;
        let f: Faults = serde_json::from_str(json).expect("valid faults");
        assert_eq!(f.retry_after, Duration::from_millis(250));
        assert_eq!(f.slow_create, Duration::from_millis(100));
        assert_eq!(f.upload_delay, Duration::from_secs(60));
        let back: Faults =
            serde_json::from_value(serde_json::to_value(&f).expect("serializes")).expect("parses");
        assert_eq!(back, f);
        assert_eq!(Faults::default().upload_delay, Duration::ZERO);
        assert!(serde_json::from_str::<Faults>(r#"{"nope":1}"#).is_err());
    }
}
