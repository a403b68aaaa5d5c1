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
//! - A **webhook** ([`inbound`]) is only a hint that makes a job due for a poll now; the
//!   fetched response is the truth.
//! - A **schedule** ([`job::schedule`]) makes a jobs-file entry a template: each cron tick is
//!   recorded with the job it creates in one transaction, so no tick runs twice.
//!
//! # Layout
//! Top-level modules, lowest first: each imports only modules above it in this list, never
//! one below. No two top-level modules import each other, directly or through others: the
//! `layout` test fails on any cycle and names it.
//!
//! - Foundations, importing nothing of respool but the foundations before them: [`clock`] (the one source of time, durations),
//!   [`telemetry`] (metric names, `/metrics`, the error-chain formatter), [`systemd`]
//!   (`sd_notify`; the unit is `systemd/respool.service`), [`yaml`] (`${VAR}` interpolation,
//!   key paths, `file:line:col` errors), [`pricing`] (model prices by service tier, tool
//!   fees, and the one function that says what a job cost),
//!   [`auth`] (API tokens, the loopback rule), [`batch`] (group commit: many callers, one
//!   writer, one transaction per batch), [`contract`] (OpenAI's create-request schema,
//!   vendored, the check of job bodies against it, and the webhook event types OpenAI sends),
//!   [`structured`] (structured outputs: schema rules, refusals, parsing and checking JSON
//!   answers), [`sim`] (the upstream simulator, behind
//!   the default `sim` feature; it checks creates with [`contract`]).
//! - [`job`]: job specs (YAML and JSON), ids, the status machine, cron schedules.
//! - [`config`]: the YAML config file, systemd credentials, defaults, validation, and the
//!   config in force ([`config::Live`]).
//! - [`upstream`]: the OpenAI client (create, retrieve, cancel; webhook endpoints) with
//!   retries.
//! - [`signing`]: Standard Webhooks keys and verification; the only maker of a
//!   [`signing::Verified`] delivery.
//! - [`store`]: the SQLite schema and every query (records only `Verified` deliveries).
//! - [`view`]: the public view of a job (API, CLI, webhook sink, pages); [`stats`]: the stats
//!   fold; [`live`]: a job's timeline as server-sent events (API and pages).
//! - [`notify`]: the notification outbox and sinks (email, Slack, Discord, ntfy, the signed
//!   webhook sink, file, command).
//! - [`orchestrator`]: the workers that submit, poll, time out and reconcile jobs, and the cron
//!   scheduler.
//! - [`inbound`]: the inbound webhook receiver (verify, record, wake).
//! - [`reload`]: loading the jobs file; reloading config and jobs file (SIGHUP, REST).
//! - HTTP leaves, importing none of each other: [`api`] (REST API and OpenAPI document),
//!   [`web`] (history pages and their login), and [`inbound`]'s router.
//! - [`http`]: the composition root: owns the state, merges the leaves' routers, serves.
//! - [`app`]: the daemon assembled from a config ([`app::Application`]).
//! - [`cli`]: the `respool` command.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod artifacts;
pub mod auth;
pub mod batch;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contract;
#[cfg(test)]
mod doc_links;
pub mod http;
pub mod inbound;
pub mod job;
pub mod live;
pub mod notify;
pub mod orchestrator;
pub mod pricing;
pub mod reload;
pub mod signing;
#[cfg(feature = "sim")]
pub mod sim;
pub mod stats;
pub mod store;
pub mod structured;
pub mod systemd;
pub mod telemetry;
pub mod upstream;
pub mod view;
pub mod web;
pub mod yaml;

#[cfg(test)]
mod layout;
