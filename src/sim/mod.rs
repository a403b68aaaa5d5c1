//! The upstream simulator: a fault-injectable stand-in for OpenAI's Responses API in
//! background mode, faithful to `docs/upstream-api.md` (§1–§7). `respool sim` runs it as
//! a server ([`run`]); tests and `respool demo` start it in process on a loopback port 0
//! ([`spawn`]) and steer it through the [`SimHandle`] or the `/_sim/*` control API.
//!
//! # What it serves
//! - `POST /v1/responses` (background or not, JSON or SSE), `GET /v1/responses/{id}` (JSON, or
//!   SSE replay with `stream=true&starting_after=N`), `POST …/cancel`, `DELETE`, `GET
//!   …/input_items`, with OpenAI's error envelope, bearer auth and rate-limit headers.
//! - Responses move `queued → in_progress → completed|failed|incomplete` on a clock
//!   ([`SimConfig::queue_time`], [`SimConfig::run_time`]); output grows while in progress.
//! - Signed Standard Webhooks for terminal transitions of background responses, with retries,
//!   to the configured target and to every subscribed webhook endpoint.
//! - `/v1/webhook_endpoints`: create, list, retrieve, update, delete, `rotate_secret` (with the
//!   old secret kept for [`SimConfig::secret_rotation_overlap`] on request) and `test`.
//! - `/v1/files`: multipart upload (up to 512 MB), list, retrieve, `content`, delete; optional
//!   expiry. `/v1/vector_stores`: stores, their files and file batches; a file is
//!   `in_progress` for [`SimConfig::file_processing_time`], then `completed`, or `failed` when
//!   named `*.bin` (`unsupported_file`) or holding `SIM_INVALID_FILE` (`invalid_file`) or
//!   `SIM_SERVER_ERROR` (`server_error`). Deleting or expiring a file removes it from every
//!   store; an expired store loses its files. [`SimHandle::advance_storage_clock`] moves their
//!   clock for tests.
//! - Files in responses: every `file_id` of an `input_file` / `input_image` must name a live
//!   file (else a 400 naming `input`); the answer names each file and cites those with an id
//!   (`file_citation`). A `file_search` tool over known stores adds a `file_search_call` item
//!   (`results` only with `include: file_search_call.results`) and cites what it found; a store
//!   still ingesting makes the response fail with `vector_store_timeout`.
//! - Hosted tools: an `image_generation` tool adds `image_generation_call` items before the
//!   message, each `result` a real PNG drawn from the input (1 by default; `images=N` or the
//!   input marker `SIM_IMAGE_COUNT=N`, 0–4), with `partial_image` stream events when
//!   `partial_images` asks. A `code_interpreter` tool runs in a new container (`auto`) or the
//!   one it names (unknown: 400 naming `tools[N].container`; expired: 400 `Container is
//!   expired.`), saves files in it (2 by default; `container_files=N` or
//!   `SIM_CONTAINER_FILES=N`, 0–5), adds a `code_interpreter_call` item (`outputs` only with
//!   `include: code_interpreter_call.outputs`) and cites each file
//!   (`container_file_citation`). `/v1/containers` serves containers and their files; a
//!   container expires 20 minutes after its last use on the storage clock and its files are
//!   then gone ([`SimHandle::containers`], [`SimHandle::expire_container`]).
//! - Remote MCP: an `mcp` tool whose `require_approval` is `never` (or a filter whose `never`
//!   covers every tool it lists) adds an `mcp_list_tools` item first (`search` and `fetch`,
//!   narrowed by `allowed_tools`) and `mcp_call`s before the message (`search`, then `fetch`
//!   of what it found, within `max_tool_calls`), answered from the input; `mcp_error` fails
//!   the first call (`error: {type: http_error, code: 502}`), `mcp_list_error` the listing.
//!   A call that needs approval ends the response (completed, no message) with an
//!   `mcp_approval_request` (`mcpr_…`); a follow-up chained to it with an
//!   `mcp_approval_response` makes the call (`mcp_call.approval_request_id`) when approved
//!   and says it was not approved when denied; an unknown `approval_request_id` is a 400
//!   naming `input` (wording UNCONFIRMED). `tools` is echoed as sent, credentials included,
//!   so respool's own redaction is what gets tested.
//! - Function calling: `function` tools make the response end `completed` with one
//!   `function_call` (`fc_…`, `call_…`, `arguments` a JSON string following `parameters`) per
//!   tool and no message (only the first with `parallel_tool_calls: false`; `tool_choice`
//!   `none` / `required` / `{type: function, name}` / `auto` honoured), for `function_turns=N`
//!   turns (default 1) of the `previous_response_id` chain; then a create carrying
//!   `function_call_output`s gets an answer quoting each. An output for an unknown `call_id`
//!   is a 400 `No tool call found for function call output with call_id call_….`, a call of
//!   the previous response left unanswered a 400 `No tool output found for function call
//!   call_….` (both `param: input`; the second's param UNCONFIRMED). Streams carry
//!   `response.function_call_arguments.delta`/`.done`; usage counts the arguments.
//! - `/v1/conversations`: create (`items` ≤ 20), retrieve, update, delete, and the items
//!   (cursor list, append, retrieve, delete); unknown ids 404 (wording UNCONFIRMED). A create
//!   with `conversation` sees its items (the answer quotes the earlier turns, as it does for a
//!   `previous_response_id` chain), echoes `conversation: {id}`, and appends its input and
//!   output items when it completes; while it is queued or in progress another create on the
//!   conversation is a 400 `conversation_locked` ("Another process is currently operating on
//!   this conversation. Please retry in a few seconds.", `param: conversation`; as reported
//!   for concurrent requests, UNCONFIRMED for a background response's whole run).
//!   [`SimHandle::conversations`] shows them.
//! - Streams spread their events over the whole run (a response's steps are evenly spaced),
//!   so a long deep-research run shows reasoning summary parts, web searches and text deltas
//!   every few seconds.
//! - Control: `GET /_sim/stats`, `GET /_sim/responses[?job_id=…]` (every response created,
//!   per `metadata.respool_job_id`: status, output text, whether its answer was lost; see
//!   [`SimResponse`]), `GET|POST /_sim/faults` (a [`Faults`] JSON, replaces),
//!   `POST /_sim/webhook` (`{"url": …, "secrets": [...]}`). These need no API key.
//!
//! # How a create can fail
//! Each case looks to a client the way the real service's would (`docs/upstream-api.md` §3,
//! §7):
//!
//! | fault | created? | what the client gets |
//! | --- | --- | --- |
//! | `rate_limit`, `quota_exceeded` | no | 429, OpenAI envelope, `x-request-id` (`Retry-After` on a rate limit) |
//! | `server_error` | no | 500/502/503, OpenAI envelope, `x-request-id`, maybe `x-should-retry: false` |
//! | `gateway_error_before_create` | no | proxy 502/504, HTML, no `x-request-id` |
//! | `drop_before_create` | no | connection closed, no answer |
//! | `create_then_gateway_error` | yes | proxy 502/504, HTML, no `x-request-id` |
//! | `create_then_drop` | yes | connection closed, no answer |
//! | `create_accept_then_hang` | yes | no answer before its timeout |
//!
//! Uploads (`POST /v1/files`) have their own two: `upload_drop_before` (nothing stored) and
//! `upload_then_drop` (stored, then the connection closed); both look like a closed connection.
//! Code interpreter containers have two as well, decided when a response's code runs:
//! `container_expired` (the response completes, its container is already expired and its
//! files 404) and `container_file_drop` (each file's first content download answers 500).
//!
//! # Per-request overrides: `metadata.sim`
//! A create whose `metadata.sim` is a string of `;`-separated directives overrides the global
//! settings for that response only (an unknown directive is a 400 with `param: metadata.sim`):
//!
//! ```text
//! spec       = directive *( ";" directive )
//! directive  = "queue=" duration            ; time spent queued, e.g. queue=1s
//!            | "run=" duration              ; time spent in_progress, e.g. run=5s
//!            | "outcome=" outcome           ; how it ends
//!            | "webhook=" ("drop" | "duplicate" | "normal")
//!            | "webhook_delay=" duration    ; extra delay before its webhook
//!            | "stuck"                      ; stays queued forever
//!            | "hang" [ "=" duration ]      ; reply held back (default: Faults::hang_for)
//!            | "output=" output             ; the answer's text (default: the report)
//!            | "images=" 0-4                ; images an image_generation tool makes (default 1)
//!            | "container_files=" 0-5       ; files a code interpreter run saves (default 2)
//!            | "container_expired"          ; its container is expired when it completes
//!            | "container_file_drop"        ; each saved file's first download answers 500
//!            | "mcp_error"                  ; each MCP server's first call fails (HTTP 502)
//!            | "mcp_list_error"             ; listing each MCP server's tools fails (424)
//!            | "function_turns=" 0-10       ; function-call turns before the answer (default 1)
//!            | "stream_drop=" 1-1000000     ; every live or resumed stream cut after N events
//!            | "stream_abort_sticks"        ; a client leaving its stream while queued: stuck
//! outcome    = "completed" | "failed" [ ":" error-code ] | "incomplete" [ ":" reason ]
//! reason     = "max_output_tokens" | "content_filter"
//! output     = "report"                     ; a report quoting the input, with citations
//!            | "empty"                      ; no text at all
//!            | "text:" literal              ; this text, `\n` standing for a line break
//!            | "lines:" count               ; that many short ASCII lines
//!            | "line:" count                ; one ASCII line of that many characters
//! count      = 0 to 4000000
//! duration   = humantime, e.g. 250ms, 2s, 1m30s
//! ```
//! Example: `queue=1s;run=5s;outcome=failed:vector_store_timeout;webhook=drop`.
//!
//! The input text may carry `SIM_IMAGE_COUNT=N`, `SIM_CONTAINER_FILES=N` and
//! `SIM_FUNCTION_TURNS=N` instead of the `images=`, `container_files=` and `function_turns=`
//! directives (which win over them), for clients that control only the prompt (a follow-up
//! that carries only tool outputs reads them from the chain's last question).
//!
//! The resume window of `GET ?stream=true` is [`SimConfig::stream_resume_window`]
//! (`respool sim --resume-window`, default 5 minutes); past it the answer is OpenAI's 400
//! "… more than 5 minutes old." whatever the window, so a test can reach it in a second.
//!
//! A single request can also carry `x-sim-fault: 429 | quota | 500 | 502 | 503 |
//! 500-noretry | 502-noretry | 503-noretry | hang | drop_before_create |
//! gateway_error_before_create | create_then_drop | create_then_gateway_error` (the last
//! five only affect creates).
//!
//! # Layout
//! - `args.rs`: [`SimArgs`], the `respool sim` flags. `faults.rs`: [`Faults`] and the
//!   `metadata.sim` grammar. `validate.rs`: create-body validation. `response.rs`: the Response
//!   object. `output.rs`: generated output, steps and usage. `entry.rs`: one response's
//!   status machine. `state.rs`: the store and its operations. `stream.rs`: SSE.
//!   `webhooks.rs`: signed deliveries. `endpoints.rs`: webhook endpoints and their secrets;
//!   `endpoint_params.rs`: their request bodies. `files.rs`: uploaded files and the storage
//!   clock; `file_routes.rs`: `/v1/files`. `vector_stores.rs`: stores and file statuses;
//!   `vector_store_routes.rs`, `vector_store_params.rs`: `/v1/vector_stores`. `list.rs`: cursor
//!   lists. `file_inputs.rs`: files named by a create; `grounding.rs`: the answer's file
//!   citations and `file_search_call`. `tools.rs`: what the hosted tools made; `images.rs`:
//!   image generation and the PNGs; `code_interpreter.rs`: the code a run writes, its files
//!   and citations; `containers.rs`: containers and their expiry; `container_routes.rs`:
//!   `/v1/containers`; `mcp.rs`: remote MCP servers' listings, calls and approvals;
//!   `functions.rs`: function calls and their outputs; `chain.rs`: what the earlier turns
//!   (chain or conversation) leave a create; `conversations.rs`: the conversation store;
//!   `conversation_routes.rs`: `/v1/conversations`; `markers.rs`:
//!   `SIM_…` markers in the input. `server.rs`: routes.
//!   `headers.rs`: request id and rate-limit headers. `error.rs`: the error envelope.
//!   `broken.rs`: answers that are not the API's (dropped connections, proxy pages).
//!   `ledger.rs`: what was created, per job.

