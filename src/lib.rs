//! respool runs long OpenAI Responses API jobs (deep research, long reasoning, long
//! generations) in background mode and sees each one through: submitted once, its completion
//! learned from a signed webhook or, failing that, by polling, its result and every event kept
//! in SQLite, and the people who care told.
//!
//! # Concepts
//! - A **job** is a Responses API `create` body plus respool's own keys ([`job::JobSpec`]).
//! - The **ledger** is the `jobs` table ([`store`]): the only source of truth. Every state
//!   change is committed before it is acted on, so a crash at any instant loses nothing.
//! - The **orchestrator** ([`orchestrator`]) claims due work from the ledger with conditional
//!   writes: submissions, polls, cancels, timeouts, uncertain creates, webhook hand-offs.
//! - A **webhook** ([`webhook`]) is only a hint that makes a job due for a poll now; the
//!   fetched response is the truth.
//! - A **schedule** ([`job::schedule`]) makes a jobs-file entry a template: each cron tick is
//!   recorded with the job it creates in one transaction, so no tick runs twice.
//!
//! # Layout
//! - [`app`]: the daemon assembled from a config ([`app::Application`]).
//! - [`clock`]: the one source of time.
//! - [`config`]: the YAML config file, `${VAR}` interpolation, systemd credentials, defaults,
//!   validation.
//! - [`job`]: job specs (YAML and JSON), ids, the job status machine, and schedules (cron
//!   syntax, time zones, catch-up planning).
//! - [`store`]: the SQLite schema and every query.
//! - [`upstream`]: the OpenAI client (create, retrieve, cancel; webhook endpoints) with
//!   retries.
//! - [`webhook`]: the Standard Webhooks receiver and the secrets it accepts (config and
//!   stored).
//! - [`orchestrator`]: the workers that submit, poll, time out and reconcile jobs, and the
//!   scheduler that turns schedule ticks into jobs.
//! - [`reload`]: loading the jobs file; reloading config and jobs file (SIGHUP, REST).
//! - [`notify`]: the notification outbox and sinks.
//! - [`api`]: the REST API and its OpenAPI document.
//! - [`web`]: the server-rendered history pages (job list, job page, stats) and their login.
//! - [`cli`]: the `respool` command.
//! - [`sim`]: the upstream simulator.
//! - [`systemd`]: `sd_notify` (READY, WATCHDOG, RELOADING, STOPPING); the unit itself is
//!   `systemd/respool.service`.
//! - [`telemetry`]: the metric names and the Prometheus rendering of `/metrics`.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
#[cfg(test)]
mod doc_links;
pub mod job;
pub mod notify;
pub mod orchestrator;
pub mod reload;
pub mod sim;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod upstream;
pub mod web;
pub mod webhook;
