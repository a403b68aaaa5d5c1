//! respool runs long OpenAI Responses API jobs in background mode and sees them through.
//!
//! # Layout
//! - [`config`]: the YAML config file, `${VAR}` interpolation, defaults, validation.
//! - [`job`]: job specs (YAML and JSON), ids, and the job status machine.
//! - [`store`]: the SQLite schema and every query.
//! - [`upstream`]: the OpenAI client (create, retrieve, cancel) with retries.
//! - [`webhook`]: the Standard Webhooks receiver.
//! - [`orchestrator`]: the workers that submit, poll, time out and reconcile jobs.
//! - [`notify`]: the notification outbox and sinks.
//! - [`api`]: the REST API.
//! - [`cli`]: the `respool` command.
//! - [`sim`]: the upstream simulator.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod job;
pub mod notify;
pub mod orchestrator;
pub mod sim;
pub mod store;
pub mod upstream;
pub mod webhook;