mod args;
mod broken;
mod chain;
mod code_interpreter;
mod container_routes;
mod containers;
mod conversation_routes;
mod conversations;
mod endpoint_params;
mod endpoints;
mod entry;
mod error;
mod faults;
mod file_inputs;
mod file_routes;
mod files;
mod functions;
mod grounding;
mod headers;
mod ids;
mod images;
mod ledger;
mod list;
mod markers;
mod mcp;
mod output;
mod response;
mod server;
mod state;
mod stream;
mod structured;
mod tools;
mod validate;
mod vector_store_params;
mod vector_store_routes;
mod vector_stores;
mod webhooks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use args::SimArgs;
pub use containers::{SimContainer, SimContainerFile};
pub use faults::Faults;
pub use files::SimFile;
pub use ledger::SimResponse;
pub use webhooks::USER_AGENT as WEBHOOK_USER_AGENT;

use state::Shared;

/// Every knob of the simulator. `Default` is fast: 300 ms queued, 1.5 s running, no faults.
#[derive(Clone)]
pub struct SimConfig {
    /// Where to listen; `None` binds `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// The only accepted bearer key; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// Initial webhook target URL.
    pub webhook_url: Option<String>,
    /// Initial webhook secrets (`whsec_…`); every delivery is signed with each.
    pub webhook_secrets: Vec<String>,
    /// Time a background response spends `queued`.
    pub queue_time: Duration,
    /// Time a response spends `in_progress`.
    pub run_time: Duration,
    /// Initial faults (changeable at runtime).
    pub faults: Faults,
    /// Seed for the RNG behind every random decision; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// Age (from creation) after which `GET ?stream=true` answers OpenAI's 400 "… more than 5
    /// minutes old." (OpenAI: 5 minutes; shorter in tests).
    pub stream_resume_window: Duration,
    /// Cancel clears `output` (the Azure contract) instead of keeping the partial output.
    pub cancel_clears_output: bool,
    /// Cancelling a completed response answers 200 with it instead of 400.
    pub cancel_completed_ok: bool,
    /// A webhook attempt slower than this counts as failed.
    pub webhook_timeout: Duration,
    /// Waits between webhook attempts; its length bounds the number of retries.
    pub webhook_retry_schedule: Vec<Duration>,
    /// Webhook HTTP attempts in flight at once.
    pub webhook_concurrency: usize,
    /// Deliveries waiting or retrying at once; more are dropped (and counted).
    pub webhook_max_pending: usize,
    /// How long finished responses stay retrievable.
    pub retention: Duration,
    /// How long an endpoint's old secret keeps signing after a rotation with
    /// `keep_old_secret_active_for_24_hours` (OpenAI: 24 hours).
    pub secret_rotation_overlap: Duration,
    /// How long a file attached to a vector store stays `in_progress` before it ends
    /// `completed` or `failed`.
    pub file_processing_time: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: None,
            api_key: None,
            webhook_url: None,
            webhook_secrets: Vec::new(),
            queue_time: Duration::from_millis(300),
            run_time: Duration::from_millis(1500),
            faults: Faults::default(),
            seed: None,
            stream_resume_window: Duration::from_secs(300),
            cancel_clears_output: false,
            cancel_completed_ok: false,
            webhook_timeout: Duration::from_secs(5),
            webhook_retry_schedule: [200, 500, 1000, 2000, 5000]
                .map(Duration::from_millis)
                .to_vec(),
            webhook_concurrency: 8,
            webhook_max_pending: 1024,
            retention: Duration::from_secs(24 * 3600),
            secret_rotation_overlap: Duration::from_secs(24 * 3600),
            file_processing_time: Duration::from_millis(300),
        }
    }
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("listen", &self.listen)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("webhook_url", &self.webhook_url)
            .field(
                "webhook_secrets",
                &format_args!("[{} redacted]", self.webhook_secrets.len()),
            )
            .field("queue_time", &self.queue_time)
            .field("run_time", &self.run_time)
            .field("faults", &self.faults)
            .field("seed", &self.seed)
            .field("stream_resume_window", &self.stream_resume_window)
            .field("cancel_clears_output", &self.cancel_clears_output)
            .field("cancel_completed_ok", &self.cancel_completed_ok)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("webhook_retry_schedule", &self.webhook_retry_schedule)
            .field("webhook_concurrency", &self.webhook_concurrency)
            .field("webhook_max_pending", &self.webhook_max_pending)
            .field("retention", &self.retention)
            .field("secret_rotation_overlap", &self.secret_rotation_overlap)
            .field("file_processing_time", &self.file_processing_time)
            .finish()
    }
}

/// A conversation as the simulator holds it ([`SimHandle::conversations`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SimConversation {
    /// `conv_…`.
    pub id: String,
    /// Its metadata object.
    pub metadata: serde_json::Value,
    /// Its items, oldest first.
    pub items: Vec<serde_json::Value>,
    /// Deleted with `DELETE /v1/conversations/{id}`.
    pub deleted: bool,
}

/// Counters of what the simulator served (also `GET /_sim/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Responses created (accepted creates, whatever their reply).
    pub creates: u32,
    /// Accepted creates per `metadata["respool_job_id"]` (double submissions show as > 1).
    pub creates_by_job_id: HashMap<String, u32>,
    /// `GET /v1/responses/{id}` requests that reached the handler (JSON and SSE).
    pub retrieves: u32,
    /// Cancel requests that reached the handler.
    pub cancels: u32,
    /// Delete requests that reached the handler.
    pub deletes: u32,
    /// Webhook HTTP attempts.
    pub webhooks_attempted: u32,
    /// Webhook attempts answered with a 2xx.
    pub webhooks_delivered: u32,
    /// Webhooks never sent (drop fault or overflow).
    pub webhooks_dropped: u32,
    /// Webhooks given up after the last retry.
    pub webhooks_failed: u32,
    /// 429 replies served.
    pub served_429: u32,
    /// 5xx replies served by the API (with its envelope and `x-request-id`).
    pub served_5xx: u32,
    /// Proxy-style 502/504 pages served (`gateway_error_before_create`,
    /// `create_then_gateway_error`).
    #[serde(default)]
    pub gateway_errors: u32,
    /// Connections closed without an answer: creates (`drop_before_create`,
    /// `create_then_drop`) and uploads (`upload_drop_before`, `upload_then_drop`).
    #[serde(default)]
    pub dropped_connections: u32,
    /// Files stored by `POST /v1/files` (including those whose answer was then dropped).
    #[serde(default)]
    pub files_uploaded: u32,
    /// Files deleted with `DELETE /v1/files/{id}`.
    #[serde(default)]
    pub files_deleted: u32,
    /// `GET /v1/files` list requests that reached the handler.
    #[serde(default)]
    pub file_lists: u32,
    /// Container file contents served whole
    /// (`GET /v1/containers/{id}/files/{file_id}/content` answered 200).
    #[serde(default)]
    pub container_file_downloads: u32,
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid simulator setting: {0}")]
    Config(String),
    /// A webhook secret is not a valid `whsec_<base64>` secret.
    #[error("invalid webhook secret")]
    Secret(#[source] standardwebhooks::WebhookError),
    /// The webhook HTTP client could not be built.
    #[error("cannot build the webhook HTTP client")]
    Client(#[source] reqwest::Error),
    /// The HTTP server stopped with an error.
    #[error("simulator server failed")]
    Serve(#[source] std::io::Error),
}

/// Checks that each secret is a usable Standard Webhooks secret.
fn check_secrets(secrets: &[String]) -> Result<(), SimError> {
    for secret in secrets {
        if secret.trim_start_matches("whsec_").is_empty() {
            return Err(SimError::Config("empty webhook secret".into()));
        }
        standardwebhooks::Webhook::new(secret).map_err(SimError::Secret)?;
    }
    Ok(())
}

/// Namespace for the simulator's entry points (`Simulator::spawn` = [`spawn`]).
pub struct Simulator;

impl Simulator {
    /// See [`spawn`].
    pub async fn spawn(config: SimConfig) -> Result<SimHandle, SimError> {
        spawn(config).await
    }
}

/// A running simulator. Dropping it stops the server; [`SimHandle::shutdown`] also waits.
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// Starts the simulator in process; binds `127.0.0.1:0` unless `config.listen` is set.
pub async fn spawn(config: SimConfig) -> Result<SimHandle, SimError> {
    config.faults.validate().map_err(SimError::Config)?;
    check_secrets(&config.webhook_secrets)?;
    let addr = config
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| SimError::Bind { addr, source })?;

    let (shared, webhook_rx) = Shared::new(config);
    let shared = Arc::new(shared);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let hooks = webhooks::client(&shared.config).map_err(SimError::Client)?;
    let sender = webhooks::Sender::new(
        shared.clone(),
        hooks.clone(),
        tracker.clone(),
        cancel.clone(),
    );
    tracker.spawn(sender.run(webhook_rx));
    tracker.spawn(clock(shared.clone(), cancel.clone()));
    let router = server::router(shared.clone(), hooks, cancel.clone());
    let stop = cancel.clone();
    tracker.spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "simulator server failed");
        }
    });
    tracing::debug!(%addr, "simulator listening");
    Ok(SimHandle {
        shared,
        addr,
        cancel,
        tracker,
    })
}

/// Runs the simulator for `respool sim` until `shutdown` is cancelled.
pub async fn run(args: SimArgs, shutdown: CancellationToken) -> Result<(), SimError> {
    let handle = spawn(args.to_config()?).await?;
    tracing::info!(url = %handle.base_url(), "simulator listening (OPENAI_BASE_URL)");
    shutdown.cancelled().await;
    handle.shutdown().await;
    Ok(())
}

/// Moves responses along their plans when deadlines pass, and forgets old ones.
async fn clock(shared: Arc<Shared>, cancel: CancellationToken) {
    const IDLE: Duration = Duration::from_secs(10);
    let mut last_sweep = Instant::now();
    loop {
        let now = Instant::now();
        let next = shared.advance_due(now);
        if now.duration_since(last_sweep) >= IDLE {
            shared.sweep(now);
            last_sweep = now;
        }
        let until = next.map_or(now + IDLE, |n| n.min(now + IDLE));
        tokio::select! {
            () = cancel.cancelled() => break,
            () = shared.wake.notified() => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }
}

impl SimHandle {
    /// The API base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A copy of the counters.
    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats.clone()
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// The current fault settings (the `*_next` counters count down as they fire).
    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.clone()
    }

    /// Points webhooks at `url` (or nowhere) signed with `secrets`; invalid secrets are skipped
    /// when signing.
    pub fn set_webhook_target(&self, url: Option<String>, secrets: Vec<String>) {
        if let Err(err) = check_secrets(&secrets) {
            tracing::warn!(error = %err, "webhook target has an invalid secret");
        }
        let mut inner = self.shared.lock();
        inner.webhook.url = url;
        inner.webhook.secrets = secrets;
    }

    /// Every registered webhook endpoint as `GET /v1/webhook_endpoints/{id}` shows it (no
    /// secret), oldest first.
    pub fn webhook_endpoints(&self) -> Vec<serde_json::Value> {
        self.shared.lock().endpoints.views()
    }

    /// The secrets that sign an endpoint's deliveries now, newest first (two during a rotation
    /// overlap); empty for an unknown id. For tests that sign deliveries by hand.
    pub fn webhook_endpoint_secrets(&self, id: &str) -> Vec<String> {
        let inner = self.shared.lock();
        inner
            .endpoints
            .get(id)
            .map(|e| e.live_secrets(Instant::now()))
            .unwrap_or_default()
    }

    /// Every response created for `job_id` (every response, if `None`), oldest first, as it
    /// stands now: what `GET /_sim/responses?job_id=…` answers.
    pub fn responses(&self, job_id: Option<&str>) -> Vec<SimResponse> {
        self.shared.responses(job_id)
    }

    /// The current snapshot of a stored response (advanced to now), as the API would show it
    /// with every `include` applied.
    pub fn response(&self, id: &str) -> Option<serde_json::Value> {
        self.shared.snapshot(id)
    }

    /// Every file ever uploaded, oldest first, deleted and expired ones included.
    pub fn files(&self) -> Vec<SimFile> {
        let mut inner = self.shared.lock();
        inner.storage.tick();
        inner
            .storage
            .files
            .iter()
            .map(|f| SimFile {
                id: f.id.clone(),
                filename: f.filename.clone(),
                purpose: f.purpose.clone(),
                content: f.content.to_vec(),
                deleted: f.deleted,
            })
            .collect()
    }

    /// Deletes a file as if someone else deleted it upstream (it also leaves every vector
    /// store); `false` if there was no such live file.
    pub fn delete_file(&self, id: &str) -> bool {
        self.shared.lock().storage.delete_file(id)
    }

    /// Every code interpreter container, oldest first, as the storage clock has it now:
    /// expired ones (no files left) and deleted ones included.
    pub fn containers(&self) -> Vec<SimContainer> {
        let mut inner = self.shared.lock();
        inner.storage.tick();
        inner
            .storage
            .containers
            .iter()
            .map(SimContainer::of)
            .collect()
    }

    /// Expires a container now, as 20 idle minutes would (its files are gone); `false` if
    /// there is no such container or it was already expired or deleted.
    pub fn expire_container(&self, id: &str) -> bool {
        let mut inner = self.shared.lock();
        match inner.storage.container(id) {
            Ok((_, c)) if !c.expired => {
                c.expire();
                true
            }
            _ => false,
        }
    }

    /// Moves the clock of files, vector stores and containers forward by `by`, so that
    /// expiries (`expires_after` of files, stores and containers) and processing delays come
    /// due without waiting. Responses keep their own clock.
    pub fn advance_storage_clock(&self, by: Duration) {
        self.shared.lock().storage.advance(by);
    }

    /// The body of the create that made `response_id`, as received (JSON); kept after the
    /// response is deleted. Tests check with it what a client sent.
    pub fn request(&self, response_id: &str) -> Option<serde_json::Value> {
        self.shared.lock().requests.get(response_id).cloned()
    }

    /// Every conversation, oldest first, deleted ones included, with its items as
    /// `GET /v1/conversations/{id}/items?order=asc` lists them (finished responses settled).
    pub fn conversations(&self) -> Vec<SimConversation> {
        self.shared.settle_conversations();
        let inner = self.shared.lock();
        inner
            .conversations
            .list
            .iter()
            .map(|c| SimConversation {
                id: c.id.clone(),
                metadata: serde_json::Value::Object(c.metadata.clone()),
                items: c.items.clone(),
                deleted: c.deleted,
            })
            .collect()
    }

    /// Stops the server, the clock and every webhook task, and waits for them.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The simulator's parsers of network input, reachable for the fuzz targets in `fuzz/` (the
/// modules behind them are private). Not an API: thin wrappers, errors as their messages.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::Duration;

    use serde_json::Value;

    /// Parses and validates a `POST /v1/responses` body, `metadata.sim` included.
    pub fn parse_create(raw: &[u8]) -> Result<(), String> {
        super::validate::parse_create(raw)
            .map(|_| ())
            .map_err(|e| e.message)
    }

    /// Parses a `metadata.sim` overrides string.
    pub fn parse_overrides(spec: &str) -> Result<(), String> {
        super::faults::Overrides::parse(spec).map(|_| ())
    }

    /// Formats a duration as the simulator's `x-ratelimit-reset-*` headers do.
    pub fn go_duration(d: Duration) -> String {
        super::headers::go_duration(d)
    }

    /// Formats one event as an SSE frame, as the simulator's streams do.
    pub fn sse_frame(event: &Value) -> String {
        super::stream::frame(event)
    }
}
